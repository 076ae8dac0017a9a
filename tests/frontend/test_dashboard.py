"""The dashboard in a real browser against the real stack (redis-server, uvicorn, a Celery
worker): login, the experiment form and its 422s, the sweep view filling in live, a training
curve growing live, cancelling from the runs table, share links, CSV export. Screenshots of
the sweep view, run detail and queue view are taken on every run; they replace the ones in
docs/screenshots/ when TSCNC_UPDATE_SCREENSHOTS=1 (so a plain `make test` leaves the tree clean):

    TSCNC_UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest tests/frontend -q
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

SCREENSHOTS = (Path(__file__).resolve().parents[2] / "docs" / "screenshots"
               if os.environ.get("TSCNC_UPDATE_SCREENSHOTS") == "1"
               else Path(tempfile.gettempdir()) / "tscnc-screenshots")
Stack = Any  # the `stack` fixture of conftest.py
CHARTS = ["chart-clean", "chart-robust", "chart-kappa"]
# Number of plotted (non-null) points in each chart, -1 while a chart is not drawn yet.
COUNT_JS = """(ids) => ids.map((id) => {
  const gd = document.getElementById(id);
  if (!gd || !gd.data) return -1;
  return gd.data.reduce((n, t) => n + (t.y || []).filter((y) => y !== null && y !== undefined).length, 0);
})"""
# (run id, y) of every point of each chart.
POINTS_JS = """(ids) => ids.map((id) => {
  const gd = document.getElementById(id);
  return gd.data.flatMap((t) => t.customdata.map((c, i) => [c, t.y[i]])).sort();
})"""
WRITE_CONTROLS = ('[data-action="cancel"], [data-action="retry"], [data-action="cancel-sweep"], '
                  '[data-action="share"], [data-action="cancel-selected"], [data-action="delete"], '
                  '#logout, a[href="#/new"]')


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("document.getElementById('toasts')?.remove()")  # transient messages
    page.mouse.move(0, 0)  # no hover label or mode bar in the picture
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def fill_form(page: Any, fields: dict[str, str], checks: dict[str, list[str]]) -> None:
    for path, value in fields.items():
        page.fill(f'[data-input="{path}"]', value)
    for path, wanted in checks.items():
        for box in page.locator(f'[data-input="{path}"] input[type="checkbox"]').all():
            box.set_checked(box.get_attribute("value") in wanted)


def finish_all(stack: Stack, sweep_id: str, timeout: float = 90) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        s = stack.api("GET", f"/sweeps/{sweep_id}").json()
        return s if s["status"] in ("succeeded", "failed", "cancelled", "finished") else None
    return wait_until(done, timeout, f"sweep {sweep_id} to finish", interval=0.3)


# ---- login ----------------------------------------------------------------------------------

def test_login_with_pasted_token_is_kept_and_logout_forgets_it(page: Any, stack: Stack) -> None:
    page.goto(stack.base + "/")
    page.wait_for_selector("#login-form")
    page.fill("#token", "not-a-valid-token-xxxxxxxxxxxx")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-message")
    assert "not accepted" in page.inner_text("#login-message")

    page.fill("#token", stack.token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#topbar .who")
    assert "(admin)" in page.inner_text("#topbar .who")
    assert page.evaluate("localStorage.getItem('tscnc.token')") == stack.token

    page.reload()  # kept in the browser
    page.wait_for_selector('[data-table="sweeps"]')
    page.click("#logout")
    page.wait_for_selector("#login-form")
    assert page.evaluate("localStorage.getItem('tscnc.token')") is None


# ---- the main flow --------------------------------------------------------------------------

def test_form_sweep_view_live_share_and_csv(page: Any, context: Any, browser: Any,
                                            stack: Stack) -> None:
    # Log in through the printed URL (?token=), which is then removed from the address bar.
    page.goto(stack.login_url("#/new"))
    page.wait_for_selector("#sweep-form")
    assert "token=" not in page.url
    page.select_option("#preset", "digits-quick")
    fill_form(page, {
        "name": "browser-digits", "model.width": "32", "training.pretrain_epochs": "2",
        "training.prune_epochs": "1", "training.finetune_epochs": "1",
        "training.monitor_examples": "50", "evaluation.examples": "50",
        "evaluation.pgd_steps": "5", "evaluation.security_curve": "0, 1, 2",
        "sparsities": "0.5, 0.5",  # repeated: only the server knows this rule → 422
    }, {"methods": ["dense", "hydra", "tscnc"], "evaluation.attacks": ["fgsm", "pgd"]})
    assert "5 runs" in page.inner_text("#run-summary")

    # The server's 422 is shown next to the field its loc names, and nothing is submitted.
    sweeps_before = stack.api("GET", "/sweeps").json()["total"]   # other tests' sweeps
    page.click("#submit-sweep")
    err = page.wait_for_selector('[data-field="sparsities"] .field-error[data-source="server"]')
    assert "repeat" in err.inner_text()
    assert page.locator('[data-field="sparsities"].invalid').count() == 1
    assert "#/new" in page.url
    assert stack.api("GET", "/sweeps").json()["total"] == sweeps_before

    page.fill('[data-input="sparsities"]', "0.5, 0.9")
    page.click("#submit-sweep")
    page.wait_for_url("**#/sweep/*")
    sweep_id = page.url.rsplit("/", 1)[-1]
    page.evaluate("window.__sameDocument = true")

    # The three charts gain points as runs finish, without reloading the page.
    seen = []

    def all_done() -> bool:
        counts = page.evaluate(COUNT_JS, CHARTS)
        if not seen or counts != seen[-1]:
            seen.append(counts)
        return all(c == 5 for c in counts)

    wait_until(all_done, 90, "5 points in each sweep chart")
    assert any(0 <= c < 5 for counts in seen for c in counts), f"never saw a partial chart: {seen}"
    assert len(seen) >= 2, seen
    assert page.evaluate("window.__sameDocument") is True
    assert finish_all(stack, sweep_id)["status"] == "succeeded"
    page.wait_for_selector('.live-state[data-state="closed"]')
    page.wait_for_selector('.sweep-meta [data-status="succeeded"]')
    shot(page, "sweep-view.png")

    # CSV export of the clean-accuracy chart matches the API's results CSV.
    with page.expect_download() as dl:
        page.click('.chart-card:has(#chart-clean) [data-export="csv"]')
    exported = {r["run"]: r for r in csv.DictReader(io.StringIO(Path(dl.value.path()).read_text()))}
    api_csv = stack.api("GET", f"/sweeps/{sweep_id}/results", params={"format": "csv"}).text
    expected = {r["run"]: r for r in csv.DictReader(io.StringIO(api_csv))}
    assert set(exported) == set(expected) and len(expected) == 5
    for run_id, want in expected.items():
        got = exported[run_id]
        for col in want:
            if col == "lipschitz_upper":  # not on the chart
                continue
            if col in ("run", "method", "flags"):
                assert got[col] == want[col], (col, got, want)
            else:
                assert float(got[col]) == float(want[col]), (col, got, want)

    # Selection is shared by the three charts: tick one run in the list.
    first_run = page.locator("#sweep-runs tbody tr").first.get_attribute("data-id")
    page.check(f'#sweep-runs [data-select="{first_run}"]')
    selection_js = """(ids) => ids.map((id) => document.getElementById(id).data
        .flatMap((t) => (t.selectedpoints || []).map((i) => t.customdata[i])))"""
    wait_until(lambda: page.evaluate(selection_js, CHARTS) == [[first_run]] * 3, 5,
               "the selection in all three charts", interval=0.05)
    page.click('[data-action="clear-selection"]')

    # Share: a read-only link that works in a fresh browser without a token.
    page.click('[data-action="share"]')
    page.click('[data-action="save-dashboard"]')
    page.wait_for_selector("#share-link")
    link = page.input_value("#share-link")
    assert "/share/" in link
    ours = page.evaluate(POINTS_JS, CHARTS)
    fresh = browser.new_context(viewport={"width": 1500, "height": 1000})
    try:
        other = fresh.new_page()
        other.goto(link)
        other.wait_for_selector(".share-title")
        wait_until(lambda: other.evaluate(COUNT_JS, CHARTS) == [5, 5, 5], 30, "shared charts")
        assert other.evaluate(POINTS_JS, CHARTS) == ours
        assert other.locator(WRITE_CONTROLS).count() == 0
        assert other.evaluate("localStorage.getItem('tscnc.token')") is None
        assert other.locator("#login-form").count() == 0
    finally:
        fresh.close()

    # Clicking a point opens its run (Plotly's own hit test: hover, then click).
    gd = page.locator("#chart-clean")
    gd.scroll_into_view_if_needed()
    point = page.locator("#chart-clean .scatterlayer .trace .points path").last
    box = point.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.wait_for_selector("#chart-clean .hoverlayer .hovertext")  # Plotly found the point
    page.mouse.click(x, y)
    page.wait_for_url("**#/run/*")
    page.wait_for_selector("#evaluation table")
    wait_until(lambda: page.evaluate(COUNT_JS, ["chart-loss"])[0] >= 2, 20, "loss curve")
    page.wait_for_selector("#checkpoint")
    with page.expect_download() as dl:
        page.click("#checkpoint")
    assert Path(dl.value.path()).stat().st_size > 0

    # The runs table orders all runs on the server when a column header is clicked.
    page.goto(stack.base + f"/#/runs?sweep={sweep_id}")
    page.wait_for_selector('[data-table="runs"] tbody tr[data-id]')
    page.select_option('[data-table="runs"] select.page-size', "25")
    header = '[data-table="runs"] th[data-col="clean_accuracy"]'
    acc = {r["id"]: r["clean_accuracy"] for r in stack.api(
        "GET", "/runs", params={"sweep": sweep_id, "limit": 25}).json()["items"]}
    shown_js = """() => [...document.querySelectorAll('[data-table="runs"] tbody tr[data-id]')]
        .map((tr) => tr.dataset.id)"""

    def shown_in(order: int) -> bool:
        ids = page.evaluate(shown_js)
        values = [acc[i] for i in ids]
        return sorted(ids) == sorted(acc) and values == sorted(values, reverse=order < 0)

    with page.expect_request(lambda r: "sort=clean_accuracy" in r.url and "order=asc" in r.url):
        page.click(header)  # ascending, asked of the server (all runs, not the page shown)
    wait_until(lambda: shown_in(+1), 10, "rows sorted ascending")
    page.click(header)  # descending
    wait_until(lambda: shown_in(-1), 10, "rows sorted descending")
    assert page.locator('[data-table="runs"] td[data-col="dataset"]').first.inner_text() == "digits"


# ---- live training curve, queue, cancel from the table --------------------------------------

def test_training_curve_grows_live_and_cancel_from_runs_table(page: Any, stack: Stack) -> None:
    spec = {"name": "browser-live", "model": {"width": 32},
            "training": {"pretrain_epochs": 30, "prune_epochs": 1, "finetune_epochs": 1,
                         "batch_size": 32, "monitor_examples": 50},
            "methods": ["tscnc"], "sparsities": [0.5, 0.9],
            "evaluation": {"examples": 50, "attacks": ["fgsm"], "security_curve": [0, 1]}}
    resp = stack.api("POST", "/sweeps", json={"preset": "digits-quick", "spec": spec})
    assert resp.status_code == 201, resp.text
    sweep = resp.json()
    watched, cancelled = (r["id"] for r in sorted(sweep["runs"], key=lambda r: r["sparsity"]))

    page.goto(stack.login_url(f"#/run/{watched}"))
    page.wait_for_selector("#chart-loss")
    page.evaluate("window.__sameDocument = true")
    counts = []

    def grown() -> bool:  # three different non-empty curves seen, each longer than the last
        n = page.evaluate(COUNT_JS, ["chart-loss"])[0]
        if not counts or n != counts[-1]:
            counts.append(n)
        return len([c for c in counts if c > 0]) >= 3

    wait_until(grown, 60, f"the training curve to grow (seen {counts})", interval=0.05)
    assert counts == sorted(counts), counts
    assert page.evaluate("window.__sameDocument") is True

    # The queue view shows the worker busy with a run of this sweep.
    page.goto(stack.base + "/#/queue")
    row = page.wait_for_selector("#workers tr[data-worker]")
    assert "cpu" in row.inner_text()
    page.wait_for_selector("#workers tr[data-worker] a[href*='#/run/']")
    shot(page, "queue.png")

    # Cancel a run from the runs table; the row turns cancelled without a reload.
    page.goto(stack.base + f"/#/runs?sweep={sweep['id']}")
    row = f'[data-table="runs"] tr[data-id="{cancelled}"]'
    page.wait_for_selector(f'{row} [data-action="cancel"]')
    page.click(f'{row} [data-action="cancel"]')
    page.wait_for_selector(f'{row} [data-status="cancelled"]', timeout=45_000)
    assert stack.api("GET", f"/runs/{cancelled}").json()["status"] == "cancelled"

    # ... and retry it from the same row: it is queued again and resumes.
    page.click(f'{row} [data-action="retry"]')
    page.wait_for_selector(f'{row} :is([data-status="queued"], [data-status="running"], '
                           f'[data-status="succeeded"])')
    assert stack.api("GET", f"/runs/{cancelled}").json()["status"] != "cancelled"

    # Stop the retried run; the watched one finishes: screenshot its run detail.
    stack.api("POST", f"/runs/{cancelled}/cancel")
    finish_all(stack, sweep["id"], 60)
    assert stack.api("GET", f"/runs/{watched}").json()["status"] == "succeeded"
    page.goto(stack.base + f"/#/run/{watched}")
    page.wait_for_selector("#evaluation table")
    page.wait_for_selector('.live-state[data-state="closed"]')
    wait_until(lambda: page.evaluate(COUNT_JS, ["chart-loss", "chart-spectra"])[1] > 0, 20,
               "the spectra")
    shot(page, "run-detail.png")


# ---- roles and dashboards -------------------------------------------------------------------

def test_viewer_token_sees_no_write_controls(page: Any, stack: Stack) -> None:
    resp = stack.api("POST", "/tokens", json={"name": "carol", "role": "viewer"})
    assert resp.status_code == 201, resp.text
    page.goto(f"{stack.base}/?token={resp.json()['token']}#/runs")
    page.wait_for_selector('[data-table="runs"] tbody tr')
    assert "(viewer)" in page.inner_text("#topbar .who")
    assert page.locator('a[href="#/new"]').count() == 0
    for route, ready in [("#/runs", '[data-table="runs"] tbody tr'),
                         ("#/sweeps", '[data-table="sweeps"] tbody tr')]:
        page.goto(f"{stack.base}/{route}")
        page.wait_for_selector(ready)
        assert page.locator('[data-action="cancel"], [data-action="retry"], '
                            '[data-action="cancel-selected"], [data-action="delete-selected"]'
                            ).count() == 0


def test_dashboards_list_and_revoking_a_share_link(page: Any, context: Any, stack: Stack) -> None:
    sweep = stack.api("POST", "/sweeps", json={"preset": "digits-quick", "spec": {
        "name": "to share", "methods": ["dense"], "training": {"pretrain_epochs": 1}}}).json()
    stack.api("POST", f"/sweeps/{sweep['id']}/cancel")  # only its record is needed
    resp = stack.api("POST", "/dashboards", json={"name": "to revoke", "sweep_ids": [sweep["id"]]})
    assert resp.status_code == 201, resp.text
    link = stack.base + resp.json()["share_url"]

    page.goto(stack.login_url("#/dashboards"))
    row = page.locator('[data-table="dashboards"] tr', has_text="to revoke")
    page.once("dialog", lambda d: d.accept())
    row.locator('[data-action="delete"]').click()
    page.wait_for_selector('[data-table="dashboards"] tr:has-text("to revoke")', state="detached")

    other = context.browser.new_context()
    try:
        shared = other.new_page()
        shared.goto(link)
        assert "revoked" in shared.wait_for_selector("#share-error").inner_text()
    finally:
        other.close()
