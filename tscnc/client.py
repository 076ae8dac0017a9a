"""Python client of the TSCNC job service (REST under ``/api/v1``, Server-Sent Events).

Torch-free and web-stack-free: it needs only ``httpx`` (and ``pandas`` for
:meth:`Client.results_frame`; :meth:`Client.summary` returns a DataFrame with pandas, else the
typed :class:`tscnc.summary.SummaryPublic`). Every other answer is the typed model of
:mod:`tscnc.resources` the API documents in ``docs/api.md`` (``SweepDetail``, ``RunPublic``,
...), the same definitions the server answers with.

Example::

    >>> from tscnc.client import Client
    >>> with Client("http://127.0.0.1:8000", token) as c:           # doctest: +SKIP
    ...     sweep = c.submit(preset="digits-quick", idempotency_key="my-first-sweep")
    ...     c.wait(sweep.id, progress=lambda s: print(f"{s.progress:.0%}"))
    ...     df = c.results_frame(sweep.id)                          # one row per run

``url`` and ``token`` default to the environment variables ``TSCNC_SERVER`` and
``TSCNC_TOKEN`` (the same ones ``tscnc submit`` reads).

Errors are :class:`tscnc.errors.ClientError` and its subclasses (``ServerUnreachable``,
``WaitTimeout``, ``APIError`` with one class per error status: ``Unauthorized``, ``Forbidden``,
``NotFound``, ``Conflict``, ``ValidationFailed``, ``ServiceUnavailable``), defined with the rest
of the one exception hierarchy in :mod:`tscnc.errors` and importable from here too.
Each error's message is the server's own (``detail``), prefixed with the request.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel

from tscnc.errors import (
    APIError,
    ClientError,
    Conflict,
    Forbidden,
    NotFound,
    ServerUnreachable,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
    WaitTimeout,
)
from tscnc.records import TERMINAL_STATUSES
from tscnc.resources import (
    Health,
    Me,
    PresetPublic,
    QueuePublic,
    ResultPublic,
    RunPublic,
    SweepCancelled,
    SweepDetail,
    SweepPublic,
    TokenCreated,
    TokenPublic,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas

    from tscnc.spec import SweepSpec

__all__ = [
    "ENV_SERVER",
    "ENV_TOKEN",
    "APIError",
    "Client",
    "ClientError",
    "Conflict",
    "Forbidden",
    "NotFound",
    "ServerEvent",
    "ServerUnreachable",
    "ServiceUnavailable",
    "Unauthorized",
    "ValidationFailed",
    "WaitTimeout",
]

# Environment variables read for the defaults of ``url`` and ``token``.
ENV_SERVER = "TSCNC_SERVER"
ENV_TOKEN = "TSCNC_TOKEN"
DEFAULT_SERVER = "http://127.0.0.1:8000"

TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)
PAGE_SIZE = 200

M = TypeVar("M", bound=BaseModel)


# ---- errors ------------------------------------------------------------------------------------

def format_validation_errors(errors: list[dict[str, Any]]) -> str:
    """One line per bad field: ``spec.sparsities.0: Input should be less than 1``."""
    lines = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", [])]
        if loc and loc[0] == "body":
            loc = loc[1:]
        lines.append(f"{'.'.join(loc) or '(request)'}: {e.get('msg', e)}")
    return "\n".join(lines)


def _parse(model: type[M], data: Any) -> M:
    """``data`` as ``model``, fields this client does not know dropped (at every depth).

    The API's models refuse unknown fields (its OpenAPI document says so, for requests), but an
    answer from a newer server may carry fields this client predates: reading them must not fail.
    """
    return model.model_validate(data, extra="ignore")


def _error_for(resp: httpx.Response) -> APIError:
    try:
        detail = resp.json().get("detail")
    except (ValueError, AttributeError):
        detail = resp.text[:500] or None
    cls = APIError.for_status(resp.status_code)
    if cls is ValidationFailed and isinstance(detail, list):
        text = "invalid request:\n" + format_validation_errors(detail)
    else:
        text = str(detail) if detail else resp.reason_phrase
    req = resp.request
    return cls(f"{req.method} {req.url.path} → {resp.status_code}: {text}", resp.status_code,
               detail)


# ---- events ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerEvent:
    """One Server-Sent Event: ``id`` (the Redis stream id, used to resume), ``type`` (the event
    type: ``epoch``, ``status``, ...) and ``data`` (the event JSON of :mod:`tscnc.records`)."""

    id: str
    type: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        """True for the final status event of a run (``succeeded``/``failed``/``cancelled``)."""
        return self.type == "status" and self.data.get("status") in TERMINAL


def _parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, str | None, str, int | None]]:
    """SSE messages as ``(data, id, event, retry_ms)``; comments are skipped."""
    data: list[str] = []
    ev_id: str | None = None
    ev_type = "message"
    retry: int | None = None
    for line in lines:
        if line == "":
            if data:
                yield "\n".join(data), ev_id, ev_type, retry
            data, ev_id, ev_type, retry = [], None, "message", None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "id":
            ev_id = value
        elif field == "event":
            ev_type = value
        elif field == "retry" and value.isdigit():
            retry = int(value)


# ---- the client --------------------------------------------------------------------------------

class Client:
    """A session with one TSCNC server.

    Args:
        url: server base URL, e.g. ``http://127.0.0.1:8000`` (default: ``$TSCNC_SERVER``, else
            that address).
        token: API token (default: ``$TSCNC_TOKEN``). ``tscnc up`` prints one; admins create
            more with ``tscnc token create``.
        timeout: seconds for each ordinary request.
        transport: an ``httpx`` transport (e.g. to go through a proxy or inject faults in tests).
    """

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = (url or os.environ.get(ENV_SERVER) or DEFAULT_SERVER).rstrip("/")
        token = token if token is not None else os.environ.get(ENV_TOKEN)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.url + "/api/v1", headers=headers,
                                  timeout=timeout, transport=transport)

    # -- plumbing --
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TimeoutException as e:
            raise ServerUnreachable(f"{method} {self.url}/api/v1{path}: timed out ({e})") from e
        except httpx.TransportError as e:
            raise ServerUnreachable(f"cannot reach the TSCNC server at {self.url} "
                                    f"({type(e).__name__}: {e})") from e
        if resp.status_code >= 400:
            raise _error_for(resp)
        return resp

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self._request(method, path, **kw).json()

    def _get(self, model: type[M], method: str, path: str, **kw: Any) -> M:
        """The answer of a request, parsed as ``model``."""
        return _parse(model, self._json(method, path, **kw))

    def _all(self, model: type[M], path: str, params: Mapping[str, Any] | None = None
             ) -> list[M]:
        """Every item of a paged list, parsed as ``model``."""
        return [_parse(model, x) for x in self._pages(path, params)]

    def _pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        query["limit"] = PAGE_SIZE
        while True:
            page = self._json("GET", path, params=query)
            yield from page["items"]
            if not page.get("next"):
                return
            query["cursor"] = page["next"]

    # -- service --
    def health(self) -> Health:
        """Status, Redis and version (no token needed; 503 → ServiceUnavailable)."""
        return self._get(Health, "GET", "/health")

    def me(self) -> Me:
        """Who the token is (kind, id, name, role, ...)."""
        return self._get(Me, "GET", "/me")

    def presets(self) -> list[PresetPublic]:
        """The server's named presets with their full specs."""
        return [_parse(PresetPublic, p) for p in self._json("GET", "/presets")]

    def queue(self) -> QueuePublic:
        """Queue depths, workers online and runs per status."""
        return self._get(QueuePublic, "GET", "/queue")

    # -- sweeps --
    def submit(self, spec: SweepSpec | Mapping[str, Any] | None = None, *,
               preset: str | None = None,
               idempotency_key: str | None = None) -> SweepDetail:
        """Submit a sweep; returns it with its runs (``SweepDetail``).

        ``spec`` is a :class:`tscnc.spec.SweepSpec` or a (partial) spec dict, deep-merged by the
        server over ``preset`` (or the defaults). With ``idempotency_key``, submitting again
        returns the same sweep instead of a new one (safe to retry after a network error).
        """
        if spec is not None and hasattr(spec, "model_dump"):
            body_spec = spec.model_dump(mode="json")
        else:
            body_spec = dict(spec or {})
        body: dict[str, Any] = {"spec": body_spec}
        if preset is not None:
            body["preset"] = preset
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._get(SweepDetail, "POST", "/sweeps", json=body, headers=headers)

    def sweeps(self) -> list[SweepPublic]:
        """All sweeps, newest first (every page)."""
        return self._all(SweepPublic, "/sweeps")

    def sweep(self, sweep: str | SweepPublic) -> SweepDetail:
        """One sweep with all its runs."""
        return self._get(SweepDetail, "GET", f"/sweeps/{_id(sweep)}")

    def cancel_sweep(self, sweep: str | SweepPublic) -> SweepCancelled:
        """Cancel every unfinished run of the sweep."""
        return self._get(SweepCancelled, "POST", f"/sweeps/{_id(sweep)}/cancel")

    def delete_sweep(self, sweep: str | SweepPublic) -> None:
        """Cancel unfinished runs, then delete the sweep, its runs, events and results."""
        self._request("DELETE", f"/sweeps/{_id(sweep)}")

    def wait(self, sweep: str | SweepPublic, timeout: float | None = None,
             progress: Callable[[SweepDetail], None] | None = None,
             poll: float = 1.0) -> SweepDetail:
        """Block until every run of ``sweep`` has finished; returns the final ``SweepDetail``.

        ``progress(sweep_detail)`` is called after every poll (its ``progress`` is the mean
        fraction done, ``counts`` the runs per status). Raises :class:`WaitTimeout` after
        ``timeout`` seconds (the sweep keeps running). Transient 503s and connection errors
        are retried until the deadline.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: SweepDetail | None = None
        sid = _id(sweep)
        while True:
            try:
                last = self.sweep(sid)
            except (ServiceUnavailable, ServerUnreachable):
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            else:
                if progress is not None:
                    progress(last)
                if last.finished:
                    return last
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"sweep {sid} not finished after {timeout:g} s", last)
            time.sleep(poll if deadline is None else
                       max(0.0, min(poll, deadline - time.monotonic())))

    def results(self, sweep: str | SweepPublic) -> list[ResultPublic]:
        """Final results of the sweep's finished runs, one record per run."""
        return [_parse(ResultPublic, r) for r in self._results_json(sweep)]

    def _results_json(self, sweep: str | SweepPublic) -> list[dict[str, Any]]:
        return self._json("GET", f"/sweeps/{_id(sweep)}/results")["items"]  # type: ignore[no-any-return]

    def results_csv(self, sweep: str | SweepPublic) -> str:
        """The results as CSV text (the columns of ``docs/api.md``)."""
        return self._request("GET", f"/sweeps/{_id(sweep)}/results",
                             params={"format": "csv"}).text

    def results_frame(self, sweep: str | SweepPublic) -> pandas.DataFrame:
        """The results as a pandas DataFrame, one row per run, nested fields flattened
        (``robust_accuracy.pgd``, ``condition_number.median``, ...). Needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Client.results_frame needs pandas: pip install pandas "
                              "(Client.results returns the same records as models)") from None
        records = self._results_json(sweep)
        slim = [{k: v for k, v in r.items()
                 if k not in ("spec", "attacks", "sparsity_per_layer", "security_curve")}
                for r in records]
        for r in slim:
            cond = r.get("condition_number")
            if isinstance(cond, dict):
                cond = {k: v for k, v in cond.items() if k != "per_layer"}
                r["condition_number"] = cond
        frame = pd.json_normalize(slim)
        return frame.replace({"Infinity": float("inf"), "-Infinity": float("-inf")})

    def summary(self, *sweeps: str | SweepPublic, group_by: str | list[str] | None = None,
                baseline: str | None = None, attack: str | None = None,
                frame: bool | None = None) -> Any:
        """Seed statistics of one or several sweeps (``GET .../summary``, ``docs/api.md``):
        per group (default: method and every grid path) and sparsity, the accuracies' mean
        and 95 % t-interval, κ's geometric mean with min/max and, with ``baseline`` (a
        method), the paired-by-seed difference and its verdict.

        Returns a pandas DataFrame, one row per group with the CSV's columns (∞ as inf,
        nulls as NaN/None), when pandas is installed (or ``frame=True``); else (or with
        ``frame=False``) the typed :class:`tscnc.summary.SummaryPublic`.
        """
        from tscnc.summary import SummaryPublic

        if not sweeps:
            raise ValueError("Client.summary needs at least one sweep id")
        ids = [_id(s) for s in sweeps]
        params = {"group_by": ",".join(group_by) if isinstance(group_by, list) else group_by,
                  "baseline": _value(baseline), "attack": _value(attack)}
        params = {k: v for k, v in params.items() if v is not None}
        path = f"/sweeps/{ids[0]}/summary" if len(ids) == 1 else "/summary"
        if len(ids) > 1:
            params["sweeps"] = ",".join(ids)
        out = _parse(SummaryPublic, self._json("GET", path, params=params))
        if frame is False:
            return out
        try:
            import pandas as pd
        except ImportError:
            if frame:
                raise ImportError("Client.summary(frame=True) needs pandas: pip install "
                                  "pandas") from None
            return out
        return pd.DataFrame(out.rows(), columns=out.columns())

    # -- runs --
    def runs(self, sweep: str | SweepPublic | None = None, status: str | None = None,
             method: str | None = None) -> list[RunPublic]:
        """Runs matching every given filter (all pages), newest first."""
        return self._all(RunPublic, "/runs", {"sweep": _id(sweep) if sweep else None,
                                              "status": _value(status),
                                              "method": _value(method)})

    def run(self, run: str | RunPublic) -> RunPublic:
        return self._get(RunPublic, "GET", f"/runs/{_id(run)}")

    def result(self, run: str | RunPublic) -> ResultPublic:
        """One run's final result (NotFound until it is evaluated)."""
        return self._get(ResultPublic, "GET", f"/runs/{_id(run)}/result")

    def cancel(self, run: str | RunPublic) -> RunPublic:
        """Cancel a run: a queued one at once, a running one at its next batch."""
        return self._get(RunPublic, "POST", f"/runs/{_id(run)}/cancel")

    def retry(self, run: str | RunPublic, fresh: bool = False) -> RunPublic:
        """Queue a failed or cancelled run again (it resumes from its checkpoints; with
        ``fresh``, checkpoints another tscnc build wrote are discarded and trained again)."""
        body = {"json": {"fresh": True}} if fresh else {}
        return self._get(RunPublic, "POST", f"/runs/{_id(run)}/retry", **body)

    def events(self, run: str | RunPublic, after: str | None = None) -> list[ServerEvent]:
        """The run's past events (every page), oldest first, without waiting for new ones."""
        out: list[ServerEvent] = []
        while True:
            page = self._json("GET", f"/runs/{_id(run)}/events",
                              params={"after": after, "limit": 1000} if after else
                              {"limit": 1000})
            out += [ServerEvent(e["id"], e["event"].get("type", "message"), e["event"])
                    for e in page["items"]]
            if not page.get("next"):
                return out
            after = page["next"]

    def download_checkpoint(self, run: str | RunPublic, path: str | os.PathLike[str]) -> Path:
        """Save the run's latest checkpoint to ``path``; load it with
        ``torch.load(path, weights_only=True)`` or :func:`tscnc.load_model`."""
        dest = Path(path)
        try:
            with self._http.stream("GET", f"/runs/{_id(run)}/checkpoint") as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error_for(resp)
                with open(dest, "wb") as f:
                    for chunk in resp.iter_bytes():
                        f.write(chunk)
        except httpx.TransportError as e:
            raise ServerUnreachable(f"download from {self.url} failed: {e}") from e
        return dest

    # -- live events --
    def stream(self, run: str | RunPublic, last_event_id: str | None = None, *,
               max_retries: int = 10) -> Iterator[ServerEvent]:
        """Iterate the run's events live (history first), until its final status event.

        On a dropped connection it reconnects with ``Last-Event-ID`` and carries on after the
        last event received, so no event is missed or repeated. Gives up with
        :class:`ServerUnreachable` after ``max_retries`` reconnects in a row without a new event.
        """
        yield from self._stream(f"/runs/{_id(run)}/events", last_event_id, max_retries,
                                stop_on_terminal=True)

    def stream_sweep(self, sweep: str | SweepPublic, last_event_id: str | None = None, *,
                     max_retries: int = 10) -> Iterator[ServerEvent]:
        """Every event of every run of the sweep, live, until all its runs have finished
        (each event's ``data["run"]`` says which run); resumes like :meth:`stream`."""
        yield from self._stream(f"/sweeps/{_id(sweep)}/events", last_event_id, max_retries,
                                stop_on_terminal=False)

    def _stream(self, path: str, last_id: str | None, max_retries: int,
                stop_on_terminal: bool) -> Iterator[ServerEvent]:
        failures = 0
        delay = 0.5
        # Reads block until the server's keep-alive comment at the latest (15 s by default).
        timeout = httpx.Timeout(self.timeout, read=max(60.0, self.timeout))
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            failures += 1     # reset by every event received
            reason = "the server closed the stream"
            try:
                with self._http.stream("GET", path, headers=headers, timeout=timeout) as resp:
                    if resp.status_code == 204:       # finished, nothing after last_id
                        return
                    if resp.status_code >= 400:
                        resp.read()
                        err = _error_for(resp)
                        if not isinstance(err, ServiceUnavailable):
                            raise err
                        reason = str(err)
                    else:
                        for data, ev_id, ev_type, retry in _parse_sse(resp.iter_lines()):
                            if retry is not None:
                                delay = retry / 1000
                            if ev_id is None:
                                continue
                            ev = ServerEvent(ev_id, ev_type, json.loads(data))
                            last_id, failures = ev_id, 0
                            yield ev
                            if stop_on_terminal and ev.terminal:
                                return
            except httpx.TransportError as e:
                reason = f"{type(e).__name__}: {e}"
            # Closed or cut short: reconnect after the last event received. A finished stream
            # answers 204 to that, which ends the iteration above.
            if failures > max_retries:
                raise ServerUnreachable(f"event stream {path} lost {failures} times in a row "
                                        f"({reason})")
            time.sleep(min(delay, 5.0))

    # -- tokens (admin) --
    def create_token(self, name: str, role: str = "member",
                     expires_in: float | None = None) -> TokenCreated:
        """Create a token; the answer's ``token`` is the secret, shown only this once."""
        return self._get(TokenCreated, "POST", "/tokens", json={
            "name": name, "role": _value(role), "expires_in": expires_in})

    def tokens(self) -> list[TokenPublic]:
        """Every token (never the secrets)."""
        return self._all(TokenPublic, "/tokens")

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token: it answers 401 from now on."""
        self._request("DELETE", f"/tokens/{_id(token_id)}")


def _id(value: Any) -> str:
    """Accept an id, or a record with an ``id`` (what the other methods return; a dict too)."""
    if isinstance(value, Mapping):
        value = value["id"]
    elif isinstance(value, BaseModel):
        value = getattr(value, "id", value)
    text = str(value)
    if not text or "/" in text or text in (".", ".."):
        raise ValueError(f"not an id: {value!r}")
    return text


def _value(v: Any) -> Any:
    return getattr(v, "value", v)

