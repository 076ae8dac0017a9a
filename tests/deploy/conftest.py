"""Fixtures for the deployment tests: one real service stack (private redis-server, a Celery
worker process, uvicorn) shared by the client and CLI tests of this directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.stack import Stack, service_stack, tiny_sweep


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with service_stack(tmp_path_factory.mktemp("deploy-stack")) as s:
        yield s


def _small_sweep(name: str, **over: Any) -> dict[str, Any]:
    spec = tiny_sweep(name=name, methods=["dense", "hydra"], sparsities=[0.5],
                      training={"pretrain_epochs": 1, "prune_epochs": 1, "finetune_epochs": 1})
    for k, v in over.items():
        spec[k] = {**spec[k], **v} if isinstance(v, dict) and isinstance(spec.get(k), dict) else v
    return spec


@pytest.fixture(scope="session")
def small_sweep() -> Callable[..., dict[str, Any]]:
    """``small_sweep(name, **overrides)``: a spec of two runs (dense + hydra at 0.5) sharing
    one pretrain, one epoch per stage (seconds on one CPU thread)."""
    return _small_sweep
