"""Grid sweeps and seed statistics through the API (issue 12): params on runs and results,
422s naming the grid path, and GET .../summary against an independent computation (numpy,
scipy) on a stored sweep."""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from scipy import stats as st

from backend.store import Store
from tscnc.records import ConditionSummary, RunResult
from tscnc.spec import Method

GRID_SPEC: dict[str, Any] = {
    "name": "grid", "methods": ["dense", "hydra", "tscnc"], "sparsities": [0.5, 0.9],
    "seeds": [0, 1, 2], "grid": {"constraints.lambda_cnc": [0.01, 0.1]},
    "training": {"pretrain_epochs": 2, "prune_epochs": 1, "finetune_epochs": 1}}


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _result(run: dict[str, Any], clean: float, robust: dict[str, float],
            kappa: float) -> RunResult:
    return RunResult(run=run["key"], method=Method(run["method"]), sparsity=run["sparsity"],
                     sparsity_actual=run["sparsity"], sparsity_per_layer={}, seed=run["seed"],
                     params=run["params"], clean_accuracy=clean, robust_accuracy=robust,
                     condition_number=ConditionSummary(median=kappa, max=kappa, per_layer={}),
                     lipschitz_upper=10.0, security_curve=[], flags=[], attacks=[],
                     checkpoint="", spec={}, versions={}, wall_time=1.0)


def _stored_grid_sweep(client: Any, store: Store, token: str, seed: int = 0,
                       skip_last: bool = True) -> tuple[str, list[dict[str, Any]],
                                                        dict[str, RunResult]]:
    r = client.post("/api/v1/sweeps", json={"spec": GRID_SPEC}, headers=h(token))
    assert r.status_code == 201, r.text
    sweep = r.json()
    runs = sweep["runs"]
    rng = np.random.default_rng(seed)
    results = {}
    for i, run in enumerate(runs):
        if skip_last and i == len(runs) - 1:
            continue                              # one run without a result: not counted
        boost = 0.05 if run["method"] == "tscnc" else 0.0
        robust = {"fgsm": float(rng.uniform(0.3, 0.6) + boost),
                  "pgd": float(rng.uniform(0.2, 0.5) + boost)}
        kappa = math.inf if (run["method"], run["seed"], run["sparsity"]) == ("tscnc", 1, 0.9) \
            else float(rng.uniform(2, 1e4))
        res = _result(run, float(rng.uniform(0.6, 0.9)), robust, kappa)
        store.put_result(run["id"], res)
        results[run["id"]] = res
    return sweep["id"], runs, results


def _t_interval(x: list[float]) -> tuple[float | None, float | None]:
    if len(x) < 2:
        return None, None
    a = np.asarray(x)
    return st.t.interval(0.95, len(a) - 1, loc=a.mean(), scale=st.sem(a))


def _approx(v: float | None) -> Any:
    return None if v is None else pytest.approx(v, abs=1e-9)


def test_grid_sweep_runs_carry_params_and_keys(client: Any, store: Store, tokens: Any) -> None:
    r = client.post("/api/v1/sweeps", json={"spec": GRID_SPEC}, headers=h(tokens.alice))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["spec"]["grid"] == {"constraints.lambda_cnc": [0.01, 0.1]}
    runs = body["runs"]
    assert len(runs) == (1 + 2 + 2) * 2 * 3
    assert {(x["key"], x["params"]["constraints.lambda_cnc"]) for x in runs} >= {
        ("tscnc-s0.9-lambda_cnc=0.1-seed0", 0.1), ("dense-s0-lambda_cnc=0.01-seed2", 0.01)}
    one = client.get(f"/api/v1/runs/{runs[0]['id']}", headers=h(tokens.alice)).json()
    assert one["params"] == runs[0]["params"]
    # results.json / the results API and CSV carry the params
    store.put_result(runs[0]["id"], _result(runs[0], 0.8, {"pgd": 0.4}, 7.0))
    res = client.get(f"/api/v1/sweeps/{body['id']}/results", headers=h(tokens.alice)).json()
    assert res["items"][0]["params"] == runs[0]["params"]
    text = client.get(f"/api/v1/sweeps/{body['id']}/results?format=csv",
                      headers=h(tokens.alice)).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0])[:7] == ["run", "method", "sparsity", "sparsity_actual", "seed",
                                 "constraints.lambda_cnc", "clean_accuracy"]
    assert float(rows[0]["constraints.lambda_cnc"]) == runs[0]["params"]["constraints.lambda_cnc"]


@pytest.mark.parametrize(("grid", "loc"), [
    ({"constraints.lambda_cnc": [0.1, -1]}, ["body", "spec", "grid", "constraints.lambda_cnc", 1]),
    ({"constraints.lambda_cnc": "0.1"}, ["body", "spec", "grid", "constraints.lambda_cnc"]),
    ({"constraints.unknown": [1]}, ["body", "spec", "grid", "constraints.unknown"]),
    ({"dataset.name": ["cifar10"]}, ["body", "spec", "grid", "dataset.name"]),
    ({"training.device": ["cpu"]}, ["body", "spec", "grid", "training.device"]),
    ({"constraints.cnc_kind": ["exact"]}, ["body", "spec", "grid", "constraints.cnc_kind", 0]),
    ({"training.batch_size": [64, True]}, ["body", "spec", "grid", "training.batch_size", 1]),
    # the server's own bounds: epochs per stage (100 in these tests) and runs per sweep (50)
    ({"training.pretrain_epochs": [2, 101]},
     ["body", "spec", "grid", "training.pretrain_epochs", 1]),
    ({"constraints.lambda_cnc": [0.01, 0.1, 1.0, 2.0]}, ["body", "spec", "grid"]),   # 60 runs
])
def test_bad_grids_are_422_naming_the_path(client: Any, tokens: Any, grid: Any,
                                           loc: list[Any]) -> None:
    r = client.post("/api/v1/sweeps", json={"spec": {**GRID_SPEC, "grid": grid}},
                    headers=h(tokens.alice))
    assert r.status_code == 422, r.text[:300]
    assert loc in [e["loc"] for e in r.json()["detail"]], r.json()


def test_summary_matches_an_independent_computation(client: Any, store: Store,
                                                    tokens: Any) -> None:
    sid, runs, results = _stored_grid_sweep(client, store, tokens.alice)
    r = client.get(f"/api/v1/sweeps/{sid}/summary?baseline=hydra", headers=h(tokens.viewer))
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["group_by"] == ["method", "constraints.lambda_cnc"]
    assert s["params"] == ["constraints.lambda_cnc"] and s["attack"] == "min"
    assert s["baseline"] == "hydra" and s["missing"] == 1 and s["sweep_ids"] == [sid]

    # Independent grouping: (method, λ_cnc, sparsity) -> {seed: result}.
    by_id = {x["id"]: x for x in runs}
    groups: dict[tuple[str, float, float], dict[int, RunResult]] = defaultdict(dict)
    for rid, res in results.items():
        run = by_id[rid]
        groups[run["method"], run["params"]["constraints.lambda_cnc"], run["sparsity"]][
            run["seed"]] = res
    got = {(g["values"]["method"], g["values"]["constraints.lambda_cnc"], g["sparsity"]): g
           for g in s["groups"]}
    assert set(got) == set(groups) and len(s["groups"]) == 10
    order = [(g["values"]["method"], g["values"]["constraints.lambda_cnc"], g["sparsity"])
             for g in s["groups"]]
    assert order == sorted(order, key=lambda k: (["dense", "hydra", "tscnc"].index(k[0]),
                                                 k[1], k[2]))
    saw_inf = saw_verdicts = 0
    for key, seeds in groups.items():
        g = got[key]
        assert g["n"] == len(seeds) and g["seeds"] == sorted(seeds)
        clean = [seeds[k].clean_accuracy for k in sorted(seeds)]
        robust = [min(seeds[k].robust_accuracy.values()) for k in sorted(seeds)]
        for name, xs in (("clean_accuracy", clean), ("robust_accuracy", robust)):
            low, high = _t_interval(xs)
            assert g[name] == {"mean": _approx(float(np.mean(xs))), "ci_low": _approx(low),
                               "ci_high": _approx(high), "n": len(xs)}
        kap = np.array([seeds[k].condition_number.median for k in sorted(seeds)])
        if np.isinf(kap).any():
            saw_inf += 1
            assert g["kappa"]["geo_mean"] == "Infinity" and g["kappa"]["max"] == "Infinity"
        else:
            assert g["kappa"]["geo_mean"] == pytest.approx(float(st.gmean(kap)), rel=1e-9)
            assert g["kappa"]["max"] == pytest.approx(float(kap.max()))
        assert g["kappa"]["min"] == pytest.approx(float(kap.min()))
        method, lam, sp = key
        if method == "hydra":
            assert g["difference"] is None
            continue
        base = groups[("hydra", lam, sp)] if method != "dense" else {}
        d = g["difference"]
        if method == "dense":       # hydra has no sparsity 0: nothing to pair with
            assert d["baseline_key"] is None
            assert d["robust_accuracy"] == {"mean": None, "ci_low": None, "ci_high": None,
                                            "n": 0, "verdict": "insufficient"}
            continue
        assert d["baseline_key"] == f"method=hydra lambda_cnc={lam:g} s={sp:g}"
        common = sorted(set(seeds) & set(base))
        diffs = np.array([min(seeds[k].robust_accuracy.values())
                          - min(base[k].robust_accuracy.values()) for k in common])
        low, high = _t_interval(diffs.tolist())
        verdict = ("insufficient" if len(diffs) < 2 else "better" if low > 0
                   else "worse" if high < 0 else "tie")
        assert d["robust_accuracy"] == {"mean": _approx(float(diffs.mean())),
                                        "ci_low": _approx(low), "ci_high": _approx(high),
                                        "n": len(diffs), "verdict": verdict}
        # the paired t-interval is scipy's paired t-test's: 0 inside iff p >= 0.05
        if len(diffs) >= 2:
            saw_verdicts += 1
            p = st.ttest_rel([min(seeds[k].robust_accuracy.values()) for k in common],
                             [min(base[k].robust_accuracy.values()) for k in common]).pvalue
            assert (verdict == "tie") == (p >= 0.05)
        cd = np.array([seeds[k].clean_accuracy - base[k].clean_accuracy for k in common])
        assert d["clean_accuracy"]["mean"] == pytest.approx(float(cd.mean()))
    assert saw_inf == 2 and saw_verdicts == 4      # tscnc seed 1 at 0.9, both λ values


def test_summary_options_group_by_attack_csv_and_several_sweeps(client: Any, store: Store,
                                                                tokens: Any) -> None:
    sid, runs, results = _stored_grid_sweep(client, store, tokens.alice, skip_last=False)
    by_id = {x["id"]: x for x in runs}
    # group_by=method pools both λ values; the attack picks pgd.
    s = client.get(f"/api/v1/sweeps/{sid}/summary?group_by=method&attack=pgd&baseline=dense",
                   headers=h(tokens.alice)).json()
    assert s["group_by"] == ["method"] and s["attack"] == "pgd"
    tscnc9 = next(g for g in s["groups"] if g["key"] == "method=tscnc s=0.9")
    pgd = [results[rid].robust_accuracy["pgd"] for rid in tscnc9["run_ids"]]
    assert tscnc9["n"] == 6 and len(pgd) == 6
    assert tscnc9["robust_accuracy"]["mean"] == pytest.approx(float(np.mean(pgd)))
    # Dense baseline: matched at sparsity 0; each seed's value is the mean over its 2 runs.
    dense = defaultdict(list)
    mine = defaultdict(list)
    for rid, res in results.items():
        run = by_id[rid]
        if run["method"] == "dense":
            dense[run["seed"]].append(res.robust_accuracy["pgd"])
        if run["method"] == "tscnc" and run["sparsity"] == 0.9:
            mine[run["seed"]].append(res.robust_accuracy["pgd"])
    diffs = [np.mean(mine[k]) - np.mean(dense[k]) for k in sorted(mine)]
    d = tscnc9["difference"]
    assert d["baseline_key"] == "method=dense s=0"
    assert d["robust_accuracy"]["n"] == 3
    assert d["robust_accuracy"]["mean"] == pytest.approx(float(np.mean(diffs)))
    assert d["robust_accuracy"]["ci_low"] == pytest.approx(_t_interval(diffs)[0])

    # CSV: one row per group, the same numbers.
    text = client.get(f"/api/v1/sweeps/{sid}/summary?group_by=method&attack=pgd&baseline=dense"
                      "&format=csv", headers=h(tokens.alice)).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(s["groups"])
    row = next(x for x in rows if x["method"] == "tscnc" and x["sparsity"] == "0.9")
    assert float(row["robust_mean"]) == pytest.approx(tscnc9["robust_accuracy"]["mean"])
    assert row["diff_robust_verdict"] == d["robust_accuracy"]["verdict"]
    assert row["kappa_geo_mean"] == "inf" and row["seeds"] == "0;1;2"
    base_row = next(x for x in rows if x["method"] == "dense")
    assert base_row["diff_robust_mean"] == "" and base_row["clean_ci_low"] != ""

    # Two sweeps: pooled by default, apart with group_by=sweep.
    sid2, _, _ = _stored_grid_sweep(client, store, tokens.alice, seed=1, skip_last=False)
    both = client.get(f"/api/v1/summary?sweeps={sid},{sid2}", headers=h(tokens.alice)).json()
    assert both["sweep_ids"] == [sid, sid2]
    assert {g["n"] for g in both["groups"]} == {6}
    apart = client.get(f"/api/v1/summary?sweeps={sid},{sid2}&group_by=sweep,method",
                       headers=h(tokens.alice)).json()
    assert {g["values"]["sweep"] for g in apart["groups"]} == {sid, sid2}
    assert {g["n"] for g in apart["groups"]} == {6}    # λ pooled: 2 per seed x 3 seeds


def test_summary_group_by_repeats_and_baseline_without_method(client: Any, store: Store,
                                                               tokens: Any) -> None:
    sid, _, _ = _stored_grid_sweep(client, store, tokens.alice)
    s = client.get(f"/api/v1/sweeps/{sid}/summary?group_by=constraints.lambda_cnc,"
                   "constraints.lambda_cnc&baseline=hydra", headers=h(tokens.alice)).json()
    assert s["group_by"] == ["method", "constraints.lambda_cnc"]
    assert s == client.get(f"/api/v1/sweeps/{sid}/summary?baseline=hydra",
                           headers=h(tokens.alice)).json()


@pytest.mark.parametrize(("query", "loc"), [
    ("group_by=method,nope.x", ["query", "group_by"]),
    ("group_by=dataset.data_dir", ["query", "group_by"]),
    ("attack=square", ["query", "attack"]),
    ("baseline=resnet", ["query", "baseline"]),
    ("format=xml", ["query", "format"]),
])
def test_summary_bad_queries_are_422_naming_the_parameter(client: Any, store: Store,
                                                          tokens: Any, query: str,
                                                          loc: list[str]) -> None:
    sid, _, _ = _stored_grid_sweep(client, store, tokens.alice)
    r = client.get(f"/api/v1/sweeps/{sid}/summary?{query}", headers=h(tokens.alice))
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [loc]


def test_summary_of_unknown_or_malformed_sweeps(client: Any, tokens: Any) -> None:
    assert client.get(f"/api/v1/sweeps/{'0' * 32}/summary",
                      headers=h(tokens.alice)).status_code == 404
    assert client.get(f"/api/v1/summary?sweeps={'0' * 32}",
                      headers=h(tokens.alice)).status_code == 404
    r = client.get("/api/v1/summary?sweeps=abc", headers=h(tokens.alice))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "sweeps"]
    assert client.get("/api/v1/summary", headers=h(tokens.alice)).status_code == 422
    assert client.get(f"/api/v1/summary?sweeps={'0' * 32}").status_code == 401


def test_share_links_read_the_summary_of_their_sweeps_only(client: Any, store: Store,
                                                          tokens: Any) -> None:
    mine, _, _ = _stored_grid_sweep(client, store, tokens.alice)
    other, _, _ = _stored_grid_sweep(client, store, tokens.bob, seed=1)
    d = client.post("/api/v1/dashboards", json={"name": "grid", "sweep_ids": [mine]},
                    headers=h(tokens.alice)).json()
    share = h(d["share_token"])
    assert client.get(f"/api/v1/sweeps/{mine}/summary", headers=share).status_code == 200
    assert client.get(f"/api/v1/summary?sweeps={mine}", headers=share).status_code == 200
    assert client.get(f"/api/v1/sweeps/{other}/summary", headers=share).status_code == 403
    assert client.get(f"/api/v1/summary?sweeps={mine},{other}", headers=share).status_code == 403
    # any token may read any sweep's summary (readers read every sweep)
    assert client.get(f"/api/v1/summary?sweeps={mine},{other}",
                      headers=h(tokens.viewer)).status_code == 200
