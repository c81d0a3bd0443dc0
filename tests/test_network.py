"""The FCN, attention gates and Dice loss."""
from __future__ import annotations

import pytest
import torch

from extremefast.errors import InputError
from extremefast.losses.dice import dice_loss
from extremefast.nn import SegResNet


def _count(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("in_channels", [1, 2])
def test_parameter_count_equals_monai_segresnet(in_channels):
    monai = pytest.importorskip("monai.networks.nets")
    ours = SegResNet(in_channels=in_channels, out_channels=1, init_filters=8, blocks_down=(1, 2, 2, 4),
                     blocks_up=(1, 1, 1))
    theirs = monai.SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=1, init_filters=8,
                             blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1))
    assert _count(ours) == _count(theirs)


@pytest.mark.parametrize("attention", ["none", "gate", "point"])
@pytest.mark.parametrize("shape", [(16, 16, 16), (20, 13, 9)])
def test_forward_shapes_and_range(attention, shape):
    torch.manual_seed(0)
    net = SegResNet(in_channels=2, attention=attention)
    x = torch.rand(2, 2, *shape)
    y = net(x)
    assert y.shape == (2, 1, *shape)
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    y.mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    repr(net)


@pytest.mark.parametrize("attention", ["none", "point"])
def test_channels_last_layout_gives_the_same_output_and_gradients(attention):
    """The CPU default (channels-last layers) against the plain contiguous layout: the same
    float32 output to rounding, and in float64 (where no ReLU input sits close enough to 0 to
    change sides with the summation order) the same gradients."""
    torch.manual_seed(0)
    plain = SegResNet(in_channels=2, attention=attention, channels_last=False)
    fast = SegResNet(in_channels=2, attention=attention)
    fast.load_state_dict(plain.state_dict())
    x = torch.rand(2, 2, 20, 13, 9)
    y_fast = fast(x)
    assert y_fast.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(y_fast, plain(x), rtol=1e-4, atol=1e-5)
    plain, fast = plain.double(), fast.double()
    y_plain, y_fast = plain(x.double()), fast(x.double())
    torch.testing.assert_close(y_fast, y_plain, rtol=1e-10, atol=1e-12)
    y_plain.square().mean().backward()
    y_fast.square().mean().backward()
    for (name, a), b in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-8, atol=1e-12, msg=name)


def test_point_attention_uses_the_point_channel():
    torch.manual_seed(0)
    net = SegResNet(in_channels=2, attention="point").eval()
    x = torch.rand(1, 2, 16, 16, 16)
    x2 = x.clone()
    x2[:, 1] = 0
    assert not torch.allclose(net(x), net(x2))
    assert _count(net) > _count(SegResNet(in_channels=2, attention="gate"))


def test_bad_configuration():
    with pytest.raises(InputError, match="attention"):
        SegResNet(attention="spatial")
    with pytest.raises(InputError, match="point channel"):
        SegResNet(in_channels=1, attention="point")
    with pytest.raises(InputError, match=r"\(N, 2"):
        SegResNet(in_channels=2)(torch.rand(1, 1, 8, 8, 8))


def test_dice_loss_probabilistic_targets():
    p = torch.tensor([[0.2, 0.8, 1.0, 0.0]])
    y = torch.tensor([[0.0, 1.0, 0.5, 0.0]])
    expected = 1 - 2 * (0.8 + 0.5) / ((0.04 + 0.64 + 1.0) + (1.0 + 0.25))
    torch.testing.assert_close(dice_loss(p, y), torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert float(dice_loss(y, y)) < float(dice_loss(p, y))
    assert float(dice_loss(torch.zeros(1, 4), torch.zeros(1, 4))) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InputError):
        dice_loss(p, y[:, :3])
