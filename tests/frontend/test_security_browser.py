"""Issue 14 in the browser (items 2 and 9), against the real stack (redis-server, uvicorn with
its access log on, a Celery worker) in Chromium:

* a session that watches a sweep and a run live, downloads the results CSV and a checkpoint
  sends its token only in headers: no request URL carries it, the event streams carry it in
  ``Authorization`` and resume with ``Last-Event-ID``, and no line of the API's log holds it;
* every page carries a Content-Security-Policy and runs under it without a violation (the
  dashboard with its charts, and the API docs page, whose Swagger UI comes from the installed
  package, never from a CDN);
* a share link downloads checkpoints only when its creator allowed it, and its page sends
  the share token to the API in the header only (the page's own URL is the link).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.services import process_output
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow
Stack = Any  # the `stack` fixture of conftest.py

SPEC = {"name": "no-token-in-urls", "model": {"width": 16},
        "training": {"pretrain_epochs": 2, "prune_epochs": 1, "finetune_epochs": 1,
                     "batch_size": 64, "monitor_examples": 50},
        "methods": ["dense", "tscnc"], "sparsities": [0.5],
        "evaluation": {"examples": 50, "attacks": ["fgsm"], "security_curve": [0, 1]}}
# Collects CSP violations the page reports (script, style, image, connection...).
CSP_WATCH = """window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));"""


def finished(stack: Stack, sweep_id: str) -> bool:
    return stack.api("GET", f"/sweeps/{sweep_id}").json()["status"] in (
        "succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def sweep(stack: Stack) -> dict[str, Any]:
    """A small sweep submitted once for this module (the first test watches it run)."""
    resp = stack.api("POST", "/sweeps", json={"preset": "digits-quick", "spec": SPEC})
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


# Read a run's event stream with js/sse.js EventStream until it is closed for good; resolves
# to the ids received and the status that ended it.
READ_STREAM_JS = """async ([url, token, after]) => {
  const { EventStream } = await import('/js/sse.js');
  const { EVENT_TYPES } = await import('/js/live.js');
  return await new Promise((resolve) => {
    const ids = [];
    const s = new EventStream(url, { headers: () => ({ Authorization: `Bearer ${token}` }), retryMs: 100 });
    if (after) s.lastEventId = after;
    for (const t of EVENT_TYPES) s.addEventListener(t, (m) => ids.push(m.lastEventId));
    s.onerror = (e) => { if (s.readyState === s.CLOSED) resolve({ ids, status: e.status }); };
  });
}"""


def test_a_browser_session_keeps_the_token_out_of_urls_and_logs(page: Any, stack: Stack,
                                                                 sweep: dict[str, Any]) -> None:
    requests: list[Any] = []
    page.on("request", lambda r: requests.append(r))
    page.add_init_script(CSP_WATCH)

    # Log in through the form, then watch the sweep fill in live until it ends.
    page.goto(f"{stack.base}/#/sweep/{sweep['id']}")
    page.fill("#token", stack.token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector(".sweep-panel")
    page.wait_for_selector('.live-state[data-state="closed"]', timeout=120_000)
    assert finished(stack, sweep["id"])

    with page.expect_download() as dl:
        page.click('[data-action="results-csv"]')
    api_csv = stack.api("GET", f"/sweeps/{sweep['id']}/results", params={"format": "csv"})
    assert Path(dl.value.path()).read_bytes() == api_csv.content
    assert dl.value.suggested_filename == "no-token-in-urls-results.csv"
    # Plotly loads with the first chart drawn: export once the chart is there.
    page.wait_for_function("() => !!document.getElementById('chart-clean')?.data")
    with page.expect_download() as dl:      # PNG export (canvas, data: images) under the CSP
        page.click('.chart-card:has(#chart-clean) [data-export="png"]')
    assert Path(dl.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    run_id = sweep["run_ids"][0]
    page.goto(f"{stack.base}/#/run/{run_id}")
    page.wait_for_selector("#evaluation table")
    page.wait_for_selector('.live-state[data-state="closed"]')
    page.wait_for_selector("#checkpoint")
    with page.expect_download() as dl:
        page.click("#checkpoint")
    api_ckpt = stack.api("GET", f"/runs/{run_id}/checkpoint")
    assert api_ckpt.status_code == 200
    assert Path(dl.value.path()).read_bytes() == api_ckpt.content
    assert page.evaluate("window.__csp") == []

    # No request URL of the session carried the token; the event streams sent it as a header.
    assert requests, "no request recorded"
    leaked = [r.url for r in requests if stack.token in r.url or "token=" in r.url]
    assert leaked == []
    streams = [r for r in requests if r.url.endswith("/events")]
    assert {r.url.rsplit("/", 2)[-2] for r in streams} >= {sweep["id"], run_id}
    auth = [r.all_headers() for r in streams]
    assert all(h.get("authorization") == f"Bearer {stack.token}" for h in auth), auth

    # The stream reader: every event once, in order; a stream that ends is asked again with
    # Last-Event-ID (204: finished, closed for good); a reader that starts after an id
    # receives exactly what follows it.
    url = f"{stack.base}/api/v1/runs/{run_id}/events"
    page_ids = [e["id"] for e in httpx.get(url, params={"limit": 1000}, timeout=10, headers={
        **stack.headers, "Accept": "application/json"}).json()["items"]]
    assert len(page_ids) > 5
    requests.clear()
    whole = page.evaluate(READ_STREAM_JS, [url, stack.token, None])
    assert whole == {"ids": page_ids, "status": 204}
    sent = [r.all_headers() for r in requests if r.url == url]
    assert [h.get("last-event-id") for h in sent] == [None, page_ids[-1]]
    tail = page.evaluate(READ_STREAM_JS, [url, stack.token, page_ids[2]])
    assert tail == {"ids": page_ids[3:], "status": 204}

    # The printed login URL: the page moves the token into storage before any API request.
    requests.clear()
    page.goto(stack.login_url("#/queue"))
    page.wait_for_selector("#workers")
    assert "token=" not in page.url
    carrying = [r.url for r in requests if stack.token in r.url]
    assert carrying == [stack.login_url("#/queue").split("#")[0]], carrying

    # The API's log (access log on, level info) never holds the token: the login URL's line
    # is there, redacted.
    log = process_output(stack.api_proc)
    assert log.count('"GET /api/v1/') > 10, log[-2000:]
    assert stack.token not in log
    assert "GET /?token=[redacted]" in log


def test_every_page_has_a_csp_and_runs_under_it(page: Any, stack: Stack) -> None:
    for path in ("/", "/api/v1/docs", "/share/x", "/js/main.js", "/api/v1/health"):
        r = httpx.get(stack.base + path, timeout=10)
        policy = dict(d.strip().split(" ", 1) for d in
                      r.headers.get("content-security-policy", "").split(";") if d.strip())
        assert policy.get("script-src") == "'self'", (path, policy)
        assert policy.get("default-src") == "'self'" and policy.get("object-src") == "'none'"
    offsite: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(stack.base) else offsite.append(r.url))
    page.add_init_script(CSP_WATCH)
    # The API docs: Swagger UI from the installed package renders the published document.
    page.goto(stack.base + "/api/v1/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert "TSCNC job service" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-tag")
    assert page.evaluate("window.__csp") == []
    # An inline script is refused on our pages (the policy is enforced, not just sent).
    page.goto(stack.base + "/")
    page.wait_for_selector("#login-form")
    ran = page.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.__inline = 1'; document.head.append(s);
        return window.__inline === 1; }""")
    assert ran is False
    assert any("script-src" in v for v in page.evaluate("window.__csp"))
    assert offsite == []


def test_share_link_downloads_checkpoints_only_when_allowed(browser: Any, stack: Stack,
                                                            sweep: dict[str, Any]) -> None:
    wait_until(lambda: finished(stack, sweep["id"]), 120, "the sweep to finish")
    run = stack.api("GET", f"/runs/{sweep['run_ids'][0]}").json()
    assert run["has_checkpoint"], run
    links = {}
    for allowed in (False, True):
        d = stack.api("POST", "/dashboards", json={
            "name": f"checkpoints {allowed}", "sweep_ids": [run["sweep_id"]],
            "allow_checkpoints": allowed})
        assert d.status_code == 201, d.text
        links[allowed] = stack.base + d.json()["share_url"]
    ctx = browser.new_context(accept_downloads=True)
    try:
        pg = ctx.new_page()
        api_urls: list[str] = []
        pg.on("request", lambda r: api_urls.append(r.url) if "/api/" in r.url else None)
        pg.goto(f"{links[False]}#/run/{run['id']}")
        pg.wait_for_selector("#evaluation table")
        assert pg.locator("#checkpoint").count() == 0
        pg.goto(f"{links[True]}#/run/{run['id']}")
        pg.wait_for_selector("#checkpoint")
        with pg.expect_download() as dl:
            pg.click("#checkpoint")
        assert Path(dl.value.path()).stat().st_size > 0
        share_tokens = [link.rsplit("/", 1)[-1] for link in links.values()]
        assert any(u.endswith("/api/v1/share") for u in api_urls), api_urls
        assert [u for u in api_urls if any(t in u for t in share_tokens)] == []
    finally:
        ctx.close()
