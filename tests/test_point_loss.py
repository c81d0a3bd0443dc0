"""Point loss: every backend against the literal conv3d reference, values and gradients."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from extremefast import point_loss
from extremefast.errors import BackendUnavailable, InputError
from extremefast.losses.reference import point_loss_reference
from extremefast.losses.separable import box_operator, point_loss_separable

from conftest import TORCH_DEVICES

SHAPES = [(1, 1, 5, 6, 7), (2, 1, 9, 10, 11), (3, 1, 17, 5, 12)]


def _inputs(shape, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(shape, generator=g, dtype=dtype).to(device).requires_grad_(True)
    e = torch.rand(shape, generator=g, dtype=dtype).to(device)
    return p, e


def test_box_operator_is_the_repeated_zero_padded_filter():
    # applying M to a unit impulse equals running the 1D filter B times with zero padding
    L, B, n = 13, 4, 3
    M = box_operator(L, B, n, torch.float64)
    for i in (0, 6, 12):
        x = torch.zeros(L, dtype=torch.float64)
        x[i] = 1
        y = x.clone()
        for _ in range(B):
            y = torch.nn.functional.conv1d(y[None, None], torch.full((1, 1, n), 1 / n, dtype=torch.float64),
                                           padding=n // 2)[0, 0]
        torch.testing.assert_close(M @ x, y)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("num_filters,kernel_size", [(25, 3), (4, 5), (1, 1)])
def test_separable_matches_reference(shape, num_filters, kernel_size):
    p, e = _inputs(shape)
    ref = point_loss_reference(p, e, num_filters, kernel_size)
    (g_ref,) = torch.autograd.grad(ref, p)
    out = point_loss_separable(p, e, num_filters, kernel_size)
    (g_out,) = torch.autograd.grad(out, p)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-9, atol=1e-14)


def test_separable_gradcheck():
    p, e = _inputs((2, 1, 4, 5, 3))
    assert torch.autograd.gradcheck(lambda x: point_loss(x, e, num_filters=3, backend="separable", validate=False),
                                    (p,), eps=1e-6, atol=1e-8)
    # the point channel's gradient too, where it asks for one
    e.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, y: point_loss(x, y, num_filters=3, backend="separable", validate=False),
                                    (p, e), eps=1e-6, atol=1e-8)


def test_triton_backend_under_interpreter():
    """Runs in a subprocess: TRITON_INTERPRET must be set before Triton is imported."""
    code = r"""
import torch
from extremefast import point_loss
from extremefast.losses.reference import point_loss_reference
for shape in [(1, 1, 5, 6, 7), (2, 1, 9, 10, 11), (3, 1, 17, 33, 12), (1, 1, 40, 3, 18)]:
    g = torch.Generator().manual_seed(sum(shape))
    p = torch.rand(shape, generator=g).requires_grad_(True)
    e = torch.rand(shape, generator=g)
    ref = point_loss_reference(p.double(), e.double(), 25, 3)
    (g_ref,) = torch.autograd.grad(ref, p)
    out = point_loss(p, e, backend="triton")
    (g_out,) = torch.autograd.grad(out * 2.0, p)
    assert abs(out.item() - ref.item()) < 1e-6 * abs(ref.item()), (shape, out.item(), ref.item())
    err = ((g_out - 2.0 * g_ref).abs().max() / g_ref.abs().max()).item()
    assert err < 1e-5, (shape, err)
# float64 kernels: value equal to the reference and gradient equal to finite differences
for shape in [(1, 1, 3, 4, 5), (2, 1, 4, 2, 3)]:
    g = torch.Generator().manual_seed(sum(shape))
    p = torch.rand(shape, generator=g, dtype=torch.float64).requires_grad_(True)
    e = torch.rand(shape, generator=g, dtype=torch.float64)
    out = point_loss(p, e, num_filters=3, backend="triton", validate=False)
    assert out.dtype == torch.float64
    assert abs(out.item() - point_loss_reference(p, e, 3, 3).item()) < 1e-14, shape
    assert torch.autograd.gradcheck(lambda x: point_loss(x, e, num_filters=3, backend="triton", validate=False),
                                    (p,), eps=1e-6, atol=1e-10)
print("TRITON_OK")
"""
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and "TRITON_OK" in res.stdout, res.stderr[-3000:]


@pytest.mark.parametrize("device", TORCH_DEVICES)
def test_auto_backend_matches_reference(device):
    p, e = _inputs((2, 1, 12, 9, 10), torch.float32, device)
    out = point_loss(p, e)
    (g,) = torch.autograd.grad(out, p)
    ref = point_loss_reference(p.double(), e.double())
    (g_ref,) = torch.autograd.grad(ref, p)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g.double(), g_ref.double(), rtol=1e-4, atol=1e-9)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("shape", [(1, 1, 5, 6, 7), (2, 1, 33, 17, 40), (4, 1, 64, 64, 64)])
def test_gpu_backends_match_reference(backend, shape):
    p, e = _inputs(shape, torch.float32, "cuda", seed=sum(shape))
    out = point_loss(p, e, backend=backend)
    (g,) = torch.autograd.grad(out, p)
    ref = point_loss_reference(p.double(), e.double())
    (g_ref,) = torch.autograd.grad(ref, p)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-7)
    assert ((g.double() - g_ref).abs().max() / g_ref.abs().max()).item() < 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backends_float64_gradcheck(backend):
    p, e = _inputs((2, 1, 4, 5, 3), torch.float64, "cuda")
    out = point_loss(p, e, num_filters=3, backend=backend, validate=False)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, point_loss_reference(p, e, 3, 3), rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(lambda x: point_loss(x, e, num_filters=3, backend=backend, validate=False),
                                    (p,), eps=1e-6, atol=1e-10)


@pytest.mark.gpu
def test_cuda_op_traces_under_torch_compile():
    p, e = _inputs((2, 1, 16, 12, 20), torch.float32, "cuda")
    fn = torch.compile(lambda a, b: point_loss(a, b, backend="cuda", validate=False), fullgraph=False)
    out = fn(p, e)
    ref = point_loss_reference(p.double(), e.double())
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("args,kwargs,match", [
    (lambda p: (p[0], p[0]), {}, "5D"),
    (lambda p: (p, p[:, :, 1:]), {}, "does not match"),
    (lambda p: (p.long(), p), {}, "floating-point"),
    (lambda p: (p * 3, p), {}, r"\[0, 1\]"),
    (lambda p: (p, p), {"backend": "nope"}, "not valid"),
    (lambda p: (p, p), {"kernel_size": 2}, "odd"),
])
def test_bad_input(args, kwargs, match):
    p = torch.rand(1, 1, 4, 4, 4)
    with pytest.raises(InputError, match=match):
        point_loss(*args(p), **kwargs)


def test_cuda_backend_on_cpu_tensor_is_refused():
    p = torch.rand(1, 1, 4, 4, 4)
    with pytest.raises(BackendUnavailable):
        point_loss(p, p, backend="cuda")
