"""The deployment benchmarks stay runnable: bench/gpu_throughput.py in its CPU smoke size, and
the sweeps of bench/scale_out.py are valid specs (the scale-out run itself takes minutes and
starts whole deployments: it is run by hand, see docs/benchmarks.md)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

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


def test_scale_out_sweeps_are_valid_specs() -> None:
    spec = importlib.util.spec_from_file_location("scale_out", ROOT / "bench" / "scale_out.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for smoke in (True, False):
        sweep = SweepSpec.model_validate(module.sweep_spec(smoke))
        assert len(sweep.runs()) == (4 if smoke else 8)
        assert sweep.training.device == "cpu"
