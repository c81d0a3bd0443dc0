"""The network as training and prediction share it: built from a configuration, fed the
same input crop (image and point channel) on the device the model runs on.

The crop geometry is that of :mod:`extremefast.pseudo.roi`: crop voxel c along an axis
sits at original coordinate ``start - 0.5 + (c + 0.5) * zoom``; trilinear sampling with
border clamping matches ``crop_resample(order=1)``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BackendUnavailable, InputError
from ..nn import SegResNet
from ..pseudo.gaussians import gaussian_points
from ..pseudo.roi import Box, clip_to_clicks, paste_back, roi_box
from .config import TrainConfig


def build_model(config: TrainConfig) -> SegResNet:
    """The SegResNet that ``config`` describes (input channels, widths, attention of its variant).

    Parameters
    ----------
    config : TrainConfig

    Returns
    -------
    SegResNet
        Freshly initialised (seeded by torch's generator).
    """
    return SegResNet(3, config.in_channels, 1, config.init_filters, config.blocks_down, config.blocks_up,
                     attention=config.switches["attention"])


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network itself, under a DistributedDataParallel wrapper or not.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    torch.nn.Module
    """
    return model.module if hasattr(model, "module") else model


def network_box(points, spacing, image_shape, config: TrainConfig) -> Box:
    """The network's crop of a scan: the clicks' box with its margin
    (:meth:`TrainConfig.crop_margin_mm`), at ``crop_size``; training and prediction both crop here.

    Parameters
    ----------
    points : array_like
        (6, 3) voxel indices of the clicks.
    spacing : sequence of float
        Voxel size in mm.
    image_shape : tuple of int
    config : TrainConfig

    Returns
    -------
    Box
    """
    return roi_box(points, spacing, image_shape, config.crop_margin_mm(points, spacing), (config.crop_size,) * 3)


def network_input(case_tensor: torch.Tensor, box: Box, points: np.ndarray, config: TrainConfig):
    """(C, S, S, S) input crop (image[, point channel]), the crop of the other volumes, and the
    point channel (which also feeds the point loss).

    Parameters
    ----------
    case_tensor : torch.Tensor
        (C, X, Y, Z) image and other volumes on the model's device.
    box : Box
        The crop.
    points : ndarray
        (6, 3) voxel indices of the clicks.
    config : TrainConfig

    Returns
    -------
    x : torch.Tensor
        Network input (in_channels, S, S, S).
    others : torch.Tensor
        The crop of ``case_tensor[1:]``.
    point_channel : torch.Tensor
        (1, S, S, S).
    """
    crops = crop_volumes(case_tensor, box)
    image = crops[:1]
    pts = torch.as_tensor(box.to_crop(points), dtype=torch.float32, device=case_tensor.device)
    pc = point_channel_torch(pts, box.size, config.point_sigma)[None]
    x = torch.cat([image, pc], 0) if config.in_channels == 2 else image
    return x, crops[1:], pc


def predict_probability(model: torch.nn.Module, x: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """The organ's probability (S, S, S) on the input crop ``x`` (C, S, S, S), averaged with the
    prediction of the left-right mirrored crop where ``config.mirror_average`` (axis 0 of the
    LPS-oriented grid; the point channel is mirrored with the image).

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode, called under no_grad (and autocast) by the caller.
    x : torch.Tensor
    config : TrainConfig

    Returns
    -------
    torch.Tensor
        float32 probability.
    """
    p = model(x[None])[0, 0].float()
    if config.mirror_average:
        p = 0.5 * (p + torch.flip(model(torch.flip(x[None], (2,)))[0, 0].float(), (0,)))
    return p


def probability_on_image(p: np.ndarray, box: Box, points, config: TrainConfig) -> np.ndarray:
    """A crop's probability (:func:`predict_probability`) pasted back onto the image's grid
    (float32), 0 outside the clicks' box where ``config.clip_to_clicks``.

    Parameters
    ----------
    p : ndarray
        Probability of shape ``box.size``.
    box : Box
        The crop it was predicted on.
    points : ndarray
        (6, 3) voxel indices of the clicks.
    config : TrainConfig

    Returns
    -------
    ndarray
    """
    prob = paste_back(p.astype(np.float32), box, order=1)
    return clip_to_clicks(prob, points) if config.clip_to_clicks else prob


def resolve_torch_device(device: str, rank: int = 0) -> torch.device:
    """``"auto"`` (a GPU where PyTorch sees one), ``"cpu"`` or ``"cuda"`` (rank ``rank``'s GPU).

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
    rank : int
        The process's rank (picks its GPU).

    Returns
    -------
    torch.device
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackendUnavailable("device 'cuda': no CUDA GPU is visible to PyTorch")
        return torch.device("cuda", rank % torch.cuda.device_count())
    if device != "cpu":
        raise InputError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device("cpu")


def sampling_grid(box: Box, device, dtype=torch.float32) -> torch.Tensor:
    """(1, S0, S1, S2, 3) grid for ``grid_sample`` with align_corners=True."""
    axes = []
    for a in range(3):
        c = torch.arange(box.size[a], device=device, dtype=torch.float64)
        x = box.start[a] - 0.5 + (c + 0.5) * (box.stop[a] - box.start[a]) / box.size[a]
        n = box.image_shape[a]
        axes.append((2.0 * x / max(n - 1, 1) - 1.0).to(dtype))
    g0, g1, g2 = torch.meshgrid(*axes, indexing="ij")
    # grid_sample's last dimension is (W, H, D) = (axis 2, axis 1, axis 0)
    return torch.stack([g2, g1, g0], dim=-1)[None]


def crop_volumes(volumes: torch.Tensor, box: Box) -> torch.Tensor:
    """Crop and resample (C, X, Y, Z) volumes to (C, *box.size)."""
    grid = sampling_grid(box, volumes.device, volumes.dtype)
    return F.grid_sample(volumes[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


def point_channel_torch(points_crop: torch.Tensor, size, sigma: float) -> torch.Tensor:
    """The point channel (:func:`~extremefast.pseudo.gaussians.gaussian_points`) on the
    points' device: (6, 3) crop-space points -> (S0, S1, S2) float32."""
    return gaussian_points(_TorchArrays(points_crop.device), points_crop, size, [float(sigma)] * 3, torch.float32)


class _TorchArrays:
    """The array functions :func:`gaussian_points` uses, as torch on one device."""

    exp = staticmethod(torch.exp)

    def __init__(self, device):
        self.device = device

    def zeros(self, shape, dtype):
        return torch.zeros(shape, dtype=dtype, device=self.device)

    def arange(self, n, dtype):
        return torch.arange(n, dtype=dtype, device=self.device)
