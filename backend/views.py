"""Store records → public schemas (the only mapping between the two families)."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from backend.schemas import (
    DashboardPublic,
    ResultPublic,
    RunMonitor,
    RunPublic,
    SummaryPublic,
    SweepDetail,
    SweepPublic,
    SweepStatus,
    TokenPublic,
    state_problem,
)
from backend.store import (
    DashboardRecord,
    RunRecord,
    SweepRecord,
    SweepSummary,
    TokenRecord,
)
from tscnc.records import RunResult, RunStatus
from tscnc.resources import DashboardBase, RunBase, SweepBase, TokenBase
from tscnc.spec import AttackName

# Results are shown only once evaluated (a record written before the monitor fields existed
# holds monitor values in these).
_RESULTS = frozenset({"clean_accuracy", "robust_accuracy", "kappa_median", "sparsity_actual"})
_RUN = frozenset(RunBase.model_fields)


def run_public(r: RunRecord) -> RunPublic:
    return RunPublic(
        **r.model_dump(include=_RUN if r.has_result else _RUN - _RESULTS),
        has_checkpoint=bool(r.checkpoint),
        monitor=RunMonitor(stage=r.monitor_stage, epoch=r.monitor_epoch,
                           clean_accuracy=r.monitor_clean_accuracy,
                           robust_accuracy=r.monitor_robust_accuracy,
                           kappa_median=r.monitor_kappa_median, sparsity=r.monitor_sparsity)
        if r.monitor_epoch is not None else None,
    )


def sweep_status(counts: Mapping[RunStatus, int]) -> SweepStatus:
    """The sweep's state from its runs' (see :class:`SweepStatus`)."""
    n = sum(counts.values())
    queued, running = counts.get(RunStatus.queued, 0), counts.get(RunStatus.running, 0)
    if n == 0 or queued == n:
        return SweepStatus.queued
    if queued or running:
        return SweepStatus.running
    ended = [s for s in RunStatus if counts.get(s, 0)]
    return SweepStatus(ended[0].value) if len(ended) == 1 else SweepStatus.finished


def sweep_summary(counts: Mapping[RunStatus, int]) -> str:
    """The status and the non-zero counts in status order.

    >>> sweep_summary({RunStatus.succeeded: 11, RunStatus.cancelled: 1})
    'finished · 11 succeeded · 1 cancelled'
    """
    parts = [f"{counts[s]} {s.value}" for s in RunStatus if counts.get(s, 0)]
    return " · ".join([sweep_status(counts).value, *parts])


def sweep_public(s: SweepRecord, summary: SweepSummary | None) -> SweepPublic:
    counts = dict(summary.counts) if summary else {st: 0 for st in RunStatus}
    return SweepPublic(
        **s.model_dump(include=set(SweepBase.model_fields)), status=sweep_status(counts),
        summary=sweep_summary(counts), counts=counts,
        progress=summary.progress if summary else 0.0, spec=s.sweep_spec(),
    )


def sweep_detail(s: SweepRecord, runs: Iterable[RunRecord]) -> SweepDetail:
    runs = list(runs)
    base = sweep_public(s, SweepSummary.of((r.status, r.progress) for r in runs))
    return SweepDetail(**base.model_dump(), runs=[run_public(r) for r in runs])


def result_public(run_id: str, result: RunResult) -> ResultPublic:
    return ResultPublic(**result.model_dump(), run_id=run_id)


def token_public(t: TokenRecord) -> TokenPublic:
    return TokenPublic(**t.model_dump(include=set(TokenBase.model_fields)))


def dashboard_public(d: DashboardRecord) -> DashboardPublic:
    """A stored dashboard as shown; a state stored before the bounds existed (or damaged in
    Redis) is shown as ``{}`` with ``state_error`` saying why, so one bad record cannot break
    a list."""
    problem = d.state_error or state_problem(d.state)
    data = d.model_dump(include=set(DashboardBase.model_fields))
    return DashboardPublic(**{**data, "state": {} if problem else d.state,
                              "state_error": problem})


# ---- CSV -----------------------------------------------------------------------------------

_ATTACK_ORDER = [a.value for a in AttackName]


def _num(x: float | None) -> str:
    if x is None:
        return ""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if math.isnan(x):
        return "nan"
    return repr(float(x))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def spreadsheet_safe(text: str) -> str:
    """A text cell a spreadsheet will not evaluate: text starting with ``= + - @``, tab or CR
    gets a leading single quote (OWASP's advice against CSV formula injection); a plain number
    such as ``-0.5`` is left as it is (it is a number, not a formula). The browser's exports
    apply the same rule (frontend/js/export.js).

    >>> spreadsheet_safe("=cmd|' /C calc'!A0"), spreadsheet_safe("-0.5"), spreadsheet_safe("a")
    ("'=cmd|' /C calc'!A0", '-0.5', 'a')
    """
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def write_csv(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """The one CSV writer of the API (results and summaries alike): RFC 4180 with CRLF lines
    (a bare CR in a cell is quoted), every cell through :func:`_cell` (empty for null, ``inf``
    for ∞, numbers as numbers, text through :func:`spreadsheet_safe`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([_cell(c) for c in header])
    w.writerows([_cell(c) for c in row] for row in rows)
    return buf.getvalue()


def _cell(v: Any) -> str | int:
    """A CSV cell for a number, text, bool or None (empty)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return _num(v)
    return spreadsheet_safe(str(v))


def results_csv(results: Iterable[tuple[str, RunResult]]) -> str:
    """Flat table, one row per run: run, method, sparsity, sparsity_actual, seed, one column
    per grid path (the run's value), clean_accuracy, robust_<attack>..., kappa_median,
    kappa_max, lipschitz_upper, flags (flags joined with ';'), written by :func:`write_csv`."""
    rows = list(results)
    attacks = sorted({a for _, r in rows for a in r.robust_accuracy},
                     key=lambda a: (_ATTACK_ORDER.index(a) if a in _ATTACK_ORDER else 99, a))
    params: list[str] = []        # grid paths, one column each
    for _, r in rows:
        params.extend(p for p in r.params if p not in params)
    header = ["run", "method", "sparsity", "sparsity_actual", "seed", *params, "clean_accuracy",
              *[f"robust_{a}" for a in attacks], "kappa_median", "kappa_max", "lipschitz_upper",
              "flags"]
    return write_csv(header, ([
        run_id, r.method.value, r.sparsity, r.sparsity_actual, r.seed,
        *[r.params.get(p) for p in params], r.clean_accuracy,
        *[r.robust_accuracy.get(a) for a in attacks], r.condition_number.median,
        r.condition_number.max, r.lipschitz_upper, ";".join(f.value for f in r.flags),
    ] for run_id, r in rows))


def summary_csv(summary: SummaryPublic) -> str:
    """The summary, one row per group (:meth:`tscnc.summary.SummaryPublic.columns`), written by
    :func:`write_csv`."""
    cols = summary.columns()
    return write_csv(cols, ([row[c] for c in cols] for row in summary.rows()))
