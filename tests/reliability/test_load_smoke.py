"""Issue 6.6 — bench/load.py runs end to end with tiny numbers (so the script cannot rot): it
starts its own services, reports every figure, loses no event, gets no error, and stops by
itself. The real figures come from the full run recorded in docs/benchmarks.md ("Load")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.services import REPO_ROOT


def test_load_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, "bench/load.py", "--runs", "400", "--list-requests", "5",
         "--clients", "1,120", "--events", "3", "--event-interval", "0.05",
         "--submitters", "2", "--submit-seconds", "1", "--max-seconds", "90",
         "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["submit"]["accepted"] > 0 and res["submit"]["error_count"] == 0
    assert res["list"]["total"] >= 400 and res["list"]["error_count"] == 0
    for variant in ("newest 50", "status=succeeded", "one sweep", "sort=clean_accuracy",
                    "next page"):
        assert res["list"][variant]["n"] == 5 and res["list"][variant]["p95"] > 0
    # 120 clients on one run: more than redis-py's default pool of 100 connections, which
    # refused clients (503) while each held its own blocking read; one shared reader now.
    assert [e["clients"] for e in res["events"]] == [1, 120]
    for e in res["events"]:
        assert e["connected"] == e["clients"] and e["lost"] == 0 and e["error_count"] == 0
        assert e["delay_ms"]["n"] == 3 * e["clients"]
        assert e["redis_blocked_readers"] <= 2, e
    assert "sweeps accepted" in proc.stdout and "Event delay" in proc.stdout


def test_load_bench_with_two_api_processes(tmp_path: Path) -> None:
    """``--workers 2``: the API runs as two processes sharing the port (as ``tscnc serve
    --workers 2``); every list variant answers, no event is lost, and each process reads the
    run's stream for its own clients."""
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, "bench/load.py", "--runs", "400", "--list-requests", "2",
         "--clients", "40", "--events", "3", "--event-interval", "0.05", "--workers", "2",
         "--submitters", "2", "--submit-seconds", "1", "--max-seconds", "90",
         "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["list"]["error_count"] == 0 and res["args"]["workers"] == "2"
    assert res["list"]["text q=note (a word)"]["n"] == 2
    assert res["list"]["sweeps status=running"]["n"] == 2
    (e,) = res["events"]
    assert e["connected"] == 40 and e["lost"] == 0 and e["error_count"] == 0
    assert e["redis_blocked_readers"] <= 4, e
    assert "2 uvicorn process(es)" in proc.stdout


def test_sse_cpu_bench_smoke() -> None:
    """bench/sse_cpu.py (the API's CPU time per event per SSE client, in lockstep) runs end to
    end with tiny numbers: every client gets every event, and the figure is reported."""
    proc = subprocess.run(
        [sys.executable, "bench/sse_cpu.py", "--clients", "5", "--events", "3",
         "--timeout", "600"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (row,) = [line for line in proc.stdout.splitlines() if line.startswith("| this checkout")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["5", "3"] and float(cells[4]) > 0 and cells[6] == "0", row
