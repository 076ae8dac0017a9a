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
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from tscnc import data as tdata
from tscnc import pipeline, report, stats
from tscnc.errors import TSCNCError
from tscnc.records import Event, RunResult, Stage, StageStarted
from tscnc.spec import (
    AdversarialSpec,
    AttackName,
    ConstraintSpec,
    DatasetName,
    DatasetSpec,
    EvaluationSpec,
    Method,
    ModelName,
    ModelSpec,
    Objective,
    PruningSpec,
    SweepSpec,
    TrainingSpec,
)

ROOT = Path(__file__).resolve().parent.parent
ALL_METHODS = [m.value for m in Method]
ALL_SPARSITIES = [0.5, 0.8, 0.9, 0.95, 0.99]
KAPPA_CLAIM_MIN = 0.9     # claim 1 holds at every sparsity >= this
ROBUST_CLAIM_MIN = 0.95   # claim 2 holds at every sparsity >= this
PRIMARY_ATTACK = "pgd"           # the tuning search's metric (validation, PGD only)
VERDICT_ATTACK = report.MIN_ATTACK   # the verdicts' metric: each run's minimum over attacks
DEFAULT_ATTACKS = ["fgsm", "pgd", "cw", "autoattack"]
AUTOATTACK_STEPS = 10            # sized-down AutoAttack on CPU (the reference is 100)

# Per-model setup. The cnn keeps its first convolution (1→32 channels, 288 weights) and its
# output layer (64→10, 640 weights) dense — together 1.1 % of its prunable weights: at 99 %
# per-layer sparsity they would keep 3 and 6 weights, and every method, hydra included, sits at
# chance accuracy, which says nothing about the methods. The mlp prunes every layer, as the
# digits-quick preset does (its output layer keeps 13 of 1280 weights at 99 %).
MODEL_SETUPS: dict[str, tuple[ModelSpec, PruningSpec]] = {
    "mlp": (ModelSpec(name=ModelName.mlp, width=128), PruningSpec()),
    "cnn": (ModelSpec(name=ModelName.cnn, width=32),
            PruningSpec(skip_layers=["features.0", "classifier.2"])),
}

# Tuning grid (defaults of --grid-*): λ_cnc × λ_tsc × a.
GRID_LAMBDA_CNC = [1e-3, 1e-2, 1e-1, 1.0]
GRID_LAMBDA_TSC = [0.0, 1e-5, 1e-4, 1e-3]
GRID_A = [0.1, 1.0, 10.0]
TUNE_SPARSITIES = [0.9, 0.95, 0.99]
TUNE_SEEDS = [100, 101, 102]
VALIDATION_FRACTION = 0.2
VALIDATION_PERMUTATION_SEED = 12345


# ---- specs ----------------------------------------------------------------------------------

def make_spec(model: str, methods: Sequence[str], sparsities: Sequence[float],
              seeds: Sequence[int], *, epochs_scale: float = 1.0, examples: int = 540,
              attacks: Sequence[str] = tuple(DEFAULT_ATTACKS),
              constraints: ConstraintSpec | None = None,
              autoattack_steps: int = AUTOATTACK_STEPS) -> SweepSpec:
    """The sweep of one model: digits, TRADES-5 at ε = 0.1, 15 + 5 + 5 epochs (× scale)."""
    model_spec, pruning = MODEL_SETUPS[model]

    def ep(n: int) -> int:
        return max(1, round(n * epochs_scale))

    return SweepSpec(
        name=f"reproduce-{model}",
        dataset=DatasetSpec(name=DatasetName.digits),
        model=model_spec,
        training=TrainingSpec(pretrain_epochs=ep(15), prune_epochs=ep(5), finetune_epochs=ep(5),
                              batch_size=64, lr=0.05, prune_lr=0.1, finetune_lr=0.01,
                              monitor_examples=200, device="cpu"),
        adversarial=AdversarialSpec(objective=Objective.trades, steps=5),
        constraints=constraints or ConstraintSpec(),
        pruning=pruning,
        evaluation=EvaluationSpec(attacks=[AttackName(a) for a in attacks], examples=examples,
                                  pgd_steps=20, cw_steps=30, autoattack_steps=autoattack_steps),
        methods=[Method(m) for m in methods],
        sparsities=list(sparsities),
        seeds=list(seeds),
    )


def spec_hash(spec: SweepSpec) -> str:
    """Hash of everything that shapes a checkpoint (not the method/sparsity/seed lists)."""
    d = spec.model_dump(mode="json", exclude={"name", "methods", "sparsities", "seeds"})
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


# ---- running --------------------------------------------------------------------------------

class Printer:
    """Prints one line when a pretrain group starts training and when a run starts pruning."""

    def __init__(self, prefix: str, spec: SweepSpec) -> None:
        self.prefix = prefix
        self._group = {r.key: r.pretrain_key for r in spec.runs()}
        self._seen: set[str] = set()

    def __call__(self, ev: Event) -> None:
        if not isinstance(ev, StageStarted):
            return
        if ev.stage == Stage.pretrain:
            group = self._group.get(ev.run, ev.run)
            if group not in self._seen:
                self._seen.add(group)
                print(f"  [{self.prefix}] pretrain {group}"
                      + (f" (resumed after epoch {ev.resumed_from_epoch})"
                         if ev.resumed_from_epoch else ""), flush=True)
        elif ev.stage == Stage.prune:
            print(f"  [{self.prefix}] {ev.run}: prune + finetune", flush=True)


def print_result(prefix: str, r: RunResult) -> None:
    rob = " ".join(f"{a}={v:.3f}" for a, v in sorted(r.robust_accuracy.items()))
    print(f"  [{prefix}] done {r.run:22s} clean={r.clean_accuracy:.3f} {rob} "
          f"κ_med={r.condition_number.median:.3g} κ_max={r.condition_number.max:.3g} "
          f"sparsity={r.sparsity_actual:.4f} ({r.wall_time:.0f} s)", flush=True)


def sweep_with_data(spec: SweepSpec, artifacts: Path, data_: pipeline.Data,
                    prefix: str) -> list[RunResult]:
    """:func:`tscnc.pipeline.run_sweep`'s loop with a caller-given :class:`Data` (tuning uses a
    validation split); a failed run is reported and skipped, as there."""
    out: list[RunResult] = []
    device = torch.device("cpu")
    for runs in spec.pretrain_groups().values():
        try:
            pipeline.pretrain(spec, runs[0], [r.key for r in runs], artifacts, device=device,
                              data_=data_)
        except TSCNCError as e:
            print(f"  [{prefix}] pretrain {runs[0].pretrain_key} FAILED: {e.message}", flush=True)
            continue
        for r in runs:
            try:
                res = pipeline.complete_run(spec, r, r.key, artifacts, device=device, data_=data_)
            except TSCNCError as e:
                print(f"  [{prefix}] {r.key} FAILED: {e.category.value}: {e.message}", flush=True)
                continue
            print_result(prefix, res)
            out.append(res)
    return out


def validation_data(spec: SweepSpec) -> pipeline.Data:
    """Validation split of the tuning: the *first* 20 % of a fixed permutation (seed
    ``VALIDATION_PERMUTATION_SEED``) of the digits training split; training uses the rest."""
    train, _ = tdata.load_datasets(spec.dataset)
    n = len(train)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_PERMUTATION_SEED))
    n_val = int(round(VALIDATION_FRACTION * n))
    val_idx, train_idx = perm[:n_val].tolist(), perm[n_val:].tolist()
    vx, vy = tdata.to_tensors(Subset(train, val_idx))   # digits: no augmentation
    m = min(spec.training.monitor_examples, len(vy))
    return pipeline.Data(train=Subset(train, train_idx), test_x=vx, test_y=vy,
                         monitor_x=vx[:m], monitor_y=vy[:m])


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "commit": commit,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def command_line() -> str:
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    return f"nice .venv/bin/python bench/reproduce.py {args}".strip()


def run_model(model: str, args: argparse.Namespace) -> None:
    spec = make_spec(model, args.methods, args.sparsities, args.seeds,
                     epochs_scale=args.epochs_scale, examples=args.examples, attacks=args.attacks,
                     autoattack_steps=args.autoattack_steps)
    artifacts = args.out / "runs" / model / spec_hash(spec)
    print(f"== {model}: {len(spec.runs())} runs, artifacts {artifacts}", flush=True)
    t0 = time.monotonic()
    outcome = pipeline.run_sweep(spec, artifacts, emit=Printer(model, spec), device=torch.device("cpu"),
                                 on_result=lambda r: print_result(model, r))
    wall = time.monotonic() - t0
    for f in outcome.failures:
        print(f"  [{model}] FAILED {f.run}: {f.category.value}: {f.message}", flush=True)
    payload = {
        "meta": {"model": model, "command": command_line(), "wall_s": wall, **machine(),
                 "spec": spec.model_dump(mode="json"), "spec_hash": spec_hash(spec)},
        "results": [r.model_dump(mode="json") for r in outcome.results],
        "failures": [{"run": f.run, "category": f.category.value, "message": f.message}
                     for f in outcome.failures],
    }
    path = args.out / "results" / f"{model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, allow_nan=True))
    print(f"== {model}: {len(outcome.results)} runs in {wall:.0f} s -> {path}", flush=True)


def load_model_results(out: Path, model: str) -> tuple[dict[str, Any], list[RunResult],
                                                        list[dict[str, Any]]] | None:
    path = out / "results" / f"{model}.json"
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    return d["meta"], [RunResult.model_validate(r) for r in d["results"]], d["failures"]


def merge_results(model: str, out: Path, others: Sequence[Path]) -> Path:
    """Merge ``<dir>/results/<model>.json`` of ``out`` and ``others`` (runs of one spec split
    over processes, e.g. by seed or method) into ``out``'s: results and failures concatenated (a
    run present twice is an error), seeds and methods united in the recorded spec, every command kept, the
    wall time the sum of the parts' (more than the elapsed time when parts ran side by side)."""
    parts = []
    for d in [out, *others]:
        got = load_model_results(d, model)
        if got is None:
            raise SystemExit(f"no results/{model}.json under {d}")
        parts.append(got)
    metas = [m for m, _, _ in parts]
    hashes = {m["spec_hash"] for m in metas}
    if len(hashes) != 1:
        raise SystemExit(f"cannot merge runs of different specs: {sorted(hashes)}")
    results = [r for _, rs, _ in parts for r in rs]
    if len({r.run for r in results}) != len(results):
        raise SystemExit("a run appears in more than one part")
    spec = SweepSpec.model_validate(metas[0]["spec"])
    methods = {m for meta in metas for m in meta["spec"]["methods"]}
    spec = spec.model_copy(update={
        "seeds": sorted({sd for m in metas for sd in m["spec"]["seeds"]}),
        "methods": [Method(m) for m in ALL_METHODS if m in methods]})
    meta = {**metas[0], "spec": spec.model_dump(mode="json"),
            "wall_s": sum(m["wall_s"] for m in metas),
            "commands": [c for m in metas for c in m.get("commands", [m["command"]])],
            "merged_from": len(metas)}
    path = out / "results" / f"{model}.json"
    path.write_text(json.dumps({
        "meta": meta, "results": [r.model_dump(mode="json") for r in results],
        "failures": [f for _, _, fs in parts for f in fs]}, indent=1, allow_nan=True))
    print(f"== {model}: merged {len(results)} runs from {len(metas)} parts -> {path}", flush=True)
    return path


# ---- claims ---------------------------------------------------------------------------------

VERDICT_WORDS = {stats.Verdict.better: "holds", stats.Verdict.tie: "tie",
                 stats.Verdict.worse: "fails", stats.Verdict.insufficient: "insufficient"}


@dataclass
class ClaimCheck:
    """One claim at one sparsity of one model, judged on the paired-by-seed difference.

    ``claim`` is ``"kappa"`` (difference of log10 median κ, tscnc − hydra; lower is better) or
    ``"robust"`` (difference of each run's minimum robust accuracy over attacks; higher is
    better). ``hydra``/``tscnc`` are the aggregates shown beside it (κ: geometric means;
    accuracy: means); ``per_attack`` holds each attack's paired difference for the robust claim.
    """

    model: str
    claim: str
    sparsity: float
    hydra: float
    tscnc: float
    diff: stats.PairedDifference
    per_attack: dict[str, stats.PairedDifference]

    @property
    def verdict(self) -> str:
        return VERDICT_WORDS[self.diff.verdict]

    @property
    def holds(self) -> bool:
        return self.diff.verdict == stats.Verdict.better


def _below(a: float, b: float) -> bool:
    """a < b with ∞ as the largest value (∞ < ∞ is False)."""
    return (not math.isinf(a)) and (math.isinf(b) or a < b)


def _log10_kappa(v: float) -> float:
    return math.log10(v) if math.isfinite(v) else math.inf


def check_claims(model: str, points: Sequence[report.Point],
                 results: Sequence[RunResult]) -> list[ClaimCheck]:
    """Claims 1 and 2 at each sparsity where they apply, on the seeds both methods have."""
    by = {(p.method, p.sparsity): p for p in points}
    runs = {(r.method.value, r.sparsity, r.seed): r for r in results}
    checks: list[ClaimCheck] = []
    for s in sorted({p.sparsity for p in points}):
        h, t = by.get(("hydra", s)), by.get(("tscnc", s))
        if h is None or t is None:
            continue

        def per_seed(method: str, value: Any, s: float = s) -> dict[int, float]:
            return {sd: value(r) for (m, sp, sd), r in runs.items() if m == method and sp == s}

        if s >= KAPPA_CLAIM_MIN - 1e-9:
            kappa = lambda r: _log10_kappa(r.condition_number.median)  # noqa: E731
            checks.append(ClaimCheck(
                model, "kappa", s, h.kappa_median, t.kappa_median,
                stats.paired_difference(per_seed("tscnc", kappa), per_seed("hydra", kappa),
                                        higher_is_better=False), {}))
        if s >= ROBUST_CLAIM_MIN - 1e-9 and h.robust_min is not None \
                and t.robust_min is not None:
            worst = report.run_min_accuracy
            per_attack = {a: stats.paired_difference(
                per_seed("tscnc", lambda r, a=a: r.robust_accuracy.get(a, math.nan)),
                per_seed("hydra", lambda r, a=a: r.robust_accuracy.get(a, math.nan)))
                for a in sorted(set(h.robust) & set(t.robust))}
            checks.append(ClaimCheck(
                model, "robust", s, h.robust_min, t.robust_min,
                stats.paired_difference(per_seed("tscnc", worst), per_seed("hydra", worst)),
                per_attack))
    return checks


# ---- tuning ---------------------------------------------------------------------------------

def config_id(c: ConstraintSpec) -> str:
    return f"cnc{c.lambda_cnc:g}_tsc{c.lambda_tsc:g}_a{c.a:g}"


TUNE_DIRS = {"mlp": "tune", "cnn": "tune-cnn"}     # stage 1 under --out; stage 2: name + "2"


def _run_jobs(jobs: Sequence[tuple[str, SweepSpec]], tdir: Path, args: argparse.Namespace,
              data_: pipeline.Data, deadline: float) -> tuple[int, int]:
    """Run each (name, spec) not cached as ``tdir/name.json``; returns (run now, left)."""
    tdir.mkdir(parents=True, exist_ok=True)
    done = skipped = 0
    for name, spec in jobs:
        path = tdir / f"{name}.json"
        if path.exists():
            continue
        if time.monotonic() > deadline:
            skipped += 1
            continue
        t0 = time.monotonic()
        results = sweep_with_data(spec, args.out / "tune-runs" / spec_hash(spec), data_, name)
        path.write_text(json.dumps({
            "name": name, "constraints": spec.constraints.model_dump(mode="json"),
            "seeds": spec.seeds, "wall_s": time.monotonic() - t0, "spec_hash": spec_hash(spec),
            "results": [r.model_dump(mode="json") for r in results]}, indent=1, allow_nan=True))
        done += 1
        print(f"== tune {tdir.name}/{name}: {time.monotonic() - t0:.0f} s", flush=True)
    return done, skipped


def _tune_specs(model: str, args: argparse.Namespace, seeds: Sequence[int],
                configs: Sequence[ConstraintSpec]) -> list[tuple[str, SweepSpec]]:
    def spec_for(method: str, c: ConstraintSpec | None = None) -> SweepSpec:
        return make_spec(model, [method], args.tune_sparsities, seeds,
                         epochs_scale=args.epochs_scale, examples=100_000, attacks=["pgd"],
                         constraints=c)

    return [("hydra", spec_for("hydra"))] + [(config_id(c), spec_for("tscnc", c)) for c in configs]


def _record_call(tdir: Path, entry: dict[str, Any]) -> None:
    path = tdir / "meta.json"
    meta = json.loads(path.read_text()) if path.exists() else {"calls": []}
    meta.setdefault("calls", []).append(entry)
    path.write_text(json.dumps(meta, indent=1))


def tune(args: argparse.Namespace) -> None:
    """Stage 1 (``--tune``): a grid on one model (``--tune-model``) on ``--tune-seeds``, cached
    per configuration under ``<out>/tune`` (mlp) or ``<out>/tune-cnn``. Stage 2
    (``--tune-stage2 K``): the K best configurations of the joint stage-1 ranking (over the
    configurations run on both models) and hydra, on ``--stage2-seeds``, for both models; the
    selection is made on both stages' seeds together."""
    deadline = time.monotonic() + 60 * args.budget_min if args.budget_min else math.inf
    calls: list[tuple[str, Path, Sequence[int], list[ConstraintSpec]]] = []
    if args.tune_stage2:
        top = ranked_joint(args.out, stage=1)[:args.tune_stage2]
        configs = [ConstraintSpec(lambda_cnc=j.lambda_cnc, lambda_tsc=j.lambda_tsc, a=j.a)
                   for j in top]
        print(f"== tune stage 2: {', '.join(config_id(c) for c in configs)} on seeds "
              f"{args.stage2_seeds}", flush=True)
        for model in MODEL_SETUPS:
            calls.append((model, args.out / (TUNE_DIRS[model] + "2"), args.stage2_seeds, configs))
    else:
        configs = [ConstraintSpec(lambda_cnc=lc, lambda_tsc=lt, a=a)
                   for lc in args.grid_lambda_cnc for lt in args.grid_lambda_tsc
                   for a in (args.grid_a if lt > 0 else [1.0])]   # a is moot without TSC
        if args.tune_only:
            configs = [c for c in configs if config_id(c) in args.tune_only]
        calls.append((args.tune_model, args.out / TUNE_DIRS[args.tune_model], args.tune_seeds,
                      configs))
    for model, tdir, seeds, cfgs in calls:
        jobs = _tune_specs(model, args, seeds, cfgs)
        data_ = validation_data(jobs[0][1])
        print(f"== tune {model} -> {tdir.name}: train {len(data_.train)} / validation "
              f"{len(data_.test_y)} examples, seeds {list(seeds)}, sparsities "
              f"{args.tune_sparsities}, {len(cfgs)} configurations", flush=True)
        done, left = _run_jobs(jobs, tdir, args, data_, deadline)
        _record_call(tdir, {"command": command_line(), **machine(), "model": model,
                            "seeds": list(seeds), "sparsities": args.tune_sparsities,
                            "epochs_scale": args.epochs_scale,
                            "configs": [config_id(c) for c in cfgs]})
        print(f"== tune {tdir.name}: {done} configurations run now, {left} left for a later "
              f"call (budget)", flush=True)
    print(tuning_section(args.out, ConstraintSpec()), flush=True)


@dataclass
class TuneRow:
    name: str
    lambda_cnc: float
    lambda_tsc: float
    a: float
    seeds: int
    clean: dict[float, float]
    robust: dict[float, float]
    kappa: dict[float, float]
    robust_gain: float = math.nan   # mean over sparsities of robust(tscnc) − robust(hydra)
    checks: int = 0                 # claim checks that hold on the tuning sub-sweep ...
    n_checks: int = 0               # ... out of this many

    @property
    def clean_mean(self) -> float:
        return statistics.fmean(self.clean.values()) if self.clean else math.nan


def _tune_row(paths: Sequence[Path], hydra: TuneRow | None) -> TuneRow:
    ds = [json.loads(p.read_text()) for p in paths]
    rs = [RunResult.model_validate(r) for d in ds for r in d["results"]]
    pts = {p.sparsity: p for p in report.aggregate(rs)}
    c = ds[0]["constraints"]
    row = TuneRow(ds[0]["name"], c["lambda_cnc"], c["lambda_tsc"], c["a"],
                  len({r.seed for r in rs}),
                  {s: p.clean for s, p in pts.items()},
                  {s: p.robust.get(PRIMARY_ATTACK, math.nan) for s, p in pts.items()},
                  {s: p.kappa_median for s, p in pts.items()})
    if hydra is not None:
        common = sorted(s for s in row.robust if s in hydra.robust)
        if common:
            row.robust_gain = statistics.fmean(row.robust[s] - hydra.robust[s] for s in common)
        for s in common:
            if s >= KAPPA_CLAIM_MIN - 1e-9:
                row.n_checks += 1
                row.checks += _below(row.kappa[s], hydra.kappa[s])
            if s >= ROBUST_CLAIM_MIN - 1e-9:
                row.n_checks += 1
                row.checks += row.robust[s] >= hydra.robust[s]
    return row


def load_tuning(out: Path, model: str, stage: int
                ) -> tuple[dict[str, Any] | None, TuneRow | None, list[TuneRow]]:
    """Stage 1: the grid on its seeds. Stage 2: the configurations run in stage 2, on the seeds
    of both stages together."""
    t1, t2 = out / TUNE_DIRS[model], out / (TUNE_DIRS[model] + "2")
    dirs = [t1] if stage == 1 else [t1, t2]
    if not all((d / "hydra.json").exists() for d in dirs):
        return None, None, []
    meta = json.loads((t1 / "meta.json").read_text()) if (t1 / "meta.json").exists() else None
    hydra = _tune_row([d / "hydra.json" for d in dirs], None)
    names = sorted(p.stem for p in dirs[-1].glob("cnc*.json")
                   if all((d / p.name).exists() for d in dirs))
    return meta, hydra, [_tune_row([d / f"{n}.json" for d in dirs], hydra) for n in names]


def _rank_key(checks: int, gain: float) -> tuple[int, float]:
    return (-checks, -(gain if not math.isnan(gain) else -9.0))


def ranked(rows: Sequence[TuneRow]) -> list[TuneRow]:
    """Best first: the most claim checks holding, then the larger mean robust gain."""
    return sorted(rows, key=lambda r: _rank_key(r.checks, r.robust_gain))


@dataclass
class JointRow:
    name: str
    lambda_cnc: float
    lambda_tsc: float
    a: float
    per_model: dict[str, TuneRow]

    @property
    def checks(self) -> int:
        return sum(r.checks for r in self.per_model.values())

    @property
    def n_checks(self) -> int:
        return sum(r.n_checks for r in self.per_model.values())

    @property
    def gain(self) -> float:
        return statistics.fmean(r.robust_gain for r in self.per_model.values())


def ranked_joint(out: Path, stage: int) -> list[JointRow]:
    """Configurations tuned on every model, best first by the rule fixed for the search: the
    most claim checks holding over both models' tuning sub-sweeps, ties broken by the larger
    mean (over models) robust-accuracy gain over hydra."""
    tables = {m: load_tuning(out, m, stage)[2] for m in MODEL_SETUPS}
    if not all(tables.values()):
        return []
    by_model = {m: {r.name: r for r in rows} for m, rows in tables.items()}
    names = set.intersection(*(set(d) for d in by_model.values()))
    rows = []
    for n in names:
        first = by_model["mlp"][n]
        rows.append(JointRow(n, first.lambda_cnc, first.lambda_tsc, first.a,
                             {m: by_model[m][n] for m in MODEL_SETUPS}))
    return sorted(rows, key=lambda j: _rank_key(j.checks, j.gain))


# ---- report ---------------------------------------------------------------------------------

def fmt_k(v: float) -> str:
    return "∞" if math.isinf(v) else f"{v:.3g}"


def fmt_ci(mean: float | None, half: float | None) -> str:
    """``mean ± half-width`` of a 95 % interval (no interval with one seed)."""
    if mean is None:
        return "–"
    return f"{mean:.3f}" + ("" if half is None else f" ± {half:.3f}")


def fmt_diff(d: stats.PairedDifference, digits: int = 3) -> str:
    """``+0.012 [−0.004, +0.028]`` (mean and 95 % interval of a paired difference)."""
    if d.n == 0:
        return "–"
    if d.low is None or d.high is None:
        return f"{d.mean:+.{digits}f} (1 pair)"
    return f"{d.mean:+.{digits}f} [{d.low:+.{digits}f}, {d.high:+.{digits}f}]"


def fmt_ratio(d: stats.PairedDifference) -> str:
    """A log10-κ difference as the κ ratio tscnc/hydra: ``0.52× [0.31×, 0.88×]``."""
    if d.n == 0:
        return "–"
    text = f"{10 ** d.mean:.2f}×"
    if d.low is not None and d.high is not None:
        text += f" [{10 ** d.low:.2f}×, {10 ** d.high:.2f}×]"
    else:
        text += " (1 pair)"
    return text


def results_table(points: Sequence[report.Point], attacks: Sequence[str]) -> str:
    head = (["method", "sparsity", "actual", "n", "clean"] + [f"robust {a}" for a in attacks]
            + ["robust min", "κ median (geo. mean) [min–max]", "κ max"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        cells = [p.method, f"{p.sparsity:g}", f"{p.sparsity_actual:.4f}", str(p.n),
                 fmt_ci(p.clean, p.clean_ci)]
        cells += [fmt_ci(*p.robust_of(a)) for a in attacks]
        cells += [f"**{fmt_ci(p.robust_min, p.robust_min_ci)}**",
                  f"{fmt_k(p.kappa_median)} [{fmt_k(p.kappa_median_min)}–"
                  f"{fmt_k(p.kappa_median_max)}]", fmt_k(p.kappa_max)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims_table(checks: Sequence[ClaimCheck], attacks: Sequence[str]) -> str:
    head = ["model", "claim", "sparsity", "hydra", "tscnc", "tscnc − hydra, paired [95 % CI]",
            "pairs", "verdict"] + [f"{a}: tscnc − hydra" for a in attacks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in checks:
        if c.claim == "kappa":
            what, h, t = "κ median: tscnc < hydra", fmt_k(c.hydra), fmt_k(c.tscnc)
            diff = fmt_ratio(c.diff) + (" (κ ratio)" if c.diff.n else "")
            rest = ["–"] * len(attacks)
        else:
            what, h, t = "robust (min over attacks): tscnc ≥ hydra", f"{c.hydra:.3f}", \
                f"{c.tscnc:.3f}"
            diff = fmt_diff(c.diff)
            rest = [fmt_diff(c.per_attack[a]) if a in c.per_attack else "–" for a in attacks]
        pairs = str(c.diff.n) + (f" (+{c.diff.excluded} with ∞)" if c.diff.excluded else "")
        lines.append(f"| {c.model} | {what} | {c.sparsity:g} | {h} | {t} | {diff} | {pairs} | "
                     f"**{c.verdict}** | " + " | ".join(rest) + " |")
    return "\n".join(lines)


def _tune_table(hydra: TuneRow, rows: Sequence[TuneRow]) -> str:
    sps = sorted(hydra.robust)
    head = (["λ_cnc", "λ_tsc", "a"] + [f"robust {s:g}" for s in sps] + [f"κ med {s:g}" for s in sps]
            + ["clean (mean)", "gain vs hydra", "checks"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.append("| hydra | – | – | " + " | ".join(f"{hydra.robust[s]:.3f}" for s in sps) + " | "
                 + " | ".join(fmt_k(hydra.kappa[s]) for s in sps)
                 + f" | {hydra.clean_mean:.3f} | – | – |")
    for r in ranked(rows):
        lines.append(f"| {r.lambda_cnc:g} | {r.lambda_tsc:g} | {r.a:g} | "
                     + " | ".join(f"{r.robust.get(s, math.nan):.3f}" for s in sps) + " | "
                     + " | ".join(fmt_k(r.kappa.get(s, math.nan)) for s in sps)
                     + f" | {r.clean_mean:.3f} | {r.robust_gain:+.3f} | {r.checks}/{r.n_checks} |")
    return "\n".join(lines) + "\n"


def _joint_table(rows: Sequence[JointRow], pick: JointRow | None) -> str:
    models = list(MODEL_SETUPS)
    head = (["λ_cnc", "λ_tsc", "a"] + [f"{m} checks" for m in models]
            + [f"{m} gain" for m in models] + ["checks", "mean gain"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for j in rows:
        mark = " **selected**" if pick is not None and j.name == pick.name else ""
        lines.append(f"| {j.lambda_cnc:g} | {j.lambda_tsc:g} | {j.a:g} | "
                     + " | ".join(f"{j.per_model[m].checks}/{j.per_model[m].n_checks}"
                                  for m in models) + " | "
                     + " | ".join(f"{j.per_model[m].robust_gain:+.3f}" for m in models)
                     + f" | {j.checks}/{j.n_checks} | {j.gain:+.3f}{mark} |")
    return "\n".join(lines) + "\n"


TUNING_START = "<!-- tuning-tables:start -->"
TUNING_END = "<!-- tuning-tables:end -->"


def _previous_tuning_tables(previous: str) -> str | None:
    """The tuning tables of an earlier report (between the markers, or, in a report written
    before they existed, from its first "### Stage 1" heading to the end)."""
    if TUNING_START in previous and TUNING_END in previous:
        return previous[previous.index(TUNING_START) + len(TUNING_START):
                        previous.index(TUNING_END)].strip("\n")
    if "\n### Stage 1" in previous:
        return previous[previous.index("\n### Stage 1") + 1:].rstrip("\n")
    return None


def validation_split_sizes(n_train: int) -> tuple[int, int]:
    """(validation, training) sizes of :func:`validation_data`'s split of ``n_train`` images."""
    n_val = int(round(VALIDATION_FRACTION * n_train))
    return n_val, n_train - n_val


def tuning_section(out: Path, chosen: ConstraintSpec, previous: str = "") -> str:
    """The protocol, then the tables from the cache under ``out``; without a cache (a fresh
    checkout) the tables of the ``previous`` report are kept verbatim, as the record of the
    search that was run."""
    res: list[str] = []
    stage2 = ranked_joint(out, stage=2)
    stage1 = ranked_joint(out, stage=1)
    pick = (stage2 or stage1 or [None])[0]
    n_val, n_fit = validation_split_sizes(
        len(tdata.load_datasets(DatasetSpec(name=DatasetName.digits))[0]))
    res.append(
        "Protocol. Each configuration (λ_cnc, λ_tsc, a) trains `tscnc` on a sub-sweep — sparsities "
        f"{TUNE_SPARSITIES}, the model's reproduction setup — next to `hydra`, on seeds disjoint "
        "from the reproduction's (100–105), and is evaluated with PGD-20 on a validation split: "
        f"the first {VALIDATION_FRACTION:.0%} of a fixed permutation (seed "
        f"{VALIDATION_PERMUTATION_SEED}) of the digits training split ({n_val} images; training "
        f"uses the other {n_fit}). The test split is never used. Configurations "
        "are ranked by a rule fixed before the search: the most claim checks holding on the "
        "sub-sweep (κ median of tscnc below hydra's at each sparsity ≥ 0.9; PGD robust accuracy "
        "at least hydra's at each sparsity ≥ 0.95: 5 checks per model), ties broken by the larger "
        "mean robust-accuracy gain over hydra (mean over the sparsities of the seed-means). The "
        "rule compares point estimates — κ as the geometric mean over seeds of each run's "
        "median, PGD accuracy as the seed mean — with no interval: it predates the paired "
        "verdicts above and is recorded as it was run; its \"checks\" are not verdicts. Stage 1 runs a grid per "
        "model; the joint ranking adds checks and averages gains over the configurations run on "
        "both models; stage 2 re-runs the best of the joint ranking (and hydra) on 3 more seeds "
        "for both models, and the selection is the top of the stage-2 joint ranking over the "
        "seeds of both stages. Every finished configuration is cached under `--out`, so the "
        "commands below can be repeated until complete (`--budget-min` bounds each call). The "
        "search grew in steps, all recorded here: the first mlp grid (λ_tsc ≤ 1e-3, a ≥ 0.1) "
        "picked a configuration on its edge, so the grid was extended (λ_tsc up to 1e-2, a down "
        "to 0.03); a second stage on new seeds was added because the single-stage pick stood "
        "alone among poor neighbours; and the cnn grid and the joint ranking were added to require "
        "the defaults to work on both models.\n")
    res.append(TUNING_START)
    if all(load_tuning(out, m, stage=1)[1] is None for m in MODEL_SETUPS):
        kept = _previous_tuning_tables(previous)
        res.append(kept + "\n" if kept else "No tuning results (run with `--tune`).\n")
        res.append(TUNING_END)
        return "\n".join(res)
    for model in MODEL_SETUPS:
        meta, hydra, rows = load_tuning(out, model, stage=1)
        if hydra is None:
            continue
        calls = (meta or {}).get("calls", [])
        seeds = sorted({sd for c in calls for sd in c["seeds"]}) if calls else "?"
        res.append(f"### Stage 1, `{model}`: {len(rows)} configurations, seeds {seeds}\n")
        cmds = list(dict.fromkeys(c["command"] for c in calls))
        if cmds:
            res.append("Commands:\n\n" + "\n".join(f"    {c}" for c in cmds) + "\n")
        res.append("<details><summary>all configurations, best first by the rule</summary>\n")
        res.append(_tune_table(hydra, rows))
        res.append("</details>\n")
    if stage1:
        res.append(f"### Joint ranking of stage 1 ({len(stage1)} configurations run on both "
                   f"models)\n")
        res.append(_joint_table(stage1, pick if not stage2 else None))
    if stage2:
        seeds = {}
        for model in MODEL_SETUPS:
            _m, hydra2, _r = load_tuning(out, model, stage=2)
            seeds[model] = hydra2.seeds if hydra2 else 0
        res.append("### Stage 2: the best of the joint ranking on more seeds\n")
        cmds2 = []
        for model in MODEL_SETUPS:
            mp = out / (TUNE_DIRS[model] + "2") / "meta.json"
            if mp.exists():
                cmds2 += [c["command"] for c in json.loads(mp.read_text()).get("calls", [])]
        if cmds2:
            res.append("Command:\n\n" + "\n".join(f"    {c}" for c in dict.fromkeys(cmds2))
                       + "\n")
        res.append("Aggregates over the seeds of both stages ("
                   + ", ".join(f"`{m}`: {n}" for m, n in seeds.items())
                   + " seeds); the selection is made on this table.\n")
        res.append(_joint_table(stage2, pick))
        joint = {j.name for j in stage2}
        for model in MODEL_SETUPS:
            _m, hydra2, rows2 = load_tuning(out, model, stage=2)
            if hydra2 is not None:
                res.append(f"<details><summary>stage 2, `{model}`</summary>\n")
                res.append(_tune_table(hydra2, [r for r in rows2 if r.name in joint]))
                res.append("</details>\n")
    if pick is not None:
        same = (pick.lambda_cnc, pick.lambda_tsc, pick.a) == (chosen.lambda_cnc,
                                                              chosen.lambda_tsc, chosen.a)
        res.append(f"Selected: λ_cnc = {pick.lambda_cnc:g}, λ_tsc = {pick.lambda_tsc:g}, "
                   f"a = {pick.a:g}. `ConstraintSpec` defaults now: λ_cnc = "
                   f"{chosen.lambda_cnc:g}, λ_tsc = {chosen.lambda_tsc:g}, a = {chosen.a:g}"
                   + (" (the selection)." if same else " — **not** the selection; the reading "
                                                        "above says why.") + "\n")
    res.append(TUNING_END)
    return "\n".join(res)


READING_START = "<!-- reading:start -->"
READING_END = "<!-- reading:end -->"


def write_figures(per_model: dict[str, list[report.Point]], figures: Path,
                  attack: str) -> list[tuple[str, Path, Path | None]]:
    """One self-contained HTML per model (report.write_html) and a PNG rendered from it with
    headless Chromium when one is installed."""
    figures.mkdir(parents=True, exist_ok=True)
    made = []
    for model, points in per_model.items():
        what = "minimum over attacks" if attack == report.MIN_ATTACK else attack
        html = report.write_html(points, figures / f"reproduction-{model}.html", attack=attack,
                                 title=f"digits / {model}: clean, robust ({what}) and κ "
                                       f"against sparsity (95 % intervals over seeds)")
        png: Path | None = figures / f"reproduction-{model}.png"
        chromium = next((c for c in ("chromium", "chromium-browser", "google-chrome")
                         if any((Path(d) / c).exists()
                                for d in os.environ.get("PATH", "").split(":"))), None)
        ok = False
        if chromium:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                    "--hide-scrollbars", f"--user-data-dir={tmp}",
                                    f"--screenshot={png}", "--window-size=1260,440",
                                    html.resolve().as_uri()],
                                   capture_output=True, timeout=120, check=True)
                    ok = png is not None and png.exists()
                except (OSError, subprocess.SubprocessError):
                    ok = False
        made.append((model, html, png if ok else None))
    return made


def write_report(args: argparse.Namespace) -> Path | None:
    per_model: dict[str, list[report.Point]] = {}
    metas, all_results, failures = {}, {}, {}
    for model in MODEL_SETUPS:
        got = load_model_results(args.out, model)
        if got is None:
            continue
        metas[model], all_results[model], failures[model] = got
        per_model[model] = report.aggregate(all_results[model])
    if not per_model:
        print("no results to report", flush=True)
        return None
    path: Path = args.report
    reading = (f"{READING_START}\n_(The reading of the results is written by hand after the run "
               f"and kept when the report is regenerated.)_\n{READING_END}")
    old = path.read_text() if path.exists() else ""
    if READING_START in old and READING_END in old:
        reading = old[old.index(READING_START):old.index(READING_END) + len(READING_END)]
    figs = write_figures(per_model, args.figures, VERDICT_ATTACK)
    checks = [c for m in per_model for c in check_claims(m, per_model[m], all_results[m])]
    order = {a: i for i, a in enumerate(DEFAULT_ATTACKS)}
    attacks = sorted({a for ps in per_model.values() for p in ps for a in p.robust},
                     key=lambda a: (order.get(a, 99), a))
    defaults = ConstraintSpec()
    rel = os.path.relpath

    s: list[str] = ["# Reproduction: TSCNC against the baselines on digits (CPU scale)\n"]
    s.append("Generated by `bench/reproduce.py` (the tables, verdicts and figures; the reading "
             "is written by hand). The claim of Feng et al. (arXiv:2503.20454) tested at the "
             "scale a 2-core CPU runs: pruning drives the condition number up; TSCNC keeps it "
             "down and keeps robustness at high sparsity. Concretely, per model:\n")
    s.append(f"1. the median per-layer κ of `tscnc` is below `hydra`'s at every sparsity ≥ "
             f"{KAPPA_CLAIM_MIN:g};")
    s.append(f"2. `tscnc`'s robust accuracy at every sparsity ≥ {ROBUST_CLAIM_MIN:g} is at "
             f"least `hydra`'s, robust accuracy being each run's minimum over the attacks "
             f"evaluated (AutoAttack among them).\n")
    s.append("## Verdicts\n")
    s.append("Each check is judged on the paired-by-seed difference tscnc − hydra (the two runs "
             "of a seed share the dense pretrain's seed and the data order) with its 95 % "
             "Student-t interval over the seed pairs (`tscnc.stats`, DESIGN §3.5): the claim "
             "**holds** only when the interval excludes 0 in its favour, is a **tie** when the "
             "interval contains 0, **fails** when it excludes 0 against the claim, and is "
             "**insufficient** with fewer than 2 pairs. κ is compared on log10 of each run's "
             "median per-layer κ and shown as the ratio tscnc/hydra (below 1: tscnc lower); a "
             "seed where either median is ∞ (a rank-deficient layer at the median) has no "
             "finite difference and is left out of the interval, and counted beside the pairs. "
             "The robust claim uses each run's minimum accuracy over the attacks; the per-attack "
             "paired differences stand beside it. The `hydra` and `tscnc` columns are the "
             "aggregates of the results tables (κ: geometric mean over seeds; accuracy: mean).\n")
    s.append(claims_table(checks, attacks) + "\n")
    counts = {w: sum(c.verdict == w for c in checks) for w in VERDICT_WORDS.values()}
    s.append(f"Of {len(checks)} checks: " + ", ".join(f"{n} {w}" for w, n in counts.items())
             + ".\n")
    s.append("## Reading\n")
    s.append(reading + "\n")
    s.append("## Setup\n")
    any_meta = next(iter(metas.values()))
    sp = SweepSpec.model_validate(any_meta["spec"])
    n_eval = min(sp.evaluation.examples, 540)
    s.append("- Data: scikit-learn digits (8×8, 1 channel), fixed stratified split 1257 train / "
             "540 test; final evaluation on "
             + ("all 540" if n_eval == 540 else f"the first {n_eval}")
             + f" test images; L∞ ε = {sp.epsilon:g} (inputs in [0, 1]).")
    t = sp.training
    s.append(f"- Training: TRADES (β = {sp.adversarial.beta:g}, {sp.adversarial.steps} steps of "
             f"{sp.step_size:.3g}), SGD momentum {t.momentum}, weight decay {t.weight_decay:g}, "
             f"batch {t.batch_size}, cosine schedule; pretrain {t.pretrain_epochs} epochs at lr "
             f"{t.lr:g}, HYDRA score training {t.prune_epochs} epochs at lr {t.prune_lr:g} "
             f"(lwm: one-shot magnitude), finetune {t.finetune_epochs} epochs at lr "
             f"{t.finetune_lr:g}. Methods with the same constraints share one pretrain per seed "
             f"(dense, lwm and hydra start from the very same dense model).")
    c = sp.constraints
    s.append(f"- Constraints (the `ConstraintSpec` defaults at the time of the run): λ_tsc = "
             f"{c.lambda_tsc:g}, a = {c.a:g} ({c.tsc_variant.value}), λ_cnc = {c.lambda_cnc:g} "
             f"({c.cnc_kind.value}, layers: {c.cnc_layers.value}, {c.cnc_precision.value}), "
             f"λ_lcc = {c.lambda_lcc:g}.")
    if (c.lambda_tsc, c.lambda_cnc, c.a) != (defaults.lambda_tsc, defaults.lambda_cnc, defaults.a):
        s.append(f"  **Note:** the current defaults differ (λ_tsc = {defaults.lambda_tsc:g}, "
                 f"λ_cnc = {defaults.lambda_cnc:g}, a = {defaults.a:g}); rerun to refresh.")
    aa_k = sp.evaluation.autoattack_steps
    names = {"fgsm": "FGSM", "pgd": f"PGD-{sp.evaluation.pgd_steps} (random start)",
             "cw": f"CW-L∞ margin ({sp.evaluation.cw_steps} steps)",
             "autoattack": (f"AutoAttack, standard version sized down to {aa_k} iterations "
                            f"(APGD-CE, APGD-T and FAB-T with 9 target classes, {aa_k} "
                            f"iterations each; Square {50 * aa_k} queries; the reference budget "
                            f"is 100 iterations and 5000 queries)"
                            if aa_k != 100 else "AutoAttack (standard, reference budget)")}
    s.append(f"- Evaluation: {', '.join(names[a.value] for a in sp.evaluation.attacks)} at "
             f"ε = {sp.eval_epsilon:g} (torchattacks, seeded per run); κ = σ_max/σ_min of each "
             f"layer's alive part from float64 singular values (∞ when rank-deficient). "
             f"Robust accuracy counts an example only if it is classified correctly clean and "
             f"attacked; `robust min` is each run's minimum over the attacks, averaged over seeds "
             f"(it bounds the accuracy against the per-example worst case of these attacks from "
             f"above).")
    for model, meta in metas.items():
        msp = SweepSpec.model_validate(meta["spec"])
        skip = msp.pruning.skip_layers
        s.append(f"- `{model}`: {msp.model.name.value} width {msp.model.width}"
                 + (f"; layers kept dense: {', '.join(skip)}" if skip else "; every layer pruned")
                 + f"; seeds {msp.seeds}; {len(msp.runs())} runs; "
                 + (f"wall time {meta['wall_s'] / 60:.1f} min." if not meta.get("merged_from")
                    else f"{meta['wall_s'] / 60:.1f} min of wall time summed over the "
                         f"{len(meta['commands'])} processes that ran it."))
    m0 = any_meta
    s.append(f"- Machine: {m0['cpu']}, {m0['cores']} cores shared with other jobs, torch "
             f"{m0['torch']} with {m0['torch_threads']} intra-op thread(s), Python "
             f"{m0['python']}; commit {m0['commit']} (plus the working tree); {m0['date']}.")
    s.append("\nCommands:\n")
    for meta in metas.values():
        for cmd in meta.get("commands", [meta["command"]]):
            s.append(f"    {cmd}")
        if meta.get("merged_from"):
            s.append(f"\n(`{meta['model']}`: the {len(meta['commands'])} commands above each ran a "
                     f"part of the sweep (a seed, a set of methods), their results merged with "
                     f"`--merge-from`; a run depends only on its own seed, method and sparsity, "
                     f"so the split changes no number.)\n")
    s.append("")
    for model, points in per_model.items():
        s.append(f"## Results: `{model}`\n")
        s.append("Accuracies: mean ± the half-width of the 95 % Student-t interval over seeds; "
                 "κ: geometric mean over seeds of each run's median per-layer κ, with the "
                 "smallest and largest of those medians, and the largest per-layer κ of any "
                 "run; `actual` is the measured fraction of zero weights over all prunable "
                 "layers. In the figure the error bars are the same intervals, the robust panel "
                 "shows `robust min`, and κ = ∞ is a triangle on the labelled ∞ band at the top "
                 "of the κ axis (a whisker reaching the band: some layer's κ is ∞).\n")
        s.append(results_table(points, attacks) + "\n")
        for m, html, png in figs:
            if m != model:
                continue
            if png is not None:
                s.append(f"![{model}: clean, robust and κ against sparsity]"
                         f"({rel(png, path.parent)})\n")
            s.append(f"Interactive figure: [{rel(html, path.parent)}]({rel(html, path.parent)})"
                     f" (self-contained Plotly HTML).\n")
        if failures.get(model):
            s.append("Failed runs:\n")
            for f in failures[model]:
                s.append(f"- {f['run']}: {f['category']}: {f['message']}")
            s.append("")
        flagged = [r for r in all_results[model] if r.flags]
        if flagged:
            counts: dict[str, int] = {}
            for r in flagged:
                for fl in r.flags:
                    counts[fl.value] = counts.get(fl.value, 0) + 1
            s.append("Evaluation flags raised: " + ", ".join(f"`{k}` ×{v}" for k, v in
                                                           sorted(counts.items())) + ".\n")
    s.append("## Tuning of λ_tsc, λ_cnc and a\n")
    s.append(tuning_section(args.out, defaults, previous=old))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(s).rstrip() + "\n")
    print(f"report: {path}", flush=True)
    for c_ in checks:
        print(f"  {c_.model} {c_.claim:6s} s={c_.sparsity:<5g} hydra={c_.hydra:.4g} "
              f"tscnc={c_.tscnc:.4g} diff={c_.diff.mean:+.4g} [{c_.diff.low}, {c_.diff.high}] "
              f"n={c_.diff.n} {c_.verdict}", flush=True)
    return path


# ---- main -----------------------------------------------------------------------------------

def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODEL_SETUPS), choices=list(MODEL_SETUPS))
    ap.add_argument("--methods", nargs="+", default=ALL_METHODS, choices=ALL_METHODS)
    ap.add_argument("--sparsities", nargs="+", type=float, default=ALL_SPARSITIES)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs-scale", type=float, default=1.0,
                    help="multiply every stage's epochs (at least 1 each)")
    ap.add_argument("--examples", type=int, default=540, help="test images evaluated")
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
