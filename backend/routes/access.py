"""API tokens (admin) and shared dashboards (read-only share links)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status

from backend.deps import AdminDep, PrincipalDep, ReaderDep, StoreDep, WriterDep
from backend.routes.common import ERRORS, Cursor, Limit, get_sweep_or_404
from backend.schemas import (
    DashboardCreate,
    DashboardCreated,
    DashboardPublic,
    Page,
    SharedDashboard,
    TokenCreate,
    TokenCreated,
    TokenPublic,
)
from backend.store import DashboardRecord, Store
from backend.views import dashboard_public, sweep_detail, token_public

tokens = APIRouter(prefix="/tokens", tags=["tokens"])
dashboards = APIRouter(prefix="/dashboards", tags=["dashboards"])
share = APIRouter(prefix="/share", tags=["dashboards"])

ShareToken = Annotated[str, Path(max_length=200)]


# ---- tokens --------------------------------------------------------------------------------

@tokens.post("", status_code=status.HTTP_201_CREATED, response_model=TokenCreated,
             responses=ERRORS)
def create_token(body: TokenCreate, p: AdminDep, store: StoreDep) -> TokenCreated:
    """Create a token; the secret is in the answer only (the store keeps its sha256)."""
    expires = time.time() + body.expires_in if body.expires_in else None
    rec, secret = store.create_token(body.name, body.role.value, expires=expires)
    return TokenCreated(**token_public(rec).model_dump(), token=secret)


@tokens.get("", response_model=Page[TokenPublic], responses=ERRORS)
def list_tokens(p: AdminDep, store: StoreDep, limit: Limit = 50,
                cursor: Cursor = None) -> Page[TokenPublic]:
    recs, total, nxt = store.list_tokens(limit=min(limit, 500), cursor=cursor)
    return Page[TokenPublic](items=[token_public(r) for r in recs], total=total, next=nxt)


@tokens.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
def revoke_token(token_id: Annotated[str, Path(max_length=64)], p: AdminDep,
                 store: StoreDep) -> Response:
    """Revoke a token (it answers 401 from now on; the record is kept)."""
    if not store.revoke_token(token_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no token {token_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---- dashboards ----------------------------------------------------------------------------

@dashboards.post("", status_code=status.HTTP_201_CREATED, response_model=DashboardCreated,
                 responses=ERRORS)
def create_dashboard(body: DashboardCreate, p: WriterDep, store: StoreDep) -> DashboardCreated:
    """Save a dashboard and get its read-only share link (shown once). The state is bounded
    (plain JSON, 64 KiB, 16 levels: 422 naming ``state``); the link downloads checkpoints
    only with ``allow_checkpoints``."""
    for sid in body.sweep_ids:
        get_sweep_or_404(store, sid)
    rec, secret = store.create_dashboard(body.name, p.id, list(dict.fromkeys(body.sweep_ids)),
                                         body.state, allow_checkpoints=body.allow_checkpoints)
    return DashboardCreated(**dashboard_public(rec).model_dump(), share_token=secret,
                            share_url=f"/share/{secret}")


@dashboards.get("", response_model=Page[DashboardPublic], responses=ERRORS)
def list_dashboards(p: ReaderDep, store: StoreDep, limit: Limit = 50,
                    cursor: Cursor = None) -> Page[DashboardPublic]:
    """Your dashboards (an admin sees everyone's)."""
    recs, total, nxt = store.list_dashboards(owner=None if p.is_admin else p.id,
                                             limit=min(limit, 500), cursor=cursor)
    return Page[DashboardPublic](items=[dashboard_public(r) for r in recs], total=total,
                                 next=nxt)


def _own_dashboard(store: Store, dashboard_id: str, p: object) -> DashboardPublic:
    rec = store.get_dashboard(dashboard_id) if len(dashboard_id) <= 64 else None
    if rec is None or rec.revoked:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dashboard {dashboard_id!r}")
    if not (p.is_admin or rec.owner == p.id):  # type: ignore[attr-defined]
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this dashboard belongs to another user")
    return dashboard_public(rec)


@dashboards.get("/{dashboard_id}", response_model=DashboardPublic, responses=ERRORS)
def get_dashboard(dashboard_id: str, p: ReaderDep, store: StoreDep) -> DashboardPublic:
    return _own_dashboard(store, dashboard_id, p)


@dashboards.delete("/{dashboard_id}", status_code=status.HTTP_204_NO_CONTENT,
                   responses=ERRORS)
def delete_dashboard(dashboard_id: str, p: WriterDep, store: StoreDep) -> Response:
    """Delete the dashboard and revoke its share link."""
    _own_dashboard(store, dashboard_id, p)
    store.revoke_dashboard(dashboard_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _shared(store: Store, rec: DashboardRecord | None) -> SharedDashboard:
    if rec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown or revoked share link")
    sweeps = [s for s in store.get_sweeps(rec.sweep_ids)]
    return SharedDashboard(dashboard=dashboard_public(rec),
                           sweeps=[sweep_detail(s, store.sweep_runs(s.id)) for s in sweeps])


@share.get("", response_model=SharedDashboard, responses=ERRORS)
def shared_dashboard_of_credential(p: PrincipalDep, store: StoreDep) -> SharedDashboard:
    """The same as ``GET /share/{token}`` with the share token sent as ``Authorization:
    Bearer <share token>``, so it never appears in a request URL (the dashboard uses this)."""
    if p.kind != "share":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs a share link's token")
    return _shared(store, store.get_dashboard(p.id))


@share.get("/{token}", response_model=SharedDashboard,
           responses={404: {"description": "unknown or revoked link"}, 503: ERRORS[503]})
def shared_dashboard(token: ShareToken, store: StoreDep) -> SharedDashboard:
    """What a share link shows: the dashboard and its sweeps with their runs (no other
    credential needed; the link itself is the read-only credential)."""
    return _shared(store, store.dashboard_for_share(token))
