"""Point loss forward + backward per backend vs the literal conv3d reference, one run.

Every backend's loss and gradient are checked against the reference before timing. On a
GPU the memory-bandwidth floor is printed beside each time: the fewest bytes any
implementation must move (read P and G({e}), write dL/dP; 3 x 4 bytes per voxel) over the
device-to-device copy bandwidth measured in the same run.
"""
from __future__ import annotations

import torch
from _harness import parser, report, timeit


def fwd_bwd(fn, p, e):
    def run():
        p.grad = None
        loss = fn(p, e)
        loss.backward()
        return loss
    return run


def copy_bandwidth(device) -> float:
    n = 256 * 1024 * 1024 // 4
    a = torch.empty(n, device=device)
    b = torch.empty_like(a)
    t = timeit(lambda: b.copy_(a), repeat=20, warmup=3, sync=torch.cuda.synchronize)
    return 2 * a.numel() * 4 / t


def main():
    p_ = parser(__doc__)
    p_.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p_.add_argument("--batch", type=int, default=None)
    p_.add_argument("--size", type=int, default=128)
    p_.add_argument("--skip-reference-timing", action="store_true")
    args = p_.parse_args()
    from extremefast import point_loss
    from extremefast.losses import available_backends
    from extremefast.losses.reference import point_loss_reference

    dev = torch.device(args.device)
    batch = args.batch or (4 if dev.type == "cuda" else 2)
    shape = (batch, 1, args.size, args.size, args.size)
    g = torch.Generator().manual_seed(0)
    p = torch.rand(shape, generator=g).to(dev).requires_grad_(True)
    e = torch.rand(shape, generator=g).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    # answers are checked against the float64 reference (cuDNN's float32 convolutions may use TF32)
    p64 = p.detach().double().requires_grad_(True)
    ref_loss = point_loss_reference(p64, e.double())
    (ref_grad,) = torch.autograd.grad(ref_loss, p64)
    ref_loss = ref_loss.detach()
    backends = ["separable"] + [b for b in ("triton", "cuda") if b in available_backends() and dev.type == "cuda"]
    times = {}
    rows = []
    floor = None
    if dev.type == "cuda":
        bw = copy_bandwidth(dev)
        floor = 3 * p.numel() * 4 / bw
    t_ref = timeit(fwd_bwd(point_loss_reference, p, e), repeat=1 if dev.type == "cpu" else args.repeat, warmup=0 if dev.type == "cpu" else 1, sync=sync)
    rows.append({"backend": "reference (25 x conv3d)", "ms": t_ref * 1e3, "speed-up": 1.0, "rel. grad error": 0.0})
    for b in backends:
        fn = lambda x, y, b=b: point_loss(x, y, backend=b, validate=False)
        loss = fn(p, e)
        (grad,) = torch.autograd.grad(loss, p)
        lerr = abs(float(loss.detach()) - float(ref_loss)) / abs(float(ref_loss))
        gerr = float((grad.double() - ref_grad).abs().max() / ref_grad.abs().max())
        assert lerr < 1e-4 and gerr < 1e-3, (b, lerr, gerr)
        times[b] = timeit(fwd_bwd(fn, p, e), repeat=args.repeat * (10 if dev.type == "cuda" else 1), sync=sync)
        row = {"backend": b, "ms": times[b] * 1e3, "speed-up": t_ref / times[b], "rel. grad error": gerr}
        if floor:
            row["floor ms"] = floor * 1e3
            row["x floor"] = times[b] / floor
        rows.append(row)
    if floor:
        rows[0]["floor ms"] = floor * 1e3
        rows[0]["x floor"] = t_ref / floor
    report(f"point loss forward+backward, {tuple(shape)}, B=25, n=3, {dev.type}", rows, args)


if __name__ == "__main__":
    main()
