"""Training throughput (images/s) of TRADES steps for vgg16_bn and resnet18 on CIFAR-sized
inputs, with and without the TSCNC constraints, under the mixed-precision and memory-format
options of ``training`` (amp none/bf16/fp16, channels_last off/on).

Every step is :func:`tscnc.pipeline.train_step`, exactly what the workers run: TRADES with
``--trades-steps`` inner steps (β = 6, ε = 8/255), plus TSC + CNC on every layer for the TSCNC
rows, one SGD step. Inputs are random 3×32×32 images in [0, 1] with random labels (throughput
does not depend on the data). Each configuration runs ``--warmup`` steps, then ``--steps``
timed steps (CUDA synchronised); configurations run one after the other in one process, and
the TSCNC/plain ratio compares rows measured side by side.

It is meant for a GPU. On a CPU the amp/channels_last options are no-ops (as in training), so
only ``amp=none, channels_last=off`` rows are run; ``--smoke`` sizes everything down to check
the script in seconds.

Usage::

    .venv/bin/python bench/gpu_throughput.py                      # CUDA: full table
    .venv/bin/python bench/gpu_throughput.py --models resnet18 --amp bf16 --batch 256
    .venv/bin/python bench/gpu_throughput.py --smoke              # CPU, tiny, seconds
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tscnc import pipeline  # noqa: E402
from tscnc.spec import Method, SweepSpec  # noqa: E402

CONSTRAINTS = {"plain": Method.dense, "tscnc": Method.tscnc}


def make_spec(model: str, width: int, batch: int, amp: str, channels_last: bool,
              trades_steps: int) -> SweepSpec:
    return SweepSpec.model_validate({
        "dataset": {"name": "cifar10"},
        "model": {"name": model, "width": width},
        "training": {"batch_size": batch, "amp": amp, "channels_last": channels_last,
                     "lr": 0.01},
        "adversarial": {"objective": "trades", "steps": trades_steps, "beta": 6.0},
        # Every layer constrained, as the tscnc method trains (λ as the defaults).
        "constraints": {"cnc_layers": "all"},
        "methods": ["dense", "tscnc"], "sparsities": [0.5]})


def measure(spec: SweepSpec, method: Method, device: torch.device, steps: int,
            warmup: int) -> dict[str, Any]:
    torch.manual_seed(0)
    run = next(r for r in spec.runs() if r.method == method)
    model = pipeline.build_run_model(spec, run, device).train()
    opts = pipeline.DeviceOptions.of(spec, device)
    opts.model(model)
    opt = torch.optim.SGD(model.parameters(), lr=spec.training.lr, momentum=0.9)
    scaler = opts.scaler()
    b = spec.training.batch_size
    x = torch.rand(b, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (b,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        pipeline.train_step(model, x, y, spec, method, opt, scaler, opts)
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        pipeline.train_step(model, x, y, spec, method, opt, scaler, opts)
        sync()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"ms": 1000 * step, "ips": b / step, "peak_gib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--models", nargs="+", default=["vgg16_bn", "resnet18"],
                    choices=["vgg16_bn", "resnet18"])
    ap.add_argument("--width", type=int, default=64, help="base width (64 = the paper's)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--trades-steps", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--amp", nargs="+", default=["none", "bf16", "fp16"],
                    choices=["none", "bf16", "fp16"])
    ap.add_argument("--channels-last", nargs="+", default=["off", "on"], choices=["off", "on"])
    ap.add_argument("--smoke", action="store_true",
                    help="tiny: width 8, batch 8, 1 TRADES step, 2 timed steps")
    args = ap.parse_args()
    if args.smoke:
        args.width, args.batch, args.trades_steps, args.steps, args.warmup = 8, 8, 1, 2, 1
    device = pipeline.resolve_device(args.device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        amps = args.amp
        if "bf16" in amps and not torch.cuda.is_bf16_supported():
            print("note: this GPU has no bf16; skipping bf16 rows")
            amps = [a for a in amps if a != "bf16"]
        layouts = args.channels_last
    else:
        name = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
        amps, layouts = ["none"], ["off"]   # no-ops off CUDA: only the plain rows are real
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch}; TRADES-"
          f"{args.trades_steps}; width {args.width}; median of {args.steps} steps after "
          f"{args.warmup} warm-up\n")
    print("| model | amp | channels_last | constraints | images/s | ms/step | peak GiB | "
          "TSCNC / plain |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models:
        for amp in amps:
            for layout in layouts:
                spec = make_spec(model, args.width, args.batch, amp, layout == "on",
                                 args.trades_steps)
                rows = {k: measure(spec, m, device, args.steps, args.warmup)
                        for k, m in CONSTRAINTS.items()}
                for k, r in rows.items():
                    ratio = f"{r['ips'] / rows['plain']['ips']:.2f}" \
                        if k == "tscnc" else ""
                    peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "–"
                    print(f"| {model} | {amp} | {layout} | {k} | {r['ips']:.1f} | "
                          f"{r['ms']:.1f} | {peak} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
