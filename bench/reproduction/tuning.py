"""The search for the defaults of λ_tsc, λ_cnc and a (``--tune``, ``--tune-stage2``): the runs on
a validation split, cached per configuration, their ranking, and the report's tuning section."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.reproduction.claims import below, fmt_k
from bench.reproduction.runs import (
    KAPPA_CLAIM_MIN,
    MODEL_SETUPS,
    PRIMARY_ATTACK,
    ROBUST_CLAIM_MIN,
    TUNE_SPARSITIES,
    VALIDATION_FRACTION,
    VALIDATION_PERMUTATION_SEED,
    command_line,
    machine,
    make_spec,
    print_result,
    spec_hash,
    validation_data,
    validation_split_sizes,
)
from tscnc import data as tdata
from tscnc import pipeline, report
from tscnc.records import RunResult
from tscnc.spec import ConstraintSpec, DatasetName, DatasetSpec, SweepSpec


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
        outcome = pipeline.run_sweep(spec, args.out / "tune-runs" / spec_hash(spec),
                                     device=torch.device("cpu"), data_=data_,
                                     on_result=lambda r, name=name: print_result(name, r))
        for f in outcome.failures:
            print(f"  [{name}] {f.run} FAILED: {f.category.value}: {f.message}", flush=True)
        results = outcome.results
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
                row.checks += below(row.kappa[s], hydra.kappa[s])
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


def tuning_section(out: Path, chosen: ConstraintSpec, previous: str = "") -> str:
    """The protocol, then the tables from the cache under ``out``; without a cache (a fresh
    checkout) the tables of the ``previous`` report are kept verbatim, as the record of the
    search that was run."""
    res: list[str] = []
    stage2 = ranked_joint(out, stage=2)
    stage1 = ranked_joint(out, stage=1)
    pick = (stage2 or stage1 or [None])[0]
    n_val, n_fit = validation_split_sizes(
        len(tdata.load_data(DatasetSpec(name=DatasetName.digits))[0]))
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
