"""Unit tests of frontend/js/charts_summary.js (issue #12: seed bands, difference chart,
parallel coordinates, heatmap, summary export), run in Chromium on a plain static server
against summaries written here by hand and expectations computed here independently."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import pytest

INF = "Infinity"
LAM = "constraints.lambda_cnc"
A = "constraints.a"



def mi(values: list[float]) -> dict[str, Any]:
    """Mean and 95 % t-interval as the API states them (computed here, t quantiles by table)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": n}
    t = {2: 12.706204736, 3: 4.302652730}[n]
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"mean": mean, "ci_low": mean - t * sd / math.sqrt(n), "ci_high": mean + t * sd / math.sqrt(n), "n": n}


def geo(kappas: list[Any]) -> dict[str, Any]:
    if any(k == INF for k in kappas):
        finite = [k for k in kappas if k != INF]
        return {"geo_mean": INF, "min": min(finite) if finite else INF, "max": INF, "n": len(kappas)}
    return {"geo_mean": math.exp(sum(math.log(k) for k in kappas) / len(kappas)),
            "min": min(kappas), "max": max(kappas), "n": len(kappas)}


def diff(mean: float, lo: float | None, hi: float | None, n: int, verdict: str) -> dict[str, Any]:
    d = {"mean": mean, "ci_low": lo, "ci_high": hi, "n": n, "verdict": verdict}
    return {"baseline_key": "method=hydra", "clean_accuracy": d, "robust_accuracy": d}


def group(method: str, s: float, clean: list[float], robust: list[float], kappas: list[Any],
          params: dict[str, Any] | None = None, difference: Any = None, ids: list[str] | None = None) -> dict[str, Any]:
    values = {"method": method, **(params or {})}
    return {"key": " ".join(f"{k}={v}" for k, v in values.items()) + f" s={s}", "values": values,
            "sparsity": s, "n": len(clean), "seeds": list(range(len(clean))),
            "run_ids": ids or [f"{method}-{s}-{i}" for i in range(len(clean))],
            "clean_accuracy": mi(clean), "robust_accuracy": mi(robust), "kappa": geo(kappas),
            "difference": difference}


SUMMARY = {
    "sweep_ids": ["sw1"], "group_by": ["method"], "params": [], "attack": "min", "baseline": "hydra",
    "missing": 0,
    "groups": [
        group("hydra", 0.5, [0.8, 0.82], [0.40, 0.46], [8.0, 18.0]),
        group("hydra", 0.9, [0.7, 0.74], [0.30, 0.36], [3e5, 34.0]),
        group("tscnc", 0.5, [0.81, 0.83], [0.50, 0.52], [5.0, 20.0],
              difference=diff(0.08, 0.02, 0.14, 2, "better")),
        group("tscnc", 0.9, [0.72], [0.31], [INF],
              difference=diff(-0.02, None, None, 1, "insufficient")),
    ],
}


def test_bands_are_the_interval_and_kappa_the_geometric_mean_with_min_max(js: Any) -> None:
    """Accuracy: mean line and a filled band between the interval's edges (edges on the mean
    where n < 2); κ: geometric mean, band from min to max, ∞ on the labelled ∞ band."""
    robust, kappa = js("""
        const rows = cs.summaryRows(arg);
        return [cs.bandFigure(rows, {metric: 'robust'}), cs.bandFigure(rows, {metric: 'kappa'})];
    """, SUMMARY)
    names = [t["name"] for t in robust["data"]]
    assert names == ["hydra low", "hydra 95 % interval", "hydra", "tscnc low", "tscnc 95 % interval", "tscnc"]
    low, high, line = robust["data"][0:3]
    exp5, exp9 = mi([0.40, 0.46]), mi([0.30, 0.36])
    # sparsities evenly spaced and labelled; two groups side by side (±0.075 around each)
    assert robust["layout"]["xaxis"]["tickvals"] == [0, 1]
    assert robust["layout"]["xaxis"]["ticktext"] == ["0.5", "0.9"]
    assert line["x"] == pytest.approx([-0.075, 0.925]) and robust["data"][5]["x"] == pytest.approx([0.075, 1.075])
    assert low["x"] == high["x"] == line["x"]
    assert line["y"] == pytest.approx([0.43, 0.33])
    assert low["y"] == pytest.approx([exp5["ci_low"], exp9["ci_low"]])
    assert high["y"] == pytest.approx([exp5["ci_high"], exp9["ci_high"]])
    assert high["fill"] == "tonexty" and "fill" not in low and low["line"]["width"] == 0
    # tscnc at 0.9 has one seed: no interval, the band's edges sit on the mean
    tl, th, tline = robust["data"][3:6]
    assert tl["y"][1] == th["y"][1] == tline["y"][1] == pytest.approx(0.31)
    assert "n < 2" in tline["text"][1]

    # κ: geometric mean sqrt(8*18) = 12 with band [8, 18]; hydra 0.9: sqrt(3e5*34)
    klow, khigh, kline = kappa["data"][0:3]
    assert kline["y"][0] == pytest.approx(12.0) and klow["y"][0] == 8.0 and khigh["y"][0] == 18.0
    assert kline["y"][1] == pytest.approx(math.sqrt(3e5 * 34.0))
    assert klow["y"][1] == 34.0 and khigh["y"][1] == 3e5
    # finite values up to 3e5: decades to 10^6, the ∞ band from 10^6.5, ∞ drawn at 10^7
    y = kappa["layout"]["yaxis"]
    assert y["type"] == "log" and y["ticktext"][-1] == "∞" and y["tickvals"][-1] == 1e7
    tsc_line = kappa["data"][5]
    assert tsc_line["y"][1] == 1e7 and tsc_line["marker"]["symbol"] == ["circle", "triangle-up"]
    assert kappa["data"][4]["y"][1] == 1e7          # its max is ∞ too
    assert kappa["layout"]["shapes"][0]["y0"] == pytest.approx(10 ** 6.5)
    assert "geometric mean" in kappa["layout"]["title"]["text"]


def test_show_seeds_draws_each_run_of_a_group_as_a_point(js: Any) -> None:
    runs = [{"id": rid, "key": rid, "sweep_id": "sw1", "method": m, "sparsity": s, "seed": i, "status": "succeeded"}
            for m, s, rid, i in [("hydra", 0.5, "hydra-0.5-0", 0), ("hydra", 0.5, "hydra-0.5-1", 1),
                                 ("tscnc", 0.9, "tscnc-0.9-0", 0)]]

    def res(r: float, k: Any) -> dict[str, Any]:
        return {"clean_accuracy": 0.8, "robust_accuracy": {"pgd": r, "fgsm": r + 0.1}, "sparsity_actual": 0.5,
                "condition_number": {"median": k, "max": k, "per_layer": {}}, "flags": []}
    results = {"hydra-0.5-0": res(0.40, 8.0), "hydra-0.5-1": res(0.46, 18.0), "tscnc-0.9-0": res(0.31, INF)}
    off, on, kappa = js("""
        const rows = cs.summaryRows(arg.summary);
        const pts = charts.sweepPoints(arg.runs, arg.results);
        return [cs.bandFigure(rows, {metric: 'robust', seeds: pts}),
                cs.bandFigure(rows, {metric: 'robust', seeds: pts, showSeeds: true, attack: 'worst'}),
                cs.bandFigure(rows, {metric: 'kappa', seeds: pts, showSeeds: true})];
    """, {"summary": SUMMARY, "runs": runs, "results": results})
    assert not any(t["name"].endswith("seeds") for t in off["data"])
    seeds = {t["name"]: t for t in on["data"] if t["name"].endswith("seeds")}
    assert seeds["hydra seeds"]["customdata"] == ["hydra-0.5-0", "hydra-0.5-1"]
    assert seeds["hydra seeds"]["y"] == [0.40, 0.46] and seeds["hydra seeds"]["mode"] == "markers"
    assert seeds["tscnc seeds"]["x"] == pytest.approx([1.075]) and seeds["tscnc seeds"]["y"] == [0.31]
    assert seeds["hydra seeds"]["x"] == pytest.approx([-0.075, -0.075])   # with their group's line
    kseeds = next(t for t in kappa["data"] if t["name"] == "tscnc seeds")
    assert kseeds["y"] == [kappa["layout"]["yaxis"]["tickvals"][-1]] and kseeds["marker"]["symbol"] == ["triangle-up"]


def test_difference_chart_colours_each_point_by_its_verdict_with_a_zero_line(js: Any) -> None:
    summary = dict(SUMMARY, groups=[*SUMMARY["groups"],
                                    group("tsc", 0.5, [0.8, 0.8], [0.4, 0.44], [9.0, 9.0],
                                          difference=diff(-0.05, -0.09, -0.01, 2, "worse")),
                                    group("tsc", 0.9, [0.8, 0.8], [0.3, 0.3], [9.0, 9.0],
                                          difference=diff(0.01, -0.03, 0.05, 2, "tie"))])
    fig, colors = js("""
        const rows = cs.summaryRows(arg);
        return [cs.differenceFigure(rows, {baseline: 'hydra'}), cs.VERDICT_COLORS];
    """, summary)
    assert [t["name"] for t in fig["data"]] == ["tsc", "tscnc"]   # the baseline has no difference
    tsc, tscnc = fig["data"]
    assert tscnc["x"] == pytest.approx([0.075, 1.075]) and tscnc["y"] == [0.08, -0.02]
    assert fig["layout"]["xaxis"]["ticktext"] == ["0.5", "0.9"]
    assert tscnc["error_y"]["array"] == pytest.approx([0.06, 0]) and tscnc["error_y"]["arrayminus"] == pytest.approx([0.06, 0])
    assert tscnc["marker"]["color"] == [colors["better"], colors["insufficient"]]
    assert tsc["marker"]["color"] == [colors["worse"], colors["tie"]]
    assert tsc["customdata"] == ["worse", "tie"]
    assert len({colors[v] for v in ("better", "worse", "tie", "insufficient")}) == 4
    (zero,) = fig["layout"]["shapes"]
    assert zero["y0"] == zero["y1"] == 0 and zero["xref"] == "paper"
    assert "hydra" in fig["layout"]["title"]["text"]


GRID = {
    "sweep_ids": ["g1"], "group_by": ["method", A, LAM], "params": [A, LAM], "attack": "pgd",
    "baseline": None, "missing": 0,
    "groups": [group("tscnc", s, [0.8, 0.8], [r, r + 0.02], [k, k], params={LAM: lam, A: a})
               for s, lam, a, r, k in [(0.5, 0.01, 1, 0.50, 10.0), (0.5, 0.1, 1, 0.56, 20.0),
                                       (0.5, 0.01, 10, 0.40, 30.0), (0.5, 0.1, 10, 0.46, 40.0),
                                       (0.9, 0.01, 1, 0.30, 1e3), (0.9, 0.1, 1, 0.36, INF)]]
    + [group("hydra", 0.5, [0.8], [0.2], [50.0])],
}


def test_parcoords_has_a_dimension_per_knob_sparsity_robust_and_kappa(js: Any) -> None:
    fig, knobs, dims_list = js("""
        const rows = cs.summaryRows(arg);
        return [cs.parcoordsFigure(rows), cs.gridKnobs(rows), cs.parcoordsDimensions(rows).dims];
    """, GRID)
    assert knobs == [A, LAM]
    dims = {d["label"]: d for d in dims_list}
    assert list(dims) == ["method", "a", "lambda_cnc", "sparsity", "robust accuracy", "log10 κ"]
    n = len(GRID["groups"])
    assert all(len(d["values"]) == n for d in dims.values())
    order = [(g["values"]["method"], g["sparsity"]) for g in GRID["groups"]]
    # method is categorical: indices into its sorted names, named by the ticks
    assert dims["method"]["ticktext"] == ["hydra", "tscnc"]
    assert [dims["method"]["ticktext"][i] for i in dims["method"]["values"]] == [m for m, _ in order]
    # hydra has no grid values: shown as "–" on the knob axes (then categorical)
    assert dims["lambda_cnc"]["ticktext"] == ["–", "0.01", "0.1"]
    assert dims["sparsity"]["values"] == [s for _, s in order]
    robust = [g["robust_accuracy"]["mean"] for g in GRID["groups"]]
    assert dims["robust accuracy"]["values"] == pytest.approx(robust)
    kap = dims["log10 κ"]
    assert kap["values"][:5] == pytest.approx([1.0, math.log10(20), math.log10(30), math.log10(40), 3.0])
    inf_at = kap["tickvals"][kap["ticktext"].index("∞")]
    assert kap["values"][5] == inf_at and inf_at > 3.0

    # The figure: one line per row across the axes (x = axis index), each axis scaled to [0, 1],
    # coloured by robust accuracy; the axes are named on top and kept in layout.meta.
    lines = [t for t in fig["data"] if t["mode"] == "lines+markers"]
    assert len(lines) == n
    assert fig["layout"]["xaxis"]["ticktext"] == list(dims)
    assert fig["layout"]["meta"]["dimensions"] == dims_list
    lo, hi = 1.0, inf_at                                  # the κ axis runs from 10^1 to ∞
    for j, t in enumerate(lines):
        assert t["x"] == list(range(6))
        assert t["y"][4] == pytest.approx(robust[j])      # robust accuracy on a 0..1 axis
        assert t["y"][5] == pytest.approx((kap["values"][j] - kap["range"][0]) / (kap["range"][1] - kap["range"][0]))
        assert min(t["y"]) >= 0 and max(t["y"]) <= 1
    assert kap["range"] == [lo, hi]
    colors = js("return [0, 0.5, 1, arg].map((t) => cs.viridis(t));", robust[1])
    assert colors[:3] == ["rgb(68,1,84)", "rgb(33,145,140)", "rgb(253,231,37)"]
    assert lines[1]["line"]["color"] == colors[3]
    assert len(fig["layout"]["shapes"]) == 6            # one rule per axis
    assert any(a["text"] == "∞" for a in fig["layout"]["annotations"])


def test_parcoords_knob_dimension_is_numeric_when_every_group_has_it(js: Any) -> None:
    only = dict(GRID, groups=GRID["groups"][:6])
    dims_list = js("return cs.parcoordsDimensions(cs.summaryRows(arg)).dims;", only)
    dims = {d["label"]: d for d in dims_list}
    assert "method" not in dims                         # one method: no method axis
    assert dims["lambda_cnc"]["values"] == [0.01, 0.1, 0.01, 0.1, 0.01, 0.1] and "ticktext" not in dims["lambda_cnc"]


def test_heatmap_matrix_over_two_knobs_at_one_sparsity(js: Any) -> None:
    m, fig, m_all = js("""
        const rows = cs.summaryRows(arg.grid);
        const o = {x: arg.lam, y: arg.a, sparsity: 0.5, method: 'tscnc'};
        return [cs.heatmapMatrix(rows, o), cs.heatmapFigure(rows, o), cs.heatmapMatrix(rows, {x: arg.lam, y: arg.lam, sparsity: 0.9})];
    """, {"grid": GRID, "lam": LAM, "a": A})
    assert m["x"] == [0.01, 0.1] and m["y"] == [1, 10]
    # cell (a, λ) = robust mean of that group: mean of [r, r + 0.02]
    assert m["z"] == [pytest.approx([0.51, 0.57]), pytest.approx([0.41, 0.47])]
    assert m["count"] == [[1, 1], [1, 1]]
    (tr,) = fig["data"]
    assert tr["type"] == "heatmap" and tr["x"] == ["0.01", "0.1"] and tr["y"] == ["1", "10"]
    assert "0.5" in fig["layout"]["title"]["text"] and "lambda_cnc" in fig["layout"]["xaxis"]["title"]["text"]
    # the same knob on both axes at 0.9: only the diagonal is filled
    assert m_all["z"][0][1] is None and m_all["z"][0][0] == pytest.approx(0.31)


def test_heatmap_cell_of_several_groups_is_the_mean_of_their_means(js: Any) -> None:
    m = js("""
        const rows = cs.summaryRows(arg.grid);
        return cs.heatmapMatrix(rows, {x: arg.lam, y: arg.lam, sparsity: 0.5, method: 'tscnc'});
    """, {"grid": GRID, "lam": LAM})
    # λ = 0.01 holds a = 1 (0.51) and a = 10 (0.41)
    assert m["count"][0][0] == 2 and m["z"][0][0] == pytest.approx((0.51 + 0.41) / 2)


def test_summary_export_rows_and_csv(js: Any) -> None:
    text = js("return exp.toCSV(cs.summaryExportRows(cs.summaryRows(arg)));", SUMMARY)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["group", "method", "sparsity", "n", "clean_mean", "clean_ci_low", "clean_ci_high",
                             "robust_mean", "robust_ci_low", "robust_ci_high", "kappa_geomean", "kappa_min",
                             "kappa_max", "diff_mean", "diff_ci_low", "diff_ci_high", "diff_n", "verdict"]
    assert len(rows) == 4
    assert float(rows[0]["robust_ci_low"]) == pytest.approx(mi([0.40, 0.46])["ci_low"])
    assert rows[3]["kappa_geomean"] == "inf" and rows[3]["robust_ci_low"] == "" and rows[3]["verdict"] == "insufficient"
    assert rows[2]["verdict"] == "better" and rows[0]["verdict"] == ""
    grid = js("return exp.toCSV(cs.summaryExportRows(cs.summaryRows(arg)));", GRID)
    head = grid.split("\n")[0].split(",")
    assert head[:4] == ["group", "method", A, LAM] and "verdict" not in head


def test_dodged_axis_spreads_groups_around_each_sparsity(js: Any) -> None:
    out = js("""
        const a = cs.dodgedAxis([0.9, 0.5, 0.9, null], 5), one = cs.dodgedAxis([0.9], 1);
        return [[0, 1, 2, 3, 4].map((g) => a.x(0.9, g)), a.axis, one.x(0.9, 0), one.axis.range];
    """)
    xs, axis, single, rng = out
    assert xs == pytest.approx([0.7, 0.85, 1.0, 1.15, 1.3])   # w = min(0.15, 0.6 / 4)
    assert axis["ticktext"] == ["0.5", "0.9"] and axis["range"] == [-0.5, 1.5]
    assert single == 0 and rng == [-0.5, 0.5]


def test_group_labels_name_the_grid_values(js: Any) -> None:
    labels = js("return cs.summaryRows(arg).map((r) => r.label);", GRID)
    assert labels[0] == "tscnc · a=1 · lambda_cnc=0.01" and labels[-1] == "hydra"


# ---- the form's grid editor: pure helpers (grid.js) ---------------------------------------------

@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    """The API's own OpenAPI document (the grid editor reads its knobs and bounds from it)."""
    from backend.app import create_app
    return create_app().openapi()


def grid_js(page: Any, static_frontend: str, body: str, arg: Any) -> Any:
    page.goto(static_frontend + "/js/")
    return page.evaluate(f"""async (arg) => {{
        const grid = await import('/js/grid.js');
        const specform = await import('/js/specform.js');
        {body}
    }}""", arg)


def test_griddable_paths_are_the_servers(page: Any, static_frontend: str, openapi: dict[str, Any]) -> None:
    from tscnc.spec import GRID_PATHS
    paths = grid_js(page, static_frontend, "return grid.griddablePaths(arg);", openapi)
    assert paths == list(GRID_PATHS)
    assert "training.device" not in paths and "constraints.lambda_cnc" in paths
    # without the declared list, the schema's numeric, boolean and enumerated knobs
    grid_schema = openapi["components"]["schemas"]["SweepSpec"]["properties"]["grid"]
    bare = {**openapi, "components": {**openapi["components"], "schemas": {
        **openapi["components"]["schemas"],
        "SweepSpec": {**openapi["components"]["schemas"]["SweepSpec"], "properties": {
            **openapi["components"]["schemas"]["SweepSpec"]["properties"],
            "grid": {k: v for k, v in grid_schema.items() if k != "propertyNames"}}}}}}
    derived = grid_js(page, static_frontend, "return grid.griddablePaths(arg);", bare)
    assert set(GRID_PATHS) <= set(derived) and "training.device" not in derived


def test_grid_values_are_checked_as_their_field(page: Any, static_frontend: str, openapi: dict[str, Any]) -> None:
    out = grid_js(page, static_frontend, """
        const fs = (p) => specform.fieldSchema(arg, p);
        const p = (t, path) => grid.parseGridValues(t, fs(path));
        return [p('0.01, 0.1 1', 'constraints.lambda_cnc'), p('0.1, -1', 'constraints.lambda_cnc'),
                p('2, 2.5', 'training.pretrain_epochs'), p('1, 1', 'constraints.a'), p('', 'constraints.a'),
                p('logdet, nope', 'constraints.cnc_kind'), p('true, false', 'training.channels_last'),
                p('yes', 'training.channels_last'), grid.knobKind(fs('constraints.cnc_kind'))];
    """, openapi)
    assert out[0] == {"value": [0.01, 0.1, 1], "error": None}
    assert "-1" in out[1]["error"] and "≥" in out[1]["error"]
    assert "2.5" in out[2]["error"] and "whole" in out[2]["error"]
    assert out[3]["error"] == "values must not repeat"
    assert out[4]["error"] == "give at least one value"
    assert "nope" in out[5]["error"] and "logdet" in out[5]["error"]
    assert out[6] == {"value": [True, False], "error": None}
    assert "true or false" in out[7]["error"]
    assert out[8] == "enum"


def test_grid_run_count_and_422_location(page: Any, static_frontend: str) -> None:
    out = grid_js(page, static_frontend, """
        return [grid.gridRunCount(['dense', 'hydra', 'tscnc'], [0.5, 0.9], [0, 1], {'constraints.a': [1, 10], 'constraints.lambda_cnc': [0.1, 1, 10]}),
                grid.gridRunCount(['tscnc'], [0.9], [0], {}),
                grid.gridError({loc: ['body', 'spec', 'grid', 'constraints.a', 1], msg: 'bad'}),
                grid.gridError({loc: ['body', 'spec', 'grid', 'nope.x'], msg: 'cannot be gridded'}),
                grid.gridError({loc: ['body', 'spec', 'grid'], msg: 'too many runs'}),
                grid.gridError({loc: ['body', 'spec', 'seeds'], msg: 'x'})];
    """, None)
    # seeds × (dense once + 2 pruning methods × 2 sparsities) × 2 × 3
    assert out[0] == 2 * (1 + 2 * 2) * 2 * 3
    assert out[1] == 1
    assert out[2] == {"path": "constraints.a", "index": 1, "message": "value 2: bad"}
    assert out[3] == {"path": "nope.x", "index": None, "message": "cannot be gridded"}
    assert out[4] == {"path": None, "index": None, "message": "too many runs"}
    assert out[5] is None
