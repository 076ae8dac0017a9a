"""tscnc.client.Client end to end against the real service (redis-server, Celery worker,
uvicorn): submit, list/filter/page, wait, results, live events with resumption, actions,
tokens, and the typed errors with the server's messages."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.services import REPO_ROOT, free_port, start_uvicorn, stop_process
from tests.support.stack import Stack
from tscnc import client as client_mod
from tscnc.client import (
    Client,
    ClientError,
    Conflict,
    Forbidden,
    NotFound,
    ServerEvent,
    ServerUnreachable,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
    WaitTimeout,
)
from tscnc.errors import TSCNCError
from tscnc.resources import SweepDetail
from tscnc.spec import SweepSpec

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def done_sweep(stack: Stack, small_sweep: Callable[..., dict[str, Any]]) -> SweepDetail:
    """A two-run sweep submitted through the client and waited for."""
    with Client(stack.base, stack.token) as c:
        sweep = c.submit(small_sweep("client-e2e"), idempotency_key="client-e2e")
        seen: list[float] = []
        final = c.wait(sweep.id, timeout=240, progress=lambda s: seen.append(s.progress))
    assert seen and seen[-1] == pytest.approx(1.0)
    assert seen == sorted(seen)
    return final


@pytest.fixture
def c(stack: Stack) -> Iterator[Client]:
    with Client(stack.base, stack.token) as client:
        yield client


def test_submit_is_idempotent_and_accepts_a_spec_model(stack: Stack, c: Client,
                                                       done_sweep: SweepDetail,
                                                       small_sweep: Any) -> None:
    again = c.submit(small_sweep("client-e2e"), idempotency_key="client-e2e")
    assert again.id == done_sweep.id
    assert isinstance(again, SweepDetail)             # typed answers, not dicts
    assert done_sweep.status == "succeeded", [(r.key, r.message) for r in done_sweep.runs]
    # A SweepSpec model is sent as JSON; a preset with a partial spec is merged by the server.
    model = SweepSpec.model_validate(small_sweep("from-model"))
    got = c.submit(model)
    assert got.spec.name == "from-model" and len(got.runs) == 2
    via_preset = c.submit({"sparsities": [0.9], "methods": ["hydra"],
                           "training": {"device": "cpu"}}, preset="digits-quick")
    assert via_preset.spec.model.width == 128          # from the preset
    assert [r.key for r in via_preset.runs] == ["hydra-s0.9-seed0"]
    for s in (got, via_preset):
        c.cancel_sweep(s.id)
        c.delete_sweep(s.id)
    with pytest.raises(NotFound):
        c.sweep(got.id)


def test_lists_filters_and_iterates_pages(stack: Stack, c: Client, done_sweep: SweepDetail,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sid = done_sweep.id
    assert sid in [s.id for s in c.sweeps()]
    runs = c.runs(sweep=sid)
    assert {r.key for r in runs} == {"dense-s0-seed0", "hydra-s0.5-seed0"}
    assert [r.key for r in c.runs(sweep=sid, method="hydra")] == ["hydra-s0.5-seed0"]
    assert len(c.runs(sweep=sid, status="succeeded")) == 2
    assert c.runs(sweep=sid, status="failed") == []
    monkeypatch.setattr(client_mod, "PAGE_SIZE", 1)   # one item per page: follow `next`
    assert [r.id for r in c.runs(sweep=sid)] == [r.id for r in runs]
    assert c.run(runs[0].id).id == runs[0].id
    assert c.run(runs[0]).id == runs[0].id        # a record works as an id too


def test_answers_from_a_newer_server_with_unknown_fields_still_parse(
        c: Client, done_sweep: SweepDetail) -> None:
    """A server newer than the client may add fields (at any depth): the client drops what it
    does not know instead of failing, while the API's own models stay strict."""
    from pydantic import ValidationError

    data = c._json("GET", f"/sweeps/{done_sweep.id}")
    data["added_later"] = 1
    data["runs"][0]["added_later"] = {"x": 1}
    assert data["runs"][0]["monitor"]             # a finished run has monitor values
    data["runs"][0]["monitor"]["added_later"] = 2
    with pytest.raises(ValidationError, match="added_later"):
        SweepDetail.model_validate(data)
    parsed = client_mod._parse(SweepDetail, data)
    assert parsed.id == done_sweep.id
    assert [r.model_dump() for r in parsed.runs] == [r.model_dump() for r in done_sweep.runs]


def test_results_records_frame_and_csv(c: Client, done_sweep: SweepDetail,
                                       tmp_path: Path) -> None:
    sid = done_sweep.id
    records = c.results(sid)
    assert {r.run_id for r in records} == {r.id for r in done_sweep.runs}
    assert all(0 <= r.clean_accuracy <= 1 for r in records)
    frame = c.results_frame(sid)
    assert len(frame) == 2
    assert {"method", "sparsity", "clean_accuracy", "robust_accuracy.pgd",
            "condition_number.median"} <= set(frame.columns)
    assert set(frame["method"]) == {"dense", "hydra"}
    assert c.results_csv(sid).splitlines()[0].startswith("run,method,sparsity")
    hydra = next(r for r in done_sweep.runs if r.method == "hydra")
    assert c.result(hydra.id).method == "hydra"
    path = c.download_checkpoint(hydra.id, tmp_path / "hydra.pt")
    assert path.stat().st_size > 1000


def test_results_frame_without_pandas_says_how_to_get_it(c: Client, done_sweep: SweepDetail,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)      # import pandas → ImportError
    with pytest.raises(ImportError, match="pip install pandas"):
        c.results_frame(done_sweep.id)


def test_stream_yields_the_whole_history_then_ends(c: Client, done_sweep: SweepDetail) -> None:
    run = next(r for r in done_sweep.runs if r.method == "hydra")
    live = list(c.stream(run.id))
    past = c.events(run.id)
    assert [e.id for e in live] == [e.id for e in past]
    assert live[-1].terminal and live[-1].data["status"] == "succeeded"
    assert {"stage_started", "epoch", "evaluation", "status"} <= {e.type for e in live}
    # Resuming after an id gives exactly what follows it.
    middle = past[len(past) // 2]
    assert [e.id for e in c.stream(run.id, last_event_id=middle.id)] == \
        [e.id for e in past[len(past) // 2 + 1:]]
    # The sweep stream carries both runs and ends when they have all finished.
    sweep_events = list(c.stream_sweep(done_sweep.id))
    assert {e.data["run"] for e in sweep_events} == {r.id for r in done_sweep.runs}
    assert sum(e.terminal for e in sweep_events) == 2


class _CutStream(httpx.SyncByteStream):
    """Passes ``keep`` complete SSE messages with an id, then half of the next one, then
    fails like a dropped connection."""

    def __init__(self, inner: httpx.SyncByteStream, keep: int) -> None:
        self.inner, self.keep = inner, keep

    def __iter__(self) -> Iterator[bytes]:
        buf, sent = b"", 0
        for chunk in self.inner:
            buf += chunk
            while b"\n\n" in buf:
                msg, buf = buf.split(b"\n\n", 1)
                if sent == self.keep and b"\nid:" in b"\n" + msg:
                    yield msg[: len(msg) // 2]
                    self.close()
                    raise httpx.RemoteProtocolError("peer closed connection (test cut)")
                yield msg + b"\n\n"
                sent += b"\nid:" in b"\n" + msg
        yield buf

    def close(self) -> None:
        self.inner.close()


class CuttingTransport(httpx.BaseTransport):
    """The real HTTP transport, except that every SSE response is cut short."""

    def __init__(self, keep: int) -> None:
        self.inner, self.keep = httpx.HTTPTransport(), keep
        self.resumed_from: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = self.inner.handle_request(request)
        if request.headers.get("accept") != "text/event-stream" or resp.status_code != 200:
            return resp
        self.resumed_from.append(request.headers.get("last-event-id"))
        assert isinstance(resp.stream, httpx.SyncByteStream)
        return httpx.Response(resp.status_code, headers=resp.headers,
                              stream=_CutStream(resp.stream, self.keep),
                              extensions=resp.extensions)

    def close(self) -> None:
        self.inner.close()


def test_stream_resumes_with_last_event_id_after_a_dropped_connection(
        stack: Stack, c: Client, done_sweep: SweepDetail) -> None:
    run = next(r for r in done_sweep.runs if r.method == "hydra")
    past = c.events(run.id)
    cutter = CuttingTransport(keep=3)
    with Client(stack.base, stack.token, transport=cutter) as flaky:
        got = list(flaky.stream(run.id))
    assert [e.id for e in got] == [e.id for e in past]          # nothing missed or repeated
    # Each connection carried 3 events; each reconnect named the last one received.
    assert cutter.resumed_from == [None] + [past[i].id for i in range(2, len(past) - 1, 3)]


def test_stream_follows_a_live_run(stack: Stack, c: Client, small_sweep: Any) -> None:
    sweep = c.submit(small_sweep("client-live", methods=["dense"]))
    run = sweep.runs[0]
    events: list[ServerEvent] = []
    for ev in c.stream(run.id):
        events.append(ev)
    statuses = [e.data["status"] for e in events if e.type == "status"]
    assert "running" in statuses and statuses[-1] == "succeeded"
    assert any(e.type == "epoch" for e in events)


def test_cancel_retry_and_conflicts(stack: Stack, c: Client, small_sweep: Any) -> None:
    sweep = c.submit(small_sweep("client-actions", methods=["dense"],
                                 training={"pretrain_epochs": 400}))
    run = sweep.runs[0]
    after = c.cancel(run.id)
    assert after.status == "cancelled" or after.cancel_requested
    final = c.wait(sweep.id, timeout=120, poll=0.2)
    assert final.runs[0].status == "cancelled"
    with pytest.raises(Conflict, match="already finished"):
        c.cancel(run.id)
    queued = c.retry(run.id)
    assert queued.status == "queued"
    with pytest.raises(Conflict, match="only failed or cancelled"):
        c.retry(run.id)
    with pytest.raises(WaitTimeout) as info:
        c.wait(sweep.id, timeout=0.5, poll=0.1)
    assert info.value.sweep is not None and info.value.sweep.id == sweep.id
    c.cancel(run.id)
    assert c.wait(sweep.id, timeout=120, poll=0.2).runs[0].status == "cancelled"


def test_tokens_create_list_revoke(stack: Stack, c: Client, done_sweep: SweepDetail) -> None:
    created = c.create_token("client-test", role="viewer")
    assert created.role == "viewer" and created.token
    assert created.id in [t.id for t in c.tokens()]
    assert all("token" not in t.model_dump() for t in c.tokens())
    with Client(stack.base, created.token) as viewer:
        assert viewer.me().role == "viewer"
        assert viewer.sweep(done_sweep.id).id == done_sweep.id
        with pytest.raises(Forbidden) as info:
            viewer.submit(preset="digits-quick")
        assert info.value.status == 403 and info.value.detail
        with pytest.raises(Forbidden):
            viewer.create_token("nope")
    c.revoke_token(created.id)
    with Client(stack.base, created.token) as revoked, pytest.raises(Unauthorized):
        revoked.sweeps()
    with pytest.raises(NotFound, match="no token"):
        c.revoke_token("does-not-exist")


def test_errors_are_typed_and_carry_the_servers_message(stack: Stack, c: Client) -> None:
    with pytest.raises(ValidationFailed) as info:
        c.submit({"sparsities": [1.5], "training": {"batch_size": 0}})
    err = info.value
    assert err.status == 422 and isinstance(err, TSCNCError) and isinstance(err, ClientError)
    locs = {tuple(e["loc"]) for e in err.errors}
    assert ("body", "spec", "sparsities", 0) in locs
    assert ("body", "spec", "training", "batch_size") in locs
    assert "spec.sparsities.0" in str(err) and "spec.training.batch_size" in str(err)
    with pytest.raises(ValidationFailed, match="unknown preset"):
        c.submit(preset="no-such-preset")
    with pytest.raises(NotFound, match="no run 'nope'"):
        c.run("nope")
    with Client(stack.base, "not-a-valid-token-at-all") as bad, pytest.raises(Unauthorized):
        bad.sweeps()
    with Client(stack.base, None) as anonymous:
        assert anonymous.health().status == "ok"      # health needs no token
        with pytest.raises(Unauthorized):
            anonymous.runs()
    with Client(f"http://127.0.0.1:{free_port()}", "t") as nowhere, \
            pytest.raises(ServerUnreachable, match="cannot reach"):
        nowhere.sweeps()
    with pytest.raises(ValueError):
        c.run("../sweeps")


def test_service_unavailable_when_redis_is_down(tmp_path: Path) -> None:
    base, proc = start_uvicorn("backend.app:create_app", {
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "TSCNC_REDIS_TIMEOUT": "0.5",
        "TSCNC_ARTIFACTS_DIR": str(tmp_path)}, factory=True)
    try:
        with Client(base, "some-token-0123456789") as c:
            with pytest.raises(ServiceUnavailable, match="Redis"):
                c.sweeps()
            with pytest.raises(ServiceUnavailable):
                c.health()
    finally:
        stop_process(proc)


def test_client_module_is_torch_free() -> None:
    code = ("import sys, tscnc.client, tscnc.cli_client; "
            "bad = {m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'fastapi', 'starlette', 'celery', 'redis', 'backend', 'worker'}; "
            "print(sorted(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "[]"
