"""Seed statistics of a set of runs: groups, intervals and paired differences (torch-free).

The API's summary routes, the Python client, ``tscnc run``'s report and the static report all
use :func:`summarize`, so every place shows the same numbers (DESIGN §3.5). Runs are grouped by
the values of ``group_by`` keys (default: the method and every grid path, i.e. everything but
the seed) **and** their sparsity; per group:

- ``clean_accuracy`` / ``robust_accuracy``: mean with a 95 % Student-t interval
  (:func:`tscnc.stats.mean_ci`); the robust accuracy of a run is that under ``attack``, or for
  ``"min"`` its lowest over the attacks it was evaluated with;
- ``kappa``: geometric mean of the runs' median κ with its min and max
  (:func:`tscnc.stats.kappa_summary`; ∞ if any is ∞);
- with a ``baseline`` method, ``difference``: the paired-by-seed difference group − baseline
  group (same values of the other keys, same sparsity; a dense baseline at its sparsity 0),
  :func:`tscnc.stats.paired_difference`, each seed's value being the mean of the group's runs of
  that seed (one run unless ``group_by`` leaves out a grid path).

Example::

    >>> s = summarize([SummaryInput("r1", "sw", spec, result)], baseline=None)  # doctest: +SKIP
    >>> s.groups[0].clean_accuracy.mean                                          # doctest: +SKIP
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tscnc import stats
from tscnc.records import MaybeInf, RunResult
from tscnc.spec import (
    GRID_PATHS,
    AttackName,
    Method,
    ParamValue,
    SweepSpec,
    param_label,
    param_name,
)
from tscnc.stats import Verdict

MIN_ATTACK = "min"
ATTACKS = (MIN_ATTACK, *(a.value for a in AttackName))
# Keys a summary may group by besides the grid paths.
GROUP_KEYS = ("method", "sweep", "dataset.name", *GRID_PATHS)
_METHOD_INDEX = {m.value: i for i, m in enumerate(Method)}


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class MeanInterval(_Schema):
    """Mean over a group's runs with its 95 % Student-t interval (null for n < 2)."""

    mean: float | None = Field(description="null when no run of the group has the value")
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = Field(description="runs that entered the mean")


class KappaGeo(_Schema):
    """Geometric mean of the runs' median κ with its min and max ("Infinity" if any is ∞)."""

    geo_mean: MaybeInf | None = Field(description="exp(mean log κ_i); null with no run")
    min: MaybeInf | None = None
    max: MaybeInf | None = None
    n: int


class Difference(_Schema):
    """Paired-by-seed difference group − baseline group over the seeds both have."""

    mean: float | None = Field(description="mean of the per-seed differences; null with none")
    ci_low: float | None = Field(default=None, description="95 % t-interval; null for n < 2")
    ci_high: float | None = None
    n: int = Field(description="number of seed pairs")
    verdict: Verdict = Field(description="better / worse: interval entirely above / below 0; "
                                         "tie: contains 0; insufficient: fewer than 2 pairs")


class GroupDifference(_Schema):
    """Differences of one group to its baseline group (same values of the other group_by
    keys, same sparsity; a dense baseline is matched at its sparsity 0)."""

    baseline_key: str | None = Field(description="key of the baseline group; null if none "
                                                  "matches (then n = 0, insufficient)")
    clean_accuracy: Difference
    robust_accuracy: Difference


class SummaryGroup(_Schema):
    """One group (the values of the group_by keys) at one sparsity."""

    key: str = Field(description="readable and unique in the answer, e.g. "
                                 "'method=tscnc lambda_cnc=0.1 s=0.9'")
    values: dict[str, ParamValue] = Field(
        description="the group_by keys and their values, e.g. "
                    '{"method": "tscnc", "constraints.lambda_cnc": 0.1}')
    sparsity: float = Field(description="requested sparsity (0 for dense)")
    n: int = Field(description="finished runs (with a result) in the group")
    seeds: list[int] = Field(description="seeds of those runs, ascending")
    run_ids: list[str] = Field(description="those runs, in seed order")
    clean_accuracy: MeanInterval
    robust_accuracy: MeanInterval = Field(description="under the chosen attack (default: the "
                                                      "minimum over the run's attacks)")
    kappa: KappaGeo
    difference: GroupDifference | None = Field(
        default=None, description="with ?baseline=METHOD (null for the baseline's own groups)")


class SummaryPublic(_Schema):
    """``GET /api/v1/sweeps/{id}/summary`` and ``GET /api/v1/summary?sweeps=a,b``."""

    sweep_ids: list[str]
    group_by: list[str] = Field(description='the grouping keys used: "method", "sweep" or a '
                                            "dotted spec path")
    params: list[str] = Field(description="grid paths of the sweeps (union)")
    attack: str = Field(description='"min" (the lowest accuracy over each run\'s attacks) or '
                                    "an attack name")
    baseline: Method | None = None
    groups: list[SummaryGroup] = Field(description="ordered by group key values, then sparsity")
    missing: int = Field(default=0,
                         description="runs of the sweeps without a result (not counted)")

    def columns(self) -> list[str]:
        """The flat columns of :meth:`rows` (and of the CSV), in order."""
        cols = [*self.group_by, "sparsity", "n", "seeds"]
        cols += [f"{m}_{s}" for m in ("clean", "robust") for s in ("mean", "ci_low", "ci_high")]
        cols += ["kappa_geo_mean", "kappa_min", "kappa_max"]
        if self.baseline is not None:
            cols += ["baseline_key"] + [f"diff_{m}_{s}" for m in ("clean", "robust")
                                        for s in ("mean", "ci_low", "ci_high", "n", "verdict")]
        return cols

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per group (the CSV's and the DataFrame's columns, in order):
        group_by keys, sparsity, n, seeds, clean_*, robust_*, kappa_* and, with a baseline,
        baseline_key and diff_clean_* / diff_robust_*. Nulls stay None, ∞ stays inf."""
        out = []
        for g in self.groups:
            row: dict[str, Any] = {k: g.values.get(k) for k in self.group_by}
            row.update(sparsity=g.sparsity, n=g.n, seeds=";".join(map(str, g.seeds)))
            for name, m in (("clean", g.clean_accuracy), ("robust", g.robust_accuracy)):
                row.update({f"{name}_mean": m.mean, f"{name}_ci_low": m.ci_low,
                            f"{name}_ci_high": m.ci_high})
            row.update(kappa_geo_mean=g.kappa.geo_mean, kappa_min=g.kappa.min,
                       kappa_max=g.kappa.max)
            if self.baseline is not None:
                d = g.difference
                row["baseline_key"] = d.baseline_key if d else None
                for name in ("clean", "robust"):
                    x = getattr(d, f"{name}_accuracy") if d else None
                    row.update({f"diff_{name}_mean": x.mean if x else None,
                                f"diff_{name}_ci_low": x.ci_low if x else None,
                                f"diff_{name}_ci_high": x.ci_high if x else None,
                                f"diff_{name}_n": x.n if x else None,
                                f"diff_{name}_verdict": x.verdict.value if x else None})
            out.append(row)
        return out


@dataclass(frozen=True)
class SummaryInput:
    """One finished run: its id, its sweep's id and spec, and its result."""

    run_id: str
    sweep_id: str
    spec: SweepSpec
    result: RunResult


def robust_value(r: RunResult, attack: str) -> float | None:
    """The run's robust accuracy under ``attack``; for ``"min"`` its lowest over its attacks."""
    if attack == MIN_ATTACK:
        return min(r.robust_accuracy.values()) if r.robust_accuracy else None
    return r.robust_accuracy.get(attack)


def default_group_by(params: Sequence[str]) -> list[str]:
    """The method and every grid path: everything but the seed (and sparsity, always split)."""
    return ["method", *params]


def default_baseline(methods: Sequence[Method]) -> Method | None:
    """The baseline reports compare with: HYDRA when the sweep has it and another pruning
    method (the paper's comparison), else None."""
    others = [m for m in methods if m not in (Method.hydra, Method.dense)]
    return Method.hydra if Method.hydra in methods and others else None


def grid_paths(specs: Iterable[SweepSpec]) -> list[str]:
    """Union of the specs' grid paths, in order of appearance."""
    out: list[str] = []
    for s in specs:
        out.extend(p for p in s.grid if p not in out)
    return out


def _lookup(dump: dict[str, Any], path: str) -> ParamValue:
    section, name = path.split(".")
    value: ParamValue = dump[section][name]
    return value


def _value(x: SummaryInput, key: str, dumps: dict[str, dict[str, Any]]) -> ParamValue:
    if key == "method":
        return x.result.method.value
    if key == "sweep":
        return x.sweep_id
    if key in x.result.params:
        return x.result.params[key]
    return _lookup(dumps[x.sweep_id], key)


def _label(key: str, value: ParamValue) -> str:
    return f"{param_name(key) if '.' in key else key}={param_label(value)}"


def _order(v: ParamValue, key: str) -> tuple[int, float, str]:
    if key == "method" and isinstance(v, str):
        return (0, _METHOD_INDEX.get(v, 99), "")
    if isinstance(v, bool | int | float):
        return (1, float(v), "")
    return (2, 0.0, "") if v is None else (3, 0.0, str(v))


def _mean(xs: list[float]) -> MeanInterval:
    if not xs:
        return MeanInterval(mean=None, n=0)
    m = stats.mean_ci(xs)
    return MeanInterval(mean=m.mean, ci_low=m.low, ci_high=m.high, n=m.n)


def _kappa(xs: list[float]) -> KappaGeo:
    ks = [k for k in xs if not math.isnan(k)]
    if not ks:
        return KappaGeo(geo_mean=None, n=0)
    k = stats.kappa_summary(ks)
    return KappaGeo(geo_mean=k.geo_mean, min=k.min, max=k.max, n=k.n)


def _per_seed(members: list[SummaryInput], get: Any) -> dict[Hashable, float]:
    """Each seed's value (the mean over the group's runs of that seed that have one)."""
    by: dict[Hashable, list[float]] = {}
    for x in members:
        v = get(x.result)
        if v is not None:
            by.setdefault(x.result.seed, []).append(v)
    return {s: statistics.fmean(v) for s, v in by.items()}


def _difference(members: list[SummaryInput], base: list[SummaryInput], get: Any) -> Difference:
    d = stats.paired_difference(_per_seed(members, get), _per_seed(base, get))
    return Difference(mean=None if math.isnan(d.mean) else d.mean, ci_low=d.low, ci_high=d.high,
                      n=d.n, verdict=d.verdict)


def summarize(runs: Sequence[SummaryInput], *, group_by: Sequence[str] | None = None,
              attack: str = MIN_ATTACK, baseline: Method | None = None,
              sweep_ids: Sequence[str] = (), missing: int = 0) -> SummaryPublic:
    """Group ``runs`` and compute the statistics of the module docstring.

    ``group_by`` keys are used once each, in order; with a ``baseline``, ``"method"`` is added
    in front when missing. Raises ``ValueError`` naming the problem for an unknown
    ``group_by`` key or ``attack`` (the API answers 422 naming the field).
    """
    params = grid_paths(x.spec for x in runs)
    keys = list(dict.fromkeys(group_by)) if group_by else default_group_by(params)
    unknown = [k for k in keys if k not in GROUP_KEYS]
    if unknown:
        raise ValueError(f"group_by: unknown key(s) {unknown}; use method, sweep, dataset.name "
                         f"or a griddable spec path")
    if attack not in ATTACKS:
        raise ValueError(f"attack: {attack!r} is not one of {', '.join(ATTACKS)}")
    if baseline is not None and "method" not in keys:
        keys.insert(0, "method")      # a baseline is a method: groups must tell them apart
    dumps = {x.sweep_id: x.spec.model_dump(mode="json") for x in runs}
    groups: dict[tuple[tuple[ParamValue, ...], float], list[SummaryInput]] = {}
    for x in runs:
        values = tuple(_value(x, k, dumps) for k in keys)
        groups.setdefault((values, x.result.sparsity), []).append(x)

    def key_of(values: tuple[ParamValue, ...], sparsity: float) -> str:
        return " ".join([*(_label(k, v) for k, v in zip(keys, values, strict=True)),
                         f"s={sparsity:g}"])

    def robust(r: RunResult) -> float | None:
        return robust_value(r, attack)

    def clean(r: RunResult) -> float:
        return r.clean_accuracy

    mi = keys.index("method") if "method" in keys else -1
    out = []
    for (values, sp), members in sorted(
            groups.items(),
            key=lambda kv: ([_order(v, k) for k, v in zip(keys, kv[0][0], strict=True)],
                            kv[0][1])):
        members = sorted(members, key=lambda x: (x.result.seed, x.run_id))
        rob = [v for v in (robust(x.result) for x in members) if v is not None]
        diff = None
        if baseline is not None and values[mi] != baseline.value:
            bvalues = values[:mi] + (baseline.value,) + values[mi + 1:]
            bsp = 0.0 if baseline == Method.dense else sp
            base = groups.get((bvalues, bsp))
            diff = GroupDifference(
                baseline_key=key_of(bvalues, bsp) if base else None,
                clean_accuracy=_difference(members, base or [], clean),
                robust_accuracy=_difference(members, base or [], robust))
        out.append(SummaryGroup(
            key=key_of(values, sp), values=dict(zip(keys, values, strict=True)), sparsity=sp,
            n=len(members), seeds=sorted({x.result.seed for x in members}),
            run_ids=[x.run_id for x in members],
            clean_accuracy=_mean([x.result.clean_accuracy for x in members]),
            robust_accuracy=_mean(rob),
            kappa=_kappa([x.result.condition_number.median for x in members]),
            difference=diff))
    return SummaryPublic(sweep_ids=list(sweep_ids), group_by=keys, params=params, attack=attack,
                         baseline=baseline, groups=out, missing=missing)


def _interval(m: MeanInterval | Difference, sign: bool = False) -> str:
    if m.mean is None:
        return "–"
    f = "+.3f" if sign else ".3f"
    core = format(m.mean, f)
    return core if m.ci_low is None or m.ci_high is None else \
        f"{core} [{format(m.ci_low, f)}, {format(m.ci_high, f)}]"


def _kappa_text(k: KappaGeo) -> str:
    if k.geo_mean is None:
        return "–"

    def one(v: float | None) -> str:
        return "∞" if v is not None and math.isinf(v) else f"{v:.3g}"

    return one(k.geo_mean) + ("" if k.n < 2 else f" ({one(k.min)}–{one(k.max)})")


def format_summary(s: SummaryPublic) -> str:
    """Plain-text table: group, n, clean and robust accuracy as mean [95 % interval], κ as
    geometric mean (min–max) and, with a baseline, Δ robust accuracy [interval] and verdict."""
    head = ["group", "n", "clean", f"robust ({s.attack})", "κ median (geo)"]
    if s.baseline is not None:
        head += [f"Δ robust vs {s.baseline.value}", "verdict"]
    rows = [head]
    for g in s.groups:
        row = [g.key, str(g.n), _interval(g.clean_accuracy), _interval(g.robust_accuracy),
               _kappa_text(g.kappa)]
        if s.baseline is not None:
            d = g.difference
            row += ["(baseline)", ""] if d is None else \
                [_interval(d.robust_accuracy, sign=True) + f" n={d.robust_accuracy.n}",
                 d.robust_accuracy.verdict.value]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
