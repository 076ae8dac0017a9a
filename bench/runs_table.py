"""How fast the dashboard's runs table shows its first page with 10,000 runs in Redis.

Starts a private redis-server and the API (uvicorn), stores 10 sweeps × 1,000 runs through
the data layer (``backend.store``; a third of them finished with metrics, some running or
failed), then opens the dashboard in Chromium (Playwright, Debian's /usr/bin/chromium) and
measures, inside the page with ``performance.now()``:

* cold: page load (including Plotly.js) until the runs table shows its first 50 rows;
* warm: switching to the runs view in the open page until its first 50 rows are rendered;
* next page, and a filter (status=succeeded, method=tscnc) until their rows are rendered;
* the API alone: ``GET /api/v1/runs?limit=50`` from Python (httpx).

Prints the figures; never fails on time. Usage::

    .venv/bin/python bench/runs_table.py [--runs 10000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.store import Store  # noqa: E402
from bench.store_fill import METHODS, bench_spec, populate  # noqa: E402
from tests.support.services import start_redis, start_uvicorn, stop_process  # noqa: E402

TOKEN = "bench-admin-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE = 50

# Resolves when the runs table of the current view shows `n` rows and is not loading.
ROWS_JS = """(n) => new Promise((resolve) => {
  const check = () => {
    const t = document.querySelector('[data-table="runs"]');
    if (t && !t.classList.contains('loading') && t.querySelectorAll('tbody tr[data-id]').length >= n) resolve();
    else requestAnimationFrame(check);
  };
  check();
})"""
GO_JS = """async ([hash, n]) => {
  const t0 = performance.now();
  location.hash = hash;
  await (ROWS)(n);
  return performance.now() - t0;
}""".replace("ROWS", ROWS_JS)
NEXT_JS = """async (n) => {
  const first = document.querySelector('[data-table="runs"] tbody tr[data-id]').dataset.id;
  const t0 = performance.now();
  document.querySelector('[data-table="runs"] [data-page="next"]').click();
  await new Promise((resolve) => {
    const check = () => {
      const row = document.querySelector('[data-table="runs"] tbody tr[data-id]');
      const t = document.querySelector('[data-table="runs"]');
      if (row && row.dataset.id !== first && !t.classList.contains('loading')) resolve();
      else requestAnimationFrame(check);
    };
    check();
  });
  return performance.now() - t0;
}"""


def fill(store: Store, runs: int) -> float:
    """Store `runs` runs (sweeps of up to 1,000) with a mix of statuses and metrics."""
    t0 = time.perf_counter()
    per_sweep = 1000
    n_sweeps = max(1, runs // per_sweep)
    seeds = per_sweep // (len(METHODS) * 50)
    owner, _ = store.create_token("bench", "admin", secret=TOKEN)
    for s in range(n_sweeps):
        sweep, _ = store.create_sweep(bench_spec(f"bench-{s}", 50, seeds), owner.id,
                                      owner_name="bench")
        populate(store, sweep.run_ids, release=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="tscnc-bench-") as tmp:
        redis_url, redis_proc = start_redis(Path(tmp) / "redis")
        base, api_proc = start_uvicorn("backend.app:create_app", {
            "REDIS_URL": redis_url, "TSCNC_BOOTSTRAP_TOKEN": TOKEN,
            "TSCNC_ARTIFACTS_DIR": str(Path(tmp) / "artifacts")}, factory=True)
        try:
            store = Store.from_url(redis_url)
            seconds = fill(store, args.runs)
            total = httpx.get(f"{base}/api/v1/runs?limit=1",
                              headers={"Authorization": f"Bearer {TOKEN}"}).json()["total"]
            print(f"stored {total} runs in {seconds:.1f} s (redis {redis_url})")

            api_ms = []
            with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as c:
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    c.get(f"{base}/api/v1/runs", params={"limit": PAGE}).raise_for_status()
                    api_ms.append(1000 * (time.perf_counter() - t0))

            cold, warm, nxt, filt = [], [], [], []
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                for _ in range(args.repeat):
                    ctx = browser.new_context(viewport={"width": 1500, "height": 1000})
                    page = ctx.new_page()
                    page.goto(f"{base}/?token={TOKEN}#/runs")
                    page.evaluate(ROWS_JS, PAGE)
                    cold.append(page.evaluate("performance.now()"))
                    page.evaluate("location.hash = '#/sweeps'")
                    page.wait_for_selector('[data-table="sweeps"] tbody tr[data-id]')
                    warm.append(page.evaluate(GO_JS, ["#/runs", PAGE]))
                    nxt.append(page.evaluate(NEXT_JS, PAGE))
                    page.evaluate("location.hash = '#/sweeps'")
                    page.wait_for_selector('[data-table="sweeps"] tbody tr[data-id]')
                    filt.append(page.evaluate(GO_JS, ["#/runs?status=succeeded&method=tscnc", PAGE]))
                    ctx.close()
                browser.close()
        finally:
            stop_process(api_proc)
            stop_process(redis_proc)

    def line(name: str, xs: list[float]) -> str:
        return (f"  {name:<44} median {statistics.median(xs):7.1f} ms   "
                f"min {min(xs):7.1f}   max {max(xs):7.1f}")

    print(f"runs table, first page of {PAGE} rows, {total} runs in Redis, {args.repeat} repeats:")
    print(line("API GET /runs?limit=50 (httpx)", api_ms))
    print(line("cold: page load until first page rendered", cold))
    print(line("warm: switch to runs view until rendered", warm))
    print(line("next page rendered", nxt))
    print(line("filter status+method, first page rendered", filt))


if __name__ == "__main__":
    main()
