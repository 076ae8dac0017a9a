"""The one exception hierarchy of ``tscnc`` (torch-free).

Every error the library raises on purpose derives from :class:`TSCNCError` and carries the
failure category (DESIGN §4) a run ends with when the error escapes it::

    TSCNCError                      category: error
    ├── InvalidInput                invalid_input   (bad spec values, unusable configuration)
    │   └── DatasetError            invalid_input   (missing / corrupt dataset files)
    ├── Diverged                    diverged        (NaN / inf loss)
    ├── OutOfMemory                 out_of_memory   (allocation failed on the device)
    ├── StorageError                storage         (an artifact could not be written: disk
    │                                                full, unwritable directory; names the path)
    └── Cancelled                   (not a failure: the run is cancelled after saving)

Errors are raised, never printed; the CLI and the worker turn them into messages and statuses
(:func:`as_out_of_memory` classifies a failed allocation raised as something else).
"""

from __future__ import annotations

import sys

from tscnc.records import FailureCategory


class TSCNCError(Exception):
    category: FailureCategory = FailureCategory.error

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(TSCNCError):
    category = FailureCategory.invalid_input


class DatasetError(InvalidInput):
    pass


class Diverged(TSCNCError):
    category = FailureCategory.diverged


class OutOfMemory(TSCNCError):
    category = FailureCategory.out_of_memory


def as_out_of_memory(err: BaseException) -> OutOfMemory | None:
    """``err`` as :class:`OutOfMemory` when it is a failed allocation not raised as one already:
    Python's MemoryError, a CUDA OOM outside the training step (evaluation, moving the model),
    or the CPU allocator's failure, which torch raises as a plain RuntimeError
    ("DefaultCPUAllocator: can't allocate memory"); None for any other error. Never imports
    torch: an error torch raised means torch is loaded."""
    torch = sys.modules.get("torch")
    if not (isinstance(err, MemoryError)
            or (torch is not None and isinstance(err, torch.OutOfMemoryError))
            or (isinstance(err, RuntimeError) and "can't allocate memory" in str(err))):
        return None
    return OutOfMemory(f"out of memory; lower training.batch_size or the model size "
                       f"({type(err).__name__}: {str(err)[:300]})")


class StorageError(TSCNCError):
    category = FailureCategory.storage


class Cancelled(TSCNCError):
    """The cooperative cancel check fired; the stage saved its checkpoint and stopped."""
