"""Recording results and printing the table (course_utils.results)."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import multiprocessing
import os

import numpy as np
import pytest
import torch

from course_utils import results, runsize
from course_utils.results import (
    load_by_size,
    load_results,
    print_results,
    readme_markdown,
    record_results,
    results_dir,
    results_table,
    summary_markdown,
    summary_table,
)
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
    plan = dataclasses.replace(run_plan("01_mnist_mlp", size="smoke"), started=100.0)
    monkeypatch.setattr(runsize.time, "perf_counter", lambda: 197.349)  # 97.349 s after the plan began
    assert record_results(plan, {"mnist_test_acc": 0.98123456, "images": 8000}) is None
    record = json.loads((tmp_path / "01_mnist_mlp.json").read_text())
    assert set(record) == {"notebook", "run_size", "device", "threads", "seconds", "metrics"}
    assert record["threads"] == torch.get_num_threads()
    assert record["notebook"] == "01_mnist_mlp" and record["run_size"] == "smoke"
    assert record["device"] == plan.device.type
    assert record["seconds"] == 97.3
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


@pytest.mark.parametrize("value, message", [
    (math.nan, "finite number"), (math.inf, "finite number"), (-math.inf, "finite number"),
    (np.float32("nan"), "finite number"), (torch.tensor(float("nan")), "finite number"),
    ("0.9", "must be a number"), (None, "must be a number"), (True, "must be a number"), ([0.9], "must be a number"),
    (torch.tensor([0.9, 0.8]), "must be one number"), (np.array([1.0, 2.0]), "must be one number"),
])
def test_non_finite_or_non_numeric_metrics_are_refused(tmp_path, monkeypatch, value, message):
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=message) as error:
        record_results(run_plan("01_mnist_mlp", size="smoke"), {"ok": 0.5, "bad_metric": value})
    assert "bad_metric" in str(error.value)
    assert not list(tmp_path.iterdir()), "nothing is written when a metric is refused"


def test_the_numbers_a_notebook_has_are_accepted(tmp_path, monkeypatch, capsys):
    """NumPy scalars and 0-d / one-element tensors, as accuracy computations return them."""
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    record_results(run_plan("01_mnist_mlp", size="smoke"),
                   {"np_float": np.float32(0.25), "np_int": np.int64(7), "tensor": torch.tensor(0.5),
                    "one_element": torch.tensor([0.125]), "np_0d": np.array(0.75), "count": 3})
    metrics = json.loads((tmp_path / "01_mnist_mlp.json").read_text())["metrics"]
    assert metrics == {"np_float": 0.25, "np_int": 7, "tensor": 0.5, "one_element": 0.125, "np_0d": 0.75,
                       "count": 3}
    assert isinstance(metrics["np_int"], int) and isinstance(metrics["count"], int)


def _write_many(folder: str, value: float, times: int) -> None:
    os.environ["COURSE_RESULTS_DIR"] = folder
    plan = run_plan("01_mnist_mlp", size="smoke")
    for _ in range(times):
        with contextlib.redirect_stdout(io.StringIO()):
            record_results(plan, {"acc": value})


@pytest.mark.slow
def test_concurrent_writers_never_leave_a_broken_file(tmp_path):
    """Two kernels recording the same notebook at once (make execute while the lab runs): a reader
    always finds one whole record, never an empty or half-written file, and no temporary file is left."""
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(tmp_path), value, 150)) for value in (0.25, 0.75)]
    for writer in writers:
        writer.start()
    path, reads = tmp_path / "01_mnist_mlp.json", 0
    while any(writer.is_alive() for writer in writers):
        if path.exists():
            assert json.loads(path.read_text())["metrics"]["acc"] in (0.25, 0.75)
            reads += 1
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert reads > 0 and json.loads(path.read_text())["metrics"]["acc"] in (0.25, 0.75)
    assert [p.name for p in tmp_path.iterdir()] == ["01_mnist_mlp.json"]


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


# ---------------------------------------------------------------------------------------------
# The summary: one row per notebook, its time at each run size, its headline figures
# ---------------------------------------------------------------------------------------------

README = COMMITTED.parent / "README.md"
TABLE_START = "<!-- results table: python -m course_utils results --markdown -->"
TABLE_END = "<!-- end of results table -->"


def _write(folder, notebook: str, size: str, seconds: float, metrics: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"notebook": notebook, "run_size": size, "device": "cuda" if size == "gpu" else "cpu",
              "seconds": seconds, "metrics": metrics}
    (folder / f"{notebook}.json").write_text(json.dumps(record))


@pytest.fixture
def sized(tmp_path):
    """A results folder laid out as ``results_dir`` writes it: cpu at the top, smoke and gpu below."""
    _write(tmp_path, "01_mnist_mlp", "cpu", 19.3, {"mnist_test_acc": 0.9795, "logreg_test_acc": 0.919})
    _write(tmp_path, "02_mnist_cnn", "cpu", 180.2, {"mnist_test_acc": 0.9905, "fashion_test_acc": 0.9196})
    _write(tmp_path / "smoke", "01_mnist_mlp", "smoke", 2.34, {"mnist_test_acc": 0.61, "logreg_test_acc": 0.5})
    _write(tmp_path / "gpu", "02_mnist_cnn", "gpu", 61.0, {"mnist_test_acc": 0.9931, "fashion_test_acc": 0.93})
    return tmp_path


def test_records_are_grouped_by_run_size_in_size_order(sized):
    by_size = load_by_size(sized)
    assert list(by_size) == ["smoke", "cpu", "gpu"]
    assert list(by_size["cpu"]) == ["01_mnist_mlp", "02_mnist_cnn"] and list(by_size["gpu"]) == ["02_mnist_cnn"]
    assert by_size["smoke"]["01_mnist_mlp"]["seconds"] == 2.34


def test_a_record_goes_by_its_own_run_size(tmp_path):
    """COURSE_RESULTS_DIR puts every size in one folder: the record's run_size still sorts it."""
    _write(tmp_path, "01_mnist_mlp", "smoke", 2.0, {})
    _write(tmp_path, "05_attention_math", "gpu", 9.0, {})
    assert {size: list(records) for size, records in load_by_size(tmp_path).items()} == \
        {"smoke": ["01_mnist_mlp"], "gpu": ["05_attention_math"]}


def test_bad_run_size_and_repeated_records_are_named(tmp_path):
    _write(tmp_path, "01_mnist_mlp", "huge", 2.0, {})
    with pytest.raises(ValueError, match=r"01_mnist_mlp.json: run_size 'huge' is not one of smoke, cpu, gpu"):
        load_by_size(tmp_path)
    _write(tmp_path, "01_mnist_mlp", "smoke", 2.0, {})
    _write(tmp_path / "smoke", "01_mnist_mlp", "smoke", 3.0, {})
    with pytest.raises(ValueError, match="both hold 01_mnist_mlp at smoke"):
        load_by_size(tmp_path)


@pytest.mark.parametrize("seconds, shown", [(1.66, "1.7 s"), (9.94, "9.9 s"), (19.3, "19 s"), (59.4, "59 s"),
                                            (180.2, "3 min 00 s"), (437.2, "7 min 17 s"), (3725.0, "62 min 05 s")])
def test_durations_read_as_an_instructor_plans(seconds, shown):
    assert results.duration(seconds) == shown


def test_summary_has_the_times_then_the_headline_figures_of_each_size(sized):
    lines = summary_table(load_by_size(sized)).splitlines()
    header = [cell.strip() for cell in lines[0].split("  ") if cell.strip()]
    assert header == ["notebook", "smoke time", "cpu time", "gpu time", "smoke figures", "cpu figures", "gpu figures"]
    assert set(lines[1]) <= {"-", " "}
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == ["01_mnist_mlp", "02_mnist_cnn", "total"]
    assert "2.3 s" in rows["01_mnist_mlp"] and "19 s" in rows["01_mnist_mlp"]
    assert "mnist_test_acc 0.6100" in rows["01_mnist_mlp"] and "mnist_test_acc 0.9795" in rows["01_mnist_mlp"]
    assert "logreg_test_acc" not in rows["01_mnist_mlp"], "only the headline figures"
    assert "fashion_test_acc 0.9300" in rows["02_mnist_cnn"], "02's headline: the seed mean, Fashion, BatchNorm"
    # a notebook not run at a size shows "-" there; the total adds up each size
    assert rows["02_mnist_cnn"].split()[1] == "-" and rows["01_mnist_mlp"].rstrip().endswith("-")
    assert rows["total"].split() == ["total", "2.3", "s", "3", "min", "20", "s", "1", "min", "01", "s"]


def test_only_the_sizes_with_results_get_columns(tmp_path):
    _write(tmp_path, "01_mnist_mlp", "cpu", 19.3, {"mnist_test_acc": 0.9795})
    header = summary_table(load_by_size(tmp_path)).splitlines()[0]
    assert header.split() == ["notebook", "cpu", "time", "cpu", "figures"]


def test_headline_figures(monkeypatch):
    record = {"notebook": "01_mnist_mlp", "metrics": {"mnist_test_acc": 0.9795, "logreg_test_acc": 0.919}}
    assert results._figures(record, code=False) == "mnist_test_acc 0.9795"
    assert results._figures(record, code=True) == "`mnist_test_acc` 0.9795"
    # a notebook without a HEADLINE entry shows every metric; a headline metric a record lacks is left out
    new_notebook = {**record, "notebook": "07_new"}
    assert results._figures(new_notebook, code=False) == "mnist_test_acc 0.9795, logreg_test_acc 0.9190"
    monkeypatch.setitem(results.HEADLINE, "01_mnist_mlp", ["gone", "logreg_test_acc"])
    assert results._figures(record, code=False) == "logreg_test_acc 0.9190"
    assert results._figures({"notebook": "00_setup_and_tour", "metrics": {"n": 1}}, code=False) == ""


def test_every_headline_figure_is_recorded_by_its_notebook():
    """HEADLINE names metrics the notebooks really record (as the committed cpu run shows)."""
    committed = load_by_size(COMMITTED)["cpu"]
    assert set(results.HEADLINE) == set(committed), "one HEADLINE entry per notebook"
    for notebook, names in results.HEADLINE.items():
        missing = set(names) - set(committed[notebook]["metrics"])
        assert not missing, f"{notebook} records no {sorted(missing)}"


def test_markdown_is_the_same_table(sized):
    by_size = load_by_size(sized)
    lines = summary_markdown(by_size).splitlines()
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines)
    assert lines[0] == "| notebook | smoke time | cpu time | gpu time | smoke figures | cpu figures | gpu figures |"
    assert lines[1] == "| --- | --- | --- | --- | --- | --- | --- |"
    assert lines[2] == ("| 01_mnist_mlp | 2.3 s | 19 s | - | `mnist_test_acc` 0.6100 | `mnist_test_acc` 0.9795 | - |")
    assert lines[-1] == "| total | 2.3 s | 3 min 20 s | 1 min 01 s |  |  |  |"
    assert len(lines) == len(summary_table(by_size).splitlines())


def test_readme_markdown_leaves_out_the_uncommitted_sizes(sized, tmp_path):
    header = readme_markdown(sized).splitlines()[0]
    assert header == "| notebook | cpu time | gpu time | cpu figures | gpu figures |"
    smoke_only = tmp_path / "smoke-only"
    _write(smoke_only, "01_mnist_mlp", "smoke", 2.0, {})
    with pytest.raises(ValueError, match="no results of cpu or gpu"):
        readme_markdown(smoke_only)


def test_readme_table_matches_the_committed_results():
    """README's run-time table is what `python -m course_utils results --markdown` prints: they cannot drift."""
    readme = README.read_text()
    assert readme.count(TABLE_START) == 1 and readme.count(TABLE_END) == 1, "README lost its results-table markers"
    shown = readme.split(TABLE_START)[1].split(TABLE_END)[0].strip()
    assert shown == readme_markdown(), (
        "README's results table differs from results/: paste the output of `python -m course_utils results --markdown`"
        " between its markers")


def test_print_results_shows_every_size(sized, capsys):
    print_results(sized)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[2:]] == [["01_mnist_mlp", "smoke"]] * 2 + [["01_mnist_mlp", "cpu"]] * 2 \
        + [["02_mnist_cnn", "cpu"]] * 2 + [["02_mnist_cnn", "gpu"]] * 2


@pytest.mark.parametrize("args, header", [
    ([], "notebook smoke time cpu time"),
    (["--markdown"], "| notebook | cpu time | gpu time |"),
    (["--all"], "notebook run size device"),
])
def test_command_options(sized, capsys, args, header):
    assert results.main([*args, str(sized)]) == 0
    assert " ".join(capsys.readouterr().out.split("\n")[0].split()).startswith(header)


def test_command_refuses_bad_arguments_and_reports_broken_files(tmp_path, capsys):
    for args in (["--md"], ["--all", "--markdown"], ["a", "b"]):
        assert results.main(args) == 2 and "usage:" in capsys.readouterr().out
    (tmp_path / "01_mnist_mlp.json").write_text("{not json")
    assert results.main([str(tmp_path)]) == 1
    assert capsys.readouterr().out.startswith("error: ")
    assert results.main([str(tmp_path / "empty")]) == 0 and "no results" in capsys.readouterr().out


@pytest.mark.parametrize("record", results.load_results(results.RESULTS_DIR)
                         + results.load_results(results.RESULTS_DIR / "gpu"),
                         ids=lambda r: f"{r['notebook']}-{r['run_size']}")
def test_each_title_cell_gives_the_committed_run_time(record):
    """A notebook's title cell quotes its run time from its results file, so the two cannot drift apart: the
    ``cpu`` run's, and the ``gpu`` run's where one is committed, each beside the name of its results file."""
    notebook = json.loads((results.RESULTS_DIR.parent / "notebooks" / f"{record['notebook']}.ipynb").read_text())
    title = " ".join("".join(notebook["cells"][0]["source"]).split())
    folder = "results/" if record["run_size"] == "cpu" else f"results/{record['run_size']}/"
    assert f"{folder}{record['notebook']}.json" in title, f"{record['notebook']}: the title cell names no {folder}"
    assert f"took {results.duration(record['seconds'])}" in title, (
        f"{record['notebook']}: the title cell's run time must be the committed {record['run_size']} run's "
        f"({results.duration(record['seconds'])}, from {folder}{record['notebook']}.json)")
