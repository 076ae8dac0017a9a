"""Issue 14.3 — ``tscnc up`` owns its processes.

Real launcher processes (``tscnc up`` in a temporary working directory, so its data directory
``.tscnc/`` is private to the test), real signals. Before each signal the test records every
descendant of the launcher from ``/proc`` (redis-server, the Celery worker and its pool child,
the API); after it, none of them may be left running, whatever the signal:

- SIGKILL (nothing can be cleaned up by the launcher itself): the kernel's parent-death signal
  ends every child; a new ``tscnc up`` on the same directory then starts normally and finds
  the data of the first (the embedded Redis' AOF: the same admin token still logs in);
- SIGTERM and SIGINT: a graceful stop like Ctrl-C (exit 0, "stopping...", no traceback);
- two ``tscnc up`` on one directory: the second exits at once naming the first's pid.

The embedded Redis listens on 127.0.0.1 only and refuses clients without its password.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from backend.launcher import free_port
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "launcher-test-token-0123456789abcdef"


def _ppid_and_state(pid: int) -> tuple[int, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[0]


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = _ppid_and_state(int(entry))
            if info is not None:
                children.setdefault(info[0], []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def alive(pids: set[int]) -> set[int]:
    """The pids of ``pids`` still running (a zombie waiting for its reaper has ended)."""
    out = set()
    for pid in pids:
        info = _ppid_and_state(pid)
        if info is not None and info[1] != "Z":
            out.add(pid)
    return out


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def commands(pids: set[int]) -> str:
    """The command lines of ``pids``, joined by " | "."""
    return " | ".join(command(p) for p in pids)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Launcher:
    """One ``tscnc up`` in ``workdir`` on a free port, its output in ``workdir/up-N.log``."""

    def __init__(self, workdir: Path, port: int | None = None,
                 sigint_ignored: bool = False) -> None:
        self.port = port or free_port()
        # N counts the launchers of this directory (no count shared between tests).
        self.log = workdir / f"up-{len(list(workdir.glob('up-*.log'))) + 1}.log"
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(TSCNC_BOOTSTRAP_TOKEN=TOKEN, PYTHONPATH=str(ROOT),
                   PYTHONUNBUFFERED="1")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tscnc", "up", "--port", str(self.port)], cwd=workdir,
                env=env, stdout=out, stderr=subprocess.STDOUT,
                # As a background job of a non-interactive shell starts it (`tscnc up &`).
                preexec_fn=_ignore_sigint if sigint_ignored else None)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def api(self, method: str, path: str, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}", **kw.pop("headers", {})}  # type: ignore
        return httpx.request(method, f"http://127.0.0.1:{self.port}/api/v1{path}",
                             headers=headers, timeout=10, **kw)  # type: ignore[arg-type]

    def submit_long_run(self, timeout: float = 120) -> str:
        """Submit one long dense run (tiny MLP, 500 pretrain epochs) and wait until it has
        trained an epoch; returns its id."""
        r = self.api("POST", "/sweeps", json={"spec": {
            "methods": ["dense"], "model": {"name": "mlp", "width": 8},
            "dataset": {"name": "digits", "train_subset": 200},
            "training": {"pretrain_epochs": 500, "device": "cpu", "monitor_examples": 20},
            "adversarial": {"steps": 1}}})
        assert r.status_code == 201, r.text
        run_id = r.json()["run_ids"][0]
        wait_until(lambda: self.api("GET", f"/runs/{run_id}").json(), timeout,
                   f"run {run_id} to train an epoch",
                   done=lambda run: run["status"] == "running" and (run.get("epoch") or 0) >= 1,
                   interval=0.2, show=lambda run: f"{run}\n{self.output()}")
        return run_id

    def wait_up(self, timeout: float = 120) -> set[int]:
        """Wait for the banner and a healthy API; return the children it started."""
        deadline = time.monotonic() + timeout

        def running() -> None:
            assert self.proc.poll() is None, f"tscnc up exited early:\n{self.output()}"
        wait_until(self.output, timeout, "the 'TSCNC is up' banner",
                   done=lambda out: "TSCNC is up" in out, interval=0.2, check=running, show=str)
        r = httpx.get(f"http://127.0.0.1:{self.port}/api/v1/me",
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert r.status_code == 200, r.text
        # The pool child of the Celery worker appears shortly after the worker is ready.
        kids = wait_until(lambda: descendants(self.proc.pid),
                          max(1.0, deadline - time.monotonic()), "the Celery pool process",
                          done=lambda ks: commands(ks).count("celery") >= 2, interval=0.2,
                          show=commands)
        names = commands(kids)
        assert "redis-server" in names and names.count("celery") >= 2 and "backend" in names, \
            names
        return kids


def assert_all_end(kids: set[int], timeout: float = 30) -> None:
    wait_until(lambda: alive(kids), timeout, "every process to end", done=lambda left: not left,
               show=lambda left: "still running: " + "; ".join(f"{p}: {command(p)}"
                                                               for p in left))


def redis_port(kids: set[int]) -> int:
    for p in kids:
        # redis-server shows itself as "redis-server 127.0.0.1:<port>" once started
        m = re.search(r"redis-server (\S+):(\d+)", command(p))
        if m:
            assert m.group(1) == "127.0.0.1", command(p)  # loopback only
            return int(m.group(2))
    raise AssertionError("no redis-server among the children")


@pytest.fixture
def workdir(tmp_path: Path):
    launchers: list[Launcher] = []
    yield tmp_path, launchers
    for launcher in launchers:  # a failed assertion must not leave a stack behind
        if launcher.proc.poll() is None:
            launcher.proc.kill()
            launcher.proc.wait()


def test_sigkill_ends_every_child_and_the_same_directory_starts_again(workdir) -> None:
    tmp, launchers = workdir
    first = Launcher(tmp)
    launchers.append(first)
    kids = first.wait_up()
    # The embedded Redis: loopback only, and useless without the password.
    rport = redis_port(kids)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=rport, socket_timeout=5).ping()
    assert "requirepass" not in " ".join(command(p) for p in kids)  # not visible in ps
    assert (tmp / ".tscnc" / "lock").read_text().strip() == str(first.proc.pid)

    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    assert_all_end(kids)

    # The same data directory starts again (the lock died with its holder) with the same data.
    second = Launcher(tmp)
    launchers.append(second)
    kids2 = second.wait_up()
    assert not kids & kids2
    # SIGTERM while a stage runs: graceful, like Ctrl-C, and the run goes back to the queue.
    run_id = second.submit_long_run()
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(timeout=90) == 0, second.output()
    assert_all_end(kids2)
    out = second.output()
    assert "stopping..." in out and "Traceback" not in out, out

    third = Launcher(tmp)  # the run is there, re-queued, and resumes
    launchers.append(third)
    kids3 = third.wait_up()
    events = third.api("GET", f"/runs/{run_id}/events", params={"limit": 1000},
                       headers={"Accept": "application/json"}).json()["items"]
    statuses = [(e["event"]["status"], e["event"].get("message") or "")
                for e in events if e["event"]["type"] == "status"]
    assert any(st == "queued" and "re-queued" in msg for st, msg in statuses), statuses
    assert third.api("GET", f"/runs/{run_id}").json()["status"] in ("queued", "running")
    third.proc.send_signal(signal.SIGTERM)
    assert third.proc.wait(timeout=90) == 0, third.output()
    assert_all_end(kids3)


def test_sigint_stops_gracefully_and_a_second_up_names_the_holder(workdir) -> None:
    tmp, launchers = workdir
    # Started with SIGINT ignored, as `tscnc up &` in a script is: SIGINT must still stop it.
    first = Launcher(tmp, sigint_ignored=True)
    launchers.append(first)
    kids = first.wait_up()

    rival = Launcher(tmp)
    launchers.append(rival)
    assert rival.proc.wait(timeout=60) != 0
    message = rival.output()
    assert f"pid {first.proc.pid}" in message and "in use" in message, message
    assert first.proc.poll() is None  # the holder is untouched

    first.proc.send_signal(signal.SIGINT)
    assert first.proc.wait(timeout=90) == 0, first.output()
    assert_all_end(kids)
    out = first.output()
    assert "stopping..." in out and "Traceback" not in out, out


def test_a_busy_port_is_refused_before_anything_starts(workdir) -> None:
    tmp, launchers = workdir
    with socket.socket() as holder:  # another server on the port the API should use
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        up = Launcher(tmp, port=port)
        launchers.append(up)
        assert up.proc.wait(timeout=60) == 2
    out = up.output()
    assert f"127.0.0.1:{port}" in out and "another server" in out, out
    assert "TSCNC is up" not in out
