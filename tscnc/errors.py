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

Errors are raised, never printed; the CLI and the worker turn them into messages and statuses.
"""

from __future__ import annotations

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


class StorageError(TSCNCError):
    category = FailureCategory.storage


class Cancelled(TSCNCError):
    """The cooperative cancel check fired; the stage saved its checkpoint and stopped."""
