"""The ``tscnc`` CLI as a user runs it: a subprocess, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tscnc.records import RunResult

TINY = {
    "name": "cli-tiny",
    "dataset": {"name": "digits", "train_subset": 200},
    "model": {"name": "mlp", "width": 16},
    "training": {"pretrain_epochs": 2, "prune_epochs": 1, "finetune_epochs": 1,
                 "batch_size": 64, "monitor_examples": 30, "device": "cpu"},
    "adversarial": {"steps": 2},
    "evaluation": {"attacks": ["fgsm", "pgd"], "pgd_steps": 3, "examples": 50,
                   "security_curve": [0.0, 1.0]},
    "methods": ["dense", "hydra"],
    "sparsities": [0.5, 0.9],
}


def tscnc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tscnc", *args], capture_output=True, text=True,
                          timeout=300)


def test_run_writes_results_table_and_report(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(TINY))
    out = tmp_path / "out"
    p = tscnc("run", str(spec), "--out", str(out))
    assert p.returncode == 0, p.stderr
    records = [RunResult.model_validate(r) for r in json.loads((out / "results.json").read_text())]
    assert sorted(r.run for r in records) == ["dense-s0-seed0", "hydra-s0.5-seed0",
                                              "hydra-s0.9-seed0"]
    for r in records:
        assert Path(r.checkpoint).is_file()
    assert "hydra   0.9" in p.stdout and "κ median" in p.stdout
    html = (out / "report.html").read_text()
    assert "plotly" in html.lower() and "robust accuracy (pgd)" in html
    assert "epoch" in p.stderr  # the progress bar

    again = tscnc("run", str(spec), "--out", str(out), "--quiet")  # everything checkpointed
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "results.json").read_text())[0]["clean_accuracy"] == \
        records[0].clean_accuracy


def test_bad_spec_names_each_field_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"sparsities": [1.5], "model": {"name": "lenet"}}))
    p = tscnc("run", str(bad), "--out", str(tmp_path / "o"))
    assert p.returncode == 2
    assert "sparsities.0" in p.stderr and "model.name" in p.stderr and "lenet" in p.stderr
    assert not (tmp_path / "o").exists()


def test_presets_lists_and_shows() -> None:
    p = tscnc("presets")
    assert p.returncode == 0 and "digits-quick" in p.stdout and "cifar10-vgg16" in p.stdout
    shown = json.loads(tscnc("presets", "--show", "digits-quick").stdout)
    assert shown["name"] == "digits-quick"
    missing = tscnc("presets", "--show", "nope")
    assert missing.returncode == 2 and "digits-quick" in missing.stderr
