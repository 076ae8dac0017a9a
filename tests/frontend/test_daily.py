"""The dashboard as a daily tool (issue 13), in Chromium against the real stack: truthful sweep
and run states, result columns empty until evaluated, rows updated in place, no requests for
results that do not exist yet, the run page's way back to its sweep."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.frontend.test_dashboard import finish_all
from tests.support.services import process_output
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow
Stack = Any

# Mark every row of the sweep's run table (a JS property: lost if the row is rebuilt) and count
# rows removed from it from now on.
MARK_JS = """() => {
  const tbody = document.querySelector('#sweep-runs tbody');
  for (const tr of tbody.querySelectorAll('tr[data-id]')) tr.__mark = tr.dataset.id;
  window.__removedRows = 0;
  new MutationObserver((ms) => { for (const m of ms) for (const n of m.removedNodes)
    if (n.nodeName === 'TR') window.__removedRows += 1; }).observe(tbody, { childList: true });
  return tbody.querySelectorAll('tr[data-id]').length;
}"""
ROWS_JS = """() => [...document.querySelectorAll('#sweep-runs tbody tr[data-id]')].map((tr) => ({
  id: tr.dataset.id, mark: tr.__mark || null,
  status: tr.querySelector('[data-status]')?.dataset.status,
  clean: tr.querySelector('td[data-col="clean"]').textContent,
  robust: tr.querySelector('td[data-col="robust"]').textContent,
  progress: tr.querySelector('td[data-col="progress"]').textContent }))"""


def _spec() -> dict[str, Any]:
    return {"name": "daily-states", "dataset": {"name": "digits", "train_subset": 1000},
            "model": {"name": "mlp", "width": 24},
            "training": {"pretrain_epochs": 25, "prune_epochs": 1, "finetune_epochs": 1,
                         "batch_size": 64, "monitor_examples": 40, "device": "cpu"},
            "adversarial": {"steps": 2},
            "evaluation": {"attacks": ["fgsm", "pgd"], "pgd_steps": 3, "examples": 60,
                           "security_curve": [0.0, 1.0]},
            "methods": ["hydra"], "sparsities": [0.5, 0.9], "seeds": [0]}


def test_sweep_view_is_truthful_and_updates_rows_in_place(page: Any, stack: Stack) -> None:
    # Long enough to be watched while it trains: on an idle machine an epoch of this spec takes
    # ~30 ms, so 25 epochs could end between two looks at the page.
    spec = _spec()
    spec["training"] = {**spec["training"], "pretrain_epochs": 300}
    r = stack.api("POST", "/sweeps", json={"spec": spec})
    assert r.status_code == 201, r.text
    sweep = r.json()
    page.goto(stack.login_url(f"#/sweep/{sweep['id']}"))
    page.wait_for_selector("#sweep-runs tbody tr[data-id]")
    assert page.evaluate(MARK_JS) == 2

    # While it trains: a run shows monitor values as progress, never in the result columns;
    # the rows are the same elements however often the table is updated.
    samples = [0]

    def check() -> list[dict]:
        rows = page.evaluate(ROWS_JS)
        for x in rows:
            assert x["mark"] == x["id"], "a row was rebuilt instead of updated"
            if x["status"] != "succeeded":
                assert (x["clean"], x["robust"]) == ("–", "–"), x
        samples[0] += 1
        return rows

    def training() -> bool:
        rows = check()
        return any(re.search(r"pretrain \d+ · monitor", x["progress"]) for x in rows)

    # Generous: a busy shared machine slows the first epochs down a lot.
    wait_until(training, 180, "monitor values in the progress column")

    # Cancel the run that waits for the shared pretrain: at once.
    runs = stack.api("GET", "/runs", params={"sweep": sweep["id"]}).json()["items"]
    waiting = next(x for x in runs if x["status"] == "queued")
    page.click(f'#sweep-runs tr[data-id="{waiting["id"]}"] [data-action="cancel"]')
    wait_until(lambda: any(x["id"] == waiting["id"] and x["status"] == "cancelled"
                           for x in page.evaluate(ROWS_JS)), 5, "the row cancelled", interval=0.05)

    def checked_until_finished() -> bool:  # the table is checked on every look until the end
        check()
        return stack.api("GET", f"/sweeps/{sweep['id']}").json()["status"] in (
            "succeeded", "failed", "cancelled", "finished")

    wait_until(checked_until_finished, 600, "the sweep to finish")
    assert samples[0] >= 3
    assert finish_all(stack, sweep["id"])["summary"] == "finished · 1 succeeded · 1 cancelled"
    page.wait_for_selector('.sweep-meta [data-status="finished"]')
    assert page.inner_text(".sweep-meta [data-counts]") == "finished · 1 succeeded · 1 cancelled"
    done = wait_until(lambda: (rows := page.evaluate(ROWS_JS)) and all(
        x["status"] != "succeeded" or x["clean"] != "–" for x in rows) and rows, 20,
        "the result in the table")
    assert all(x["mark"] == x["id"] for x in done)
    assert page.evaluate("window.__removedRows") == 0

    # The result was asked for once it existed: no 404 on /result for these runs.
    log = process_output(stack.api_proc)
    for rid in sweep["run_ids"]:
        assert not re.search(rf"/runs/{rid}/result[^\n]* 404", log), rid

    # The cancelled run's page: no results, no "actual 0"; its way back leads to its sweep.
    page.goto(stack.login_url(f"#/run/{waiting['id']}"))
    page.wait_for_selector('.run-info [data-status="cancelled"]')
    facts = page.inner_text(".run-info .facts")
    assert "not evaluated yet" in facts and "actual" not in facts, facts
    back = page.locator('[data-action="back"]')
    wait_until(lambda: back.get_attribute("href") == f"#/sweep/{sweep['id']}", 5, "back",
               interval=0.05)
    assert "daily-states" in back.inner_text()
    back.click()
    page.wait_for_selector(f'[data-sweep="{sweep["id"]}"]')


def test_form_offers_readable_datasets_and_a_failed_sweep_says_why(page: Any,
                                                                   stack: Stack) -> None:
    # The stack's worker has no data roots: the embedded datasets only.
    page.goto(stack.login_url("#/new"))
    page.wait_for_selector("#sweep-form")
    options = page.evaluate("""() => [...document.querySelectorAll('#f-dataset-name option')]
        .map((o) => [o.value, o.disabled, o.textContent])""")
    usable = {v for v, disabled, _ in options if not disabled}
    assert usable == {"digits", "mnist5k"}, options
    assert any(v == "mnist" and d and "no worker" in t for v, d, t in options), options
    assert "workers can read: digits, mnist5k" in page.inner_text('[data-field="dataset.name"] .hint')
    page.click("#dataset-how summary")
    assert "tscnc data download" in page.inner_text("#dataset-how")

    # A sweep on a dataset no worker has (sent past the form): its page says why it failed.
    spec = {**_spec(), "name": "daily-missing", "dataset": {"name": "mnist", "train_subset": 100}}
    r = stack.api("POST", "/sweeps", json={"spec": spec})
    assert r.status_code == 201, r.text
    sweep = r.json()
    page.goto(stack.login_url(f"#/sweep/{sweep['id']}"))
    box = page.wait_for_selector("#sweep-failures", timeout=60_000)
    text = box.inner_text()
    assert "2 run(s) failed" in text and "invalid_input" in text and "MNIST" in text, text
    assert "hydra-s0.5-seed0" in text and "hydra-s0.9-seed0" in text


def test_form_counts_valid_runs_shows_json_overrides_and_focuses_errors(page: Any,
                                                                        stack: Stack) -> None:
    page.goto(stack.login_url("#/new"))
    page.wait_for_selector("#sweep-form")
    page.select_option("#preset", "digits-quick")
    box = page.locator('[data-input="sparsities"]')
    box.fill("0.5, 1.5")
    box.dispatch_event("change")
    summary = page.inner_text("#run-summary")
    assert "expands to" not in summary and "sparsities" in summary, summary
    box.fill("0.5, 0.9")
    box.dispatch_event("change")
    assert "expands to" in page.inner_text("#run-summary")

    # The JSON box is wide, and a field it overrides shows the value that will be sent.
    page.click("details:has(#extra-json) summary")
    assert page.eval_on_selector("#extra-json", "(e) => e.getBoundingClientRect().width") > 400
    page.fill("#extra-json", '{"training": {"pretrain_epochs": 7}, "seeds": [0, 1]}')
    page.dispatch_event("#extra-json", "change")
    assert page.input_value('[data-input="training.pretrain_epochs"]') == "7"
    assert page.input_value('[data-input="seeds"]').replace(" ", "") == "0,1"
    page.fill("#extra-json", "")

    in_view = """(e) => { const r = e.getBoundingClientRect();
        return r.top >= 0 && r.bottom <= window.innerHeight; }"""
    focused = "() => document.activeElement && document.activeElement.dataset.input"
    # A client-side error: scrolled to and focused.
    box.fill("0.5, 1.5")
    page.evaluate("window.scrollTo(0, 0)")
    page.click("#submit-sweep")
    assert page.evaluate(focused) == "sparsities"
    assert box.evaluate(in_view)
    # A server-side one (a repeated sparsity: only the server checks that): the same.
    box.fill("0.5, 0.5")
    page.locator('[data-input="name"]').fill("daily-form")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.locator('[data-input="name"]').evaluate("(e) => e.blur()")
    page.evaluate("window.scrollTo(0, 0)")
    page.click("#submit-sweep")
    page.wait_for_selector('[data-field="sparsities"] .field-error[data-source="server"]')
    wait_until(lambda: page.evaluate(focused) == "sparsities", 5, "focus on the field",
               interval=0.05)
    assert box.evaluate(in_view)


OVERLAP_JS = """(id) => {
  const gd = document.getElementById(id);
  const legend = gd.querySelector('.legend'), title = gd.querySelector('.xtitle');
  if (!legend || !title) return null;
  const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const l = legend.getBoundingClientRect(), t = title.getBoundingClientRect();
  const ticks = [...gd.querySelectorAll('.xtick text')].map((e) => e.getBoundingClientRect());
  const box = gd.getBoundingClientRect();
  return hit(l, t) || ticks.some((k) => hit(k, t)) || l.bottom > box.bottom + 1;
}"""


def test_compare_lets_the_user_pick_curves_and_names_sweeps(page: Any, stack: Stack) -> None:
    small = {**_spec(), "name": "daily-cmp-small", "dataset": {"name": "digits", "train_subset": 300},
             "training": {**_spec()["training"], "pretrain_epochs": 2}}
    a = stack.api("POST", "/sweeps", json={"spec": small}).json()
    big = {**_spec(), "name": "daily-cmp-big", "methods": ["hydra", "tscnc"],
           "sparsities": [0.3, 0.5, 0.7, 0.8, 0.9, 0.95]}
    b = stack.api("POST", "/sweeps", json={"spec": big}).json()
    assert stack.api("POST", f"/sweeps/{b['id']}/cancel").status_code == 200
    finish_all(stack, a["id"])
    page.goto(stack.login_url(f"#/compare?sweeps={b['id']},{a['id']}"))
    page.wait_for_selector('#curve-pick [data-curves]')
    summary = page.locator('#curve-pick [data-curves]')
    wait_until(lambda: "12 of 14" in summary.inner_text(), 20, "the curves summary")
    checked = set(page.evaluate("""() => [...document.querySelectorAll('#curve-pick input:checked')]
        .map((i) => i.dataset.curve)"""))
    assert set(a["run_ids"]) <= checked, "a sweep's runs are missing from the curves"
    assert len(checked) == 12
    # Chips name the sweeps.
    wait_until(lambda: "sweep daily-cmp-big" in page.inner_text(".chips")
               and "sweep daily-cmp-small" in page.inner_text(".chips"), 10, "chip names")

    # Pick another run: it is drawn; a 13th cannot be added.
    page.click("#curve-pick summary")
    first = a["run_ids"][0]
    page.uncheck(f'#curve-pick [data-curve="{first}"]')
    wait_until(lambda: "11 of 14" in summary.inner_text(), 5, "one curve fewer", interval=0.05)
    page.check(f'#curve-pick [data-curve="{first}"]')
    assert page.locator('#curve-pick input:not(:checked)').first.is_disabled()

    # The legends do not cover the axis titles (training and security curves).
    for chart in ("chart-curves", "chart-security"):
        wait_until(lambda c=chart: page.evaluate(OVERLAP_JS, c) is not None, 30,
                   f"{chart} drawn with a legend")
        assert page.evaluate(OVERLAP_JS, chart) is False, chart


def _runs_table_overflow(page: Any) -> str | None:
    """None when the runs table needs no sideways scrolling (in its box or the window); else
    the widths and each column's width."""
    widths = page.evaluate("""() => { const s = document.querySelector('[data-table="runs"] .table-scroll');
        return [s.scrollWidth, s.clientWidth, document.documentElement.scrollWidth, window.innerWidth]; }""")
    if widths[0] <= widths[1] + 1 and widths[2] <= widths[3]:
        return None
    cols = page.evaluate("""() => [...document.querySelectorAll('[data-table="runs"] thead th')]
        .map((t) => `${t.dataset.col}:${Math.round(t.getBoundingClientRect().width)}`)""")
    return f"{widths} {' '.join(cols)}"


def test_smaller_things(page: Any, context: Any, stack: Stack) -> None:
    # The runs table fits a 1440 px wide window (no sideways scrolling).
    # On the gpu queue, which no test worker reads: nothing of it runs before it is cancelled.
    spec = {**_spec(), "name": "daily-wide-sweep-name-for-the-table", "methods": ["hydra", "tscnc"],
            "training": {**_spec()["training"], "device": "cuda"}}
    sweep = stack.api("POST", "/sweeps", json={"spec": spec}).json()
    assert stack.api("POST", f"/sweeps/{sweep['id']}/cancel").status_code == 200
    page.set_viewport_size({"width": 1440, "height": 900})
    # Its own runs only: the widths must not depend on the runs other tests left in the stack.
    page.goto(stack.login_url(f"#/runs?sweep={sweep['id']}"))
    page.wait_for_selector('[data-table="runs"] tbody tr[data-id]')
    problem = _runs_table_overflow(page)
    assert problem is None, problem

    # An empty chart says why; a run that ended unevaluated says that too.
    page.goto(stack.login_url(f"#/sweep/{sweep['id']}"))
    page.wait_for_selector("#chart-clean .annotation-text")
    notes = "(id) => [...document.querySelectorAll(`#${id} .annotation-text`)].map((e) => e.textContent).join(' | ')"
    assert "No run evaluated yet" in page.evaluate(notes, "chart-clean")
    page.goto(stack.login_url(f"#/run/{sweep['run_ids'][0]}"))
    page.wait_for_selector("#chart-security .annotation-text")
    wait_until(lambda: "cancelled before its evaluation" in page.evaluate(notes, "chart-security"),
               10, "the note")
    wait_until(lambda: "No epoch finished yet" in page.evaluate(notes, "chart-loss"), 10,
               "the training chart's note")


def test_runs_table_fits_with_every_kind_of_row(page: Any, stack: Stack) -> None:
    """A 1440 px window shows the runs table without sideways scrolling whatever its rows
    hold: a running run with monitor values and a long worker name, a succeeded one with κ = ∞,
    a failed one (Retry), one asked to stop, long tags and notes (states written through the
    store: the sweep is on the gpu queue, which no test worker reads)."""
    import math

    from backend.store import Store
    from tscnc.records import (
        AttackResult,
        ConditionSummary,
        EpochEvent,
        RunResult,
        RunStatus,
        Stage,
    )

    spec = {**_spec(), "name": "daily-every-kind-of-row-in-a-wide-table", "methods": ["lwm", "tscnc"],
            "sparsities": [0.5, 0.99], "training": {**_spec()["training"], "device": "cuda"}}
    sweep = stack.api("POST", "/sweeps", json={"spec": spec}).json()
    running, done, failed, stopping = sweep["run_ids"]
    st = Store.from_url(stack.redis_url)
    try:
        worker = "a-worker-with-a-rather-long-host-name@gpu-node-17.cluster.example.org"
        for rid in (running, done, failed):
            assert st.claim(rid, worker, "cuda:0 NVIDIA H200")
        st.record_event(running, EpochEvent(
            run=running, stage=Stage.finetune, epoch=118, epochs=120, loss=0.4321,
            clean_accuracy=0.83125, robust_accuracy=0.23125, lr=0.01, sparsity=0.99,
            condition_numbers={"fc1": math.inf}))
        run = st.get_run(done)
        st.put_result(done, RunResult(
            run=done, method=run.method, sparsity=run.sparsity, sparsity_actual=0.98765,
            sparsity_per_layer={"fc1": 0.98765}, seed=0, clean_accuracy=0.83125,
            robust_accuracy={"pgd": 0.23125, "fgsm": 0.41}, lipschitz_upper=math.inf,
            condition_number=ConditionSummary(median=math.inf, max=math.inf, per_layer={}),
            security_curve=[], flags=[], checkpoint="", spec={}, versions={}, wall_time=1.0,
            attacks=[AttackResult(attack="pgd", epsilon=0.1, steps=3, accuracy=0.23125,
                                  examples=60, seed=0, library="torchattacks")]))
        assert st.set_status(done, RunStatus.succeeded)
        assert st.set_status(failed, RunStatus.failed, category="diverged",
                             message="the loss diverged at epoch 3 (NaN): " + "x" * 200)
        st.request_cancel(stopping)
    finally:
        st.close()
    for rid, tags in zip(sweep["run_ids"], [["baseline", "paper:fig3"], ["odd one"],
                                            ["a-rather-long-tag-name-without-any-break"], []],
                         strict=True):
        assert stack.api("PATCH", f"/runs/{rid}",
                         json={"tags": tags, "notes": "diverged at epoch 3"}).status_code == 200

    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(stack.login_url(f"#/runs?sweep={sweep['id']}"))
    page.wait_for_selector('[data-table="runs"] tbody tr[data-id] [data-action="retry"]')
    page.wait_for_selector('[data-table="runs"] tbody tr[data-id] .monitor')
    problem = _runs_table_overflow(page)
    stack.api("POST", f"/sweeps/{sweep['id']}/cancel")
    assert problem is None, problem


def test_notes_and_tags_edited_inline_shown_in_tables_and_exports(page: Any, browser: Any,
                                                                 stack: Stack) -> None:
    spec = {**_spec(), "name": "daily-notes"}
    sweep = stack.api("POST", "/sweeps", json={"spec": spec}).json()
    assert stack.api("POST", f"/sweeps/{sweep['id']}/cancel").status_code == 200
    page.goto(stack.login_url(f"#/sweep/{sweep['id']}"))
    page.click('[data-annotations] [data-action="edit-notes"]')
    page.fill('[data-annotations] [data-input="tags"]', "baseline, paper:fig3")
    page.fill('[data-annotations] [data-input="notes"]', "lr too high?\nrerun at 0.02")
    page.click('[data-annotations] [data-action="save-notes"]')
    page.wait_for_selector('[data-annotations] [data-tag="paper:fig3"]')
    got = stack.api("GET", f"/sweeps/{sweep['id']}").json()
    assert (got["tags"], got["notes"]) == (["baseline", "paper:fig3"], "lr too high?\nrerun at 0.02")

    # The run page edits the run's own.
    rid = sweep["run_ids"][0]
    page.goto(stack.login_url(f"#/run/{rid}"))
    page.click('[data-annotations] [data-action="edit-notes"]')
    page.fill('[data-annotations] [data-input="tags"]', "odd one")
    page.fill('[data-annotations] [data-input="notes"]', "diverged at epoch 3")
    page.click('[data-annotations] [data-action="save-notes"]')
    page.wait_for_selector('[data-annotations] [data-tag="odd one"]')
    assert stack.api("GET", f"/runs/{rid}").json()["notes"] == "diverged at epoch 3"

    # Tables show them, and their exports keep them.
    page.goto(stack.login_url("#/sweeps"))
    row = page.wait_for_selector(f'[data-table="sweeps"] tr[data-id="{sweep["id"]}"]')
    assert row.query_selector('[data-tag="baseline"]') and row.query_selector("[data-notes]")
    page.goto(stack.login_url(f"#/runs?sweep={sweep['id']}"))
    page.wait_for_selector(f'[data-table="runs"] tr[data-id="{rid}"] [data-tag="odd one"]')
    with page.expect_download() as dl:
        page.click('[data-table="runs"] [data-export="json"]')
    rows = {r["key"]: r for r in json.loads(Path(dl.value.path()).read_text())}
    mine = next(r for r in rows.values() if r["notes"])
    assert (mine["tags"], mine["notes"]) == ("odd one", "diverged at epoch 3")

    # A viewer reads them but has no editor.
    viewer = stack.api("POST", "/tokens", json={"name": "reader", "role": "viewer"}).json()
    other = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        p2 = other.new_page()
        p2.goto(f"{stack.base}/?token={viewer['token']}#/sweep/{sweep['id']}")
        p2.wait_for_selector('[data-annotations] [data-tag="paper:fig3"]')
        assert p2.locator('[data-action="edit-notes"]').count() == 0
    finally:
        other.close()


def test_lists_filter_on_the_server_with_filters_in_the_url(page: Any, stack: Stack) -> None:
    ids = {}
    for name in ("daily-filter-keep", "daily-filter-drop"):
        sweep = stack.api("POST", "/sweeps", json={"spec": {**_spec(), "name": name}}).json()
        assert stack.api("POST", f"/sweeps/{sweep['id']}/cancel").status_code == 200
        ids[name] = sweep
    keep = ids["daily-filter-keep"]
    stack.api("PATCH", f"/sweeps/{keep['id']}", json={"tags": ["keeper"]})
    stack.api("PATCH", f"/runs/{keep['run_ids'][0]}", json={"notes": "look at this one"})

    # Sweeps: the tag typed in the bar filters on the server and goes into the URL.
    page.goto(stack.login_url("#/sweeps"))
    page.wait_for_selector('[data-table="sweeps"] tbody tr[data-id]')
    with page.expect_request(lambda r: "/api/v1/sweeps?" in r.url and "tag=keeper" in r.url):
        page.fill('[data-filter="tag"]', "keeper")
        page.press('[data-filter="tag"]', "Enter")
    wait_until(lambda: page.evaluate("""() => [...document.querySelectorAll(
        '[data-table="sweeps"] tbody tr[data-id]')].map((t) => t.dataset.id)""") == [keep["id"]],
        10, "only the tagged sweep")
    assert "tag=keeper" in page.url

    # Runs: a bookmarked URL with filters shows them filled in and filtered.
    page.goto(stack.login_url("#/runs?q=LOOK%20at&status=cancelled"))
    page.wait_for_selector('[data-table="runs"] tbody tr')
    wait_until(lambda: page.evaluate("""() => [...document.querySelectorAll(
        '[data-table="runs"] tbody tr[data-id]')].map((t) => t.dataset.id)""")
        == [keep["run_ids"][0]], 10, "only the run with the note")
    assert page.input_value('[data-filter="q"]') == "LOOK at"
    assert page.input_value('[data-filter="status"]') == "cancelled"
    # A metric range goes to the API as such.
    page.select_option('[data-filter="metric"]', "robust_accuracy")
    with page.expect_request(lambda r: "/api/v1/runs?" in r.url and "metric=robust_accuracy" in r.url
                             and "min=0.5" in r.url):
        page.fill('[data-filter="min"]', "0.5")
        page.press('[data-filter="min"]', "Enter")
    page.wait_for_selector('[data-table="runs"] td.empty')
    assert "min=0.5" in page.url and "metric=robust_accuracy" in page.url


ROW_IDS_JS = """(sel) => [...document.querySelectorAll(sel + ' tbody tr[data-id]')].map((t) => t.dataset.id)"""


def test_a_filtered_runs_list_saved_as_a_dashboard_and_its_share_link(page: Any, browser: Any,
                                                                      stack: Stack) -> None:
    sweeps = {}
    for name in ("daily-save-a", "daily-save-b", "daily-save-other"):
        sweep = stack.api("POST", "/sweeps", json={"spec": {**_spec(), "name": name}}).json()
        assert stack.api("POST", f"/sweeps/{sweep['id']}/cancel").status_code == 200
        sweeps[name] = sweep
    # One run of each of two sweeps carries the tag; the third sweep has none.
    picked = {sweeps[n]["run_ids"][1]: sweeps[n]["id"] for n in ("daily-save-a", "daily-save-b")}
    for rid in picked:
        assert stack.api("PATCH", f"/runs/{rid}", json={"tags": ["saveme"]}).status_code == 200

    page.goto(stack.login_url("#/runs?tag=saveme&status=cancelled"))
    wait_until(lambda: sorted(page.evaluate(ROW_IDS_JS, '[data-table="runs"]')) == sorted(picked),
               10, "the two tagged runs")
    page.click('[data-action="save-list"]')
    page.fill("#dashboard-name", "saved runs list")
    page.click('[data-action="save-dashboard"]')
    page.wait_for_selector("#share-link")
    link = page.input_value("#share-link")
    assert "/share/" in link and "saveme" not in link
    saved = next(d for d in stack.api("GET", "/dashboards").json()["items"]
                 if d["name"] == "saved runs list")
    assert saved["state"] == {"view": "runs", "filters": {"tag": "saveme", "status": "cancelled"}}
    assert sorted(saved["sweep_ids"]) == sorted(set(picked.values()))

    # Opening the dashboard shows the list with its filters applied.
    page.goto(stack.login_url("#/dashboards"))
    page.click(f'[data-open="{saved["id"]}"]')
    wait_until(lambda: sorted(page.evaluate(ROW_IDS_JS, '[data-table="runs"]')) == sorted(picked),
               10, "the saved list's runs")
    assert page.input_value('[data-filter="tag"]') == "saveme"
    assert page.input_value('[data-filter="status"]') == "cancelled"

    # The share link, in a fresh browser without a login, lists the same runs (per sweep, read-only).
    fresh = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        other = fresh.new_page()
        other.goto(link)
        other.wait_for_selector(".share-title")
        wait_until(lambda: sorted(other.evaluate(ROW_IDS_JS, "[data-share-sweep]")) == sorted(picked),
                   20, "the shared runs")
        shown = other.evaluate("""() => [...document.querySelectorAll('[data-share-sweep]')]
            .map((s) => [s.dataset.shareSweep, [...s.querySelectorAll('tbody tr[data-id]')].map((t) => t.dataset.id)])""")
        assert {sid: rows for sid, rows in shown} == {sid: [rid] for rid, sid in picked.items()}
        assert other.locator('[data-action="save-list"], [data-action="cancel"], [data-filters]').count() == 0
        assert other.evaluate("localStorage.getItem('tscnc.token')") is None
    finally:
        fresh.close()

    # The sweeps list saves its filters too.
    stack.api("PATCH", f"/sweeps/{sweeps['daily-save-other']['id']}", json={"tags": ["lonely"]})
    page.goto(stack.login_url("#/sweeps?tag=lonely"))
    wait_until(lambda: page.evaluate(ROW_IDS_JS, '[data-table="sweeps"]')
               == [sweeps["daily-save-other"]["id"]], 10, "the tagged sweep")
    page.click('[data-action="save-list"]')
    page.fill("#dashboard-name", "saved sweeps list")
    page.click('[data-action="save-dashboard"]')
    page.wait_for_selector("#share-link")
    link = page.input_value("#share-link")
    saved = next(d for d in stack.api("GET", "/dashboards").json()["items"]
                 if d["name"] == "saved sweeps list")
    assert (saved["state"], saved["sweep_ids"]) == (
        {"view": "sweeps", "filters": {"tag": "lonely"}}, [sweeps["daily-save-other"]["id"]])
    fresh = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        other = fresh.new_page()
        other.goto(link)
        assert "tag=lonely" in other.wait_for_selector("[data-saved-filters]").inner_text()
        other.wait_for_selector(".share-sweep .sweep-panel")
        assert other.locator(".share-sweep").count() == 1
        assert "daily-save-other" in other.locator(".share-sweep").inner_text()
    finally:
        fresh.close()

    # A filter that matches runs of more sweeps than a dashboard holds (50) keeps the first 50
    # and says so; exactly 50 is not "more". (Rows of n sweeps, 3 runs each, served 40 a page.)
    got = page.evaluate("""async () => {
        const d = await import('/js/views/dashboards.js');
        const lister = (n) => async ({ limit, cursor }) => {
            const rows = [...Array(3 * n).keys()].map((i) => ({ sweep_id: `s${Math.floor(i / 3)}` }));
            const at = Number(cursor || 0), end = at + Math.min(limit, 40);
            return { items: rows.slice(at, end), total: rows.length, next: end < rows.length ? String(end) : null };
        };
        const sweepOf = (r) => r.sweep_id;
        const area = document.createElement('div');
        document.body.append(area);
        await d.saveListDialog(area, { view: 'runs', filters: { tag: 'x' }, params: {}, list: lister(60), sweepOf });
        return { over: await d.sweepsOfList(lister(60), {}, sweepOf), exact: await d.sweepsOfList(lister(50), {}, sweepOf),
                 note: area.textContent, truncated: 'truncated' in area.querySelector('#share-dialog').dataset };
    }""")
    first50 = [f"s{i}" for i in range(50)]
    assert got["over"] == {"sweepIds": first50, "more": True}
    assert got["exact"] == {"sweepIds": first50, "more": False}
    assert got["truncated"] and "at most 50 sweeps" in got["note"]


def test_run_diff_shows_the_fields_that_differ_next_to_results(page: Any, stack: Stack) -> None:
    a = stack.api("POST", "/sweeps", json={"spec": {**_spec(), "name": "daily-diff-a"}}).json()
    other = {**_spec(), "name": "daily-diff-b",
             "training": {**_spec()["training"], "lr": 0.02}}
    b = stack.api("POST", "/sweeps", json={"spec": other}).json()
    for s in (a, b):
        assert stack.api("POST", f"/sweeps/{s['id']}/cancel").status_code == 200
    runs = {r["id"]: r for s in (a, b)
            for r in stack.api("GET", "/runs", params={"sweep": s["id"]}).json()["items"]}
    a05 = next(r for r in runs.values() if r["sweep_id"] == a["id"] and r["sparsity"] == 0.5)
    a09 = next(r for r in runs.values() if r["sweep_id"] == a["id"] and r["sparsity"] == 0.9)
    b05 = next(r for r in runs.values() if r["sweep_id"] == b["id"] and r["sparsity"] == 0.5)

    # From the runs table: select three, press Diff selected.
    page.goto(stack.login_url("#/runs?q=daily-diff"))
    page.wait_for_selector(f'[data-table="runs"] tr[data-id="{b05["id"]}"]')
    for r in (a05, a09, b05):
        page.check(f'[data-table="runs"] [data-select="{r["id"]}"]')
    page.click('[data-action="diff-selected"]')
    page.wait_for_selector("#diff-spec")
    paths = page.evaluate("() => [...document.querySelectorAll('#diff-spec tr[data-path]')]"
                          ".map((t) => t.dataset.path)")
    assert set(paths) == {"sparsity", "name", "training.lr"}, paths
    lr = page.evaluate("""() => [...document.querySelectorAll('#diff-spec tr[data-path="training.lr"] td')]
        .slice(1).map((t) => t.textContent)""")
    order = page.evaluate("() => [...document.querySelectorAll('#diff-spec thead th a')]"
                          ".map((a) => a.getAttribute('href'))")
    a_lr = stack.api("GET", f"/sweeps/{a['id']}").json()["spec"]["training"]["lr"]
    assert a_lr != 0.02
    want = {f"#/run/{r['id']}": str(r_lr) for r, r_lr in ((a05, a_lr), (a09, a_lr), (b05, 0.02))}
    assert [want[o] for o in order] == lr
    assert page.locator('#diff-results [data-result="status"] [data-status="cancelled"]').count() == 3
    # The sweep view diffs the runs ticked in its list.
    page.goto(stack.login_url(f"#/sweep/{a['id']}"))
    for r in (a05, a09):
        page.check(f'#sweep-runs [data-select="{r["id"]}"]')
    page.click('[data-action="diff"]')
    page.wait_for_selector('#diff-spec tr[data-path="sparsity"]')
    assert page.locator("#diff-spec tr[data-path]").count() == 1
    page.go_back()
    page.go_forward()
    page.wait_for_selector('#diff-spec tr[data-path="sparsity"]')
    page.goto(stack.login_url("#/diff?runs=" + ",".join(r["id"] for r in (a05, a09, b05))))
    page.wait_for_selector("#diff-spec")
    # All fields on demand, the differing ones marked.
    page.check("#diff-all")
    wait_until(lambda: page.locator('#diff-spec tr[data-path="model.width"]').count() == 1, 5,
               "all fields", interval=0.05)
    assert page.locator("#diff-spec tr.differs").count() == 3
    assert "all=1" in page.url


def test_dark_mode_shortcuts_and_chart_data_tables(page: Any, browser: Any, stack: Stack) -> None:
    small = {**_spec(), "name": "daily-a11y", "dataset": {"name": "digits", "train_subset": 300},
             "training": {**_spec()["training"], "pretrain_epochs": 2}}
    sweep = stack.api("POST", "/sweeps", json={"spec": small}).json()
    finish_all(stack, sweep["id"])
    results = {r["run_id"]: r for r in stack.api("GET", f"/sweeps/{sweep['id']}/results")
               .json()["items"]}

    # A chart's data as a table, on demand: the same numbers as the API's results.
    page.goto(stack.login_url(f"#/sweep/{sweep['id']}"))
    wait_until(lambda: page.evaluate("() => document.getElementById('chart-clean')?.data?.length")
               , 30, "the clean chart")
    page.click('.chart-card:has(#chart-clean) [data-export="table"]')
    table = page.locator('[data-table-of="chart-clean"] table')
    heads = table.locator("th").all_inner_texts()
    got = {row[heads.index("run")]: float(row[heads.index("clean_accuracy")]) for row in
           (r.locator("td").all_inner_texts() for r in table.locator("tbody tr").all())}
    assert got == pytest.approx({rid: r["clean_accuracy"] for rid, r in results.items()}, abs=1e-5)
    assert page.get_attribute("#chart-clean", "role") == "img"

    # The light page turns dark with the browser's preference, charts included.
    light = page.evaluate("() => document.getElementById('chart-clean')._fullLayout.paper_bgcolor")
    page.emulate_media(color_scheme="dark")
    wait_until(lambda: page.evaluate(
        "() => document.getElementById('chart-clean')._fullLayout.paper_bgcolor") != light,
        10, "the chart in dark colours")
    bg = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert bg != "rgb(245, 246, 248)" and sum(int(x) for x in re.findall(r"\d+", bg)[:3]) < 150, bg

    # Keyboard: g r opens the runs, / focuses the search, ? shows the help.
    page.keyboard.press("g")
    page.keyboard.press("r")
    page.wait_for_selector('[data-table="runs"]')
    assert page.url.endswith("#/runs")
    page.keyboard.press("/")
    assert page.evaluate("() => document.activeElement.dataset.filter") == "q"
    page.evaluate("() => document.activeElement.blur()")
    page.keyboard.press("?")
    assert "g" in page.inner_text("#kbd-help") and "Runs" in page.inner_text("#kbd-help")
    page.keyboard.press("Escape")
    assert page.locator("#kbd-help").count() == 0
    page.keyboard.press("g")
    page.keyboard.press("s")
    page.wait_for_selector('[data-table="sweeps"]')


def test_a_run_asked_to_stop_shows_no_second_cancel_button(page: Any, stack: Stack) -> None:
    from backend.store import Store
    from tscnc.records import RunStatus

    # On the gpu queue, which no test worker reads: its runs stay where the test puts them.
    spec = {**_spec(), "name": "daily-stopping", "training": {**_spec()["training"], "device": "cuda"}}
    r = stack.api("POST", "/sweeps", json={"spec": spec})
    assert r.status_code == 201, r.text
    sweep = r.json()
    rid = sweep["run_ids"][0]
    store = Store.from_url(stack.redis_url)
    try:
        # "Running" on the live test worker (so no lost-worker check re-queues it meanwhile).
        live_worker = stack.api("GET", "/queue").json()["workers"][0]["name"]
        assert store.set_status(rid, RunStatus.running, worker=live_worker, device="cuda:0")
        store.request_cancel(rid)
        for route, row in ((f"#/sweep/{sweep['id']}", f'#sweep-runs tr[data-id="{rid}"]'),
                           (f"#/runs?sweep={sweep['id']}", f'[data-table="runs"] tr[data-id="{rid}"]')):
            page.goto(stack.login_url(route))
            page.wait_for_selector(f"{row} [data-stopping]")
            assert page.locator(f'{row} [data-action="cancel"]').count() == 0
        page.goto(stack.login_url(f"#/run/{rid}"))
        page.wait_for_selector(".run-info .notice")
        assert page.locator('.actions [data-action="cancel"]').count() == 0
    finally:
        stack.api("POST", f"/sweeps/{sweep['id']}/cancel")
        store.set_status(rid, RunStatus.cancelled)
        store.close()
