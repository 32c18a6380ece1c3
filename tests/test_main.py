"""The command line, ``python -m course_utils COMMAND`` (course_utils.__main__)."""
from __future__ import annotations

import runpy
import sys

import pytest

from course_utils import data, execute, lab
from course_utils.__main__ import main


def test_help_and_unknown_commands(capsys):
    assert main([]) == 0 and "Commands:" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert main(["labb"]) == 2 and "lab" in capsys.readouterr().out


def test_lab_runs_jupyterlab(monkeypatch):
    calls = []
    monkeypatch.setattr(lab, "open_lab", lambda headless=False: calls.append(headless) or 0)
    assert main(["lab"]) == 0 and main(["lab", "--no-browser"]) == 0
    assert calls == [False, True]


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
