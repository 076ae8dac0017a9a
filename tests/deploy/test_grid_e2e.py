"""A grid sweep with 2 seeds end to end through the real service (redis, Celery worker,
uvicorn): `tscnc submit --wait` with a grid in the spec, runs record their params, runs that
differ only in a knob that does not change pretraining share one pretrain, and the summary
(API, CSV, Client.summary's DataFrame, the CLI's table) matches an independent computation
from the stored results (issue 12)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from typer.testing import CliRunner

from tests.support.stack import Stack
from tscnc.cli import app
from tscnc.client import Client
from tscnc.summary import SummaryPublic


def _t(x: list[float]) -> tuple[float, float]:
    a = np.asarray(x)
    if np.ptp(a) == 0:          # no spread (e.g. both robust accuracies 0): the interval is
        return float(a[0]), float(a[0])   # the point (scipy answers nan for scale 0)
    low, high = st.t.interval(0.95, len(a) - 1, loc=a.mean(), scale=st.sem(a))
    return float(low), float(high)


def test_grid_sweep_with_two_seeds_end_to_end(stack: Stack, small_sweep: Any, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = small_sweep("grid-e2e", methods=["hydra", "tscnc"], sparsities=[0.5], seeds=[0, 1],
                       grid={"training.finetune_lr": [0.005, 0.02]})
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(spec))
    r = CliRunner().invoke(app, ["submit", str(path), "--server", stack.base, "--token",
                                 stack.token, "--wait", "--timeout", "400", "--quiet"],
                           env={"TSCNC_SERVER": None, "TSCNC_TOKEN": None,   # type: ignore
                                "COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "8 runs queued" in r.stderr
    out = r.stdout.splitlines()
    assert any(line.startswith("hydra-s0.5-finetune_lr=0.005-seed0 ") for line in out), out
    # The CLI prints the seed statistics with the difference to hydra and its verdict.
    head = next(line for line in out if line.startswith("group "))
    assert "Δ robust vs hydra" in head and "verdict" in head
    row = next(line for line in out if line.startswith("method=tscnc finetune_lr=0.02 s=0.5"))
    assert row.split()[-1] in {"better", "worse", "tie"}

    with Client(stack.base, stack.token) as c:
        sid = next(s.id for s in c.sweeps() if s.name == "grid-e2e")
        sweep = c.sweep(sid)
        runs = {x.id: x for x in sweep.runs}
        assert {x.status.value for x in runs.values()} == {"succeeded"}
        assert sorted(x.key for x in runs.values()) == sorted(
            f"{m}-s0.5-finetune_lr={lr}-seed{s}" for m in ("hydra", "tscnc")
            for lr in ("0.005", "0.02") for s in (0, 1))
        results = {x.run_id: x.model_dump(mode="json") for x in c.results(sid)}
        assert len(results) == 8
        for rid, res in results.items():
            assert res["params"] == runs[rid].params
            assert res["spec"]["training"]["finetune_lr"] == \
                runs[rid].params["training.finetune_lr"]
        # finetune_lr does not change pretraining: one pretrain per method family and seed.
        pre = sorted(p.name for p in (stack.artifacts / sid / "pretrain").iterdir())
        assert pre == ["at+tsc+cnc-seed0", "at+tsc+cnc-seed1", "at-seed0", "at-seed1"]

        frame = c.summary(sid, baseline="hydra")
        assert isinstance(frame, pd.DataFrame) and len(frame) == 4
        typed = c.summary(sid, baseline="hydra", frame=False)
        assert isinstance(typed, SummaryPublic)
        csv_rows = list(csv.DictReader(io.StringIO(c._request(
            "GET", f"/sweeps/{sid}/summary", params={"baseline": "hydra",
                                                      "format": "csv"}).text)))

    # Independent computation from the stored results.
    def runs_of(method: str, lr: float) -> dict[int, dict[str, Any]]:
        return {res["seed"]: res for rid, res in results.items()
                if res["method"] == method and res["params"]["training.finetune_lr"] == lr}

    for _, g in frame.iterrows():
        mine = runs_of(g["method"], g["training.finetune_lr"])
        assert g["n"] == 2 and g["seeds"] == "0;1"
        rob = [min(mine[s]["robust_accuracy"].values()) for s in (0, 1)]
        clean = [mine[s]["clean_accuracy"] for s in (0, 1)]
        assert g["robust_mean"] == pytest.approx(np.mean(rob))
        assert (g["robust_ci_low"], g["robust_ci_high"]) == pytest.approx(_t(rob))
        assert (g["clean_ci_low"], g["clean_ci_high"]) == pytest.approx(_t(clean))
        kap = [float(mine[s]["condition_number"]["median"]) for s in (0, 1)]
        if all(math.isfinite(k) for k in kap):
            assert g["kappa_geo_mean"] == pytest.approx(st.gmean(kap))
        else:
            assert math.isinf(g["kappa_geo_mean"])
        if g["method"] == "hydra":
            assert pd.isna(g["diff_robust_verdict"]) and pd.isna(g["diff_robust_mean"])
            continue
        base = runs_of("hydra", g["training.finetune_lr"])
        d = [min(mine[s]["robust_accuracy"].values()) - min(base[s]["robust_accuracy"].values())
             for s in (0, 1)]
        assert g["diff_robust_n"] == 2
        assert g["diff_robust_mean"] == pytest.approx(np.mean(d))
        low, high = _t(d)
        assert (g["diff_robust_ci_low"], g["diff_robust_ci_high"]) == pytest.approx((low, high))
        assert g["diff_robust_verdict"] == ("better" if low > 0 else "worse" if high < 0
                                            else "tie")
    assert [g.key for g in typed.groups] == [
        f"method={m} finetune_lr={lr} s=0.5" for m in ("hydra", "tscnc") for lr in
        ("0.005", "0.02")]
    assert [x["diff_robust_verdict"] for x in csv_rows] == \
        ["" if pd.isna(v) else v for v in frame["diff_robust_verdict"]]
