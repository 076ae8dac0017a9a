"""Seed statistics of one or several sweeps (DESIGN §3.5): thin shell over tscnc.summary."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from backend.deps import PrincipalDep, StoreDep
from backend.routes.common import ERRORS, get_sweep_or_404, invalid
from backend.schemas import SummaryPublic
from backend.store import Store
from backend.views import summary_csv
from tscnc.spec import Method
from tscnc.summary import ATTACKS, GROUP_KEYS, MIN_ATTACK, SummaryInput, summarize

router = APIRouter(tags=["summary"])

_SWEEP_ID = r"[0-9a-f]{32}"
MAX_SWEEPS = 50
_KEY = "(" + "|".join(re.escape(k) for k in GROUP_KEYS) + ")"
GroupBy = Annotated[str | None, Query(
    max_length=2000, pattern=f"^{_KEY}(,{_KEY})*$",
    description="comma-separated keys (each used once): method, sweep, dataset.name or a "
                "griddable spec path (e.g. constraints.lambda_cnc); default: method and every "
                "grid path")]
Baseline = Annotated[Method | None, Query(
    description="method to compare each group with (paired by seed); adds method to group_by "
                "when missing")]
Attack = Annotated[str, Query(
    pattern=f"^({'|'.join(ATTACKS)})$",
    description="robust accuracy under this attack; min (default): each run's lowest")]
Format = Annotated[Literal["json", "csv"], Query(
    description="json (default) or csv (one flat row per group)")]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}},
    422: {"description": "bad query (loc names the parameter)"}, **ERRORS}


def _summary(store: Store, p: Any, sweep_ids: list[str], group_by: str | None,
             baseline: Method | None, attack: str, format: str) -> Any:
    inputs: list[SummaryInput] = []
    missing = 0
    for sid in sweep_ids:
        p.require_sweep(sid)
        sweep = get_sweep_or_404(store, sid)
        spec = sweep.sweep_spec()
        results = store.get_results(sweep.run_ids)
        missing += len(sweep.run_ids) - len(results)
        inputs += [SummaryInput(rid, sid, spec, results[rid]) for rid in sweep.run_ids
                   if rid in results]
    try:
        out = summarize(inputs, group_by=group_by.split(",") if group_by else None,
                        attack=attack, baseline=baseline, sweep_ids=sweep_ids, missing=missing)
    except ValueError as e:
        field = str(e).split(":", 1)[0]
        raise invalid(("query", field), str(e)) from None
    if format == "csv":
        name = sweep_ids[0] if len(sweep_ids) == 1 else f"{len(sweep_ids)}-sweeps"
        return Response(summary_csv(out), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="summary-{name}.csv"'})
    return out


@router.get("/sweeps/{sweep_id}/summary", response_model=SummaryPublic, responses=_RESPONSES)
def sweep_summary(sweep_id: str, p: PrincipalDep, store: StoreDep, group_by: GroupBy = None,
                  baseline: Baseline = None, attack: Attack = MIN_ATTACK,
                  format: Format = "json") -> Any:
    """Per group (default: method and grid values) and sparsity: n, clean and robust accuracy
    (mean, 95 % t-interval), κ (geometric mean, min, max) and, with ``baseline``, the
    paired-by-seed difference and its verdict."""
    return _summary(store, p, [sweep_id], group_by, baseline, attack, format)


@router.get("/summary", response_model=SummaryPublic, responses=_RESPONSES)
def summary(p: PrincipalDep, store: StoreDep,
            sweeps: Annotated[str, Query(
                pattern=f"^{_SWEEP_ID}(,{_SWEEP_ID}){{0,{MAX_SWEEPS - 1}}}$",
                description=f"comma-separated sweep ids (at most {MAX_SWEEPS})")],
            group_by: GroupBy = None, baseline: Baseline = None, attack: Attack = MIN_ATTACK,
            format: Format = "json") -> Any:
    """The summary of several sweeps' runs together (groups pool runs across sweeps unless
    ``group_by`` includes ``sweep``)."""
    ids = list(dict.fromkeys(sweeps.split(",")))
    return _summary(store, p, ids, group_by, baseline, attack, format)
