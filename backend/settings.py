"""The API process's one settings class (pydantic-settings), validated at start-up.

Every knob reads an environment variable ``TSCNC_<NAME>`` (``REDIS_URL`` also works without the
prefix, as in DESIGN §8). A bad value stops the process with a message naming the variable.

Example::

    >>> Settings(redis_url="redis://127.0.0.1:6390/0").max_runs_per_sweep
    200
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tscnc.dataroots import parse_data_roots
from tscnc.queues import Queue

REPO_ROOT = Path(__file__).resolve().parents[1]

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TSCNC_", extra="ignore", frozen=True)

    # Redis holding everything durable (and Celery's broker).
    redis_url: str = Field(default="redis://127.0.0.1:6379/0",
                           validation_alias=AliasChoices("REDIS_URL", "TSCNC_REDIS_URL"))
    # Seconds a Redis command may take before the request answers 503.
    redis_timeout: float = Field(default=2.0, gt=0, le=60)
    # Checkpoints are served only from inside this directory (the workers' ARTIFACTS_DIR;
    # a relative path is taken from the working directory, as the workers do).
    artifacts_dir: Path = Field(default=Path(".tscnc/artifacts"),
                                validation_alias=AliasChoices("TSCNC_ARTIFACTS_DIR",
                                                              "ARTIFACTS_DIR"))
    # Directories datasets may be read from (comma-separated; the workers' TSCNC_DATA_ROOTS). A
    # spec's dataset.data_dir must stay inside one; submit refuses a link that leads out.
    data_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(Path("data"),), validation_alias=AliasChoices("TSCNC_DATA_ROOTS"))
    # Static dashboard files served at / (absent: only the API is served).
    frontend_dir: Path = REPO_ROOT / "frontend"
    # Where the API listens (used by `tscnc serve`; checked below).
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Requests with a larger body get 413.
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # Server-side bounds on what a sweep may ask for (tighter than tscnc.spec's own).
    max_runs_per_sweep: int = Field(default=200, ge=1, le=1000)
    max_epochs_per_stage: int = Field(default=500, ge=1, le=1000)
    # Largest training memory one run may need (GiB, tscnc.footprint's estimate); a sweep over
    # it, or over what every registered worker of its queue reports, is refused with 422.
    max_run_memory_gib: float = Field(default=256.0, gt=0, le=1e6)
    # Largest page a list may ask for.
    max_page_size: int = Field(default=500, ge=1, le=10_000)
    # Origins allowed by CORS; empty (the default) = no CORS headers at all (closed).
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Admin token ensured at start-up (the launcher passes the one it prints). Never logged.
    bootstrap_token: str | None = Field(default=None, min_length=16, max_length=200, repr=False)
    # Set when tokens already exist in Redis, to allow a non-loopback host without a bootstrap.
    tokens_provisioned: bool = False
    # Seconds the server waits for open requests (SSE streams never end by themselves) when
    # asked to stop, before closing them; EventSource clients reconnect with Last-Event-ID.
    shutdown_grace: float = Field(default=3.0, ge=0, le=600)
    # Seconds between SSE keep-alive comments (also the longest blocking Redis read).
    sse_keepalive: float = Field(default=15.0, gt=0, le=300)
    # Batches of live events an SSE client may have waiting; a client that falls further behind
    # is dropped with a reconnect hint and resumes with Last-Event-ID (backend/sse.py).
    sse_client_buffer: int = Field(default=256, ge=1, le=100_000)
    # Compact a run's event stream as it finishes (progress events and all but this many log
    # lines go; backend/store/retention.py); unset: only by `tscnc compact-events`.
    retention_keep_logs: int | None = Field(default=None, ge=0, le=1_000_000)
    # How long an Idempotency-Key maps to its sweep.
    idempotency_ttl: int = Field(default=86400, ge=60, le=30 * 86400)
    # Celery queues whose depth GET /api/v1/queue reports.
    queues: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [q.value for q in Queue])

    @field_validator("cors_origins", "queues", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                import json

                return json.loads(v)
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    @field_validator("data_roots", mode="before")
    @classmethod
    def _roots(cls, v: object) -> object:
        return parse_data_roots(v) if isinstance(v, str) else v

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for o in v:
            if o == "*" or not o.startswith(("http://", "https://")):
                raise ValueError(f"CORS origin {o!r} must be an explicit http(s) origin")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v

    @model_validator(mode="after")
    def _bind(self) -> Settings:
        if not is_loopback(self.host) and not self.bootstrap_token and not self.tokens_provisioned:
            raise ValueError(
                f"refusing to listen on non-loopback host {self.host!r} without tokens: set "
                "TSCNC_BOOTSTRAP_TOKEN (or TSCNC_TOKENS_PROVISIONED=1 if tokens exist in Redis)")
        return self
