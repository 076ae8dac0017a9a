"""Issue 6.5 — access control, proven route by route against a real uvicorn + redis-server.

The write routes are read from the OpenAPI document the server publishes, so a write route added
later without an entry in :data:`WRITE_ROLES` fails this test instead of going unchecked. Every
one refuses missing, malformed, unknown, revoked and expired tokens (401) and roles below its own
(403; share links are read-only), and changes nothing when refused. Also here: secrets are never
stored (every Redis key and value is searched), share links carry ≥ 128 random bits and die with
their dashboard, checkpoints are never unpickled, a non-loopback bind without tokens is refused
and CORS is closed by default. (tests/backend covers the same rules route by route through
TestClient, and checkpoint downloads through traversal and symlinks.)
"""

from __future__ import annotations

import base64
import hashlib
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.reliability.helpers import ADMIN, live_api
from tests.support.apps import BOOTSTRAP_TOKEN
from tests.support.services import REPO_ROOT, free_port
from tests.support.wait import wait_until

# The least role each write route needs. Every write operation of the OpenAPI document must be
# listed (test_every_write_route_is_in_the_table).
WRITE_ROLES = {
    ("POST", "/api/v1/sweeps"): "member",
    ("POST", "/api/v1/sweeps/{sweep_id}/cancel"): "member",
    ("DELETE", "/api/v1/sweeps/{sweep_id}"): "member",
    ("POST", "/api/v1/runs/{run_id}/cancel"): "member",
    ("POST", "/api/v1/runs/{run_id}/retry"): "member",
    ("PATCH", "/api/v1/sweeps/{sweep_id}"): "member",      # notes and tags
    ("PATCH", "/api/v1/runs/{run_id}"): "member",
    ("POST", "/api/v1/dashboards"): "member",
    ("DELETE", "/api/v1/dashboards/{dashboard_id}"): "member",
    ("POST", "/api/v1/tokens"): "admin",
    ("DELETE", "/api/v1/tokens/{token_id}"): "admin",
}
# Reads anyone may make (everything else needs a token or a share link).
PUBLIC_READS = {"/api/v1/health", "/api/v1/share/{token}"}


@dataclass
class World:
    base: str
    redis_url: str
    secrets: dict[str, str]          # name -> bearer secret (admin, alice, bob, viewer, ...)
    ids: dict[str, str]              # path parameter -> an id that exists (owned by alice)
    spec: dict[str, Any]

    def call(self, method: str, path: str, secret: str | None = None,
             headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        h = dict(headers or {})
        if secret is not None:
            h["Authorization"] = f"Bearer {secret}"
        return httpx.request(method, self.base + path, headers=h, timeout=10, **kw)

    def state(self) -> Any:
        """What a refused write must not change (read as admin)."""
        a = self.secrets["admin"]
        return [self.call("GET", p, a).json() for p in (
            "/api/v1/sweeps?limit=500", "/api/v1/runs?limit=500", "/api/v1/tokens?limit=500",
            "/api/v1/dashboards?limit=500")]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with live_api(tmp_path_factory.mktemp("access")) as (base, redis_url):
        def post(path: str, body: dict[str, Any], secret: str = BOOTSTRAP_TOKEN) -> Any:
            r = httpx.post(base + path, json=body, timeout=10,
                           headers={"Authorization": f"Bearer {secret}"})
            assert r.status_code == 201, r.text
            return r.json()

        secrets = {"admin": BOOTSTRAP_TOKEN}
        token_ids = {}
        for name, role in [("alice", "member"), ("bob", "member"), ("viewer", "viewer"),
                           ("revoked", "admin"), ("expired", "admin")]:
            t = post("/api/v1/tokens", {"name": name, "role": role,
                                        **({"expires_in": 0.5} if name == "expired" else {})})
            secrets[name], token_ids[name] = t["token"], t["id"]
        r = httpx.delete(f"{base}/api/v1/tokens/{token_ids['revoked']}", headers=ADMIN,
                         timeout=10)
        assert r.status_code == 204
        spec = {"spec": {"methods": ["dense", "hydra"], "sparsities": [0.5]}}
        sweep = post("/api/v1/sweeps", spec, secrets["alice"])
        dash = post("/api/v1/dashboards", {"name": "mine", "sweep_ids": [sweep["id"]]},
                    secrets["alice"])
        secrets["share"] = dash["share_token"]
        wait_until(lambda: httpx.get(base + "/api/v1/me", timeout=10, headers={
            "Authorization": f"Bearer {secrets['expired']}"}).status_code, 10,
            'the "expired" token to expire', done=lambda status: status == 401)
        yield World(base, redis_url, secrets,
                    {"sweep_id": sweep["id"], "run_id": sweep["run_ids"][0],
                     "dashboard_id": dash["id"], "token_id": token_ids["bob"],
                     "token": dash["share_token"]}, spec)


def _operations(world: World) -> list[tuple[str, str]]:
    doc = httpx.get(world.base + "/api/v1/openapi.json", timeout=10).json()
    return [(m.upper(), p) for p, item in doc["paths"].items() for m in item]


def _url(world: World, path: str) -> str:
    for name, value in world.ids.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no id for {path}: add one to the fixture"
    return path


def _body(world: World, method: str, path: str) -> dict[str, Any] | None:
    """A valid body, so only the credential can be the reason for a refusal."""
    return {("POST", "/api/v1/sweeps"): world.spec,
            ("POST", "/api/v1/dashboards"): {"name": "x", "sweep_ids": [world.ids["sweep_id"]]},
            ("POST", "/api/v1/tokens"): {"name": "x", "role": "viewer"},
            ("PATCH", "/api/v1/sweeps/{sweep_id}"): {"notes": "x", "tags": ["x"]},
            ("PATCH", "/api/v1/runs/{run_id}"): {"notes": "x", "tags": ["x"]}}.get((method, path))


def test_every_write_route_is_in_the_table(world: World):
    writes = {(m, p) for m, p in _operations(world) if m not in ("GET", "HEAD", "OPTIONS")}
    assert writes == set(WRITE_ROLES), (
        f"write routes missing from WRITE_ROLES: {writes - set(WRITE_ROLES)}; "
        f"gone: {set(WRITE_ROLES) - writes}")


BAD_CREDENTIALS = {
    "missing": {},
    "empty bearer": {"Authorization": "Bearer"},
    "other scheme": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "too short": {"Authorization": "Bearer abc"},
    "bad characters": {"Authorization": "Bearer tscnc_<script>alert(1)</script>xxxxxxxx"},
    "unknown": {"Authorization": "Bearer tscnc_" + "A" * 43},
}


def test_write_routes_refuse_bad_credentials_with_401(world: World):
    before = world.state()
    for (method, path) in WRITE_ROLES:
        url, body = _url(world, path), _body(world, method, path)
        cases = dict(BAD_CREDENTIALS)
        cases["revoked"] = {"Authorization": f"Bearer {world.secrets['revoked']}"}
        cases["expired"] = {"Authorization": f"Bearer {world.secrets['expired']}"}
        for why, headers in cases.items():
            r = world.call(method, url, headers=headers, json=body)
            assert r.status_code == 401, (method, path, why, r.status_code, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer"), (method, path, why)
        for name in ("revoked", "expired", "admin"):    # ?token= is never accepted
            r = world.call(method, url, params={"token": world.secrets[name]}, json=body)
            assert r.status_code == 401, (method, path, name, r.text)
            assert "Authorization" in r.json()["detail"], r.text
    assert world.state() == before


def test_write_routes_refuse_roles_below_theirs_with_403(world: World):
    before = world.state()
    below = {"member": ["viewer", "share"], "admin": ["viewer", "share", "alice"]}
    for (method, path), role in WRITE_ROLES.items():
        url, body = _url(world, path), _body(world, method, path)
        for who in below[role]:
            r = world.call(method, url, world.secrets[who], json=body)
            assert r.status_code == 403, (method, path, who, r.status_code, r.text)
    assert world.state() == before


def test_a_member_cannot_change_what_another_member_owns(world: World):
    before = world.state()
    for method, path in WRITE_ROLES:
        if "{" not in path or WRITE_ROLES[(method, path)] == "admin":
            continue
        r = world.call(method, _url(world, path), world.secrets["bob"],
                       json=_body(world, method, path))
        assert r.status_code == 403 and "another user" in r.json()["detail"], (path, r.text)
    assert world.state() == before


def test_reads_need_a_credential(world: World):
    for method, path in _operations(world):
        if method != "GET" or path in PUBLIC_READS:
            continue
        r = world.call(method, _url(world, path), headers={"Accept": "application/json"})
        assert r.status_code == 401, (path, r.status_code)
        r = world.call(method, _url(world, path), world.secrets["revoked"],
                       headers={"Accept": "application/json"})
        assert r.status_code == 401, (path, r.status_code)
    assert world.call("GET", "/api/v1/share/tscncs_" + "A" * 43).status_code == 404


def test_no_secret_is_stored_in_redis(world: World):
    r = redis.Redis.from_url(world.redis_url)
    blob = b"\n".join(k + b" " + (r.dump(k) or b"") for k in r.scan_iter(count=1000))
    r.close()
    assert len(world.secrets) >= 6
    for name, secret in world.secrets.items():
        assert secret.encode() not in blob, f"the {name} secret is stored in Redis"
        assert hashlib.sha256(secret.encode()).hexdigest().encode() in blob, name


def test_share_links_are_unguessable_read_only_and_revocable(world: World):
    alice = world.secrets["alice"]
    links = []
    for i in range(8):
        r = world.call("POST", "/api/v1/dashboards", alice,
                       json={"name": f"d{i}", "sweep_ids": [world.ids["sweep_id"]]})
        assert r.status_code == 201
        links.append(r.json())
    for d in links:
        raw = d["share_token"].removeprefix("tscncs_")
        assert re.fullmatch(r"[A-Za-z0-9_-]+", raw)
        assert len(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))) * 8 >= 128
    assert len({d["share_token"] for d in links}) == len(links)
    # Read-only (every write route said 403 above); it reads its sweep only.
    link = links[0]["share_token"]
    assert world.call("GET", f"/api/v1/sweeps/{world.ids['sweep_id']}", link).status_code == 200
    assert world.call("GET", "/api/v1/sweeps", link).status_code == 403
    # Revoked with its dashboard: the link stops working at once, as page data and credential.
    assert world.call("DELETE", f"/api/v1/dashboards/{links[0]['id']}",
                      alice).status_code == 204
    assert world.call("GET", f"/api/v1/share/{link}").status_code == 404
    assert world.call("GET", f"/api/v1/sweeps/{world.ids['sweep_id']}", link).status_code == 401


def test_cors_is_closed_by_default(world: World):
    for method, path in _operations(world):
        r = world.call("OPTIONS", _url(world, path), headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization"})
        assert not any(h.startswith("access-control-") for h in r.headers), (path, r.headers)
        if method == "GET":         # headers only: an event stream would not end by itself
            with httpx.stream("GET", world.base + _url(world, path), timeout=10, headers={
                    "Authorization": f"Bearer {world.secrets['viewer']}",
                    "Origin": "https://evil.example"}) as r:
                assert "access-control-allow-origin" not in r.headers, path


# ---- checkpoints are never unpickled --------------------------------------------------------

class _Bomb:
    """Unpickling this runs code (creates a file): what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def test_a_pickle_bomb_checkpoint_is_refused_and_never_runs(tmp_path: Path):
    import torch

    from tscnc import pipeline
    from tscnc.pipeline import checkpoints

    marker = tmp_path / "pwned"
    bomb = tmp_path / "final.pt"
    torch.save({"model": {}, "meta": "{}", "x": _Bomb(marker)}, bomb)
    plain = tmp_path / "plain.pkl"                     # a raw pickle, not even a torch file
    plain.write_bytes(pickle.dumps(_Bomb(marker)))
    for path in (bomb, plain):
        with pytest.raises(pickle.UnpicklingError, match="[Ww]eights only"):
            pipeline.load_model(path)
        with pytest.raises(pickle.UnpicklingError):
            checkpoints.load_checkpoint(path, torch.device("cpu"))   # the resume path
    assert not marker.exists()


def test_every_torch_load_in_the_code_is_weights_only():
    offenders = []
    for pkg in ("tscnc", "backend", "worker", "bench"):
        for py in (REPO_ROOT / pkg).rglob("*.py"):
            text = py.read_text()
            for m in re.finditer(r"torch\.load\(", text):
                call = text[m.start():text.find(")", m.start()) + 1]
                if "weights_only=True" not in call:
                    offenders.append(f"{py.relative_to(REPO_ROOT)}: {call}")
    assert offenders == []


# ---- binding -------------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [[sys.executable, "-m", "backend"],
                                 [str(Path(sys.executable).parent / "tscnc"), "serve",
                                  "--host", "0.0.0.0"]], ids=["python -m backend", "tscnc serve"])
def test_a_non_loopback_bind_without_tokens_is_refused(cmd: list[str]):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSCNC_")}
    env.update(TSCNC_HOST="0.0.0.0", TSCNC_PORT=str(port), REDIS_URL="redis://127.0.0.1:1/0",
               PYTHONPATH=str(REPO_ROOT))
    if "serve" in cmd:
        cmd = [*cmd, "--port", str(port)]
    out = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "refusing to listen on non-loopback host '0.0.0.0' without tokens" in out.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
