"""Scale-out on one machine: the same sized-down sweep with 1 and with 2 CPU worker processes.

Each measurement starts a fresh deployment the way a real one runs (a redis-server, the API
``python -m backend``, N Celery workers ``tscnc worker --queue cpu`` each with
``TSCNC_TORCH_THREADS = cores / N``, an empty artifacts directory), waits until every worker
has sent its heartbeat, then times submit → every run finished through :mod:`tscnc.client`.
Configurations alternate (1, 2, 1, 2, ...) so slow drifts of the machine hit both alike. It
prints a markdown table and the wall-time ratio t(2 workers) / t(1 worker).

Usage::

    .venv/bin/python bench/scale_out.py                  # 1 vs 2 workers, 2 repeats
    .venv/bin/python bench/scale_out.py --workers 1 2 4 --repeats 3
    .venv/bin/python bench/scale_out.py --threads 1      # control: 1 thread per worker always
    .venv/bin/python bench/scale_out.py --configs 1x2 1x1 2x1 --repeats 3   # both, interleaved
    .venv/bin/python bench/scale_out.py --smoke          # seconds: checks the script works
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.launcher import free_port, redis_url, start_redis, worker_command  # noqa: E402
from tscnc.client import Client  # noqa: E402

TOKEN = "tscnc_bench-scale-out-0123456789abcdef"


def sweep_spec(smoke: bool) -> dict[str, Any]:
    """Two pretrain groups (plain AT for hydra, AT+TSC+CNC for tscnc) fanning out to four
    sparsities each: 2 pretrain + 8 prune/finetune/evaluate tasks for the workers to share."""
    epochs = (1, 1, 1) if smoke else (8, 3, 5)
    return {
        "name": "scale-out-bench",
        # The whole digits training split (1437 images) and a 512-wide MLP: big enough that
        # training, not task overhead, dominates, and that two torch threads help one worker.
        "dataset": {"name": "digits", "train_subset": 200 if smoke else None},
        "model": {"name": "mlp", "width": 32 if smoke else 512},
        "training": {"pretrain_epochs": epochs[0], "prune_epochs": epochs[1],
                     "finetune_epochs": epochs[2], "batch_size": 64, "lr": 0.05,
                     "monitor_examples": 40 if smoke else 100, "device": "cpu"},
        "adversarial": {"steps": 2 if smoke else 5},
        "evaluation": {"attacks": ["fgsm", "pgd"], "pgd_steps": 5 if smoke else 20,
                       "examples": 60 if smoke else 300, "security_curve": [0.0, 1.0]},
        "methods": ["hydra", "tscnc"],
        "sparsities": [0.5, 0.9] if smoke else [0.5, 0.7, 0.9, 0.95],
        "seeds": [0],
    }


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@contextlib.contextmanager
def deployment(workdir: Path, workers: int, threads: int) -> Iterator[Client]:
    procs: list[subprocess.Popen[bytes]] = []
    logs = open(workdir / "services.log", "ab")  # noqa: SIM115
    try:
        rport = free_port()
        procs.append(start_redis(workdir / "redis", rport, "bench-redis-password"))
        port = free_port()
        env = {**os.environ, "REDIS_URL": redis_url(rport, "bench-redis-password"),
               "ARTIFACTS_DIR": str(workdir / "artifacts"),
               "TSCNC_ARTIFACTS_DIR": str(workdir / "artifacts"),
               "TSCNC_BOOTSTRAP_TOKEN": TOKEN, "TSCNC_HOST": "127.0.0.1",
               "TSCNC_PORT": str(port), "TSCNC_TORCH_THREADS": str(threads),
               "TSCNC_QUEUE": "cpu", "PYTHONPATH": str(ROOT)}
        for i in range(workers):
            procs.append(subprocess.Popen(worker_command("cpu", f"bench-{i}"), env=env,
                                          cwd=ROOT, stdout=logs, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        procs.append(subprocess.Popen([sys.executable, "-m", "backend"], env=env, cwd=ROOT,
                                      stdout=logs, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        client = Client(f"http://127.0.0.1:{port}", TOKEN, timeout=10)
        deadline = time.monotonic() + 180
        while True:
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a service exited ({dead[0].args}); see "
                                   f"{workdir / 'services.log'}")
            with contextlib.suppress(Exception):
                if len(client.queue().workers) >= workers:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not send heartbeats within 180 s")
            time.sleep(0.3)
        yield client
        client.close()
    finally:
        _stop(procs)
        logs.close()


def measure(workers: int, threads: int, spec: dict[str, Any], keep: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"tscnc-scale-{workers}w-"))
    try:
        with deployment(workdir, workers, threads) as c:
            t0 = time.perf_counter()
            sweep = c.submit(spec)
            final = c.wait(sweep.id, poll=0.2, timeout=3600)
            wall = time.perf_counter() - t0
            statuses = [r.status.value for r in final.runs]
            per_worker: dict[str, int] = {}
            for r in final.runs:
                per_worker[str(r.worker)] = per_worker.get(str(r.worker), 0) + 1
        if any(s != "succeeded" for s in statuses):
            raise RuntimeError(f"runs did not all succeed: {statuses}")
        return {"workers": workers, "threads": threads, "wall": wall, "runs": len(statuses),
                "per_worker": per_worker}
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--configs", nargs="+", default=None, metavar="WxT",
                    help="explicit configurations, e.g. 1x2 1x1 2x1 (workers x threads "
                         "each); overrides --workers/--threads")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                    help="cores to share: torch threads per worker = cores // workers")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads per worker for every configuration (0: cores // workers)")
    ap.add_argument("--smoke", action="store_true", help="tiny sweep, one repeat")
    ap.add_argument("--keep", action="store_true", help="keep the working directories")
    args = ap.parse_args()
    spec = sweep_spec(args.smoke)
    repeats = 1 if args.smoke else args.repeats
    import torch

    print(f"cores {args.cores} ({platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"sweep: {len(spec['methods'])} methods × {len(spec['sparsities'])} sparsities = "
          f"{len(spec['methods']) * len(spec['sparsities'])} runs, "
          f"{len(spec['methods'])} shared pretrains\n")
    if args.configs:
        configs = [tuple(int(v) for v in c.lower().split("x")) for c in args.configs]
    else:
        configs = [(n, args.threads or max(1, args.cores // n)) for n in args.workers]
    results: dict[tuple[int, ...], list[dict[str, Any]]] = {c: [] for c in configs}
    for rep in range(repeats):
        for n, threads in configs:
            load = os.getloadavg()[0]
            r = measure(n, threads, spec, args.keep)
            r["load"] = load
            results[(n, threads)].append(r)
            print(f"  repeat {rep + 1}: {n} worker(s) × {threads} thread(s): "
                  f"{r['wall']:.1f} s  (1-min load before {load:.2f}; runs per worker "
                  f"{sorted(r['per_worker'].values())})", flush=True)
    base_cfg = configs[0]
    base = statistics.median(r["wall"] for r in results[base_cfg])
    print(f"\n| CPU workers | torch threads each | wall time: median (each repeat) | runs | "
          f"ratio to {base_cfg[0]}×{base_cfg[1]} |\n|---|---|---|---|---|")
    for cfg in configs:
        med = statistics.median(r["wall"] for r in results[cfg])
        walls = ", ".join(f"{r['wall']:.1f}" for r in results[cfg])
        print(f"| {cfg[0]} | {cfg[1]} | {med:.1f} s ({walls}) | {results[cfg][0]['runs']} | "
              f"{med / base:.2f} |")
    if len(configs) > 1:
        # Ratios within each repeat (measured back to back) are less exposed to load drifts.
        for cfg in configs[1:]:
            per = [b["wall"] / a["wall"] for a, b in zip(results[base_cfg], results[cfg],
                                                         strict=True)]
            print(f"\nper-repeat ratio {cfg[0]}×{cfg[1]} / {base_cfg[0]}×{base_cfg[1]}: "
                  + ", ".join(f"{x:.2f}" for x in per))
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
