"""Regulariser overhead: a TRADES-10 training step with TSC+CNC on every layer vs. without.

What is timed (one "step", exactly what ``tscnc.pipeline.train_stage`` does per batch):
TRADES inner maximisation (10 signed-gradient steps, eval mode) + the outer TRADES loss (clean
and adversarial forwards, train mode) + ``constraints.regularization`` + backward + SGD step +
``apply_masks_``. The two variants differ only in ``use_tsc``/``use_cnc`` of the regularisation
call (``cnc_layers=all``, the default λ's and CNC kind from ``ConstraintSpec``):

- ``plain``:  use_tsc=False, use_cnc=False (what ``hydra`` / ``lwm`` / ``dense`` train with)
- ``tscnc``:  use_tsc=True,  use_cnc=True  (TSC and CNC on all 16 prunable layers)

Model: ``vgg16_bn`` (HYDRA's CIFAR VGG-16-BN, 15.2 M prunable weights) on random CIFAR-10-shaped
inputs (3×32×32 in [0, 1], 10 classes), batch 32, ε = 8/255, step 2.5ε/10, β = 6, CPU, float32.

The variants run side by side in one process on two identical copies of the model (same init):
warm-up steps of each first, then ``--repeats`` rounds, each round timing one step of each in
alternating order (ABAB… then BABA… in the next round), so drift in machine load hits both.
Figures: median ms per step of each variant, the ratio of the medians, the median of the
per-round ratios (robust to slow drift of the machine's load) and the ratio of the minima, both
in wall time and in process CPU time (``time.process_time``: on a machine shared with other jobs
the wall time of a step swings several-fold when the cores are taken away, the CPU time it
consumes much less). The verdict uses the median per-round ratio of CPU time. Target: ≤ 1.05.

``--profile`` additionally times the regulariser alone (forward + backward of
``regularization`` on the model, no training step), split into TSC and CNC, and lists the
slowest layers of the CNC.

Usage::

    nice .venv/bin/python bench/regularizer_overhead.py                # ~3 min on 2 cores
    nice .venv/bin/python bench/regularizer_overhead.py --repeats 9 --profile
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time

import torch
from torch import nn

from tscnc import adversarial, constraints
from tscnc.layers import apply_masks_, as_matrix, prunable_layers
from tscnc.models import build_model
from tscnc.spec import ConstraintSpec, DatasetName, DatasetSpec, ModelName, ModelSpec


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
          cons: ConstraintSpec, use_reg: bool, eps: float, steps: int,
          step: int = 0) -> tuple[float, float]:
    """One training step as the pipeline runs it (``step``: the stage's step counter, which the
    CNC's ``cnc_every`` reads); returns (wall, process CPU) seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    loss, _ = adversarial.adversarial_loss(model, x, y, objective="trades", epsilon=eps,
                                           step_size=2.5 * eps / steps, steps=steps, beta=6.0)
    reg, _parts = constraints.regularization(model, cons, use_tsc=use_reg, use_cnc=use_reg,
                                             step=step)
    full = loss + reg
    opt.zero_grad(set_to_none=True)
    full.backward()
    opt.step()
    apply_masks_(model)
    return time.perf_counter() - t0, time.process_time() - c0


def _time_reg(model: nn.Module, cons: ConstraintSpec, use_tsc: bool, use_cnc: bool,
              repeats: int) -> tuple[float, float]:
    """Median (forward, backward) seconds of ``regularization`` alone."""
    fw, bw = [], []
    for _ in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        total, _ = constraints.regularization(model, cons, use_tsc=use_tsc, use_cnc=use_cnc)
        t1 = time.perf_counter()
        total.backward()
        t2 = time.perf_counter()
        fw.append(t1 - t0)
        bw.append(t2 - t1)
    return statistics.median(fw[1:]), statistics.median(bw[1:])


def profile(model: nn.Module, cons: ConstraintSpec, repeats: int) -> None:
    print(f"\n== profile: regularization() alone (median of {repeats}, forward + backward) ==")
    for label, t, c in (("TSC only", True, False), ("CNC only", False, True),
                        ("TSC + CNC", True, True)):
        f, b = _time_reg(model, cons, t, c, repeats)
        print(f"  {label:10s} forward {1e3 * f:7.1f} ms   backward {1e3 * b:7.1f} ms   "
              f"total {1e3 * (f + b):7.1f} ms")
    print("  per-layer CNC (forward + backward), slowest first:")
    rows = []
    for name, layer in prunable_layers(model):
        ts = []
        for _ in range(max(3, repeats // 2) + 1):
            w = layer.effective_weight()
            t0 = time.perf_counter()
            v = constraints.cnc_penalty(w, cons.cnc_kind)
            v.backward()
            ts.append(time.perf_counter() - t0)
        m, n = as_matrix(layer.weight).shape
        rows.append((statistics.median(ts[1:]), name, m, n))
    rows.sort(reverse=True)
    for t, name, m, n in rows:
        print(f"    {name:22s} {m:4d}×{n:<5d}  k={min(m, n):4d}  {1e3 * t:6.1f} ms")
    print(f"    sum {1e3 * sum(r[0] for r in rows):.1f} ms")
    model.zero_grad(set_to_none=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10, help="TRADES inner steps")
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds (one step per variant)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--width", type=int, default=64, help="VGG width (64 = the paper's network)")
    ap.add_argument("--profile", action="store_true", help="also time the regulariser alone")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ds = DatasetSpec(name=DatasetName.cifar10)
    base = build_model(ModelSpec(name=ModelName.vgg16_bn, width=args.width), ds).train()
    cons = ConstraintSpec()   # defaults; cnc_layers = all
    eps = 8 / 255
    x = torch.rand(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))

    variants = {}
    for name, use_reg in (("plain", False), ("tscnc", True)):
        m = copy.deepcopy(base)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        variants[name] = (m, opt, use_reg)

    layers = prunable_layers(base)
    n_weights = sum(layer.weight.numel() for _, layer in layers)
    print(f"regularizer overhead: TRADES-{args.steps} step, vgg16_bn (width {args.width}), "
          f"batch {args.batch}, 3x32x32, CPU")
    print(f"  torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"python {platform.python_version()}, {platform.processor() or platform.machine()}")
    print(f"  prunable layers {len(layers)} ({n_weights / 1e6:.2f} M weights); constraints: "
          f"lambda_tsc={cons.lambda_tsc:g} a={cons.a:g} lambda_cnc={cons.lambda_cnc:g} "
          f"cnc_kind={cons.cnc_kind.value} cnc_layers={cons.cnc_layers.value} "
          f"precision={cons.cnc_precision.value}")

    def run(name: str) -> tuple[float, float]:
        m, opt, use_reg = variants[name]
        return _step(m, opt, x, y, cons, use_reg, eps, args.steps)

    for _ in range(args.warmup):
        for name in variants:
            run(name)
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall_ratios, cpu_ratios = [], []
    order = list(variants)
    for i in range(args.repeats):
        this = order if i % 2 == 0 else order[::-1]
        got = {name: run(name) for name in this}
        for name, (w, c) in got.items():
            wall[name].append(w)
            cpu[name].append(c)
        wall_ratios.append(got["tscnc"][0] / got["plain"][0])
        cpu_ratios.append(got["tscnc"][1] / got["plain"][1])
        print(f"  round {i + 1:2d}/{args.repeats}: wall plain {1e3 * got['plain'][0]:8.1f} ms  "
              f"tscnc {1e3 * got['tscnc'][0]:8.1f} ms  ratio {wall_ratios[-1]:.3f}   |   "
              f"cpu plain {1e3 * got['plain'][1]:8.1f} ms  tscnc {1e3 * got['tscnc'][1]:8.1f} ms"
              f"  ratio {cpu_ratios[-1]:.3f}", flush=True)

    print("\n== result (ms per step; median over rounds) ==")
    for label, times, ratios in (("wall", wall, wall_ratios), ("cpu", cpu, cpu_ratios)):
        med = {k: statistics.median(v) for k, v in times.items()}
        mins = {k: min(v) for k, v in times.items()}
        print(f"  {label:4s} plain {1e3 * med['plain']:8.1f}  tscnc {1e3 * med['tscnc']:8.1f}  "
              f"ratio of medians {med['tscnc'] / med['plain']:.3f}  "
              f"median round ratio {statistics.median(ratios):.3f}  "
              f"(ratio of minima {mins['tscnc'] / mins['plain']:.3f})")
    verdict = statistics.median(cpu_ratios)
    print(f"  target <= 1.05 (median round ratio, cpu time): "
          f"{'met' if verdict <= 1.05 else 'NOT met'} ({verdict:.3f})")

    if args.profile:
        profile(variants["tscnc"][0], cons, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
