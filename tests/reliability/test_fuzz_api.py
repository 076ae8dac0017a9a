"""Issue 6.4 — property-based fuzzing of the whole API from its own OpenAPI schema.

Schemathesis takes the OpenAPI document the server publishes at ``/api/v1/openapi.json`` and sends
every operation generated requests, valid and invalid, to a real uvicorn server (real
redis-server, a no-op dispatcher: nothing is queued), as an admin (the strongest credential reaches the deepest code). Every answer must be
below 500, match the status codes, content types and response schemas the OpenAPI document
declares, and invalid requests must be refused with a 4xx. Examples per operation are bounded
so the whole run takes well under a minute.

Every check schemathesis has runs (issue 14.10), against a store that holds what a real run
leaves: a finished run whose κ is infinite (result, run fields and evaluation event), an epoch
event with infinite κ and a NaN penalty. Undocumented methods and OPTIONS are part of it
(405 / 204 with an ``Allow`` header listing exactly the documented methods).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS as REGISTRY
from schemathesis.checks import load_all_checks

from backend.store import Store
from tests.reliability.helpers import ADMIN as AUTH
from tests.reliability.helpers import live_api
from tscnc.records import (
    AttackResult,
    ConditionSummary,
    EpochEvent,
    Evaluation,
    EvaluationEvent,
    LayerSpectrum,
    RunResult,
    RunStatus,
    Stage,
)

load_all_checks()
CHECKS = REGISTRY.get_all()  # every check schemathesis ships
# ... but one, for the sweep spec only: POST /sweeps takes ``spec`` as a free-form override of
# a preset, and its cross-field rules (runs per sweep, WRN depth 6n+4, skip_layers against the
# model's layers, memory admission) cannot be written in JSON Schema, so a schema-valid body can
# be refused (422 naming the field): positive_data_acceptance would flag exactly that.
SPEC_CHECKS = [c for c in CHECKS if c.__name__ != "positive_data_acceptance"]
assert len(SPEC_CHECKS) == len(CHECKS) - 1
MAX_EXAMPLES = 40
INF = float("inf")


def store_infinite_kappa(store: Store, run_id: str) -> None:
    """What a finished run with a rank-deficient layer leaves in the store: κ = ∞ in its epoch
    event, its evaluation, its result and its run fields (and a NaN penalty for good measure)."""
    store.record_event(run_id, EpochEvent(
        run=run_id, stage=Stage.pretrain, epoch=1, epochs=1, loss=0.5, clean_accuracy=0.5,
        robust_accuracy=0.2, lr=0.1, sparsity=0.9, condition_numbers={"layers.0": INF},
        penalties={"cnc": float("nan")}))
    store.record_event(run_id, EvaluationEvent(run=run_id, evaluation=Evaluation(
        clean_accuracy=0.5, attacks=[], security_curve=[(0.0, 0.5)], flags=[],
        spectra=[LayerSpectrum(layer="layers.0", shape=(2, 2), singular_values=[1.0, 0.0],
                               condition_number=INF, sparsity=0.9)],
        lipschitz_upper=INF)))
    store.put_result(run_id, RunResult(
        run="tscnc-s0.5-seed0", method="tscnc", sparsity=0.5, sparsity_actual=0.5,
        sparsity_per_layer={"layers.0": 0.5}, seed=0, clean_accuracy=0.5,
        robust_accuracy={"pgd": 0.2},
        condition_number=ConditionSummary(median=INF, max=INF, per_layer={"layers.0": INF}),
        lipschitz_upper=INF, security_curve=[(0.0, 0.5)], flags=[],
        attacks=[AttackResult(attack="pgd", epsilon=0.1, steps=3, accuracy=0.2, examples=10,
                              seed=0, library="test")],
        checkpoint="", spec={}, versions={}, wall_time=1.0))
    store.set_status(run_id, RunStatus.succeeded)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The server's base URL, and what the tests can find there: the ids of the sweep and of
    the run holding κ = ∞ (``sweep_id``, ``run_id``) and the server's ``redis_url``."""
    with live_api(tmp_path_factory.mktemp("fuzz")) as (base, redis_url):
        # Something to find: a sweep (with runs) for the generated ids to hit or miss.
        r = httpx.post(f"{base}/api/v1/sweeps", headers=AUTH, timeout=10,
                       json={"spec": {"methods": ["dense", "tscnc"], "sparsities": [0.5]}})
        assert r.status_code == 201, r.text
        store = Store.from_url(redis_url)
        store_infinite_kappa(store, r.json()["run_ids"][1])
        yield base, {"sweep_id": r.json()["id"], "run_id": r.json()["run_ids"][1],
                     "redis_url": redis_url}


@pytest.fixture(scope="module")
def api(served: tuple[str, dict[str, str]]) -> str:
    return served[0]


@pytest.fixture(scope="module")
def found(served: tuple[str, dict[str, str]]) -> dict[str, str]:
    return served[1]


def _openapi() -> dict[str, Any]:
    """The app's OpenAPI document, built at collection time (one test per operation); the
    test below checks the live server serves exactly this document."""
    from backend.app import create_app
    from backend.settings import Settings

    return create_app(Settings(redis_url="redis://127.0.0.1:1/0")).openapi()


OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
# Unknown query parameters are ignored by design (the HTTP custom: caches and proxies add their
# own), so the fuzzer does not add any and count their acceptance as a failure.
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                allow_extra_parameters=False)


def test_the_fuzzed_schema_is_the_served_one(api: str) -> None:
    served = httpx.get(f"{api}/api/v1/openapi.json", timeout=5).json()
    assert served == OPENAPI
    ops = [(m, p) for p, item in served["paths"].items() for m in item]
    assert len(ops) >= 25 and all(p.startswith("/api/v1/") for _, p in ops)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_5xx_and_every_answer_matches_the_schema(case: Any, api: str) -> None:
    # The admin credential, unless this case is about a missing or broken one.
    headers = {} if schema.is_security_param_negated(case) else dict(AUTH)
    # SSE endpoints would stream until the run ends: ask them for the JSON page instead.
    if case.path.endswith("/events"):
        headers["Accept"] = "application/json"
    checks = SPEC_CHECKS if (case.method, case.path) == ("POST", "/api/v1/sweeps") else CHECKS
    case.call_and_validate(base_url=api, headers=headers, checks=checks, timeout=10)


# Reads that show the run with κ = ∞: generated ids almost never hit it, so these ask for it.
READS_OF_INFINITE_KAPPA = [
    ("/api/v1/runs/{run_id}/result", {}), ("/api/v1/runs/{run_id}", {}),
    ("/api/v1/sweeps/{sweep_id}/results", {"format": "json"}), ("/api/v1/sweeps/{sweep_id}", {}),
    ("/api/v1/runs", {"sweep": "{sweep_id}", "sort": "kappa_median"}),
    ("/api/v1/runs/{run_id}/events", {}),
    ("/api/v1/sweeps/{sweep_id}/summary", {}), ("/api/v1/summary", {"sweeps": "{sweep_id}"}),
]


@pytest.mark.parametrize(("path", "query"), READS_OF_INFINITE_KAPPA,
                         ids=[p for p, _ in READS_OF_INFINITE_KAPPA])
def test_infinite_kappa_is_what_the_schema_declares(api: str, found: dict[str, str], path: str,
                                                    query: dict) -> None:
    operation = schema[path]["GET"]
    params = {k: v for k, v in found.items() if "{" + k + "}" in path}
    query = {k: v.format(**found) for k, v in query.items()}
    case = operation.Case(path_parameters=params, query=query,
                          headers={**AUTH, "Accept": "application/json"})
    response = case.call_and_validate(base_url=api, checks=CHECKS, timeout=10)
    assert response.status_code == 200
    assert "Infinity" in response.text  # the value the schema now declares is really there


def test_options_and_undocumented_methods_name_exactly_the_documented_ones(api: str) -> None:
    for template, item in OPENAPI["paths"].items():
        path = template.replace("{", "x").replace("}", "")  # any value fits a path parameter
        documented = {m.upper() for m in item}
        r = httpx.options(f"{api}{path}", headers=AUTH, timeout=5)
        assert r.status_code == 204, (path, r.status_code)
        assert set(r.headers["allow"].split(", ")) == documented, (path, r.headers["allow"])
        for method in {"PUT", "PATCH", "POST", "DELETE"} - documented:
            r = httpx.request(method, f"{api}{path}", headers=AUTH, timeout=5)
            assert r.status_code == 405, (method, path, r.status_code)
            assert set(r.headers["allow"].split(", ")) == documented, (method, path)


def test_stateful_sequences_keep_to_the_schema(api: str, found: dict[str, str]) -> None:
    """Stateful: schemathesis chains operations along the links it infers from the schema
    (create a sweep, read it, its runs, results and events, cancel, retry, delete; tokens and
    dashboards likewise) and runs every check on each step (positive-data acceptance excepted
    on POST /sweeps, as above). The sweep event stream is left out: with nothing queued its
    runs never finish, so it streams until the client gives up (the operation itself is fuzzed
    above, where generated ids find no sweep)."""
    base_workflow = schema.exclude(path="/api/v1/sweeps/{sweep_id}/events").as_state_machine()

    # Every scenario starts from the same server state: Hypothesis decides which rules are
    # enabled from what earlier steps found, so a state left by another scenario made the same
    # choices draw differently ("Inconsistent data generation", a flaky strategy).
    r = redis.Redis.from_url(found["redis_url"])
    baseline = {k: r.dump(k) for k in r.scan_iter(count=1000)}

    def restore() -> None:
        for k in r.scan_iter(count=1000):
            if k not in baseline:
                r.delete(k)
        for k, v in baseline.items():
            r.restore(k, 0, v, replace=True)

    class Workflow(base_workflow):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            restore()

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            headers = dict(AUTH)
            if case.path.endswith("/events"):
                headers["Accept"] = "application/json"  # a page, not a stream that never ends
            return {"base_url": api, "headers": headers, "timeout": 10}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None,
                              **kwargs: Any) -> None:
            post_sweeps = (case.method, case.path) == ("POST", "/api/v1/sweeps")
            case.validate_response(response, checks=SPEC_CHECKS if post_sweeps else CHECKS,
                                   transport_kwargs=kwargs or None)

    # Generate only: replaying a sequence (shrinking) against a server whose state the earlier
    # sequences changed draws differently, which Hypothesis reports as a flaky strategy.
    try:
        Workflow.run(settings=settings(max_examples=15, stateful_step_count=6, deadline=None,
                                       database=None, phases=[Phase.generate],
                                       suppress_health_check=list(HealthCheck)))
    finally:
        restore()
        r.close()
