"""Issue 14.1 — no code execution through ``dataset.data_dir``, and no path disclosure.

Real redis-server, real uvicorn and a real Celery worker, both configured with one data root
(``TSCNC_DATA_ROOTS``, see tests/support/stack.py):

- a CIFAR-10 layout whose batches are pickles with an ``exec`` payload, placed *inside* the root:
  the runs fail ``invalid_input`` through the service and the payload's marker file never appears
  (the payload itself is shown to be live with a plain ``pickle.loads``);
- absolute, ``..`` and outward-symlink ``data_dir`` values are refused at submit with a 422 naming
  ``spec.dataset.data_dir``, with the very same body whether the path exists or not.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.stack import Stack, service_stack, tiny_sweep


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with service_stack(tmp_path_factory.mktemp("datasec"), workers=1) as s:
        yield s


def _cifar_sweep(data_dir: str) -> dict[str, Any]:
    return tiny_sweep(dataset={"name": "cifar10", "data_dir": data_dir, "train_subset": 10,
                               "test_subset": 10},
                      model={"name": "cnn", "width": 4}, methods=["dense"], sparsities=[0.5])


def test_malicious_pickle_in_a_root_fails_invalid_input_and_never_runs(stack: Stack,
                                                                       tmp_path: Path):
    assert stack.data_root is not None
    marker = tmp_path / "marker"
    batches = stack.data_root / "evil" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": np.zeros((10, 3072), np.uint8), "labels": list(range(10)),
                 "payload": _Exploit(marker)}
        (batches / name).write_bytes(pickle.dumps(entry, protocol=2))
    pickle.loads((batches / "test_batch").read_bytes())      # the payload is live...
    assert marker.exists()
    marker.unlink()                                            # ...and reset

    r = stack.api("POST", "/sweeps", json={"spec": _cifar_sweep("evil")})
    assert r.status_code == 201, r.text
    runs = stack.wait_runs(r.json()["id"], lambda rs: all(x["status"] == "failed" for x in rs),
                           timeout=120)
    for run in runs:
        assert run["category"] == "invalid_input", run
        assert "exec is not part of the CIFAR format" in run["message"], run["message"]
        assert str(stack.data_root) not in run["message"]
    assert not marker.exists(), "the pickle's code ran on the worker"


def test_paths_outside_the_roots_get_one_422_whatever_exists(stack: Stack, tmp_path: Path):
    assert stack.data_root is not None
    outside = tmp_path / "outside"
    outside.mkdir()
    (stack.data_root / "out-link").symlink_to(outside, target_is_directory=True)
    bodies = []
    for data_dir in ("/etc", "/no/such/directory", str(outside), "../outside", "a/../../etc",
                     "out-link"):
        r = stack.api("POST", "/sweeps", json={"spec": _cifar_sweep(data_dir)})
        assert r.status_code == 422, (data_dir, r.text)
        detail = r.json()["detail"]
        assert [d["loc"] for d in detail] == [["body", "spec", "dataset", "data_dir"]], detail
        assert data_dir not in r.text
        bodies.append([{k: d[k] for k in ("loc", "msg")} for d in detail])
    assert all(b == bodies[0] for b in bodies), bodies
    assert "relative path inside a data root" in bodies[0][0]["msg"]
