"""Issue 11.2 — ``tscnc data download`` and ``dataset.download: true``, end to end, offline.

A loopback ``ThreadingHTTPServer`` serves tiny archives in each dataset's real published format
(gzipped idx files, the CIFAR python tarballs, SVHN's .mat files); torchvision's classes are
pointed at it for the test's duration (their ``mirrors``/``resources``, ``url``/``tgz_md5``/
``train_list``/``test_list`` and ``split_list`` attributes, with the MD5s of the tiny files). The
real downloaders fetch, verify and extract; the data layer then reads what they wrote. No test
reaches a host other than 127.0.0.1.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from typer.testing import CliRunner

from tests.tscnc.test_data import _idx_bytes, write_cifar, write_svhn
from tscnc.cli import app
from tscnc.data import load_data
from tscnc.errors import DatasetError
from tscnc.spec import DatasetName, DatasetSpec


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL, served directory, request log) of a loopback file server."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt: str, *args: object) -> None:
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served, requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def _serve_mnist(served: Path, base: str, cls: type, monkeypatch: pytest.MonkeyPatch,
                 seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder = served / cls.__name__
    folder.mkdir()
    resources, arrays = [], {}
    for split, n in (("train", 12), ("t10k", 6)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        arrays[f"{split}_x"], arrays[f"{split}_y"] = x, y
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            name = f"{split}-{kind}-ubyte.gz"
            (folder / name).write_bytes(gzip.compress(_idx_bytes(arr)))
            resources.append((name, _md5(folder / name)))
    # A first mirror that is down: torchvision's downloader moves on to the next one.
    monkeypatch.setattr(cls, "mirrors", [f"{base}/down/", f"{base}/{cls.__name__}/"])
    monkeypatch.setattr(cls, "resources", resources)
    return arrays


def _serve_cifar(served: Path, base: str, hundred: bool, monkeypatch: pytest.MonkeyPatch
                 ) -> dict[str, np.ndarray]:
    cls = tvd.CIFAR100 if hundred else tvd.CIFAR10
    staging = served / "staging"
    arrays = write_cifar(staging, hundred=hundred)
    folder = staging / cls.base_folder
    archive = served / cls.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=cls.base_folder)
    monkeypatch.setattr(cls, "url", f"{base}/{cls.filename}")
    monkeypatch.setattr(cls, "tgz_md5", _md5(archive))
    monkeypatch.setattr(cls, "train_list", [[f, _md5(folder / f)] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, _md5(folder / f)] for f, _ in cls.test_list])
    return arrays


def _serve_svhn(served: Path, base: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    arrays = write_svhn(served / "svhn")
    monkeypatch.setattr(tvd.SVHN, "split_list", {
        split: [f"{base}/svhn/{split}_32x32.mat", f"{split}_32x32.mat",
                _md5(served / "svhn" / f"{split}_32x32.mat")] for split in ("train", "test")})
    return arrays


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "svhn"])
def test_data_download_fetches_verifies_and_is_readable(
        name: str, server: tuple[str, Path, list[str]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    base, served, requests = server
    if name in ("mnist", "fashion_mnist"):
        cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
        arrays = _serve_mnist(served, base, cls, monkeypatch)
        test_x, test_y = arrays["t10k_x"][:, None], arrays["t10k_y"]
    elif name.startswith("cifar"):
        arrays = _serve_cifar(served, base, name == "cifar100", monkeypatch)
        test_x, test_y = arrays["test_x"].reshape(-1, 3, 32, 32), arrays["test_y"]
    else:
        arrays = _serve_svhn(served, base, monkeypatch)
        test_x = arrays["test_x"].transpose(3, 2, 0, 1)
        test_y = arrays["test_y"].reshape(-1) % 10
    root = tmp_path / "root"
    monkeypatch.setenv("TSCNC_DATA_ROOTS", str(root))
    runner = CliRunner()

    before = runner.invoke(app, ["data", "list"])
    assert before.exit_code == 0, before.output
    assert f"{name} " in before.output and f"tscnc data download {name}" in before.output

    out = runner.invoke(app, ["data", "download", name, "--dir", str(root)])
    assert out.exit_code == 0, out.output
    assert "ready in" in out.output and requests, out.output
    _, test = load_data(DatasetSpec(name=DatasetName(name)))
    assert torch.equal(test.images, torch.from_numpy(np.ascontiguousarray(test_x)))
    assert test.targets.tolist() == [int(v) for v in test_y]

    after = runner.invoke(app, ["data", "list"])
    assert any(line.split()[:3] == [name, str(root), "(none:"] for line in
               after.output.splitlines()), after.output


def test_wrong_checksum_is_a_clear_error_and_leaves_nothing(
        server: tuple[str, Path, list[str]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    base, served, _ = server
    _serve_cifar(served, base, False, monkeypatch)
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", "0" * 32)
    root = tmp_path / "root"
    out = CliRunner().invoke(app, ["data", "download", "cifar10", "--dir", str(root)])
    assert out.exit_code == 1
    assert "checksum (MD5) mismatch" in out.output and "cifar-10-python.tar.gz" in out.output
    assert not (root / "cifar-10-python.tar.gz").exists()
    assert not (root / "cifar-10-batches-py").exists()
    # MNIST: every mirror serves a bad file -> one error naming each mirror, no file kept.
    _serve_mnist(served, base, tvd.MNIST, monkeypatch)
    monkeypatch.setattr(tvd.MNIST, "resources",
                        [(f, "f" * 32) for f, _ in tvd.MNIST.resources])
    with pytest.raises(DatasetError, match="no mirror served a valid train-images-idx3-ubyte.gz"):
        from tscnc.download import download

        download("mnist", root)
    assert not any((root / "MNIST" / "raw").iterdir())


def test_spec_download_option_fetches_into_the_first_root(
        server: tuple[str, Path, list[str]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    base, served, requests = server
    arrays = _serve_svhn(served, base, monkeypatch)
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("TSCNC_DATA_ROOTS", f"{first},{second}")
    spec = DatasetSpec(name=DatasetName.svhn, data_dir="svhn")
    # Off by default: a missing dataset is an error naming the command, and nothing is fetched.
    with pytest.raises(DatasetError, match="tscnc data download svhn"):
        load_data(spec)
    assert requests == []
    train, _ = load_data(spec.model_copy(update={"download": True}))
    assert (first / "svhn" / "train_32x32.mat").is_file() and not second.exists()
    assert len(train) == arrays["train_x"].shape[3]
    # Present now: a second load fetches nothing.
    n = len(requests)
    load_data(spec.model_copy(update={"download": True}))
    assert len(requests) == n


def test_embedded_and_unknown_names_are_refused(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["data", "download", "mnist5k", "--dir", str(tmp_path)])
    assert out.exit_code == 1 and "embedded" in out.output
    out = CliRunner().invoke(app, ["data", "download", "imagenet", "--dir", str(tmp_path)])
    assert out.exit_code == 2 and "unknown dataset" in out.output


def test_run_reads_from_the_data_root_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    import json

    from tests.tscnc.test_data import write_mnist

    monkeypatch.setenv("TSCNC_DATA_ROOTS", str(tmp_path / "elsewhere"))
    write_mnist(tmp_path / "root" / "tiny", "MNIST")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({
        "name": "t", "dataset": {"name": "mnist", "data_dir": "tiny"},
        "model": {"name": "mlp", "width": 4},
        "training": {"pretrain_epochs": 1, "batch_size": 4, "monitor_examples": 4,
                     "device": "cpu"},
        "adversarial": {"steps": 1},
        "evaluation": {"attacks": ["fgsm"], "examples": 10, "security_curve": [0.0]},
        "methods": ["dense"], "sparsities": [0.5], "seeds": [0]}))
    args = ["run", str(spec), "--out", str(tmp_path / "out"), "--quiet"]
    missing = CliRunner().invoke(app, args)
    assert missing.exit_code == 2 and "tscnc data download mnist" in missing.output
    ok = CliRunner().invoke(app, [*args, "--data-root", str(tmp_path / "root")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "out" / "results.json").is_file()
