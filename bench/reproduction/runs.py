"""The reproduction's sweeps: constants, the spec of each model, the validation split of the
tuning, running a model's sweep, and the ``results/<model>.json`` files (write, read, merge)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from tscnc import data as tdata
from tscnc import pipeline, report
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
    preset,
)

ROOT = Path(__file__).resolve().parents[2]
ALL_METHODS = [m.value for m in Method]
ALL_SPARSITIES = [0.5, 0.8, 0.9, 0.95, 0.99]
KAPPA_CLAIM_MIN = 0.9     # claim 1 holds at every sparsity >= this
ROBUST_CLAIM_MIN = 0.95   # claim 2 holds at every sparsity >= this
PRIMARY_ATTACK = "pgd"           # the tuning search's metric (validation, PGD only)
VERDICT_ATTACK = report.MIN_ATTACK   # the verdicts' metric: each run's minimum over attacks
DEFAULT_ATTACKS = ["fgsm", "pgd", "cw", "autoattack"]
AUTOATTACK_STEPS = 10            # sized-down AutoAttack on CPU (the reference is 100)

# Per-model setup of the digits models (the tuning searches over these). The cnn keeps its first
# convolution (1→32 channels, 288 weights) and its output layer (64→10, 640 weights) dense —
# together 1.1 % of its prunable weights: at 99 % per-layer sparsity they would keep 3 and 6
# weights, and every method, hydra included, sits at chance accuracy, which says nothing about
# the methods. The mlp prunes every layer, as the digits-quick preset does (its output layer
# keeps 13 of 1280 weights at 99 %).
MODEL_SETUPS: dict[str, tuple[ModelSpec, PruningSpec]] = {
    "mlp": (ModelSpec(name=ModelName.mlp, width=128), PruningSpec()),
    "cnn": (ModelSpec(name=ModelName.cnn, width=32),
            PruningSpec(skip_layers=["features.0", "classifier.2"])),
}
# The real-MNIST model: the `mnist5k-cnn` preset (embedded 5k MNIST, ε = 0.3, TRADES-10), with
# the same two layers kept dense as the digits cnn (144 and 320 weights at width 16: at 90 %
# they keep 14 and 32; `bench/tsc_scale.py` found every run at chance with them pruned).
MNIST_MODEL = "mnist5k-cnn"
MNIST_SPARSITIES = [0.9, 0.99]
MNIST_EXAMPLES = 500             # half the test split: an evaluation (PGD-40, CW-40, AutoAttack)
                                 # of 1,000 images costs about 4 training epochs on this CPU
REPORT_MODELS = [*MODEL_SETUPS, MNIST_MODEL]
DATASET_OF = {"mlp": DatasetName.digits, "cnn": DatasetName.digits,
              MNIST_MODEL: DatasetName.mnist5k}

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
              seeds: Sequence[int], *, epochs_scale: float = 1.0, examples: int | None = None,
              attacks: Sequence[str] = tuple(DEFAULT_ATTACKS),
              constraints: ConstraintSpec | None = None,
              autoattack_steps: int = AUTOATTACK_STEPS) -> SweepSpec:
    """The sweep of one model. Digits (``mlp``, ``cnn``): TRADES-5 at ε = 0.1, 15 + 5 + 5 epochs
    (× scale), 540 test images by default. ``mnist5k-cnn``: the preset of that name (TRADES-10
    at ε = 0.3, 6 + 2 + 3 epochs × scale) with its first conv and output layer dense, the
    reproduction's attacks, and the first 500 test images by default (no security curve)."""
    def ep(n: int) -> int:
        return max(1, round(n * epochs_scale))

    if model == MNIST_MODEL:
        d = preset(MNIST_MODEL).model_dump(mode="json")
        t = d["training"]
        t.update(pretrain_epochs=ep(t["pretrain_epochs"]), prune_epochs=ep(t["prune_epochs"]),
                 finetune_epochs=ep(t["finetune_epochs"]), device="cpu")
        d["evaluation"].update(attacks=list(attacks), examples=examples or MNIST_EXAMPLES,
                               autoattack_steps=autoattack_steps, security_curve=[])
        d.update(name=f"reproduce-{model}",
                 constraints=(constraints or ConstraintSpec()).model_dump(mode="json"),
                 pruning={"skip_layers": ["features.0", "classifier.2"]},
                 methods=list(methods), sparsities=list(sparsities), seeds=list(seeds))
        return SweepSpec.model_validate(d)
    model_spec, pruning = MODEL_SETUPS[model]
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
        evaluation=EvaluationSpec(attacks=[AttackName(a) for a in attacks],
                                  examples=examples or 540,
                                  pgd_steps=20, cw_steps=30, autoattack_steps=autoattack_steps),
        methods=[Method(m) for m in methods],
        sparsities=list(sparsities),
        seeds=list(seeds),
    )


def spec_hash(spec: SweepSpec) -> str:
    """Hash of everything that shapes a checkpoint (not the method/sparsity/seed lists, nor the
    evaluation: a run evaluated differently resumes from the same checkpoints)."""
    d = spec.model_dump(mode="json",
                        exclude={"name", "methods", "sparsities", "seeds", "evaluation"})
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



def validation_split_sizes(n_train: int) -> tuple[int, int]:
    """(validation, training) sizes of :func:`validation_data`'s split of ``n_train`` images."""
    n_val = int(round(VALIDATION_FRACTION * n_train))
    return n_val, n_train - n_val


def validation_data(spec: SweepSpec) -> pipeline.Data:
    """Validation split of the tuning: the *first* 20 % of a fixed permutation (seed
    ``VALIDATION_PERMUTATION_SEED``) of the digits training split; training uses the rest."""
    train, _ = tdata.load_data(spec.dataset)
    n = len(train)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_PERMUTATION_SEED))
    n_val, _ = validation_split_sizes(n)
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
    sparsities = args.sparsities or (MNIST_SPARSITIES if model == MNIST_MODEL else ALL_SPARSITIES)
    spec = make_spec(model, args.methods, sparsities, args.seeds,
                     epochs_scale=args.epochs_scale, examples=args.examples, attacks=args.attacks,
                     autoattack_steps=args.autoattack_steps)
    artifacts = args.out / "runs" / model / spec_hash(spec)
    print(f"== {model}: {len(spec.runs())} runs, artifacts {artifacts}", flush=True)
    started = machine()      # the commit the runs start from (HEAD may move while they run)
    t0 = time.monotonic()
    outcome = pipeline.run_sweep(spec, artifacts, emit=Printer(model, spec),
                                 device=torch.device("cpu"),
                                 on_result=lambda r: print_result(model, r))
    wall = time.monotonic() - t0
    for f in outcome.failures:
        print(f"  [{model}] FAILED {f.run}: {f.category.value}: {f.message}", flush=True)
    payload = {
        "meta": {"model": model, "command": command_line(), "wall_s": wall, **started,
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
    run present twice is an error), seeds and methods united in the recorded spec, every
    command kept, the wall time the sum of the parts' (more than the elapsed time when parts
    ran side by side)."""
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

