"""Grid sweeps (issue 12): expansion, validation, run keys, params and pretrain sharing."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tscnc.records import RunResult
from tscnc.spec import (
    GRID_PATHS,
    MAX_RUNS_PER_SWEEP,
    Method,
    RunSpec,
    SweepSpec,
    affects_pretrain,
    resolve,
)

BASE: dict[str, Any] = {"methods": ["dense", "hydra", "tscnc"], "sparsities": [0.5, 0.9],
                        "seeds": [0, 1]}


def _spec(grid: dict[str, list[Any]], **over: Any) -> SweepSpec:
    return resolve(None, {**BASE, **over, "grid": grid})


def _errors(grid: Any, **over: Any) -> list[tuple[tuple[Any, ...], str, str]]:
    with pytest.raises(ValidationError) as e:
        _spec(grid, **over)
    return [(x["loc"], x["msg"], x["type"]) for x in e.value.errors()]


def test_grid_expands_as_a_product_with_methods_sparsities_and_seeds() -> None:
    grid = {"constraints.lambda_cnc": [0.01, 0.1, 1], "constraints.a": [1, 10]}
    spec = _spec(grid)
    runs = spec.runs()
    combos = list(itertools.product([0.01, 0.1, 1.0], [1.0, 10.0]))
    # dense once per seed at sparsity 0, hydra and tscnc per sparsity; all times the grid.
    expected = {(m, s, seed, c) for seed in (0, 1) for c in combos
                for m, s in [("dense", 0.0), ("hydra", 0.5), ("hydra", 0.9), ("tscnc", 0.5),
                             ("tscnc", 0.9)]}
    got = {(r.method.value, r.sparsity, r.seed,
            (r.params["constraints.lambda_cnc"], r.params["constraints.a"])) for r in runs}
    assert got == expected and len(runs) == len(expected) == spec.run_count() == 60
    # Values are stored as their field's type: a float knob given 1 holds 1.0.
    assert spec.grid["constraints.a"] == [1.0, 10.0]
    assert all(isinstance(v, float) for v in spec.grid["constraints.a"])
    keys = [r.key for r in runs]
    assert len(set(keys)) == len(keys)
    assert "tscnc-s0.9-lambda_cnc=0.1-a=10-seed0" in keys
    assert "dense-s0-lambda_cnc=1-a=1-seed1" in keys


def test_no_grid_keeps_the_old_runs_and_keys() -> None:
    spec = resolve("digits-quick")
    assert spec.grid == {}
    assert [r.key for r in spec.runs()][:2] == ["dense-s0-seed0", "lwm-s0.5-seed0"]
    assert all(r.params == {} for r in spec.runs())
    assert spec.run_count() == len(spec.runs()) == 10
    r = spec.runs()[3]
    assert spec.for_run(r) is spec


def test_for_run_applies_the_runs_values_and_drops_the_grid() -> None:
    spec = _spec({"constraints.lambda_cnc": [0.01, 1], "training.finetune_lr": [0.001, 0.02],
                  "constraints.cnc_kind": ["logdet"]})
    for r in spec.runs():
        eff = spec.for_run(r)
        assert eff.grid == {}
        assert eff.constraints.lambda_cnc == r.params["constraints.lambda_cnc"]
        assert eff.training.finetune_lr == r.params["training.finetune_lr"]
        assert eff.constraints.cnc_kind.value == "logdet"
        # everything else unchanged
        assert eff.model_dump(exclude={"grid", "constraints", "training"}) == \
            spec.model_dump(exclude={"grid", "constraints", "training"})
        assert eff.training.lr == spec.training.lr


def test_runs_share_a_pretrain_unless_a_knob_changes_pretraining() -> None:
    grid = {"constraints.lambda_cnc": [0.01, 1], "training.finetune_lr": [0.001, 0.02]}
    spec = _spec(grid)
    groups = spec.pretrain_groups()
    # Every run is in exactly one group, each group one method family and seed.
    assert sorted(r.key for g in groups.values() for r in g) == sorted(r.key for r in spec.runs())
    # Plain-AT methods (dense, hydra) ignore λ_cnc and the finetune rate: one pretrain per seed.
    # tscnc's pretrain trains with CNC: one per (λ_cnc, seed); finetune_lr never matters.
    assert set(groups) == {"at-seed0", "at-seed1",
                           "at+tsc+cnc-lambda_cnc=0.01-seed0", "at+tsc+cnc-lambda_cnc=1-seed0",
                           "at+tsc+cnc-lambda_cnc=0.01-seed1", "at+tsc+cnc-lambda_cnc=1-seed1"}
    assert len(groups["at-seed0"]) == (1 + 2) * 4      # dense + hydra x 2 sparsities, x 4 combos
    assert len(groups["at+tsc+cnc-lambda_cnc=1-seed0"]) == 2 * 2   # 2 sparsities x 2 lrs
    # A model or optimisation knob changes every pretrain.
    g2 = _spec({"training.lr": [0.05, 0.1]}).pretrain_groups()
    assert set(g2) == {f"{fam}-lr={lr}-seed{s}" for fam in ("at", "at+tsc+cnc")
                       for lr in ("0.05", "0.1") for s in (0, 1)}


@pytest.mark.parametrize(("path", "method", "expected"), [
    ("constraints.lambda_cnc", Method.hydra, False), ("constraints.lambda_cnc", Method.cnc, True),
    ("constraints.lambda_tsc", Method.cnc, False), ("constraints.a", Method.tsc, True),
    ("constraints.lambda_lcc", Method.lwm, False), ("constraints.lambda_lcc", Method.tsc, True),
    ("training.prune_lr", Method.tscnc, False), ("pruning.score_init_scale", Method.hydra, False),
    ("model.width", Method.dense, True), ("adversarial.beta", Method.hydra, True),
])
def test_affects_pretrain(path: str, method: Method, expected: bool) -> None:
    assert affects_pretrain(path, method) is expected


def test_griddable_paths_are_the_numeric_and_enumerated_knobs() -> None:
    assert {"constraints.lambda_cnc", "constraints.cnc_kind", "model.width", "training.lr",
            "adversarial.epsilon", "pruning.score_init_scale"} <= set(GRID_PATHS)
    assert not {"training.device", "pruning.skip_layers", "dataset.name", "evaluation.examples",
                "methods", "seeds"} & set(GRID_PATHS)
    assert {p.split(".")[0] for p in GRID_PATHS} == {"model", "training", "adversarial",
                                                      "constraints", "pruning"}


def test_bad_grids_name_the_path() -> None:
    assert _errors({"constraints.lambda_cnc": [0.1, -1]}) == [
        (("grid", "constraints.lambda_cnc", 1), "Input should be greater than or equal to 0",
         "greater_than_equal")]
    (loc, msg, _), = _errors({"constraints.nope": [1]})
    assert loc == ("grid", "constraints.nope") and "cannot be gridded" in msg
    (loc, msg, _), = _errors({"evaluation.examples": [100]})
    assert loc == ("grid", "evaluation.examples")
    (loc, _, _), = _errors({"training.pretrain_epochs": [2, 1.5]})
    assert loc == ("grid", "training.pretrain_epochs", 1)
    (loc, _, _), = _errors({"constraints.cnc_kind": ["exact"]})
    assert loc == ("grid", "constraints.cnc_kind", 0)
    (loc, msg, _), = _errors({"training.lr": [0.1, 0.1]})
    assert loc == ("grid", "training.lr") and "repeat" in msg
    (loc, msg, _), = _errors({"training.lr": []})
    assert loc == ("grid", "training.lr")
    # A combination that is invalid as a whole names the path of its section.
    (loc, msg, _), = _errors({"model.name": ["wrn"], "model.depth": [11, 16]})
    assert loc == ("grid", "model.name") and "6n+4" in msg
    # Too many runs: counted without expanding.
    (loc, msg, typ), = _errors({"training.lr": [i / 1000 + 0.001 for i in range(50)],
                                "training.batch_size": list(range(1, 11))})
    assert loc == ("grid",) and typ == "too_many_runs" and str(MAX_RUNS_PER_SWEEP) in msg


def test_run_spec_round_trips_through_json() -> None:
    spec = _spec({"constraints.cnc_kind": ["logdet", "scale_invariant"],
                  "training.channels_last": [True]})
    for r in spec.runs():
        back = RunSpec.model_validate(json.loads(r.model_dump_json()))
        assert back == r and back.key == r.key
    assert {r.key for r in spec.runs()} >= {"tscnc-s0.5-cnc_kind=logdet-channels_last=true-seed1"}


def test_tscnc_run_with_a_grid_shares_pretrains_and_prints_the_seed_statistics(
        tmp_path: Path) -> None:
    spec = {"name": "cli-grid", "dataset": {"name": "digits", "train_subset": 200},
            "model": {"name": "mlp", "width": 16},
            "training": {"pretrain_epochs": 1, "prune_epochs": 1, "finetune_epochs": 1,
                         "batch_size": 64, "monitor_examples": 20, "device": "cpu"},
            "adversarial": {"steps": 1},
            "evaluation": {"attacks": ["fgsm", "pgd"], "pgd_steps": 2, "examples": 40,
                           "security_curve": [0.0, 1.0]},
            "methods": ["hydra", "tscnc"], "sparsities": [0.5], "seeds": [0, 1],
            "grid": {"training.finetune_lr": [0.005, 0.02]}}
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "tscnc", "run", str(path), "--out", str(out),
                        "--quiet"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    records = [RunResult.model_validate(r) for r in json.loads((out / "results.json").read_text())]
    assert sorted((r.run, r.params["training.finetune_lr"]) for r in records) == sorted(
        (f"{m}-s0.5-finetune_lr={lr:g}-seed{s}", lr) for m in ("hydra", "tscnc")
        for lr in (0.005, 0.02) for s in (0, 1))
    assert all(r.spec["training"]["finetune_lr"] == r.params["training.finetune_lr"]
               and r.spec["grid"] == {} for r in records)
    # finetune_lr does not change pretraining: 2 pretrains per seed, not 4.
    assert sorted(d.name for d in (out / "artifacts" / "pretrain").iterdir()) == [
        "at+tsc+cnc-seed0", "at+tsc+cnc-seed1", "at-seed0", "at-seed1"]
    rows = [line for line in p.stdout.splitlines() if line.startswith("method=tscnc ")]
    assert len(rows) == 2 and all(line.split()[-1] in ("better", "worse", "tie") for line in rows)
    assert '<pre id="summary">' in (out / "report.html").read_text()
