"""Request dependencies as ``Annotated`` aliases (DESIGN §10), so tests can swap them.

``StoreDep`` / ``AsyncStoreDep`` / ``SettingsDep`` / ``DispatcherDep`` come from the app's state
(built by :func:`backend.app.create_app`); ``PrincipalDep`` (any valid credential, share links
included), ``ReaderDep`` (an API token of any role), ``WriterDep`` (member or admin) and
``AdminDep`` authenticate the request.

Credentials: ``Authorization: Bearer <secret>`` only; a secret in the URL (``?token=``) is
refused with 401, so no client learns to put one where logs, histories and copied links keep it
(DESIGN §7). A secret is an API token (stored as sha256) or a dashboard share token (read-only,
limited to the dashboard's sweeps, and to their checkpoints only when its creator allowed
it). Unknown, malformed, revoked or expired → 401; valid but not allowed → 403.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.schemas import Role
from backend.settings import Settings
from backend.store import AsyncStore, Store, hash_secret

_SECRET = re.compile(r"^[A-Za-z0-9_\-.~+/=]{16,200}$")
_bearer = HTTPBearer(auto_error=False, description="API token or dashboard share token")


@dataclass
class Dispatcher:
    """How the API hands runs to the workers (``worker.dispatch``, imported lazily so the API
    never imports Celery tasks or torch); tests pass their own callables."""

    # enqueue(sweep_id, run_ids) — and enqueue(sweep_id, run_ids, fresh=True) for a fresh retry
    enqueue: Callable[..., Any]
    revoke: Callable[[str], Any]


def default_dispatcher() -> Dispatcher:
    def enqueue(sweep_id: str, run_ids: list[str] | None = None, fresh: bool = False) -> Any:
        from worker.dispatch import enqueue_runs

        return enqueue_runs(sweep_id, run_ids, fresh=fresh)

    def revoke(task_id: str) -> Any:
        from worker.dispatch import revoke as _revoke

        return _revoke(task_id)

    return Dispatcher(enqueue, revoke)


@dataclass(frozen=True)
class Principal:
    """Who is asking. ``kind`` is "token" (an API token) or "share" (a share link, which can
    read only ``sweeps``)."""

    kind: str
    id: str
    name: str
    role: Role
    sweeps: frozenset[str] | None = field(default=None)
    checkpoints: bool = True     # share links: only when their creator allowed it

    @property
    def can_write(self) -> bool:
        return self.kind == "token" and self.role in (Role.admin, Role.member)

    @property
    def is_admin(self) -> bool:
        return self.kind == "token" and self.role == Role.admin

    def can_read_sweep(self, sweep_id: str) -> bool:
        return self.sweeps is None or sweep_id in self.sweeps

    def require_sweep(self, sweep_id: str) -> None:
        """403 unless this credential may read the sweep."""
        if not self.can_read_sweep(sweep_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                "this share link does not include that sweep")

    def require_checkpoints(self) -> None:
        """403 for a share link whose creator did not allow checkpoint downloads."""
        if not self.checkpoints:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                "this share link does not allow checkpoint downloads")

    def require_owner(self, owner: str, what: str = "sweep") -> None:
        """403 unless admin or the owner (the token that created it)."""
        if not self.can_write:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {self.role.value} is read-only")
        if not self.is_admin and owner != self.id:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this {what} belongs to another user; only its owner or an "
                                "admin may change it")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def get_async_store(request: Request) -> AsyncStore:
    astore = request.app.state.astore
    if astore is None:      # app used without its lifespan (e.g. a bare TestClient)
        s: Settings = request.app.state.settings
        astore = request.app.state.astore = AsyncStore.from_url(
            s.redis_url, timeout=s.sse_keepalive + 10)
    return astore  # type: ignore[no-any-return]


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
AsyncStoreDep = Annotated[AsyncStore, Depends(get_async_store)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


def _unauthorized(msg: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, msg,
                         headers={"WWW-Authenticate": 'Bearer realm="tscnc"'})


def authenticate(store: Store, settings: Settings, secret: str) -> Principal:
    """Resolve a presented secret to a principal, or raise 401."""
    if not _SECRET.match(secret):
        raise _unauthorized("malformed token")
    rec = store.token_for_secret(secret)
    if rec is None and settings.bootstrap_token and hmac.compare_digest(
            hash_secret(secret), hash_secret(settings.bootstrap_token)):
        rec, _ = store.create_token("bootstrap", Role.admin.value, secret=secret)
    if rec is not None:
        if rec.revoked:
            raise _unauthorized("token revoked")
        if not rec.valid():
            raise _unauthorized("token expired")
        return Principal("token", rec.id, rec.name, Role(rec.role))
    dash = store.dashboard_for_share(secret)
    if dash is not None:
        return Principal("share", dash.id, dash.name, Role.viewer, frozenset(dash.sweep_ids),
                         checkpoints=dash.allow_checkpoints)
    raise _unauthorized("unknown token")


def principal(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if "token" in request.query_params:
        raise _unauthorized("a token in the URL is not accepted (URLs end up in logs and "
                            "histories); send 'Authorization: Bearer <token>'")
    if bearer is not None:
        secret = bearer.credentials
    elif request.headers.get("authorization"):
        raise _unauthorized("malformed Authorization header; expected 'Bearer <token>'")
    else:
        raise _unauthorized("missing token: send 'Authorization: Bearer <token>'")
    return authenticate(store, settings, secret)


PrincipalDep = Annotated[Principal, Depends(principal)]


def reader(p: PrincipalDep) -> Principal:
    """Any API token (share links are limited to their own endpoints and sweeps)."""
    if p.kind != "token":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a share link cannot list this")
    return p


def writer(p: PrincipalDep) -> Principal:
    if not p.can_write:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"role {p.role.value} is read-only; writes need member or admin")
    return p


def admin(p: PrincipalDep) -> Principal:
    if not p.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin role required")
    return p


ReaderDep = Annotated[Principal, Depends(reader)]
WriterDep = Annotated[Principal, Depends(writer)]
AdminDep = Annotated[Principal, Depends(admin)]
