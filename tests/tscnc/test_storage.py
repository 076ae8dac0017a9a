"""Issue 14.8 — checkpoint writes fail as ``storage`` naming the path and never leave a partial
file (tscnc.pipeline.checkpoints.save_atomic: temporary file in the same directory, fsync, os.replace)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tscnc.errors import StorageError
from tscnc.pipeline.checkpoints import save_atomic
from tscnc.records import FailureCategory

ROOT = Path(__file__).resolve().parents[2]

# Run in a child process: the file size limit (RLIMIT_FSIZE) must not touch pytest's own files.
# SIGXFSZ is ignored so that the write over the limit fails with EFBIG instead of killing.
_INTERRUPTED_WRITE = r"""
import resource, signal, sys, torch
from pathlib import Path
from tscnc.errors import StorageError
from tscnc.pipeline.checkpoints import save_atomic
path = Path(sys.argv[1])
save_atomic(path, {"w": torch.zeros(10)})                  # a previous, complete checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
try:
    save_atomic(path, {"w": torch.zeros(1_000_000)})       # 4 MB: the write stops at 64 KiB
except StorageError as e:
    print("STORAGE", e.category.value, e.message)
"""


def test_an_interrupted_write_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "stage" / "epoch_3.pt"
    out = subprocess.run([sys.executable, "-c", _INTERRUPTED_WRITE, str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("STORAGE storage"), out.stdout + out.stderr
    assert str(path) in out.stdout
    # Only the previous checkpoint is there, complete and unchanged: no temporary, no partial.
    assert sorted(p.name for p in path.parent.iterdir()) == ["epoch_3.pt"]
    w = torch.load(path, weights_only=True)["w"]
    assert w.shape == (10,)


def test_an_unwritable_directory_fails_as_storage_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file where the artifacts directory should be")
    path = blocker / "pretrain" / "epoch_1.pt"
    with pytest.raises(StorageError) as err:
        save_atomic(path, {"w": torch.zeros(3)})
    assert err.value.category == FailureCategory.storage
    assert str(path) in err.value.message
