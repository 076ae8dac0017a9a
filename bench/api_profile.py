"""Where the API's time goes under load (``bench/load.py --profile``): py-spy samples every API
process, counting only the threads that hold the GIL (what the cores actually do for Python),
and :func:`summary` sorts the samples into the parts of the server.

py-spy is not a dependency of the project (``pip install py-spy``); without it no profile is
taken.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

# A sample counts in the first part whose test its stack passes: (name, frames that must all be
# on it, as "function (path fragment"; or path fragments any of which is on it).
PARTS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("GET /runs: store (Redis round trips, decoding)",
     ("list_runs (backend/routes/runs.py", "(backend/store/"), ()),
    ("GET /runs: views and response model (pydantic)", ("list_runs (backend/routes/runs.py",), ()),
    ("HTTP: uvicorn's send of every response and stream write (framing, the socket write)", (),
     ("RequestResponseCycle.send (",)),
    ("SSE: is the client still there? (starlette's Request.is_disconnected)", (),
     ("Request.is_disconnected (",)),
    ("SSE: the streams' readers and fan-out (backend/sse.py)", (), ("backend/sse.py",)),
    ("other API code (authentication, dependencies, other routes)", (),
     ("backend/deps.py", "backend/routes/", "backend/views.py", "backend/store/",
      "backend/schemas.py")),
    ("HTTP and ASGI: requests and every stream's writes (uvicorn, starlette, fastapi, the "
     "security-headers middleware)", (), ("uvicorn/", "starlette/", "fastapi/", "h11/",
                                          "httptools", "backend/app.py")),
    ("thread pool hand-off (anyio)", (), ("anyio/",)),
    ("event loop (asyncio)", (), ("asyncio/",)),
]


def record(pid: int, out: Path, seconds: int) -> subprocess.Popen | None:
    """Start py-spy on ``pid`` and its child processes for ``seconds`` (raw format into
    ``out``); None when py-spy is not installed."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("py-spy is not installed: no profile", file=sys.stderr)
        return None
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--subprocesses", "--gil",
                             "--rate", "200", "--duration", str(seconds), "--format", "raw",
                             "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _frames(stack: str) -> list[str]:
    """``func (/abs/path/file.py:12)`` → ``func (backend/x.py`` for this repository's files."""
    root = str(Path(__file__).resolve().parents[1]) + "/"
    return [f.replace("(" + root, "(") for f in stack.split(";")]


def part_of(stack: str) -> str:
    frames = _frames(stack)
    joined = ";".join(frames)
    for name, every, some in PARTS:
        if every and all(any(f.startswith(m) or m in f for f in frames) for m in every):
            return name
        if some and any(m in joined for m in some):
            return name
    return "other"


def summary(raw: Path) -> dict[str, float]:
    """Share (%) of the samples per part of :data:`PARTS`, largest first, and ``samples``
    (raw format: one ``frame;frame;... count`` line per distinct stack)."""
    counts: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            part = part_of(stack)
            counts[part] = counts.get(part, 0) + int(n)
    total = sum(counts.values()) or 1
    shares = {k: 100 * v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
    return {**shares, "samples": float(total)}
