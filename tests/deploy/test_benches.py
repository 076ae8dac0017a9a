"""The deployment benchmarks stay runnable: bench/gpu_throughput.py in its CPU smoke size, and
the sweeps of bench/scale_out.py are valid specs (the scale-out run itself takes minutes and
starts whole deployments: it is run by hand, see docs/benchmarks.md)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tscnc.spec import SweepSpec

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_throughput_smoke_on_cpu() -> None:
    out = subprocess.run([sys.executable, "bench/gpu_throughput.py", "--smoke", "--device",
                          "cpu"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={"PATH": "", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines()
            if line.startswith("| vgg16_bn") or line.startswith("| resnet18")]
    assert [(r[0].strip(), r[3].strip()) for r in rows] == [
        ("vgg16_bn", "plain"), ("vgg16_bn", "tscnc"), ("resnet18", "plain"),
        ("resnet18", "tscnc")]
    assert all(float(r[4]) > 0 for r in rows)          # images/s
    assert float(rows[1][7]) > 0                       # TSCNC / plain ratio


def test_redis_parser_bench_compares_both_parsers_on_the_same_store() -> None:
    out = subprocess.run([sys.executable, "bench/redis_parser.py", "--runs", "1000",
                          "--repeat", "3"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("1000 runs stored")
    rows = [line.split("|")[1:-1] for line in out.stdout.splitlines()
            if line.startswith("| runs:") or line.startswith("| sweeps:")]
    assert len(rows) == 5
    for r in rows:
        pure, hiredis, ratio = float(r[1]), float(r[3]), float(r[5].strip().rstrip("×"))
        assert pure > 0 and hiredis > 0 and ratio == pytest.approx(pure / hiredis, rel=0.05)  # of rounded ms


def test_scale_out_sweeps_are_valid_specs() -> None:
    spec = importlib.util.spec_from_file_location("scale_out", ROOT / "bench" / "scale_out.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for smoke in (True, False):
        sweep = SweepSpec.model_validate(module.sweep_spec(smoke))
        assert len(sweep.runs()) == (4 if smoke else 8)
        assert sweep.training.device == "cpu"


# ---- bench/reproduce.py: verdicts from paired intervals, report, validation split ---------------

def _reproduce():
    import importlib.util as iu
    spec = iu.spec_from_file_location("reproduce_bench", ROOT / "bench" / "reproduce.py")
    assert spec and spec.loader
    module = iu.module_from_spec(spec)
    sys.modules["reproduce_bench"] = module
    spec.loader.exec_module(module)
    return module


def _run(method: str, sparsity: float, seed: int, robust: dict[str, float], kappa: float):
    from tscnc.records import ConditionSummary, RunResult
    return RunResult(
        run=f"{method}-s{sparsity:g}-seed{seed}", method=method, sparsity=sparsity,
        sparsity_actual=sparsity, sparsity_per_layer={"fc": sparsity}, seed=seed,
        clean_accuracy=0.9, robust_accuracy=robust,
        condition_number=ConditionSummary(median=kappa, max=kappa, per_layer={"fc": kappa}),
        lipschitz_upper=1.0, security_curve=[], flags=[], attacks=[], checkpoint="", spec={},
        versions={}, wall_time=1.0)


def _synthetic_results():
    """hydra vs tscnc on 4 seeds: at 0.95 tscnc's κ is 2x lower on every seed and its robust
    accuracy clearly higher under every attack; at 0.99 κ is ∞ for hydra on seed 0 and the
    robust accuracy goes either way."""
    import math
    out = []
    for seed in range(4):
        jitter = 0.01 * seed
        for method, k95, k99, r95, r99 in (
                ("hydra", 40.0 + seed, math.inf if seed == 0 else 20.0 + seed,
                 0.60 + jitter, 0.30 + jitter),
                ("tscnc", (40.0 + seed) / 2, 10.0 + 3 * seed,
                 0.65 + jitter + 0.002 * seed, 0.30 + jitter + (0.02 if seed % 2 else -0.02))):
            out.append(_run(method, 0.95, seed, {"pgd": r95, "autoattack": r95 - 0.02}, k95))
            out.append(_run(method, 0.99, seed, {"pgd": r99 + 0.01, "autoattack": r99}, k99))
    return out


def _write_synthetic_results(r, tmp_path: Path):
    """``<tmp>/out/results/mlp.json`` as ``bench/reproduce.py`` writes it, holding
    :func:`_synthetic_results`; returns the ``--out`` directory and the spec."""
    import json
    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)
    spec = r.make_spec("mlp", ["hydra", "tscnc"], [0.95, 0.99], [0, 1, 2, 3])
    meta = {"model": "mlp", "command": "cmd", "wall_s": 60.0, **r.machine(),
            "spec": spec.model_dump(mode="json"), "spec_hash": r.spec_hash(spec)}
    (out / "results" / "mlp.json").write_text(json.dumps({
        "meta": meta, "results": [x.model_dump(mode="json") for x in _synthetic_results()],
        "failures": []}))
    return out, spec


def test_reproduce_verdicts_follow_paired_intervals() -> None:
    import math

    import numpy as np
    from scipy import stats as st

    from tscnc import report
    r = _reproduce()
    results = _synthetic_results()
    checks = {(c.claim, c.sparsity): c
              for c in r.check_claims("mlp", report.aggregate(results), results)}
    assert set(checks) == {("kappa", 0.95), ("robust", 0.95), ("kappa", 0.99), ("robust", 0.99)}
    k95 = checks["kappa", 0.95]
    assert k95.verdict == "holds" and k95.diff.n == 4
    assert math.isclose(10 ** k95.diff.mean, 0.5)
    # κ at 0.99: hydra's ∞ on seed 0 leaves 3 finite pairs, counted as excluded.
    k99 = checks["kappa", 0.99]
    assert (k99.diff.n, k99.diff.excluded) == (3, 1) and math.isinf(k99.hydra)
    # Robust at 0.95: the minimum over attacks (autoattack here), independent t-interval.
    rob = checks["robust", 0.95]
    t = np.array([0.65 + 0.012 * s - 0.02 for s in range(4)])
    h = np.array([0.60 + 0.01 * s - 0.02 for s in range(4)])
    ci = st.ttest_rel(t, h).confidence_interval(0.95)
    assert (rob.diff.low, rob.diff.high) == pytest.approx((ci.low, ci.high))
    assert rob.verdict == "holds" and set(rob.per_attack) == {"autoattack", "pgd"}
    # Robust at 0.99: differences of both signs, the interval contains 0: a tie, not a pass.
    assert checks["robust", 0.99].verdict == "tie"
    assert checks["robust", 0.99].tscnc == report.aggregate(
        [x for x in results if x.method.value == "tscnc" and x.sparsity == 0.99])[0].robust_min


def test_reproduce_report_shows_intervals_autoattack_and_infinity(tmp_path, monkeypatch) -> None:

    r = _reproduce()
    out, spec = _write_synthetic_results(r, tmp_path)
    assert spec.evaluation.autoattack_steps == r.AUTOATTACK_STEPS < 100
    assert "autoattack" in [a.value for a in spec.evaluation.attacks]
    report_path = tmp_path / "reproduction.md"
    report_path.write_text("old\n<!-- reading:start -->\nkept reading\n<!-- reading:end -->\n"
                           "## Tuning\n\n### Stage 1, `mlp`: recorded table\n\n| a | b |\n")
    monkeypatch.setenv("PATH", "")          # no Chromium: the HTML figure only
    r.main(["--report-only", "--out", str(out), "--report", str(report_path),
            "--figures", str(tmp_path / "figures")])
    text = report_path.read_text()
    assert "kept reading" in text
    assert "| mlp | robust (min over attacks): tscnc ≥ hydra | 0.99 |" in text
    assert "**tie**" in text and "**holds**" in text
    assert "3 (+1 with ∞)" in text
    assert "AutoAttack, standard version sized down to 10 iterations" in text
    assert " ± " in text and "robust autoattack" in text and "robust min" in text
    assert "### Stage 1, `mlp`: recorded table" in text      # no tuning cache: kept
    assert "the first 20% of a fixed permutation" in text
    html = (tmp_path / "figures" / "reproduction-mlp.html").read_text()
    assert "triangle-up" in html and ("∞" in html or "\\u221e" in html)


def test_reproduce_report_pairs_every_sparsity_and_keeps_models_it_did_not_run(
        tmp_path, monkeypatch) -> None:
    """The paired-difference table against scipy's paired t-interval, at every sparsity; a
    report written from one model's results keeps the other models' blocks of the previous
    report (their raw results are not committed) and replaces its own."""

    import numpy as np
    from scipy import stats as st

    r = _reproduce()
    out, _ = _write_synthetic_results(r, tmp_path)
    report_path = tmp_path / "reproduction.md"
    report_path.write_text(
        "<!-- keep:results:mlp:start -->\nstale mlp table\n<!-- keep:results:mlp:end -->\n"
        "<!-- keep:verdicts:mnist5k:start -->\nrecorded mnist verdicts\n"
        "<!-- keep:verdicts:mnist5k:end -->\n"
        "<!-- keep:results:mnist5k-cnn:start -->\nrecorded mnist table\n"
        "<!-- keep:results:mnist5k-cnn:end -->\n"
        "<!-- keep:presets:checks:start -->\npreset figures\n<!-- keep:presets:checks:end -->\n")
    monkeypatch.setenv("PATH", "")
    r.main(["--report-only", "--out", str(out), "--report", str(report_path),
            "--figures", str(tmp_path / "figures")])
    text = report_path.read_text()
    assert "recorded mnist verdicts" in text and "recorded mnist table" in text
    assert "preset figures" in text
    assert "stale mlp table" not in text and "## Results: `mlp`" in text
    assert text.index("recorded mnist verdicts") < text.index("## Reading")
    assert text.index("## Results: `mlp`") < text.index("recorded mnist table")
    # Robust min (autoattack here) at 0.95: scipy's paired interval, tscnc clearly better.
    t = np.array([0.65 + 0.012 * s - 0.02 for s in range(4)])
    h = np.array([0.60 + 0.01 * s - 0.02 for s in range(4)])
    ci = st.ttest_rel(t, h).confidence_interval(0.95)
    row95 = next(ln for ln in text.splitlines() if ln.startswith("| 0.95 | 4 |"))
    assert f"**{(t - h).mean():+.3f} [{ci.low:+.3f}, {ci.high:+.3f}] (tscnc better)**" in row95
    assert "0.50× [0.50×, 0.50×] (tscnc better)" in row95       # κ halved on every seed
    assert row95.split(" | ")[2] == "+0.000 [+0.000, +0.000] (tie)"    # same clean accuracy
    row99 = next(ln for ln in text.splitlines() if ln.startswith("| 0.99 | 4 |"))
    assert "(tie)" in row99 and "1 pair(s) with ∞ left out" in row99


def test_reproduce_mnist_spec_is_the_preset_with_its_small_layers_dense() -> None:
    from tscnc.spec import DatasetName, preset
    r = _reproduce()
    spec = r.make_spec("mnist5k-cnn", ["dense", "hydra", "tscnc"], [0.9, 0.99], [0, 1, 2])
    base = preset("mnist5k-cnn")
    assert spec.dataset.name == DatasetName.mnist5k and spec.epsilon == 0.3
    assert spec.adversarial == base.adversarial and spec.model == base.model
    assert spec.pruning.skip_layers == ["features.0", "classifier.2"]
    assert spec.evaluation.examples == 500 and spec.evaluation.security_curve == []
    assert "autoattack" in [a.value for a in spec.evaluation.attacks]
    assert len(spec.runs()) == 15 and len(spec.pretrain_groups()) == 6
    half = r.make_spec("mnist5k-cnn", ["hydra"], [0.9], [0], epochs_scale=0.5)
    assert (half.training.pretrain_epochs, half.training.prune_epochs,
            half.training.finetune_epochs) == (3, 1, 2)


def test_reproduce_validation_split_is_the_first_fifth_of_the_permutation() -> None:
    import torch

    from tscnc import data as tdata
    r = _reproduce()
    spec = r.make_spec("mlp", ["hydra"], [0.9], [100])
    train, _ = tdata.load_data(spec.dataset)
    val = r.validation_data(spec)
    n = len(train)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(
        r.VALIDATION_PERMUTATION_SEED))
    n_val, n_fit = r.validation_split_sizes(n)
    assert (len(val.test_y), len(val.train)) == (n_val, n_fit) == (251, 1006)
    first = tdata.to_tensors(torch.utils.data.Subset(train, perm[:n_val].tolist()))
    assert torch.equal(val.test_x, first[0]) and torch.equal(val.test_y, first[1])
    assert list(val.train.indices) == perm[n_val:].tolist()


def test_reproduce_merges_runs_split_by_seed(tmp_path, monkeypatch) -> None:
    import json

    monkeypatch.setenv("PATH", "")          # no Chromium: the HTML figure only
    r = _reproduce()
    results = _synthetic_results()
    spec = r.make_spec("mlp", ["hydra", "tscnc"], [0.95, 0.99], [0, 1, 2, 3])
    outs = []
    for part, seeds in enumerate(([0, 1], [2, 3])):
        out = tmp_path / f"out{part}"
        (out / "results").mkdir(parents=True)
        sp = spec.model_copy(update={"seeds": seeds})
        meta = {"model": "mlp", "command": f"cmd {part}", "wall_s": 60.0 + part, **r.machine(),
                "spec": sp.model_dump(mode="json"), "spec_hash": r.spec_hash(sp)}
        (out / "results" / "mlp.json").write_text(json.dumps({
            "meta": meta, "failures": [],
            "results": [x.model_dump(mode="json") for x in results if x.seed in seeds]}))
        outs.append(out)
    report_path = tmp_path / "reproduction.md"
    r.main(["--models", "mlp", "--merge-from", str(outs[1]), "--out", str(outs[0]),
            "--report", str(report_path), "--figures", str(tmp_path / "figures")])
    merged = json.loads((outs[0] / "results" / "mlp.json").read_text())
    assert len(merged["results"]) == len(results)
    assert merged["meta"]["spec"]["seeds"] == [0, 1, 2, 3]
    assert merged["meta"]["commands"] == ["cmd 0", "cmd 1"] and merged["meta"]["wall_s"] == 121.0
    text = report_path.read_text()
    assert "    cmd 0\n    cmd 1" in text and "seeds [0, 1, 2, 3]" in text
    # The same runs twice is refused.
    with pytest.raises(SystemExit, match="more than one part"):
        r.merge_results("mlp", outs[0], [outs[0]])


# ---- bench/text_search.py: the free-text store call, two codes side by side -------------------

def test_text_search_bench_totals_equal_a_brute_force_count(tmp_path: Path) -> None:
    """On a store filled as bench/load.py fills it, the bench runs every variant with the
    committed code and this checkout's (it asserts both give the same page and total), and
    each total it reports equals a count over the runs' own key, sweep name and notes."""
    import json

    from backend.store import Store
    from bench.load import Deadline, fill
    from bench.text_search import VARIANTS
    from tests.support.services import start_redis, stop_process

    url, proc = start_redis(tmp_path / "redis")
    try:
        store = Store.from_url(url)
        owner = store.create_token("bench", "admin")[0].id
        _, sweep_ids = fill(store, 600, owner, Deadline(300))
        out = subprocess.run([sys.executable, "bench/text_search.py", "--redis", url, "--before",
                              "HEAD", "--repeat", "2", "--json", str(tmp_path / "t.json")],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert out.returncode == 0, out.stderr
        figures = json.loads((tmp_path / "t.json").read_text())
        runs = store.get_runs([rid for s in store.get_sweeps(sweep_ids) for rid in s.run_ids])
        assert figures["runs"] == len(runs) >= 600
        assert set(figures["variants"]) == set(VARIANTS)
        for name, kw in VARIANTS.items():
            want = sum(1 for r in runs
                       if kw["text"].casefold() in f"{r.key}\n{r.sweep_name}\n{r.notes}".casefold()
                       and kw.get("status") in (None, r.status))
            assert figures["variants"][name]["matches"] == want > 0, name
            for code in ("before (HEAD)", "after (this checkout)"):
                assert figures["variants"][name][code]["p50_ms"] > 0, (name, code)
        store.close()
    finally:
        stop_process(proc)


def test_store_reads_bench_compares_the_same_records() -> None:
    out = subprocess.run([sys.executable, "bench/store_reads.py", "--runs", "300", "--repeat",
                          "6"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("300 runs stored; 50 runs per call, 6 calls each"), out.stdout
    for line in lines[1:3]:
        before, after, ratio = (float(x.split()[-1 if i == 2 else -2]) for i, x in
                                enumerate(line.split(";")))
        assert before > 0 and after > 0 and ratio == pytest.approx(before / after, rel=0.02)
    assert lines[2].startswith("summaries of "), out.stdout
