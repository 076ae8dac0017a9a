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
    ├── Cancelled                   (not a failure: the run is cancelled after saving)
    └── ClientError                 what :class:`tscnc.client.Client` could not do
        ├── ServerUnreachable       no connection / timed out (the request may be retried)
        ├── WaitTimeout             wait(...) gave up; the sweep keeps running on the server
        └── APIError                the server answered an error status (.status, .detail)
            ├── Unauthorized        401: missing, unknown, revoked or expired token
            ├── Forbidden           403: the token's role may not do this
            ├── NotFound            404: no such sweep / run / token
            ├── Conflict            409: e.g. cancelling a finished run
            ├── ValidationFailed    422: .errors lists {"loc", "msg", "type"} per bad field
            └── ServiceUnavailable  503: Redis is down or the run could not be queued

Errors are raised, never printed; the CLI and the worker turn them into messages and statuses
(:func:`as_out_of_memory` classifies a failed allocation raised as something else).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from tscnc.records import FailureCategory

if TYPE_CHECKING:  # pragma: no cover
    from tscnc.resources import SweepDetail


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


# ---- the client's errors (tscnc.client) -------------------------------------------------------

class ClientError(TSCNCError):
    """Base of every error raised by :class:`tscnc.client.Client`."""


class ServerUnreachable(ClientError):
    """The server could not be reached (connection refused, DNS, timeout)."""


class WaitTimeout(ClientError):
    """:meth:`tscnc.client.Client.wait` ran out of time; ``sweep`` is the last state seen."""

    def __init__(self, message: str, sweep: SweepDetail | None = None) -> None:
        super().__init__(message)
        self.sweep = sweep


class APIError(ClientError):
    """The server answered with an error status; ``detail`` is its ``{"detail": ...}``."""

    status: int = 0

    def __init__(self, message: str, status: int, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail

    @staticmethod
    def for_status(status: int) -> type[APIError]:
        """The class of the error an HTTP status answers (:class:`APIError` if none)."""
        return _API_ERRORS.get(status, APIError)


class Unauthorized(APIError):
    """401: the token is missing, unknown, revoked or expired."""


class Forbidden(APIError):
    """403: valid token, but its role (or a share link) does not allow this."""


class NotFound(APIError):
    """404: no such sweep, run, token or result (yet)."""


class Conflict(APIError):
    """409: the action does not apply in the current state (e.g. retry a running run)."""


class ValidationFailed(APIError):
    """422: the request is invalid; ``errors`` names each bad field."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.detail if isinstance(self.detail, list) else []


class ServiceUnavailable(APIError):
    """503: the data store is unavailable or the work could not be queued; try again later."""


_API_ERRORS: dict[int, type[APIError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound,
                                          409: Conflict, 422: ValidationFailed,
                                          503: ServiceUnavailable}
