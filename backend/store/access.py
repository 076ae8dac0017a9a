"""API tokens (only the sha256 of a secret is stored) and shared dashboards (a share link is
a second secret, stored the same way): :class:`AccessMixin`."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from backend.store.base import StoreBase
from backend.store.codec import enc
from backend.store.keys import hash_secret
from backend.store.records import DashboardRecord, TokenRecord, decode_dashboard, decode_token


class AccessMixin(StoreBase):
    """The tokens and dashboards part of :class:`backend.store.Store`."""

    def create_token(self, name: str, role: str, *, expires: float | None = None,
                     secret: str | None = None) -> tuple[TokenRecord, str]:
        """Create an API token; returns (record, secret). Only sha256(secret) is stored.
        Passing an existing ``secret`` returns its record unchanged (idempotent bootstrap)."""
        secret = secret or "tscnc_" + secrets.token_urlsafe(32)
        h = hash_secret(secret)
        existing = self.token_for_secret(secret)
        if existing is not None:
            return existing, secret
        seq = int(self.r.incr(self.k.seq))
        tid = uuid.uuid4().hex[:16]
        now = time.time()
        with self.r.pipeline(transaction=True) as p:
            p.hset(self.k.token(h), mapping={"id": tid, "name": name, "role": role,
                                             "created": enc(now), "expires": enc(expires),
                                             "revoked": "0", "seq": str(seq)})
            p.hset(self.k.tokens, tid, h)
            p.zadd(self.k.tokens_index, {tid: seq})
            p.execute()
        rec = decode_token(self.r.hgetall(self.k.token(h)))
        assert rec is not None
        return rec, secret

    def token_for_secret(self, secret: str) -> TokenRecord | None:
        """The token record for a presented secret (None if unknown; check ``valid()``)."""
        return decode_token(self.r.hgetall(self.k.token(hash_secret(secret))))

    def list_tokens(self, *, limit: int = 50, cursor: str | None = None
                    ) -> tuple[list[TokenRecord], int, str | None]:
        page = self._page([self.k.tokens_index], limit, cursor, True)
        if not page.ids:
            return [], page.total, page.next
        hashes = self.r.hmget(self.k.tokens, page.ids)
        recs = [decode_token(x) for x in self._hashes(self.k.token(h or "-") for h in hashes)]
        return [r for r in recs if r is not None], page.total, page.next

    def revoke_token(self, token_id: str) -> bool:
        h = self.r.hget(self.k.tokens, token_id)
        if not h:
            return False
        self.r.hset(self.k.token(h), "revoked", "1")
        return True

    def create_dashboard(self, name: str, owner: str, sweep_ids: Sequence[str],
                         state: Mapping[str, Any], *,
                         allow_checkpoints: bool = False) -> tuple[DashboardRecord, str]:
        """Create a shared dashboard; returns (record, share token). The share token has 256
        random bits; only its sha256 is stored. ``allow_checkpoints``: the link may download
        the checkpoints of its runs."""
        share = "tscncs_" + secrets.token_urlsafe(32)
        seq = int(self.r.incr(self.k.seq))
        did = uuid.uuid4().hex
        k = self.k
        with self.r.pipeline(transaction=True) as p:
            p.hset(k.dashboard(did), mapping={
                "id": did, "name": name, "owner": owner, "sweep_ids": json.dumps(list(sweep_ids)),
                "state": json.dumps(state), "created": enc(time.time()), "revoked": "0",
                "seq": str(seq), "share": hash_secret(share),
                "checkpoints": "1" if allow_checkpoints else "0"})
            p.set(k.share(hash_secret(share)), did)
            p.zadd(k.dashboards, {did: seq})
            p.zadd(k.dashboards_by_owner(owner), {did: seq})
            p.execute()
        rec = self.get_dashboard(did)
        assert rec is not None
        return rec, share

    def get_dashboard(self, dashboard_id: str) -> DashboardRecord | None:
        return decode_dashboard(self.r.hgetall(self.k.dashboard(dashboard_id)))

    def dashboard_for_share(self, share_token: str) -> DashboardRecord | None:
        """The dashboard a share token opens (None if unknown or revoked)."""
        did = self.r.get(self.k.share(hash_secret(share_token)))
        rec = self.get_dashboard(did) if did else None
        return rec if rec is not None and not rec.revoked else None

    def list_dashboards(self, *, owner: str | None = None, limit: int = 50,
                        cursor: str | None = None) -> tuple[list[DashboardRecord], int, str | None]:
        key = self.k.dashboards_by_owner(owner) if owner is not None else self.k.dashboards
        page = self._page([key], limit, cursor, True)
        recs = [decode_dashboard(h) for h in self._hashes(map(self.k.dashboard, page.ids))]
        return [r for r in recs if r is not None], page.total, page.next

    def revoke_dashboard(self, dashboard_id: str) -> bool:
        """Revoke the share link and remove the dashboard from the lists."""
        rec = self.get_dashboard(dashboard_id)
        if rec is None:
            return False
        k = self.k
        share = self.r.hget(k.dashboard(dashboard_id), "share")
        with self.r.pipeline(transaction=True) as p:
            p.hset(k.dashboard(dashboard_id), "revoked", "1")
            if share:
                p.delete(k.share(share))
            p.zrem(k.dashboards, dashboard_id)
            p.zrem(k.dashboards_by_owner(rec.owner), dashboard_id)
            p.execute()
        return True

