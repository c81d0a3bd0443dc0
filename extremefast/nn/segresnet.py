"""The paper's FCN (Myronenko 2018 without the VAE branch), with optional attention gates.

Encoder: residual blocks of GroupNorm-ReLU-3x3x3 conv (twice) with an additive skip,
strided 3x3x3 convolutions to downsample, ``init_filters`` doubling per level.
Decoder: per level a 1x1x1 convolution halving the features, trilinear upsampling,
addition of the encoder features (optionally through an attention gate), one residual
block. Output: GroupNorm-ReLU-1x1x1 conv and a sigmoid. With ``attention="none"`` the
parameter count equals MONAI's SegResNet of the same configuration.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError

ATTENTION = ("none", "gate", "point")


class ResBlock(nn.Module):
    def __init__(self, channels: int, num_groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, channels)
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(num_groups, channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(F.relu(self.norm1(x), inplace=True))
        y = self.conv2(F.relu(self.norm2(y), inplace=True))
        return x + y


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018): skip * sigmoid(psi(relu(Wx skip + Wg gate))).

    With ``point_channels`` > 0 the gating signal is the decoder features concatenated with
    the point channel at this level (the paper's point attention).
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int, point_channels: int = 0):
        super().__init__()
        self.w_skip = nn.Conv3d(skip_channels, inter_channels, 1, bias=False)
        self.w_gate = nn.Conv3d(gate_channels + point_channels, inter_channels, 1, bias=True)
        self.psi = nn.Conv3d(inter_channels, 1, 1, bias=True)

    def forward(self, skip, gate, points=None):
        if points is not None:
            gate = torch.cat([gate, points], dim=1)
        alpha = torch.sigmoid(self.psi(F.relu(self.w_skip(skip) + self.w_gate(gate))))
        return skip * alpha


class SegResNet(nn.Module):
    """Encoder-decoder FCN for binary segmentation from (image[, point channel]).

    Parameters
    ----------
    spatial_dims : int
        Must be 3.
    in_channels : int
        1 (image only, variant b) or 2 (image + point channel).
    out_channels : int
        Output channels (1 for the binary task).
    init_filters : int
        Filters of the first level (8 in the paper), doubled per level.
    blocks_down, blocks_up : tuple of int
        Residual blocks per encoder / decoder level.
    attention : {'none', 'gate', 'point'}
        Attention gates on the decoder skips; 'point' feeds the point channel (the input's
        last channel, downsampled to each level) to the gates as well.
    channels_last : bool or None
        Run the layers on channels-last (NDHWC) tensors. None (the default): on the CPU,
        where oneDNN's 3D convolutions are faster that way (a training step at 2 x 2 x 64^3
        measured 1.6x faster, benchmarks/bench_network.py); the output is the same up to
        float32 rounding (tested).
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 2, out_channels: int = 1, init_filters: int = 8,
                 blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), attention: str = "none", num_groups: int = 8,
                 channels_last: bool | None = None):
        super().__init__()
        if spatial_dims != 3:
            raise InputError(f"spatial_dims must be 3, got {spatial_dims}")
        if attention not in ATTENTION:
            raise InputError(f"attention must be one of {ATTENTION}, got {attention!r}")
        if attention == "point" and in_channels < 2:
            raise InputError("attention='point' needs the point channel as the last input channel (in_channels >= 2)")
        if len(blocks_up) != len(blocks_down) - 1:
            raise InputError(f"blocks_up needs len(blocks_down) - 1 = {len(blocks_down) - 1} entries, got {blocks_up}")
        if init_filters % num_groups:
            raise InputError(f"init_filters ({init_filters}) must be a multiple of num_groups ({num_groups})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.init_filters, self.attention = init_filters, attention
        self.blocks_down, self.blocks_up = tuple(blocks_down), tuple(blocks_up)
        self.channels_last = channels_last
        self.conv_init = nn.Conv3d(in_channels, init_filters, 3, padding=1, bias=False)
        self.down_layers = self._make_down_layers(num_groups)
        self.up_convs, self.up_layers, self.gates = self._make_up_layers(num_groups)
        self.norm_final = nn.GroupNorm(num_groups, init_filters)
        self.conv_final = nn.Conv3d(init_filters, out_channels, 1, bias=True)

    def _make_down_layers(self, num_groups):
        layers = nn.ModuleList()
        for level, n_blocks in enumerate(self.blocks_down):
            ch = self.init_filters * 2**level
            down = nn.Conv3d(ch // 2, ch, 3, stride=2, padding=1, bias=False) if level > 0 else nn.Identity()
            layers.append(nn.Sequential(down, *[ResBlock(ch, num_groups) for _ in range(n_blocks)]))
        return layers

    def _make_up_layers(self, num_groups):
        up_convs, up_layers, gates = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        n_up = len(self.blocks_up)
        for i, n_blocks in enumerate(self.blocks_up):
            ch = self.init_filters * 2 ** (n_up - i)
            up_convs.append(nn.Conv3d(ch, ch // 2, 1, bias=False))
            up_layers.append(nn.Sequential(*[ResBlock(ch // 2, num_groups) for _ in range(n_blocks)]))
            if self.attention != "none":
                gates.append(AttentionGate(ch // 2, ch // 2, max(ch // 4, 4), 1 if self.attention == "point" else 0))
        return up_convs, up_layers, gates

    def encode(self, x):
        x = self.conv_init(x)
        skips = []
        for layer in self.down_layers:
            x = layer(x)
            skips.append(x)
        return x, skips[:-1]

    def decode(self, x, skips, points=None):
        for i, (conv, layer) in enumerate(zip(self.up_convs, self.up_layers)):
            skip = skips[-(i + 1)]
            x = F.interpolate(conv(x), size=skip.shape[2:], mode="trilinear", align_corners=False)
            if self.attention != "none":
                p = None
                if points is not None:
                    p = F.interpolate(points, size=skip.shape[2:], mode="trilinear", align_corners=False)
                skip = self.gates[i](skip, x, p)
            x = layer(x + skip)
        return self.conv_final(F.relu(self.norm_final(x), inplace=True))

    def forward_logits(self, x):
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise InputError(f"input must be (N, {self.in_channels}, X, Y, Z), got {tuple(x.shape)}")
        if self.channels_last or (self.channels_last is None and x.device.type == "cpu"):
            x = x.contiguous(memory_format=torch.channels_last_3d)
        points = x[:, -1:] if self.attention == "point" else None
        bottom, skips = self.encode(x)
        return self.decode(bottom, skips, points)

    def forward(self, x):
        return torch.sigmoid(self.forward_logits(x))

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, init_filters={self.init_filters}, "
                f"blocks_down={self.blocks_down}, blocks_up={self.blocks_up}, attention={self.attention!r}")
