"""CPU-scale reproduction of the TSCNC claim on the embedded digits set (issue 3, DESIGN §3).

The claim tested (Feng et al., arXiv:2503.20454, at the scale this machine runs): pruning drives
the per-layer condition number κ up; TSCNC keeps it down and keeps robustness at high sparsity.
Concretely, per model:

1. the median per-layer κ of ``tscnc`` is below ``hydra``'s at every sparsity ≥ 0.9;
2. ``tscnc``'s robust accuracy at every sparsity ≥ 0.95 is at least ``hydra``'s, robust
   accuracy being each run's minimum over the attacks evaluated (FGSM, PGD-20, CW-L∞ and a
   sized-down AutoAttack by default), so AutoAttack backs every verdict.

Each model is one sweep through :func:`tscnc.pipeline.run_sweep` (methods ``dense, lwm, hydra,
tsc, cnc, tscnc`` × sparsities ``0.5 0.8 0.9 0.95 0.99`` × seeds), on digits (8×8, ε = 0.1,
TRADES-5 training, the whole 540-image test split for the final evaluation). AutoAttack is the
standard version (APGD-CE, APGD-T, FAB-T, Square) at ``--autoattack-steps`` iterations (default
10 instead of the reference 100 on this CPU; Square gets 50 queries per iteration).

Statistics (DESIGN §3.5, :mod:`tscnc.stats`): the tables give the mean over seeds with a 95 %
Student-t interval, κ as the geometric mean over seeds of each run's median with its min and
max; a claim is judged on the paired-by-seed difference ``tscnc − hydra`` (log10 κ for claim 1,
robust accuracy for claim 2) and its 95 % t-interval: it **holds** only when the interval
excludes 0 in the claim's favour, is a **tie** when the interval contains 0, **fails** when it
excludes 0 against the claim, and is **insufficient** with fewer than 2 seed pairs (pairs whose
κ difference is not finite, ∞ on a side, are left out and counted). The report goes to
``docs/reproduction.md`` with the Plotly figures (κ = ∞ on its labelled band) under
``docs/figures/``.

``--tune`` runs the search for the defaults of λ_tsc, λ_cnc and a: ``hydra`` against ``tscnc``
on ``mlp`` at sparsities 0.9/0.95/0.99 over a grid, with *separate* seeds (100–102) and
evaluated on a *validation split carved out of the training set* (the first 20 % of a fixed
permutation; training then uses the other 80 %), so the choice does not peek at the test set
or the seeds of the reported reproduction. Tuning results are cached per configuration under
``--out`` (a later call skips finished configurations), and ``--budget-min`` stops starting new
ones after that many minutes, so a long grid can be run in bounded pieces.

Everything is resumable: the pipeline's checkpoints live under ``--out`` keyed by a hash of the
spec, so running the same command again re-evaluates finished runs from their checkpoints
instead of training them again.

Usage::

    nice .venv/bin/python bench/reproduce.py --quick                # smoke test, < 1 min
    nice .venv/bin/python bench/reproduce.py --tune --budget-min 14 # the λ/a search (resumable)
    nice .venv/bin/python bench/reproduce.py --models mlp           # one model per call ...
    nice .venv/bin/python bench/reproduce.py --models cnn           # ... report from both
    nice .venv/bin/python bench/reproduce.py --report-only          # rewrite the report only

A model's sweep can be split over processes by seed (each run depends on its own seed only),
each with its own ``--out``, then merged::

    nice .venv/bin/python bench/reproduce.py --models cnn --seeds 1 --out .tscnc/reproduce-s1 --no-report
    nice .venv/bin/python bench/reproduce.py --models cnn --merge-from .tscnc/reproduce-s1
"""


from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.reproduction.claims import check_claims  # noqa: E402
from bench.reproduction.runs import (  # noqa: E402
    ALL_METHODS,
    ALL_SPARSITIES,
    AUTOATTACK_STEPS,
    DEFAULT_ATTACKS,
    GRID_A,
    GRID_LAMBDA_CNC,
    GRID_LAMBDA_TSC,
    MNIST_EXAMPLES,
    MNIST_MODEL,
    MNIST_SPARSITIES,
    MODEL_SETUPS,
    REPORT_MODELS,
    ROOT,
    TUNE_SEEDS,
    TUNE_SPARSITIES,
    VALIDATION_PERMUTATION_SEED,
    machine,
    make_spec,
    merge_results,
    run_model,
    spec_hash,
    validation_data,
    validation_split_sizes,
)
from bench.reproduction.tuning import tune  # noqa: E402
from bench.reproduction.writeup import write_report  # noqa: E402
from tscnc.spec import AttackName  # noqa: E402

# What the tests reach through this script (besides main).
__all__ = ["AUTOATTACK_STEPS", "VALIDATION_PERMUTATION_SEED", "check_claims", "machine", "main",
           "make_spec", "merge_results", "spec_hash", "validation_data", "validation_split_sizes"]


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODEL_SETUPS), choices=REPORT_MODELS,
                    help=f"default: the digits models {' '.join(MODEL_SETUPS)}; {MNIST_MODEL} "
                         f"is the embedded real MNIST")
    ap.add_argument("--methods", nargs="+", default=ALL_METHODS, choices=ALL_METHODS)
    ap.add_argument("--sparsities", nargs="+", type=float, default=None,
                    help=f"default: {' '.join(map(str, ALL_SPARSITIES))} on digits, "
                         f"{' '.join(map(str, MNIST_SPARSITIES))} on {MNIST_MODEL}")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs-scale", type=float, default=1.0,
                    help="multiply every stage's epochs (at least 1 each)")
    ap.add_argument("--examples", type=int, default=None,
                    help=f"test images evaluated (default: all, 540 on digits, {MNIST_EXAMPLES} "
                         f"on {MNIST_MODEL})")
    ap.add_argument("--attacks", nargs="+", default=DEFAULT_ATTACKS,
                    choices=[a.value for a in AttackName])
    ap.add_argument("--autoattack-steps", type=int, default=AUTOATTACK_STEPS,
                    help="AutoAttack iterations (APGD/FAB; Square 50 queries each); the "
                         "reference budget is 100")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: these models are tiny, and on a shared "
                         "2-core machine two threads spin-wait on each other)")
    ap.add_argument("--out", type=Path, default=ROOT / ".tscnc" / "reproduce",
                    help="checkpoints and raw results (default: .tscnc/reproduce)")
    ap.add_argument("--report", type=Path, default=None,
                    help="markdown report (default docs/reproduction.md; <out>/reproduction.md "
                         "with --quick)")
    ap.add_argument("--figures", type=Path, default=None,
                    help="figure directory (default docs/figures; <out>/figures with --quick)")
    ap.add_argument("--no-report", action="store_true", help="run, but do not write the report")
    ap.add_argument("--report-only", action="store_true", help="only rewrite the report")
    ap.add_argument("--merge-from", nargs="+", type=Path, default=None, metavar="OUT",
                    help="merge the results of these --out directories (the same model run in "
                         "separate processes, e.g. one per seed) into --out's, then report")
    ap.add_argument("--quick", action="store_true",
                    help="smoke version (~1 min): mlp, dense/hydra/tscnc, sparsities 0.9 0.95 "
                         "0.99, seed 0, PGD and AutoAttack; report under --out")
    tg = ap.add_argument_group("tuning")
    tg.add_argument("--tune", action="store_true", help="run the λ/a search instead")
    tg.add_argument("--tune-model", default="mlp", choices=list(MODEL_SETUPS))
    tg.add_argument("--tune-only", nargs="+", default=None, metavar="CONFIG",
                    help="run only these grid configurations (ids like cnc0.1_tsc0.0001_a1)")
    tg.add_argument("--tune-seeds", nargs="+", type=int, default=TUNE_SEEDS)
    tg.add_argument("--tune-sparsities", nargs="+", type=float, default=TUNE_SPARSITIES)
    tg.add_argument("--grid-lambda-cnc", nargs="+", type=float, default=GRID_LAMBDA_CNC)
    tg.add_argument("--grid-lambda-tsc", nargs="+", type=float, default=GRID_LAMBDA_TSC)
    tg.add_argument("--grid-a", nargs="+", type=float, default=GRID_A)
    tg.add_argument("--tune-stage2", type=int, default=0, metavar="K",
                    help="instead of a grid: re-run the best K configurations of the joint "
                         "stage-1 ranking, and hydra, on --stage2-seeds for every model")
    tg.add_argument("--stage2-seeds", nargs="+", type=int, default=[103, 104, 105])
    tg.add_argument("--budget-min", type=float, default=0.0,
                    help="start no new configuration after this many minutes (0: no limit)")
    args = ap.parse_args(list(argv) if argv is not None else None)

    if args.quick:
        args.models, args.methods = ["mlp"], ["dense", "hydra", "tscnc"]
        args.sparsities, args.seeds, args.attacks = [0.9, 0.95, 0.99], [0], ["pgd", "autoattack"]
        args.out = args.out / "quick" if args.out == ROOT / ".tscnc" / "reproduce" else args.out
    args.report = args.report or (args.out / "reproduction.md" if args.quick
                                  else ROOT / "docs" / "reproduction.md")
    args.figures = args.figures or (args.out / "figures" if args.quick
                                    else ROOT / "docs" / "figures")
    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    if args.merge_from:
        for model in args.models:
            merge_results(model, args.out, args.merge_from)
    elif args.tune:
        tune(args)
    elif not args.report_only:
        for model in args.models:
            run_model(model, args)
    if not args.no_report and not args.tune:
        write_report(args)
    print(f"total {time.monotonic() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
