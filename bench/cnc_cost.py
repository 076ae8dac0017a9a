"""CNC cost options (issue 11.5): what ``cnc_every`` and ``cnc_layer_subset`` save per training
step, and what they do to κ and robust accuracy.

``--timing``: a TRADES-10 step of ``vgg16_bn`` (batch 32, CIFAR-10-shaped random inputs, CPU),
exactly as ``bench/regularizer_overhead.py`` times it (TSC + CNC on all 16 prunable layers at
the default λ's), for these variants side by side in one process, on identical model copies:

- ``plain``: no regularisation (what hydra trains with);
- ``full``: TSC + CNC on every layer at every step (the default);
- ``every4``: ``cnc_every = 4`` (the CNC on one step in 4, weighted 4);
- ``subset4``: ``cnc_layer_subset = 4`` (4 of the 16 layers per step, weighted 16/4).

Each round runs ``--block`` (4) consecutive steps of each variant, in alternating order, and
records the mean CPU (and wall) time per step over the block, so ``every4`` is timed over a
whole period. Figures: the median over rounds of each variant's time per step, and the median
per-round ratio to ``plain`` (process CPU time, as the regulariser bench's verdict). Then the
regulariser alone (``regularization`` forward + backward, ``--reg-rounds`` rounds of ``--block``
steps per variant): steadier than whole steps on a loaded machine.

``--effect``: the validation protocol of ``bench/reproduce.py --tune`` (training split minus
a 20 % validation split, tuning seeds, PGD-20 on the validation split; never the test split)
on the reproduction's digits setups (``mlp``, ``cnn``; epochs × ``--epochs-scale``) at sparsity
0.95: ``hydra`` against ``tscnc`` with the CNC ``full``, ``every3`` (``cnc_every = 3``) and
``subset`` (a third of the CNC layers per step: 1 of 3 for the mlp, 2 of 6 for the cnn) — the
two options at the same expected CNC cost. ``--models mnist5k-quick``: the same on real MNIST
with that preset's schedule at its sparsity 0.9 (``subset``: 2 of its 6 CNC layers). Reports
each variant's validation PGD accuracy and clean accuracy (mean over seeds) and κ (geometric
mean over seeds of each run's median κ).

Usage::

    nice .venv/bin/python bench/cnc_cost.py --timing --threads 1  # ~13 min on 2 shared cores
    nice .venv/bin/python bench/cnc_cost.py --timing --threads 1 --repeats 0 --reg-rounds 7
    nice .venv/bin/python bench/cnc_cost.py --effect --seeds 100 101
    nice .venv/bin/python bench/cnc_cost.py --effect --models mnist5k-quick --seeds 100 101
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.regularizer_overhead import _step  # noqa: E402
from bench.reproduction.runs import ROOT, make_spec, print_result, validation_data  # noqa: E402
from tscnc import constraints, pipeline  # noqa: E402
from tscnc.layers import prunable_layers  # noqa: E402
from tscnc.models import build_model  # noqa: E402
from tscnc.spec import (  # noqa: E402
    ConstraintSpec,
    DatasetName,
    DatasetSpec,
    ModelName,
    ModelSpec,
    SweepSpec,
    resolve,
)

TIMING_VARIANTS: dict[str, dict[str, int] | None] = {
    "plain": None, "full": {}, "every4": {"cnc_every": 4}, "subset4": {"cnc_layer_subset": 4}}


def timing(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    ds = DatasetSpec(name=DatasetName.cifar10)
    base = build_model(ModelSpec(name=ModelName.vgg16_bn, width=args.width), ds).train()
    eps = 8 / 255
    x, y = torch.rand(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
    variants = {}
    for name, over in TIMING_VARIANTS.items():
        m = copy.deepcopy(base)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        variants[name] = (m, opt, ConstraintSpec(**(over or {})), over is not None)
    print(f"CNC cost: TRADES-10 step, vgg16_bn width {args.width}, batch {args.batch}, CPU, "
          f"{len(prunable_layers(base))} prunable layers, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}; block {args.block} steps per variant per round", flush=True)

    def block(name: str, start: int) -> tuple[float, float]:
        m, opt, cons, use_reg = variants[name]
        got = [_step(m, opt, x, y, cons, use_reg, eps, 10, step=start + i)
               for i in range(args.block)]
        return (sum(w for w, _ in got) / args.block, sum(c for _, c in got) / args.block)

    if args.repeats:
        step_rounds(args, variants, block)
    if args.reg_rounds:
        reg_rounds(args, variants)


def reg_rounds(args: argparse.Namespace, variants: dict[str, Any]) -> None:
    """The regulariser alone (``regularization`` forward + backward, no training step) per
    variant: mean CPU ms per step over blocks of ``--block`` steps, median over rounds."""
    names = [k for k, v in variants.items() if v[3]]
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.reg_rounds + 1):                 # round 0: warm-up
        for name in (names if r % 2 == 0 else names[::-1]):
            m, _opt, cons, _ = variants[name]
            c0 = time.process_time()
            for i in range(args.block):
                m.zero_grad(set_to_none=True)
                total, _ = constraints.regularization(m, cons, use_tsc=True, use_cnc=True,
                                                      step=i)
                total.backward()
            if r:
                cpu[name].append((time.process_time() - c0) / args.block)
    m.zero_grad(set_to_none=True)
    full = statistics.median(cpu["full"])
    print(f"\nregulariser alone (TSC + CNC forward + backward), median of {args.reg_rounds} "
          f"rounds of {args.block} steps:\n\n| variant | cpu ms/step | share of full |\n"
          "|---|---|---|")
    for name in names:
        med = statistics.median(cpu[name])
        print(f"| {name} | {1e3 * med:.0f} | {med / full:.2f} |")


def step_rounds(args: argparse.Namespace, variants: dict[str, Any],
                block: Callable[[str, int], tuple[float, float]]) -> None:
    for name in variants:
        block(name, 0)                                   # warm-up
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for r in range(args.repeats):
        for name in (order if r % 2 == 0 else order[::-1]):
            w, c = block(name, (r + 1) * args.block)
            wall[name].append(w)
            cpu[name].append(c)
        print(f"  round {r + 1}/{args.repeats}: cpu ms/step "
              + "  ".join(f"{k} {1e3 * v[-1]:.0f}" for k, v in cpu.items()), flush=True)
    print("\n| variant | cpu ms/step (median) | wall ms/step (median) | cpu ratio to plain "
          "(median over rounds) |\n|---|---|---|---|")
    for name in variants:
        ratios = [c / p for c, p in zip(cpu[name], cpu["plain"], strict=True)]
        print(f"| {name} | {1e3 * statistics.median(cpu[name]):.0f} | "
              f"{1e3 * statistics.median(wall[name]):.0f} | {statistics.median(ratios):.3f} |")


MNIST_QUICK = "mnist5k-quick"


def effect_variants(model: str) -> dict[str, tuple[str, dict[str, int]]]:
    subset = {"mlp": 1, "cnn": 2, MNIST_QUICK: 2}[model]
    return {"hydra": ("hydra", {}), "full": ("tscnc", {}),
            "every3": ("tscnc", {"cnc_every": 3}),
            "subset": ("tscnc", {"cnc_layer_subset": subset})}


def effect_spec(model: str, method: str, args: argparse.Namespace,
                constraints: ConstraintSpec | None = None) -> SweepSpec:
    """One variant's sweep: the reproduction's digits setups at sparsity 0.95 (epochs ×
    ``--epochs-scale``), or the ``mnist5k-quick`` preset's schedule (6/1/2 epochs, TRADES-5 at
    ε = 0.3, whole epochs) at its sparsity 0.9 with the first conv and the output layer dense as
    in the reproduction's MNIST model; PGD-20 only."""
    if model != MNIST_QUICK:
        return make_spec(model, [method], [0.95], args.seeds, epochs_scale=args.epochs_scale,
                         attacks=["pgd"], constraints=constraints)
    return resolve(MNIST_QUICK, {
        "methods": [method], "seeds": args.seeds, "sparsities": [0.9],
        "constraints": (constraints or ConstraintSpec()).model_dump(mode="json"),
        "pruning": {"skip_layers": ["features.0", "classifier.2"]},
        "training": {"device": "cpu"},
        "evaluation": {"attacks": ["pgd"], "security_curve": []}})


def effect(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        path = args.out / f"effect-{model}.json"
        rows = json.loads(path.read_text()) if path.exists() else {}
        for name, (method, over) in effect_variants(model).items():
            if rows.get(name, {}).get("seeds") == args.seeds:
                continue                   # other seeds: finished runs resume from checkpoints
            spec = effect_spec(model, method, args, ConstraintSpec(**over))
            data_ = validation_data(spec)
            t0 = time.monotonic()
            out = pipeline.run_sweep(spec, args.out / "runs" / model / name,
                                     device=torch.device("cpu"), data_=data_,
                                     on_result=lambda r, n=f"{model} {name}": print_result(n, r))
            rows[name] = {"seeds": args.seeds, "wall_s": time.monotonic() - t0, "runs": [
                {"seed": r.seed, "clean": r.clean_accuracy, "pgd": r.robust_accuracy["pgd"],
                 "kappa_median": r.condition_number.median} for r in out.results],
                "failures": [f.message for f in out.failures]}
            path.write_text(json.dumps(rows, indent=1, allow_nan=True))
        print(f"\n`{model}`, sparsity {effect_spec(model, 'hydra', args).sparsities[0]:g}, "
              f"seeds {args.seeds} (validation split):\n")
        print("| variant | PGD acc | clean acc | κ median (geo. mean) | wall s (sweep) |\n"
              "|---|---|---|---|---|")
        for name, row in rows.items():
            runs = row["runs"]
            if not runs:
                print(f"| {name} | failed: {row['failures']} | | | |")
                continue
            logk = [math.log10(r["kappa_median"]) for r in runs]
            print(f"| {name} | {statistics.mean(r['pgd'] for r in runs):.3f} | "
                  f"{statistics.mean(r['clean'] for r in runs):.3f} | "
                  f"{10 ** statistics.mean(logk):.3g} | {row['wall_s']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--effect", action="store_true")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds of whole steps (0: skip)")
    ap.add_argument("--block", type=int, default=4, help="steps per variant per round")
    ap.add_argument("--reg-rounds", type=int, default=5,
                    help="rounds timing the regulariser alone (0: skip)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn", MNIST_QUICK])
    ap.add_argument("--seeds", nargs="+", type=int, default=[100, 101])
    ap.add_argument("--epochs-scale", type=float, default=0.6)
    ap.add_argument("--out", type=Path, default=ROOT / ".tscnc" / "cnc-cost")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.timing or args.effect):
        args.timing = args.effect = True
    if args.timing:
        timing(args)
    if args.effect:
        if not args.threads:
            torch.set_num_threads(1)
        effect(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
