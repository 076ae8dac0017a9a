"""``tscnc run``: a sweep in this process with tqdm progress, a table, results.json and a report."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
from tqdm import tqdm

from tscnc import pipeline, report
from tscnc.errors import Cancelled
from tscnc.records import (
    EpochEvent,
    Event,
    LogEvent,
    ProgressEvent,
    RunResult,
    StageStarted,
)
from tscnc.spec import SweepSpec
from tscnc.summary import SummaryInput, default_baseline, format_summary, summarize


class _Progress:
    """One bar over all epochs of the sweep (shared pretrain epochs counted once)."""

    def __init__(self, spec: SweepSpec, quiet: bool) -> None:
        groups = spec.pretrain_groups()
        total = sum(spec.for_run(g[0]).training.pretrain_epochs for g in groups.values()) + sum(
            spec.for_run(r).total_epochs(r.method) - spec.for_run(r).training.pretrain_epochs
            for r in spec.runs())
        self.bar = tqdm(total=total, unit="epoch", disable=quiet, dynamic_ncols=True)
        self._group = {r.key: r.pretrain_key for r in spec.runs()}
        self._seen: set[tuple[str, str, int]] = set()
        self._told: set[str] = set()

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, StageStarted):
            self.bar.set_description(f"{ev.run} {ev.stage.value}")
        elif isinstance(ev, EpochEvent):
            # Shared pretrain epochs arrive once per run of the group; count them once.
            owner = self._group.get(ev.run, ev.run) if ev.stage.value == "pretrain" else ev.run
            key = (owner, ev.stage.value, ev.epoch)
            if key not in self._seen:
                self._seen.add(key)
                self.bar.update(1)
            self.bar.set_postfix(loss=f"{ev.loss:.3f}", clean=f"{ev.clean_accuracy:.2f}",
                                 robust=f"{ev.robust_accuracy:.2f}")
        elif isinstance(ev, ProgressEvent):
            self.bar.set_postfix_str(f"batch {ev.batch}/{ev.batches}")
        elif isinstance(ev, LogEvent) and ev.level == "warning" and ev.message not in self._told:
            # Shared-stage warnings arrive once per run of the group; say each once.
            self._told.add(ev.message)
            tqdm.write(f"warning: {ev.message}", file=sys.stderr)


def seed_summary(spec: SweepSpec, results: list[RunResult]) -> str | None:
    """The seed-statistics table (:func:`tscnc.summary.format_summary`): per method, grid
    values and sparsity the accuracies' mean [95 % interval], κ's geometric mean (min–max) and
    the paired difference to the baseline (:func:`tscnc.summary.default_baseline`) with its
    verdict; None when there is nothing to summarise (no result)."""
    if not results:
        return None
    inputs = [SummaryInput(r.run, spec.name, spec, r) for r in results]
    return format_summary(summarize(inputs, baseline=default_baseline(spec.methods)))


def run_sweep_with_progress(spec: SweepSpec, out: Path, quiet: bool = False,
                            fresh: bool = False) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(spec.model_dump_json(indent=2))
    progress = _Progress(spec, quiet)
    results: list[RunResult] = []

    def save(res: RunResult | None = None) -> None:
        if res is not None:
            results.append(res)
        (out / "results.json").write_text(json.dumps(
            [r.model_dump(mode="json") for r in results], indent=1, allow_nan=True))

    t0 = time.monotonic()
    try:
        outcome = pipeline.run_sweep(spec, out / "artifacts", emit=progress, on_result=save,
                                     fresh=fresh)
    except Cancelled as e:
        progress.bar.close()
        typer.echo(f"cancelled: {e.message}", err=True)
        return 130
    except KeyboardInterrupt:
        progress.bar.close()
        typer.echo("interrupted; run the same command again to resume from the checkpoints",
                   err=True)
        return 130
    finally:
        progress.bar.close()
    save()
    points = report.aggregate(outcome.results)
    typer.echo("\n" + report.format_table(points))
    table = seed_summary(spec, outcome.results)
    if table:
        typer.echo("\n" + table)
    if points:
        attack = "pgd" if any("pgd" in p.robust for p in points) else \
            next(iter(points[0].robust), "pgd")
        report.write_html(points, out / "report.html", attack=attack, title=spec.name,
                          summary=table)
    for f in outcome.failures:
        typer.echo(f"FAILED {f.run}: {f.category.value}: {f.message}", err=True)
    typer.echo(f"\n{len(outcome.results)} runs succeeded, {len(outcome.failures)} failed in "
               f"{time.monotonic() - t0:.0f} s; results: {out / 'results.json'}, report: "
               f"{out / 'report.html'}")
    return 1 if outcome.failures else 0
