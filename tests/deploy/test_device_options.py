"""training.amp and training.channels_last are CUDA-only: on CPU they change nothing, bit for
bit. (The CUDA side is tests/deploy/test_gpu.py, selected with `pytest -m gpu`.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tscnc import pipeline
from tscnc.pipeline import DeviceOptions
from tscnc.spec import SweepSpec

CnnSpec = Callable[..., SweepSpec]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny models: one intra-op thread is faster, and on a busy or virtualised 2-core machine
    # several threads can be an order of magnitude slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_options_map_to_cuda_settings_only(cnn_spec: CnnSpec) -> None:
    spec = cnn_spec(amp="bf16", channels_last=True)
    assert DeviceOptions.of(spec, torch.device("cpu")) == DeviceOptions()
    cuda = DeviceOptions.of(spec, torch.device("cuda"))     # only maps names; no GPU needed
    assert cuda == DeviceOptions(torch.bfloat16, torch.channels_last)
    assert DeviceOptions.of(cnn_spec(amp="fp16"), torch.device("cuda")).amp == torch.float16
    assert DeviceOptions.of(cnn_spec(), torch.device("cuda")) == DeviceOptions()
    assert not DeviceOptions().scaler().is_enabled()
    x = torch.rand(2, 3, 4, 4)
    assert DeviceOptions().batch(x) is x


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_and_channels_last_are_no_ops_on_cpu(tmp_path: Path, probe: Any, cnn_spec: CnnSpec,
                                                 amp: str) -> None:
    plain = cnn_spec(device="cpu")
    gpu_opts = cnn_spec(device="cpu", amp=amp, channels_last=True)
    run = plain.runs()[0]
    weights = []
    for i, spec in enumerate((plain, gpu_opts)):
        res = pipeline.complete_run(spec, run, run.key, tmp_path / str(i), emit=probe.emit,
                                    device=torch.device("cpu"))
        weights.append(torch.load(res.checkpoint, weights_only=True)["model"])
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k
    assert probe.calls and not any(autocast or w_cl or x_cl
                                   for _, _, autocast, w_cl, x_cl in probe.calls)
