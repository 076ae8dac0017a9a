"""The API side of the dashboard as a daily tool (issue 13): truthful sweep states, attempts,
datasets, notes and tags, filters, over the real app and a real redis-server."""

from __future__ import annotations

from typing import Any

from backend.store import Store
from tests.backend.test_backend_api import h, submit
from tscnc.records import RunStatus


def _finish(store: Store, run_id: str, status: RunStatus) -> None:
    store.set_status(run_id, RunStatus.running, worker="w", device="cpu")
    store.set_status(run_id, status, category="error" if status == RunStatus.failed else None)


def test_sweep_state_is_told_from_its_runs(client: Any, store: Store, tokens: Any) -> None:
    sweep = submit(client, tokens.alice).json()          # 5 runs
    ids = sweep["run_ids"]

    def state() -> tuple[str, str]:
        s = client.get(f"/api/v1/sweeps/{sweep['id']}", headers=h(tokens.viewer)).json()
        listed = client.get("/api/v1/sweeps", headers=h(tokens.viewer)).json()["items"][0]
        assert (listed["status"], listed["summary"]) == (s["status"], s["summary"])
        return s["status"], s["summary"]

    assert state() == ("queued", "queued · 5 queued")
    store.set_status(ids[0], RunStatus.running, worker="w", device="cpu")
    assert state() == ("running", "running · 4 queued · 1 running")
    for rid in ids[:4]:
        _finish(store, rid, RunStatus.succeeded)
    assert state() == ("running", "running · 1 queued · 4 succeeded")
    store.set_status(ids[4], RunStatus.cancelled)
    # Not "cancelled": most of it succeeded.
    assert state() == ("finished", "finished · 4 succeeded · 1 cancelled")

    other = submit(client, tokens.alice, key="second").json()
    for rid in other["run_ids"]:
        _finish(store, rid, RunStatus.succeeded)
    s = client.get(f"/api/v1/sweeps/{other['id']}", headers=h(tokens.viewer)).json()
    assert (s["status"], s["summary"]) == ("succeeded", "succeeded · 5 succeeded")


def test_retry_counts_an_attempt(client: Any, store: Store, tokens: Any, recorder: Any) -> None:
    rid = submit(client, tokens.alice).json()["run_ids"][0]
    _finish(store, rid, RunStatus.failed)
    for n in (1, 2):
        r = client.post(f"/api/v1/runs/{rid}/retry", headers=h(tokens.alice))
        assert r.status_code == 200 and r.json()["attempts"] == n, r.text
        _finish(store, rid, RunStatus.failed)


def test_results_only_once_evaluated_monitor_values_apart(client: Any, store: Store,
                                                         tokens: Any) -> None:
    from tests.backend.test_backend_api import make_result
    from tscnc.records import EpochEvent, Stage

    sweep = submit(client, tokens.alice).json()
    rid = sweep["run_ids"][-1]
    store.set_status(rid, RunStatus.running, worker="w", device="cpu")
    store.record_event(rid, EpochEvent(run=rid, stage=Stage.pretrain, epoch=1, epochs=4, loss=1.0,
                                       clean_accuracy=0.8, robust_accuracy=0.4,
                                       condition_numbers={"fc1": 3.0, "fc2": 5.0}, sparsity=0.0,
                                       lr=0.1, time=1.0))
    run = client.get(f"/api/v1/runs/{rid}", headers=h(tokens.viewer)).json()
    assert [run[k] for k in ("clean_accuracy", "robust_accuracy", "kappa_median",
                             "sparsity_actual")] == [None] * 4
    assert run["monitor"] == {"stage": "pretrain", "epoch": 1, "clean_accuracy": 0.8,
                              "robust_accuracy": 0.4, "kappa_median": 4.0, "sparsity": 0.0}
    listed = client.get("/api/v1/runs", params={"sweep": sweep["id"], "sort": "clean_accuracy"},
                        headers=h(tokens.viewer)).json()["items"]
    assert all(x["clean_accuracy"] is None for x in listed)
    store.put_result(rid, make_result(rid))
    run = client.get(f"/api/v1/runs/{rid}", headers=h(tokens.viewer)).json()
    assert (run["clean_accuracy"], run["robust_accuracy"], run["sparsity_actual"]) == (0.9, 0.4,
                                                                                       0.9)


def test_datasets_are_what_the_online_workers_report(client: Any, store: Store,
                                                     tokens: Any) -> None:
    def get() -> dict[str, Any]:
        r = client.get("/api/v1/datasets", headers=h(tokens.viewer))
        assert r.status_code == 200, r.text
        return r.json()

    none = get()
    assert none["workers"] == 0 and all(d["workers"] == 0 for d in none["datasets"])
    assert "tscnc data download" in none["how_to_add"] and "TSCNC_DATA_ROOTS" in none["how_to_add"]
    store.heartbeat("w1", "cpu", None, ttl=30, queue="cpu", datasets=[
        {"name": "digits", "data_dir": None}, {"name": "mnist", "data_dir": "mnist-data"}])
    store.heartbeat("w2", "cpu", None, ttl=30, queue="cpu", datasets=[
        {"name": "digits", "data_dir": None}, {"name": "mnist", "data_dir": None}])
    store.heartbeat("old", "cpu", None, ttl=30, queue="cpu")       # does not tell: not counted
    got = {d["name"]: d for d in get()["datasets"]}
    assert get()["workers"] == 2
    assert got["digits"] == {"name": "digits", "workers": 2, "data_dirs": [None]}
    assert got["mnist"] == {"name": "mnist", "workers": 2, "data_dirs": ["mnist-data", None]}
    assert got["cifar10"]["workers"] == 0 and got["cifar10"]["data_dirs"] == []
    assert client.get("/api/v1/datasets").status_code == 401


def test_a_worker_reports_the_datasets_in_its_data_roots(tmp_path: Any, monkeypatch: Any) -> None:
    from worker.tasks import readable_datasets

    files = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]
    for f in files:
        path = tmp_path / "mine" / "MNIST" / "raw" / f
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "partial" / "MNIST" / "raw").mkdir(parents=True)
    (tmp_path / "partial" / "MNIST" / "raw" / files[0]).write_bytes(b"x")
    monkeypatch.setenv("TSCNC_DATA_ROOTS", str(tmp_path))
    got = readable_datasets()
    assert {"name": "mnist", "data_dir": "mine"} in got
    assert {"name": "digits", "data_dir": None} in got
    assert not any(d["data_dir"] == "partial" for d in got)
    assert not any(d["name"] in ("cifar10", "fashion_mnist", "svhn") for d in got)


def test_make_demo_twice_says_it_reuses_the_first_sweep(live: str, store: Store) -> None:
    # ``store`` empties the session's Redis: no demo sweep of an earlier test is there.
    from backend.launcher import submit_demo
    from tests.backend.conftest import BOOTSTRAP

    first = submit_demo(live, BOOTSTRAP)
    assert first.startswith("demo sweep submitted: ") and " runs queued" in first, first
    sweep_id = first.rsplit("/", 1)[1]
    again = submit_demo(live, BOOTSTRAP)
    assert "not submitted again" in again and sweep_id in again and "queued ·" in again, again


def test_notes_and_tags_owner_writes_readers_and_share_links_read(client: Any, store: Store,
                                                                 tokens: Any) -> None:
    sweep = submit(client, tokens.alice).json()
    rid = sweep["run_ids"][0]
    body = {"notes": "lr too high?\nrerun with 0.02", "tags": ["baseline", "paper:fig3",
                                                                  "baseline"]}
    r = client.patch(f"/api/v1/sweeps/{sweep['id']}", json=body, headers=h(tokens.alice))
    assert r.status_code == 200, r.text
    assert (r.json()["notes"], r.json()["tags"]) == (body["notes"], ["baseline", "paper:fig3"])
    r = client.patch(f"/api/v1/runs/{rid}", json={"tags": ["odd"]}, headers=h(tokens.alice))
    assert r.status_code == 200 and r.json()["tags"] == ["odd"] and r.json()["notes"] == ""
    # Another member and a viewer may not; an admin may (and a field left out is kept).
    for who in (tokens.bob, tokens.viewer):
        for path in (f"/sweeps/{sweep['id']}", f"/runs/{rid}"):
            assert client.patch(f"/api/v1{path}", json={"notes": "x"},
                                headers=h(who)).status_code == 403
    r = client.patch(f"/api/v1/runs/{rid}", json={"notes": "checked"}, headers=h(tokens.admin))
    assert (r.json()["notes"], r.json()["tags"]) == ("checked", ["odd"])
    # Readers see them in details, lists and exports of the API.
    got = client.get(f"/api/v1/sweeps/{sweep['id']}", headers=h(tokens.viewer)).json()
    assert got["tags"] == ["baseline", "paper:fig3"] and got["notes"] == body["notes"]
    assert next(x for x in got["runs"] if x["id"] == rid)["tags"] == ["odd"]
    listed = client.get("/api/v1/sweeps", headers=h(tokens.viewer)).json()["items"][0]
    assert listed["tags"] == ["baseline", "paper:fig3"]
    # A share link reads them.
    dash = client.post("/api/v1/dashboards", json={"name": "d", "sweep_ids": [sweep["id"]]},
                       headers=h(tokens.alice)).json()
    shared = client.get("/api/v1/share", headers=h(dash["share_token"]))
    assert shared.status_code == 200, shared.text
    assert shared.json()["sweeps"][0]["tags"] == ["baseline", "paper:fig3"]
    # Bad input names the field; clearing works.
    bad = client.patch(f"/api/v1/runs/{rid}", json={"tags": ["<b>"]}, headers=h(tokens.alice))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:2] == ["body", "tags"]
    assert client.patch(f"/api/v1/runs/{rid}", json={"notes": "x" * 5001},
                        headers=h(tokens.alice)).status_code == 422
    r = client.patch(f"/api/v1/runs/{rid}", json={"tags": [], "notes": ""},
                     headers=h(tokens.alice))
    assert (r.json()["notes"], r.json()["tags"]) == ("", [])
    assert client.patch("/api/v1/runs/nope", json={}, headers=h(tokens.admin)).status_code == 404


def test_runs_and_sweeps_filter_server_side(client: Any, store: Store, tokens: Any) -> None:
    from tests.backend.test_backend_api import SMALL, make_result

    a = submit(client, tokens.alice, {**SMALL, "spec": {**SMALL["spec"], "name": "alpha lr"}}).json()
    b = submit(client, tokens.bob, {**SMALL, "spec": {**SMALL["spec"], "name": "beta"}}).json()
    client.patch(f"/api/v1/sweeps/{b['id']}", json={"tags": ["keep"], "notes": "the good one"},
                 headers=h(tokens.bob))
    tagged = a["run_ids"][1]
    client.patch(f"/api/v1/runs/{tagged}", json={"tags": ["odd"], "notes": "NaN at epoch 2"},
                 headers=h(tokens.alice))
    robust = {}
    for i, rid in enumerate(b["run_ids"]):           # evaluated runs with known robust accuracy
        _finish(store, rid, RunStatus.succeeded)
        res = make_result(rid).model_copy(update={"robust_accuracy": {"pgd": 0.2 * i}})
        store.put_result(rid, res)
        robust[rid] = 0.2 * i

    def runs(**params: Any) -> list[str]:
        out, cursor = [], None
        while True:  # every page, 2 at a time: the scan pages like the index does
            page = client.get("/api/v1/runs", params={**params, "limit": 2,
                                                       **({"cursor": cursor} if cursor else {})},
                              headers=h(tokens.viewer)).json()
            out += [x["id"] for x in page["items"]]
            cursor = page["next"]
            if not cursor:
                assert page["total"] == len(out)
                return out

    assert runs(q="alpha") == list(reversed(a["run_ids"]))          # the sweep's name
    assert runs(q="nan AT") == [tagged]                              # notes, any case
    assert runs(tag="odd") == [tagged]
    assert set(runs(metric="robust_accuracy", min=0.5)) == {r for r, v in robust.items()
                                                            if v >= 0.5}
    assert set(runs(metric="robust_accuracy", min=0.1, max=0.5, method="lwm")) == {
        r for r, v in robust.items() if 0.1 <= v <= 0.5
        and store.get_run(r).method.value == "lwm"}
    assert runs(owner=tokens.ids["alice"]) == list(reversed(a["run_ids"]))
    assert runs(dataset="cifar10") == [] and len(runs(dataset="digits")) == 10
    later = store.get_run(b["run_ids"][0]).created
    assert set(runs(created_from=later)) == set(b["run_ids"])
    # A bound without a metric bounds the robust accuracy; min above max is an empty range.
    assert set(runs(min=0.5)) == set(runs(metric="robust_accuracy", min=0.5))
    assert runs(metric="clean_accuracy", min=0.6, max=0.4) == []

    def sweeps(**params: Any) -> list[str]:
        r = client.get("/api/v1/sweeps", params=params, headers=h(tokens.viewer)).json()
        assert r["total"] == len(r["items"])
        return [x["id"] for x in r["items"]]

    assert sweeps(q="GOOD") == [b["id"]] and sweeps(tag="keep") == [b["id"]]
    assert sweeps(status="succeeded") == [b["id"]] and sweeps(status="queued") == [a["id"]]
    assert sweeps(method="lwm") == [b["id"], a["id"]] and sweeps(method="hydra") == []
    assert sweeps(owner=tokens.ids["alice"], dataset="digits") == [a["id"]]
