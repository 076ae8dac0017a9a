"""A failed allocation that does not reach the worker as ``OutOfMemory`` is classified as one
(tscnc.errors.as_out_of_memory, used by the worker when a run fails)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tscnc.errors import OutOfMemory, as_out_of_memory


@pytest.mark.parametrize("err", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 4294967296 bytes"),
])
def test_failed_allocations_are_out_of_memory(err: BaseException) -> None:
    oom = as_out_of_memory(err)
    assert isinstance(oom, OutOfMemory)
    assert oom.category.value == "out_of_memory"
    assert "training.batch_size" in oom.message and type(err).__name__ in oom.message


def test_a_torch_out_of_memory_error_is_out_of_memory() -> None:
    torch = pytest.importorskip("torch")
    oom = as_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert isinstance(oom, OutOfMemory) and "OutOfMemoryError" in oom.message


@pytest.mark.parametrize("err", [RuntimeError("shape mismatch"), ValueError("x"), KeyError("k")])
def test_other_errors_are_not(err: BaseException) -> None:
    assert as_out_of_memory(err) is None


def test_classifying_does_not_import_torch() -> None:
    code = ("import sys\nfrom tscnc.errors import as_out_of_memory\n"
            "assert as_out_of_memory(ValueError()) is None\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
