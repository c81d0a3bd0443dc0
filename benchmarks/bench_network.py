"""One training step (forward, Dice + point loss, backward, Adam) of the paper's FCN vs
MONAI's SegResNet of the same configuration (where MONAI is installed). On CUDA also
bf16 autocast + torch.compile against eager fp32, in the same run."""
from __future__ import annotations

import torch
from _harness import parser, report, timeit


def step_fn(net, x, y, use_point_loss=True, amp=False):
    from extremefast import point_loss
    from extremefast.losses.dice import dice_loss

    opt = torch.optim.Adam(net.parameters(), 1e-3)
    dev = x.device

    def step():
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
            out = net(x)
        out = torch.sigmoid(out.float()) if not getattr(net, "outputs_probability", False) else out.float()
        loss = dice_loss(out, y)
        if use_point_loss:
            loss = loss + 0.1 * point_loss(out, x[:, 1:2], validate=False)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return step


def main():
    p = parser(__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    args = p.parse_args()
    from extremefast.nn import SegResNet

    dev = torch.device(args.device)
    size = args.size or (128 if dev.type == "cuda" else 64)
    batch = args.batch or (4 if dev.type == "cuda" else 2)
    torch.manual_seed(0)
    x = torch.rand(batch, 2, size, size, size, device=dev)
    y = (torch.rand(batch, 1, size, size, size, device=dev) > 0.5).float()
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    ours = SegResNet(in_channels=2).to(dev)
    ours.outputs_probability = True
    rows = []
    loss = step_fn(ours, x, y)()
    assert torch.isfinite(loss)
    t_ours = timeit(step_fn(ours, x, y), repeat=args.repeat, sync=sync)
    layout = "channels-last" if dev.type == "cpu" else "contiguous"
    rows.append({"network": f"extremefast SegResNet, eager fp32 (default: {layout} layers)", "ms/step": t_ours * 1e3,
                 "params": sum(q.numel() for q in ours.parameters())})
    if dev.type == "cpu":  # the layout's share of the difference: the same network, contiguous
        plain = SegResNet(in_channels=2, channels_last=False).to(dev)
        plain.outputs_probability = True
        t_plain = timeit(step_fn(plain, x, y), repeat=args.repeat, sync=sync)
        rows.append({"network": "extremefast SegResNet, eager fp32, contiguous layers", "ms/step": t_plain * 1e3,
                     "params": sum(q.numel() for q in plain.parameters())})
    try:
        from monai.networks.nets import SegResNet as MonaiSegResNet

        theirs = MonaiSegResNet(spatial_dims=3, init_filters=8, in_channels=2, out_channels=1,
                                blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1)).to(dev)
        t_m = timeit(step_fn(theirs, x, y), repeat=args.repeat, sync=sync)
        rows.append({"network": "MONAI SegResNet, eager fp32", "ms/step": t_m * 1e3,
                     "params": sum(q.numel() for q in theirs.parameters())})
        if dev.type == "cpu":  # MONAI given the same channels-last input, for a like-for-like row
            x_cl = x.contiguous(memory_format=torch.channels_last_3d)
            t_mcl = timeit(step_fn(theirs, x_cl, y), repeat=args.repeat, sync=sync)
            rows.append({"network": "MONAI SegResNet, eager fp32, channels-last input", "ms/step": t_mcl * 1e3,
                         "params": sum(q.numel() for q in theirs.parameters())})
    except ImportError:
        t_m = None
    if dev.type == "cuda":
        fast = SegResNet(in_channels=2).to(dev)
        fast.outputs_probability = True
        compiled = torch.compile(fast)
        compiled.outputs_probability = True
        step = step_fn(compiled, x, y, amp=True)
        assert torch.isfinite(step())
        t_c = timeit(step, repeat=args.repeat, warmup=2, sync=sync)
        rows.append({"network": "extremefast SegResNet, compile + bf16", "ms/step": t_c * 1e3,
                     "params": sum(q.numel() for q in fast.parameters())})
        # the layout the CPU default uses, not yet measured on a GPU
        cl = SegResNet(in_channels=2, channels_last=True).to(dev)
        cl.outputs_probability = True
        step = step_fn(cl, x, y)
        assert torch.isfinite(step())
        t_cl = timeit(step, repeat=args.repeat, sync=sync)
        rows.append({"network": "extremefast SegResNet, eager fp32, channels-last layers", "ms/step": t_cl * 1e3,
                     "params": sum(q.numel() for q in cl.parameters())})
    for r in rows:
        r["speed-up vs MONAI"] = (t_m / (r["ms/step"] / 1e3)) if t_m else "n/a"
    report(f"training step, batch {batch} x 2 x {size}^3, Dice + point loss, {dev.type}", rows, args)


if __name__ == "__main__":
    main()
