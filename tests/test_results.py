"""Recording results and printing the table (course_utils.results)."""
from __future__ import annotations

import json
import math

import pytest

from course_utils import results
from course_utils.results import load_results, print_results, record_results, results_dir, results_table
from course_utils.runsize import run_plan

COMMITTED = results.RESULTS_DIR


@pytest.fixture
def fake_repo(tmp_path, monkeypatch):
    """``results/`` of a throw-away repository, with COURSE_RESULTS_DIR unset."""
    monkeypatch.delenv("COURSE_RESULTS_DIR", raising=False)
    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path / "results")
    return tmp_path / "results"


def test_record_writes_the_schema(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    plan = run_plan("01_mnist_mlp", size="smoke")
    assert record_results(plan, {"mnist_test_acc": 0.98123456, "images": 8000}) is None
    record = json.loads((tmp_path / "01_mnist_mlp.json").read_text())
    assert set(record) == {"notebook", "run_size", "device", "seconds", "metrics"}
    assert record["notebook"] == "01_mnist_mlp" and record["run_size"] == "smoke"
    assert record["device"] == plan.device.type
    assert isinstance(record["seconds"], float) and 0 <= record["seconds"] < 60
    assert record["metrics"] == {"mnist_test_acc": 0.981235, "images": 8000}
    assert isinstance(record["metrics"]["images"], int)
    out = capsys.readouterr().out
    assert "01_mnist_mlp" in out and "mnist_test_acc" in out and str(tmp_path) not in out  # no local path


def test_tiny_metrics_keep_their_digits(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    record_results(run_plan("01_mnist_mlp", size="smoke"), {"max_abs_diff": 4.8123456e-07})
    assert json.loads((tmp_path / "01_mnist_mlp.json").read_text())["metrics"] == {"max_abs_diff": 4.81235e-07}
    assert "max_abs_diff=4.81e-07" in capsys.readouterr().out


def test_smoke_and_gpu_never_write_the_committed_results(fake_repo):
    for size in ("smoke", "gpu"):
        record_results(run_plan("00_setup_and_tour", size=size), {"n": 1})
        assert (fake_repo / size / "00_setup_and_tour.json").exists()
    assert not list(fake_repo.glob("*.json"))
    record_results(run_plan("00_setup_and_tour", size="cpu"), {"n": 1})
    assert (fake_repo / "00_setup_and_tour.json").exists()


def test_results_dir_of_the_real_repository(monkeypatch):
    monkeypatch.delenv("COURSE_RESULTS_DIR", raising=False)
    assert results_dir("cpu") == COMMITTED
    assert results_dir("smoke") == COMMITTED / "smoke" and results_dir("gpu") == COMMITTED / "gpu"
    monkeypatch.setenv("COURSE_RESULTS_DIR", "/somewhere/else")
    assert str(results_dir("cpu")) == "/somewhere/else"


def test_this_test_session_writes_outside_the_committed_results():
    """conftest sends every record of the test session (notebooks included) to a temporary folder."""
    import os
    from pathlib import Path

    folder = Path(os.environ["COURSE_RESULTS_DIR"]).resolve()
    assert folder != COMMITTED and COMMITTED not in folder.parents


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "0.9", None, True, [0.9]])
def test_non_finite_or_non_numeric_metrics_are_refused(tmp_path, monkeypatch, value):
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="finite number") as error:
        record_results(run_plan("01_mnist_mlp", size="smoke"), {"ok": 0.5, "bad_metric": value})
    assert "bad_metric" in str(error.value)
    assert not list(tmp_path.iterdir()), "nothing is written when a metric is refused"


def test_table_lists_every_metric(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    record_results(run_plan("01_mnist_mlp", size="smoke"), {"mnist_test_acc": 0.975})
    record_results(run_plan("02_mnist_cnn", size="smoke"), {"mnist_test_acc": 0.99, "fashion_test_acc": 0.9})
    records = load_results(tmp_path)
    assert [r["notebook"] for r in records] == ["01_mnist_mlp", "02_mnist_cnn"]
    table = results_table(records).splitlines()
    assert table[0].split() == ["notebook", "run", "size", "device", "seconds", "metric", "value"]
    assert set(table[1]) <= {"-", " "}
    assert len(table) == 2 + 3
    assert "0.9750" in table[2] and "fashion_test_acc" in table[4] and "0.9000" in table[4]
    capsys.readouterr()
    print_results(tmp_path)
    assert capsys.readouterr().out.splitlines() == table


def test_table_of_a_record_without_metrics():
    table = results_table([{"notebook": "x", "run_size": "cpu", "device": "cpu", "seconds": 1.0, "metrics": {}}])
    assert table.splitlines()[2].split()[-2:] == ["-", "nan"]


def test_empty_folder_says_so(tmp_path, capsys):
    print_results(tmp_path)
    assert "no results" in capsys.readouterr().out


def test_broken_results_file_is_named(tmp_path):
    (tmp_path / "01_mnist_mlp.json").write_text("{not json")
    with pytest.raises(ValueError, match="01_mnist_mlp.json"):
        load_results(tmp_path)
