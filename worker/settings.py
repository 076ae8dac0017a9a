"""Worker settings (one pydantic-settings class for the worker process), read from the
environment at start-up and validated there: a bad value stops the worker with a clear message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tscnc.dataroots import parse_data_roots
from tscnc.queues import Queue


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    # Redis holding the broker queues and every durable record (DESIGN §4).
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", alias="REDIS_URL")
    # Checkpoints and final models; shared by all workers of a deployment.
    artifacts_dir: Path = Field(default=Path(".tscnc/artifacts"), alias="ARTIFACTS_DIR")
    # Directories datasets are read from (comma-separated); a spec's dataset.data_dir is resolved
    # inside one of them (tscnc.dataroots reads the same variable when the run loads its data).
    data_roots: Annotated[tuple[Path, ...], NoDecode] = Field(default=(Path("data"),),
                                                             alias="TSCNC_DATA_ROOTS")
    # Queue this worker serves: auto = "gpu" on a CUDA machine, else "cpu".
    queue: str = Field(default="auto", alias="TSCNC_QUEUE",
                       pattern=f"^(auto|{'|'.join(Queue)})$")
    # Seconds between heartbeats; a worker silent for heartbeat_ttl seconds counts as lost.
    heartbeat_interval: float = Field(default=2.0, gt=0, le=60, alias="TSCNC_HEARTBEAT_INTERVAL")
    heartbeat_ttl: float = Field(default=10.0, gt=0, le=600, alias="TSCNC_HEARTBEAT_TTL")
    # A run whose worker was lost is re-queued at most this many times, then fails worker_lost.
    max_attempts: int = Field(default=3, ge=1, le=20, alias="TSCNC_MAX_ATTEMPTS")
    # Memory this worker offers to a run, GiB, reported in its heartbeat (the API refuses a sweep
    # no worker could hold); 0 = detect: the GPU's memory, else RAM (or the cgroup's limit).
    memory_gib: float = Field(default=0.0, ge=0.0, le=1e6, alias="TSCNC_WORKER_MEMORY_GIB")
    # Torch intra-op threads of a CPU worker (0 = all cores / number of CPU workers).
    torch_threads: int = Field(default=0, ge=0, le=256, alias="TSCNC_TORCH_THREADS")
    # How long the broker waits for an ack before handing an unacknowledged message out again.
    visibility_timeout: int = Field(default=3600, ge=10, le=7 * 86400,
                                    alias="TSCNC_VISIBILITY_TIMEOUT")
    # Seconds between the broker's scans for messages unacknowledged past visibility_timeout
    # (a worker killed outright leaves its message there). kombu's own default scans only
    # every 10 × 10 s; runs of a lost worker are re-queued sooner through the heartbeats anyway.
    unacked_restore_interval: int = Field(default=60, ge=1, le=3600,
                                          alias="TSCNC_UNACKED_RESTORE_INTERVAL")
    # Compact a run's event stream as it finishes, keeping this many log lines
    # (backend/store/retention.py); unset: only by `tscnc compact-events`.
    retention_keep_logs: int | None = Field(default=None, ge=0, le=1_000_000,
                                            alias="TSCNC_RETENTION_KEEP_LOGS")

    @field_validator("data_roots", mode="before")
    @classmethod
    def _roots(cls, v: object) -> object:
        return parse_data_roots(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _ttl_covers_beats(self) -> WorkerSettings:
        # A worker is judged lost when its heartbeat key expires: the TTL must span at least two
        # beats, or one slow beat (or a short Redis blip) makes a live worker look lost.
        if self.heartbeat_ttl < 2 * self.heartbeat_interval:
            raise ValueError("TSCNC_HEARTBEAT_TTL must be at least twice "
                             "TSCNC_HEARTBEAT_INTERVAL")
        return self
