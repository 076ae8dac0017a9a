"""The one polling helper of the tests: wait for a condition instead of sleeping.

Example::

    run = wait_until(lambda: store.get_run(rid), 10, f"run {rid} to exist")
    items = wait_until(lambda: api_runs(sid), 240, "the runs to finish",
                       done=lambda runs: all(r["status"] == "succeeded" for r in runs),
                       check=workers_alive)

On time-out it raises :class:`ConditionTimeout` (an ``AssertionError``, so pytest reports it as a
failed check) naming what was awaited and the last value (or exception) seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
SHOW_MAX = 12000  # characters of the last value a time-out message shows


class ConditionTimeout(AssertionError):
    """A condition did not hold within its time-out."""


def wait_until(predicate: Callable[[], T], timeout: float, what: str, *,
               done: Callable[[T], Any] = bool, interval: float = 0.1,
               check: Callable[[], Any] | None = None,
               retry_on: tuple[type[BaseException], ...] = (),
               show: Callable[[T], Any] = repr) -> T:
    """Call ``predicate()`` every ``interval`` seconds until ``done(value)`` is true (by default:
    until the value is truthy) and return that value.

    ``check()`` runs before each attempt and may raise to stop waiting at once (e.g. the
    process that should answer has died). Exceptions of the types in ``retry_on`` raised by
    ``predicate`` count as "not yet" (e.g. a server that is not listening yet). After
    ``timeout`` seconds a :class:`ConditionTimeout` says what was awaited and the last value seen,
    formatted by ``show``.
    """
    deadline = time.monotonic() + timeout
    seen: list[Any] = []  # the last value, or the last error, of an attempt
    while True:
        if check is not None:
            check()
        try:
            value = predicate()
        except retry_on as e:
            seen = [e]
        else:
            if done(value):
                return value
            seen = [value]
        if time.monotonic() >= deadline:
            raise ConditionTimeout(f"timed out after {timeout} s waiting for {what}; "
                                   f"last seen: {_describe(seen, show)}")
        time.sleep(interval)


def _describe(seen: list[Any], show: Callable[[Any], Any]) -> str:
    if not seen:
        return "nothing (no attempt finished)"
    last = seen[0]
    text = f"{type(last).__name__}: {last}" if isinstance(last, BaseException) else str(show(last))
    return text if len(text) <= SHOW_MAX else text[:SHOW_MAX] + f"... ({len(text)} characters)"


async def wait_until_async(predicate: Callable[[], T], timeout: float, what: str, *,
                           done: Callable[[T], Any] = bool, interval: float = 0.02,
                           show: Callable[[T], Any] = repr) -> T:
    """:func:`wait_until` inside an event loop: ``predicate()`` (a plain function, e.g. reading
    state the loop's tasks update) is tried every ``interval`` seconds without blocking them."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise ConditionTimeout(f"timed out after {timeout} s waiting for {what}; "
                                   f"last seen: {_describe([value], show)}")
        await asyncio.sleep(interval)
