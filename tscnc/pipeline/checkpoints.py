"""The artifacts directory: where each stage's checkpoints live, how they are written (atomically)
and read (``weights_only``), and whether one written by another build may be reused."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tscnc import code_version, constraints
from tscnc.errors import StorageError
from tscnc.models import build_model
from tscnc.records import Event, LogEvent
from tscnc.spec import USES_TSC, RunSpec, SweepSpec, TSCVariant

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "epoch_{:04d}.pt"
FINAL_NAME = "final.pt"


# ---- artifacts layout -----------------------------------------------------------------

def pretrain_dir(artifacts: Path, run: RunSpec) -> Path:
    return artifacts / "pretrain" / run.pretrain_key


def run_dir(artifacts: Path, run_id: str) -> Path:
    return artifacts / "runs" / run_id


# ---- checkpoints ----------------------------------------------------------------------

def save_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: serialise in memory, write a hidden temporary
    file in the same directory, fsync it, rename it over ``path``. A crash or a failed write
    (disk full, file size limit) never leaves a partial checkpoint: the temporary file is
    removed, ``path`` keeps its previous content. Storage failures raise :class:`StorageError`
    naming the path (failure category ``storage``)."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getbuffer()
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise StorageError(f"cannot write the checkpoint {path}: "
                           f"{e.strerror or type(e).__name__}") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=True)


def latest_epoch(stage_dir: Path) -> int:
    epochs = [int(p.stem.split("_")[1]) for p in stage_dir.glob("epoch_*.pt")]
    return max(epochs, default=0)


def _model_meta(spec: SweepSpec, run: RunSpec) -> str:
    return json.dumps({"spec": spec.model_dump(mode="json"), "run": run.model_dump(mode="json")})


def build_run_model(spec: SweepSpec, run: RunSpec, device: torch.device) -> nn.Module:
    """The model of ``spec`` with the layer wrappers ``run``'s method trains with."""
    model = build_model(spec.model, spec.dataset)
    if run.method in USES_TSC and spec.constraints.tsc_variant == TSCVariant.gates:
        constraints.attach_gates(model)
    return model.to(device)


def save_final(path: Path, model: nn.Module, spec: SweepSpec, run: RunSpec) -> None:
    save_atomic(path, {"model": model.state_dict(), "meta": _model_meta(spec, run),
                 "code": code_version()})


# ---- which build wrote a checkpoint ---------------------------------------------------

def _describe(code: dict[str, str]) -> str:
    if not code:
        return "an unrecorded older build"
    rev = code.get("git")
    return f"tscnc {code.get('tscnc', '?')}" + (f" (git {rev[:12]})" if rev else "")


def staleness(path: Path, recorded: Any, parent: Path | None) -> str | None:
    """Why the checkpoint at ``path`` should not be reused silently, or None.

    Stale when it was written by another build (``recorded`` ≠ :func:`tscnc.code_version`), or
    when it is older than ``parent``, the artifact it was trained from (a pretrain or prune
    redone since)."""
    recorded = recorded if isinstance(recorded, dict) else {}
    if recorded != code_version():
        return f"{path} was written by {_describe(recorded)}; this is {_describe(code_version())}"
    if parent is not None and parent.exists() and \
            path.stat().st_mtime_ns < parent.stat().st_mtime_ns:
        return f"{path} predates {parent}, which it was trained from"
    return None


def stale_warning(reason: str, fresh: bool, run_ids: list[str], emit: Callable[[Event], None]) -> None:
    """Log and emit (as a warning event to every run) what happens to a stale checkpoint."""
    action = ("starting over (fresh)" if fresh else
              "reusing it; run again with --fresh (CLI) or retry with {\"fresh\": true} (API) "
              "to start over")
    message = f"{reason}: {action}"
    log.warning(message)
    for rid in run_ids:
        emit(LogEvent(run=rid, level="warning", message=message))


def discard_checkpoints(stage_dir: Path) -> None:
    for p in [*stage_dir.glob("epoch_*.pt"), stage_dir / FINAL_NAME]:
        p.unlink(missing_ok=True)


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a (pruned) model from a final checkpoint, loaded with ``weights_only=True``."""
    device = torch.device(device)
    payload = load_checkpoint(Path(checkpoint), device)
    meta = json.loads(payload["meta"])
    spec = SweepSpec.model_validate(meta["spec"])
    run = RunSpec.model_validate(meta["run"])
    model = build_run_model(spec, run, device)
    model.load_state_dict(payload["model"])
    model.eval()
    return model

