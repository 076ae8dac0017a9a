"""Issue 14 (items 4, 5, 9): bounded dashboard state and lists that survive any stored record,
spreadsheet-safe CSV, names without control or bidi characters, share links that download
checkpoints only when allowed, a Content-Security-Policy on every page and API docs served
from the installed package. TestClient over the real app and a real redis-server."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

from backend.schemas import MAX_STATE_BYTES, MAX_STATE_DEPTH
from backend.settings import Settings
from backend.store import Store
from backend.views import results_csv
from tests.backend.test_backend_api import h, make_result, submit
from tscnc.records import Stage, StageFinished
from tscnc.spec import Method


def nested(depth: int) -> dict[str, Any]:
    """{"a": {"a": ... {}}} with ``depth`` objects in all."""
    state: dict[str, Any] = {}
    for _ in range(depth - 1):
        state = {"a": state}
    return state


def dashboard(client: Any, token: str, sweep_id: str, **body: Any) -> Any:
    return client.post("/api/v1/dashboards", headers=h(token),
                       json={"name": "d", "sweep_ids": [sweep_id], **body})


# ---- item 4: dashboard state ----------------------------------------------------------------

def test_dashboard_state_depth_and_size_are_bounded_with_a_422_naming_state(client, tokens):
    sid = submit(client, tokens.alice).json()["id"]
    assert dashboard(client, tokens.alice, sid, state=nested(MAX_STATE_DEPTH)).status_code == 201
    for state, words in [(nested(300), "deeper"), (nested(MAX_STATE_DEPTH + 1), "deeper"),
                         ({"x": "y" * (MAX_STATE_BYTES + 1)}, "larger")]:
        r = dashboard(client, tokens.alice, sid, state=state)
        assert r.status_code == 422, r.text[:300]
        (err,) = r.json()["detail"]
        assert err["loc"] == ["body", "state"] and words in err["msg"], err
    # Nothing of the refused ones was stored; the list answers.
    r = client.get("/api/v1/dashboards", headers=h(tokens.alice))
    assert r.status_code == 200 and r.json()["total"] == 1


def test_dashboard_list_survives_bad_records_written_directly_to_redis(client, store: Store,
                                                                       tokens):
    sid = submit(client, tokens.alice).json()["id"]
    good = dashboard(client, tokens.alice, sid, state={"view": "sweep"}).json()
    owner = tokens.ids["alice"]
    deep = "[" * 300 + "]" * 300
    bad_states = {"deep": json.dumps(nested(300)), "deeper-than-json": '{"a":' + deep + "}",
                  "not-json": "{oops", "not-object": "[1, 2]", "huge-nesting": "[" * 100_000}
    for i, (name, state) in enumerate(bad_states.items()):
        did = uuid.uuid4().hex
        store.r.hset(store.k.dashboard(did), mapping={
            "id": did, "name": name, "owner": owner, "sweep_ids": "not json either",
            "state": state, "created": "yesterday", "revoked": "0", "seq": "x"})
        store.r.zadd(store.k.dashboards, {did: 1000 + i})
        store.r.zadd(store.k.dashboards_by_owner(owner), {did: 1000 + i})
    for token in (tokens.alice, tokens.admin):
        r = client.get("/api/v1/dashboards", params={"limit": 50}, headers=h(token))
        assert r.status_code == 200, r.text[:300]
        items = {d["name"]: d for d in r.json()["items"]}
        assert set(items) == {"d", *bad_states}
        for name in bad_states:
            assert items[name]["state"] == {} and items[name]["state_error"], items[name]
        assert items["d"]["state"] == {"view": "sweep"} and items["d"]["state_error"] is None
    one = [d for d in r.json()["items"] if d["name"] == "deep"][0]
    assert client.get(f"/api/v1/dashboards/{one['id']}", headers=h(tokens.alice)).status_code == 200
    assert client.get(f"/api/v1/share/{good['share_token']}").status_code == 200


# ---- item 5: CSV formula injection ----------------------------------------------------------

FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "-", "=1"]


def test_results_csv_neutralises_formulas_and_keeps_numbers_numeric(client, store: Store,
                                                                    tokens):
    # What a spreadsheet would evaluate: a cell starting with = + - @, tab or CR.
    risky = re.compile(r"^[=+\-@\t\r]")
    plain_number = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$|^-?inf$|^nan$")
    result = make_result("r", Method.tscnc, 0.5).model_copy(
        update={"lipschitz_upper": -0.5, "clean_accuracy": 1e-7})
    text = results_csv([(name, result) for name in FORMULAS])
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert [r[0] for r in rows[1:]] == ["'" + f for f in FORMULAS]
    for row in rows:
        for cell in row:
            assert not risky.match(cell) or plain_number.match(cell), (cell, row)
    header = rows[0]
    assert rows[1][header.index("lipschitz_upper")] == "-0.5"            # a number stays one
    assert float(rows[1][header.index("clean_accuracy")]) == 1e-7
    # Through the API: numbers as numbers, text cells as they were (no formula among them).
    sweep = submit(client, tokens.alice).json()
    rid = sweep["run_ids"][0]
    store.put_result(rid, result.model_copy(update={"run": rid}))
    c = client.get(f"/api/v1/sweeps/{sweep['id']}/results", params={"format": "csv"},
                   headers=h(tokens.viewer))
    got = list(csv.DictReader(io.StringIO(c.text)))
    assert got[0]["run"] == rid and got[0]["lipschitz_upper"] == "-0.5"


# ---- item 9: names, share-link checkpoints --------------------------------------------------

BAD_CHARS = ["\x00", "\x1b", "\n", "\x7f", "\x85", "\u202a", "\u202e", "\u2066", "\u2069",
             "\u200e", "\u200f"]


def test_control_and_bidi_characters_are_refused_in_names(client, tokens):
    sid = submit(client, tokens.alice).json()["id"]
    for ch in BAD_CHARS:
        name = f"safe{ch}name"
        r = submit(client, tokens.alice, {"preset": "digits-quick", "spec": {"name": name}})
        assert r.status_code == 422, (repr(ch), r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "spec", "name"]
        r = client.post("/api/v1/tokens", json={"name": name}, headers=h(tokens.admin))
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"]
        r = dashboard(client, tokens.alice, sid, name=name)
        assert r.status_code == 422, (repr(ch), r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "name"]
        assert f"U+{ord(ch):04X}" in r.json()["detail"][0]["msg"]
    # The OpenAPI document states the same rule (a JSON Schema pattern).
    from tscnc.names import NAME_PATTERN

    pattern = re.compile(NAME_PATTERN)
    assert not any(pattern.match(f"safe{ch}name") for ch in BAD_CHARS)
    assert pattern.match("κ-sweep ü 2")
    schemas = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    assert schemas["DashboardCreate"]["properties"]["name"]["pattern"] == NAME_PATTERN
    # Printable Unicode stays allowed.
    ok = submit(client, tokens.alice, {"preset": "digits-quick", "spec": {"name": "κ-sweep ü 2"}})
    assert ok.status_code == 201
    assert dashboard(client, tokens.alice, sid, name="κ dashboard — ü").status_code == 201


def test_share_links_download_checkpoints_only_when_allowed(client, store: Store, tokens,
                                                            settings: Settings):
    sweep = submit(client, tokens.alice).json()
    rid = sweep["run_ids"][0]
    ckpt = settings.artifacts_dir / sweep["id"] / "runs" / rid / "final.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"weights")
    store.record_event(rid, StageFinished(run=rid, stage=Stage.finetune, seconds=1.0,
                                          checkpoint=str(ckpt)))
    url = f"/api/v1/runs/{rid}/checkpoint"
    closed = dashboard(client, tokens.alice, sweep["id"]).json()
    opened = dashboard(client, tokens.alice, sweep["id"], allow_checkpoints=True).json()
    assert closed["allow_checkpoints"] is False and opened["allow_checkpoints"] is True
    r = client.get(url, headers=h(closed["share_token"]))
    assert r.status_code == 403 and "checkpoint" in r.json()["detail"]
    # The closed link still reads everything else of its sweep.
    assert client.get(f"/api/v1/runs/{rid}", headers=h(closed["share_token"])).status_code == 200
    r = client.get(url, headers=h(opened["share_token"]))
    assert r.status_code == 200 and r.content == b"weights"
    assert client.get(url, headers=h(tokens.viewer)).content == b"weights"        # tokens: as before
    shared = client.get(f"/api/v1/share/{opened['share_token']}").json()
    assert shared["dashboard"]["allow_checkpoints"] is True
    # The same through the header (what the share page uses: no token in its API URLs).
    assert client.get("/api/v1/share", headers=h(opened["share_token"])).json() == shared
    assert client.get("/api/v1/share", headers=h(tokens.viewer)).status_code == 403
    assert client.get("/api/v1/share").status_code == 401


def test_tokens_in_urls_are_refused(client, tokens):
    for path in ("/api/v1/runs", "/api/v1/me"):
        r = client.get(path, params={"token": tokens.admin})
        assert r.status_code == 401 and "Authorization" in r.json()["detail"], r.text
    # The header alone works.
    assert client.get("/api/v1/me", headers=h(tokens.admin)).status_code == 200


# ---- item 9: CSP and the API docs from the installed package --------------------------------

def test_api_docs_come_from_the_installed_swagger_ui_package(client):
    import swagger_ui

    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "<script>" not in page.text and "//" not in page.text.replace("://", "")  # no CDN
    srcs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert srcs and all(s.startswith("/static/swagger-ui/") for s in srcs), srcs
    shipped = Path(swagger_ui.__file__).parent / "static" / "swagger-ui-bundle.js"
    js = client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert js.status_code == 200 and js.content == shipped.read_bytes()
    assert "openapi.json" in client.get("/static/swagger-ui/init.js").text
    for name in ("index.html", "..%2F__init__.py", "swagger-ui.js.map"):
        assert client.get(f"/static/swagger-ui/{name}").status_code == 404, name
    for path in ("/api/v1/docs", "/api/v1/health", "/share/abc"):
        assert "script-src 'self'" in client.get(path).headers["content-security-policy"]


# ---- item 2: no credential in a log line ----------------------------------------------------

def test_log_records_are_redacted_whatever_logger_and_handler(caplog):
    from backend import redact

    redact.install()
    secret, share = "frontend-tests-admin-token-0123456789", "tscncs_" + "A" * 43
    log = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO):
        log.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET",
                 f"/api/v1/runs?limit=5&token={secret}", "1.1", 401)
        logging.getLogger("backend.x").warning("header was Bearer %s", secret)
        logging.getLogger("other").info(f"GET /share/{share}#/run/1 and /api/v1/share/{share}")
        try:
            raise ValueError(f"bad url http://h/x?access_token={secret}&a=1")
        except ValueError:
            logging.getLogger("uvicorn.error").exception("boom")
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert secret not in text and share not in text and "[redacted]" in text
    assert '"GET /api/v1/runs?limit=5&token=[redacted] HTTP/1.1" 401' in caplog.records[0].getMessage()
    assert "/share/[redacted]#/run/1" in caplog.records[2].getMessage()
