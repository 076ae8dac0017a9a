"""Seed statistics and grids in the dashboard (issue #12), in Chromium against the real stack
(redis-server, uvicorn, a Celery worker): a grid sweep with 2 seeds submitted through the form's
grid editor runs end to end (tiny epochs); the sweep view's bands, difference chart, parallel
coordinates and heatmap render and fill in as runs finish, their numbers agree with means and
intervals computed here from the runs' results, and the settings survive a share link."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import pytest

from tests.frontend.test_dashboard import SCREENSHOTS, fill_form, finish_all
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow
Stack = Any
LAM, A = "constraints.lambda_cnc", "constraints.a"
T975 = {2: 12.706204736174707}   # Student t quantile 0.975 for n - 1 = 1 degree of freedom

# Mean-line traces of a band chart: name → y (the band edges and seed points are left out).
LINES_JS = """(id) => {
  const gd = document.getElementById(id);
  if (!gd || !gd.data) return null;
  return Object.fromEntries(gd.data.filter((t) => t.mode === 'lines+markers').map((t) => [t.name, [t.x, t.y]]));
}"""
BANDS_JS = """(id) => Object.fromEntries(document.getElementById(id).data
  .filter((t) => t.fill === 'tonexty').map((t) => [t.name, t.y]))"""
LOWS_JS = """(id) => Object.fromEntries(document.getElementById(id).data
  .filter((t) => t.name.endsWith(' low')).map((t) => [t.name, t.y]))"""


def label(method: str, params: dict[str, Any]) -> str:
    """The dashboard's group label, e.g. "tscnc · a=1 · lambda_cnc=0.01" (numbers as JS prints them)."""
    return " · ".join([method, *(f"{k.split('.')[-1]}={v:g}" for k, v in sorted(params.items()))])


def t_interval(xs: list[float]) -> tuple[float, float, float]:
    n = len(xs)
    mean = sum(xs) / n
    half = T975[n] * math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def test_grid_sweep_with_two_seeds_summary_parcoords_and_difference(page: Any, browser: Any,
                                                                  stack: Stack) -> None:
    sweeps_before = stack.api("GET", "/sweeps").json()["total"]
    page.goto(stack.login_url("#/new"))
    page.wait_for_selector("#sweep-form")
    page.select_option("#preset", "digits-quick")
    fill_form(page, {
        "name": "grid-seeds", "dataset.train_subset": "600", "model.width": "32", "adversarial.steps": "2",
        "training.pretrain_epochs": "4", "training.prune_epochs": "1", "training.finetune_epochs": "1",
        "training.monitor_examples": "20", "evaluation.examples": "40", "evaluation.pgd_steps": "2",
        "evaluation.security_curve": "0, 1", "sparsities": "0.5, 0.9", "seeds": "0, 1",
    }, {"methods": ["hydra", "tscnc"], "evaluation.attacks": ["fgsm", "pgd"]})
    assert "8 runs" in page.inner_text("#run-summary")

    # The grid editor: knobs from the API's schema, values checked as their field, live count.
    page.click("#grid-add")
    row = page.locator("[data-grid-row]").nth(0)
    options = row.locator("select option").all_inner_texts()
    assert LAM in options and A in options and "training.device" not in options
    row.locator("select").select_option(LAM)
    row.locator("input").fill("0.01, -1")
    assert "≥ 0" in row.locator(".field-error").inner_text()
    assert "Fix the grid" in page.inner_text("#run-summary")
    # Only the server knows the bound on runs: its 422 (loc body.spec.grid) lands under the grid.
    row.locator("input").fill(", ".join(str(i / 100) for i in range(50)))
    assert "400 runs" in page.inner_text("#run-summary")
    page.click("#submit-sweep")
    wait_until(lambda: "at most" in page.inner_text("#grid-error"), 10, "the 422 under the grid")
    assert "400 runs" in page.inner_text("#grid-error")
    assert "#/new" in page.url and stack.api("GET", "/sweeps").json()["total"] == sweeps_before
    row.locator("input").fill("0.01, 1")
    assert row.locator(".field-error").inner_text() == ""
    assert "16 runs" in page.inner_text("#run-summary")
    page.click("#grid-add")
    row2 = page.locator("[data-grid-row]").nth(1)
    row2.locator("select").select_option(A)
    row2.locator("input").fill("1")     # one value: still a knob of every run (for the heatmap)
    assert "16 runs" in page.inner_text("#run-summary")

    page.click("#submit-sweep")
    page.wait_for_url("**#/sweep/*")
    sweep_id = page.url.rsplit("/", 1)[-1]
    sweep = stack.api("GET", f"/sweeps/{sweep_id}").json()
    assert sweep["spec"]["grid"] == {LAM: [0.01, 1.0], A: [1.0]}
    assert len(sweep["run_ids"]) == 16

    # The summary fills in as runs finish (refetched on run-finished events): the number of
    # evaluated runs it counts grows through intermediate values to all 16.
    seen: list[int] = []

    def evaluated() -> bool:
        n = int(page.get_attribute(".summary-panel [data-summary-info]", "data-evaluated") or 0)
        if not seen or seen[-1] != n:
            seen.append(n)
        lines = page.evaluate(LINES_JS, "chart-band-robust") or {}
        return n == 16 and sum(1 for _, ys in lines.values() for y in ys if y is not None) == 8
    wait_until(evaluated, 240, "16 runs in the summary, 8 group means in the robust band chart")
    assert finish_all(stack, sweep_id)["status"] == "succeeded"
    assert any(0 < n < 16 for n in seen), f"never saw the summary fill in: {seen}"

    # Independent statistics from the runs' results: robust = min over attacks, t-interval.
    runs = {r["id"]: r for r in stack.api("GET", "/runs", params={"sweep": sweep_id, "limit": 50}).json()["items"]}
    results = {r["run_id"]: r for r in stack.api("GET", f"/sweeps/{sweep_id}/results").json()["items"]}
    groups: dict[str, dict[float, dict[int, float]]] = {}   # label → sparsity → seed → robust
    for rid, res in results.items():
        run = runs[rid]
        groups.setdefault(label(run["method"], run["params"]), {}).setdefault(run["sparsity"], {})[run["seed"]] = \
            min(res["robust_accuracy"].values())
    assert len(groups) == 4
    assert all(sorted(v) == [0.5, 0.9] and all(len(x) == 2 for x in v.values()) for v in groups.values())

    lines = page.evaluate(LINES_JS, "chart-band-robust")
    uppers = page.evaluate(BANDS_JS, "chart-band-robust")
    lows = page.evaluate(LOWS_JS, "chart-band-robust")
    assert set(lines) == set(groups)
    assert page.evaluate("() => document.getElementById('chart-band-robust').layout.xaxis.ticktext") == ["0.5", "0.9"]
    for name, by_sparsity in groups.items():
        for i, sp in enumerate((0.5, 0.9)):
            mean, lo, hi = t_interval(list(by_sparsity[sp].values()))
            assert lines[name][1][i] == pytest.approx(mean, abs=1e-9)
            assert lows[f"{name} low"][i] == pytest.approx(lo, abs=1e-9)
            assert uppers[f"{name} 95 % interval"][i] == pytest.approx(hi, abs=1e-9)

    # Difference to hydra (the default baseline), paired by seed, coloured by verdict.
    page.wait_for_selector('[data-box="difference"]:not([hidden]) #chart-difference .scatterlayer .points path')
    diff = page.evaluate("""() => document.getElementById('chart-difference').data.map((t) =>
        [t.name, t.y, t.customdata, t.marker.color])""")
    colors = page.evaluate("async () => (await import('/js/charts_summary.js')).VERDICT_COLORS")
    assert sorted(d[0] for d in diff) == sorted(n for n in groups if n.startswith("tscnc"))
    for name, ys, verdicts, marker_colors in diff:
        base = groups[name.replace("tscnc", "hydra", 1)]
        for i, sp in enumerate((0.5, 0.9)):
            mean, lo, hi = t_interval([groups[name][sp][seed] - base[sp][seed] for seed in (0, 1)])
            assert ys[i] == pytest.approx(mean, abs=1e-9)
            want = "better" if lo > 0 else "worse" if hi < 0 else "tie"
            assert verdicts[i] == want and marker_colors[i] == colors[want]

    # Parallel coordinates (drawn by Plotly as SVG) and the heatmap over the two knobs.
    page.wait_for_selector("#chart-parcoords .scatterlayer .trace .js-line")
    dims = page.evaluate("""() => document.getElementById('chart-parcoords').layout.meta.dimensions
        .map((d) => [d.label, d.values.length])""")
    assert [d[0] for d in dims] == ["method", "a", "lambda_cnc", "sparsity", "robust accuracy", "log10 κ"]
    assert page.locator("#chart-parcoords .scatterlayer .trace .js-line").count() == 8   # group × sparsity
    assert all(n == 8 for _, n in dims)
    heat = page.evaluate("() => { const t = document.getElementById('chart-heatmap').data[0]; return [t.type, t.x, t.y, t.z]; }")
    assert heat[0] == "heatmap" and len(heat[3]) == len(heat[2]) and len(heat[3][0]) == len(heat[1])
    assert sorted([heat[1], heat[2]]) == [["0.01", "1"], ["1"]]
    page.wait_for_selector("#chart-heatmap .hm, #chart-heatmap .heatmaplayer image")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.add_style_tag(content="#topbar { position: static !important; }")  # not over the pictures
    page.mouse.move(0, 0)
    page.locator('[data-box="grid"]').screenshot(path=str(SCREENSHOTS / "grid-parcoords.png"))

    # "show seeds": each run as a point of its group, clickable (customdata = run id).
    page.check("#show-seeds")
    seed_ids_js = """() => document.getElementById('chart-band-robust').data
        .filter((t) => t.name.endsWith(' seeds')).flatMap((t) => t.customdata)"""
    wait_until(lambda: sorted(page.evaluate(seed_ids_js)) == sorted(results), 10, "seed points")
    page.mouse.move(0, 0)
    page.locator(".summary-panel").screenshot(path=str(SCREENSHOTS / "sweep-seeds.png"))

    # The summary CSV is the API's (cells neutralised there), for the settings shown.
    with page.expect_download() as dl:
        page.click('[data-action="summary-csv"]')
    got = Path(dl.value.path()).read_bytes().decode()
    want = stack.api("GET", f"/sweeps/{sweep_id}/summary", params={"baseline": "hydra", "format": "csv"}).text
    assert got == want and "diff_robust_verdict" in got.splitlines()[0]
    assert len(list(csv.DictReader(io.StringIO(got)))) == 8

    # Group by method and λ only: a knob left out of the grouping is pooled.
    page.uncheck('[data-group-by="constraints.a"]')
    wait_until(lambda: all("a=" not in n for n in (page.evaluate(LINES_JS, "chart-band-robust") or {"a=": 0})),
               10, "groups without a")

    # A share link keeps the settings: seeds shown, hydra baseline, group-by.
    page.click('[data-action="share"]')
    page.click('[data-action="save-dashboard"]')
    page.wait_for_selector("#share-link")
    link = page.input_value("#share-link")
    dashboards = stack.api("GET", "/dashboards").json()["items"]
    state = next(d for d in dashboards if d["name"] == "grid-seeds")["state"]["summary"]
    assert state["showSeeds"] is True and state["baseline"] == "hydra"
    assert state["groupBy"] == ["method", LAM]
    fresh = browser.new_context(viewport={"width": 1500, "height": 1000})
    try:
        other = fresh.new_page()
        other.goto(link)
        other.wait_for_selector("#chart-difference .scatterlayer .points path")
        assert other.is_checked("#show-seeds")
        assert not other.is_checked('[data-group-by="constraints.a"]')
        wait_until(lambda: sorted(other.evaluate(seed_ids_js)) == sorted(results), 20, "shared seed points")
    finally:
        fresh.close()
