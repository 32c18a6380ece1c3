"""What notebook 00 shows (course_utils.tour, and runsize.show_plans): the set-up check covers every
package the notebooks import, the plan table is readable, the module tour lists every module, and the
results helpers say where a run writes and what the committed runs measured."""
from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
from pathlib import Path

import pytest

from course_utils import runsize, tour
from course_utils.runsize import PLANS, plan_table, run_plan, show_plans
from course_utils.tour import (
    OPTIONAL,
    PACKAGES,
    check_setup,
    module_summary,
    module_tour,
    pinned_versions,
    results_location,
    results_overview,
    results_path,
    tour_modules,
)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
# course_utils modules that only the command line loads (`python -m course_utils ...`), never a notebook.
COMMAND_MODULES = {"__main__", "lab", "execute", "bench"}
# Import name -> the distributions that provide it, e.g. "sklearn" -> ["scikit-learn"], "PIL" -> ["pillow"].
IMPORT_TO_DISTRIBUTION = importlib.metadata.packages_distributions()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports(source: str) -> set[str]:
    """The top-level module names of the absolute imports in ``source``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _notebook_imports(path: Path) -> set[str]:
    """Every import of a notebook's code cells (IPython's ``!`` and ``%`` lines skipped)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    sources = [re.sub(r"^(\s*)[!%].*$", r"\1pass", "".join(cell["source"]), flags=re.M)
               for cell in cells if cell["cell_type"] == "code"]
    return set().union(*map(_imports, sources))


def _third_party(names: set[str]) -> set[str]:
    return {name for name in names if name not in sys.stdlib_module_names and name != "course_utils"}


def _where_imported() -> dict[str, set[str]]:
    """{third-party import name: the notebooks and course_utils modules that import it}."""
    found: dict[str, set[str]] = {}
    for path in NOTEBOOKS:
        for name in _third_party(_notebook_imports(path)):
            found.setdefault(name, set()).add(path.name)
    for module in sorted((REPO / "course_utils").rglob("*.py")):
        if module.stem in COMMAND_MODULES and module.parent.name == "course_utils":
            continue
        for name in _third_party(_imports(module.read_text(encoding="utf-8"))):
            found.setdefault(name, set()).add(str(module.relative_to(REPO)))
    return found


# ---------------------------------------------------------------------------------------------
# The set-up check
# ---------------------------------------------------------------------------------------------

def test_the_check_covers_every_package_a_notebook_imports():
    where = _where_imported()
    assert {"torch", "matplotlib", "transformers", "sklearn", "PIL"} <= set(where), "the import scan found too little"
    checked = {_canonical(name) for name in (*PACKAGES, *OPTIONAL)}
    unknown = {name: sorted(users) for name, users in where.items() if name not in IMPORT_TO_DISTRIBUTION}
    assert not unknown, f"imported but not installed here (no distribution found): {unknown}"
    uncovered = {f"{name} ({', '.join(IMPORT_TO_DISTRIBUTION[name])})": sorted(users) for name, users in where.items()
                 if not {_canonical(d) for d in IMPORT_TO_DISTRIBUTION[name]} & checked}
    assert not uncovered, f"add these distributions to course_utils.tour.PACKAGES: {uncovered}"


def test_the_minimum_python_is_pyprojects():
    pyproject = (REPO / "pyproject.toml").read_text()
    required = re.search(r'requires-python\s*=\s*">=\s*(\d+)\.(\d+)"', pyproject)
    assert required and tuple(map(int, required.groups())) == tour.MIN_PYTHON


def test_the_course_environment_passes_its_own_check(capsys):
    report = check_setup()
    assert report.ok, str(report)
    assert [row.name for row in report.rows] == ["Python", *PACKAGES, *OPTIONAL]
    assert report.against == "the pins in the course's requirements.txt"
    out = capsys.readouterr().out
    assert out.startswith("versions compared with the pins in the course's requirements.txt")
    assert f"{len(report.rows)} of {len(report.rows)} as the course expects" in out
    assert str(REPO) not in out, "the table must not print a local path"


def test_every_checked_package_is_pinned_or_comes_with_a_pinned_one():
    pins = pinned_versions(REPO / "requirements.txt")
    unpinned = {_canonical(name) for name in (*PACKAGES, *OPTIONAL)} - set(pins)
    assert unpinned <= {"pillow", "huggingface-hub"}, f"pin these in requirements.txt: {sorted(unpinned)}"


def test_pinned_versions_reads_name_equals_version_lines(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_text("# a comment\n\nTorch==2.1.0  # with a comment\nscikit_learn == 1.5.0\n"
                    "extra[cli]==3.0 ; python_version >= '3.10'\nloose>=1.0\n")
    assert pinned_versions(path) == {"torch": "2.1.0", "scikit-learn": "1.5.0", "extra": "3.0"}
    with pytest.raises(FileNotFoundError, match="no requirements file"):
        pinned_versions(tmp_path / "missing.txt")


def _fake_versions(monkeypatch, versions: dict[str, str | None]) -> None:
    """Make ``importlib.metadata.version`` answer from ``versions`` (``None``: not installed)."""
    def version(name: str) -> str:
        found = versions.get(name, "1.0")
        if found is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return found
    monkeypatch.setattr(tour.importlib.metadata, "version", version)


@pytest.fixture
def pins(tmp_path) -> Path:
    path = tmp_path / "pins.txt"
    path.write_text("".join(f"{name}==1.0\n" for name in (*PACKAGES, *OPTIONAL)))
    return path


def test_a_different_version_differs_a_missing_one_is_missing(monkeypatch, pins, capsys):
    _fake_versions(monkeypatch, {"torch": "2.0+cpu", "seaborn": None, "ipywidgets": None, "numpy": "1.0+cpu"})
    report = check_setup(pins, colab=False)
    status = {row.name: row.status for row in report.rows}
    assert status["torch"] == "DIFFERS" and status["seaborn"] == "MISSING" and status["ipywidgets"] == "ABSENT"
    assert status["numpy"] == "OK", "a +cpu build of the pinned version is that version"
    assert not report.ok and [row.ok for row in report.rows if row.name == "ipywidgets"] == [True]
    out = capsys.readouterr().out
    assert "versions compared with the pins in pins.txt" in out
    assert re.search(r"^DIFFERS\s+torch\s+2\.0\+cpu\s+1\.0\s", out, re.M)
    assert re.search(r"^MISSING\s+seaborn\s+-\s+1\.0\s", out, re.M)
    assert "run `make setup`" in out and f"{len(report.rows) - 2} of {len(report.rows)}" in out


def test_on_colab_another_version_is_fine_but_a_missing_one_is_not(monkeypatch, pins, capsys):
    _fake_versions(monkeypatch, {"torch": "2.0+cu128", "seaborn": None})
    report = check_setup(pins, colab=True, show=False)
    status = {row.name: row.status for row in report.rows}
    assert status["torch"] == "OK" and status["seaborn"] == "MISSING" and not report.ok
    assert capsys.readouterr().out == ""
    assert "Colab's own versions count as OK" in str(report)


def test_colab_is_detected_from_its_module(monkeypatch, pins):
    _fake_versions(monkeypatch, {"torch": "2.0"})
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert check_setup(pins, show=False).ok


def test_without_a_requirements_file_it_says_so_and_checks_presence(monkeypatch, capsys):
    monkeypatch.setattr(tour, "find_requirements", lambda: None)
    _fake_versions(monkeypatch, {"torch": "0.1"})
    report = check_setup()
    assert report.ok and all(row.pinned is None for row in report.rows[1:])
    assert "no requirements.txt was found" in capsys.readouterr().out


def test_a_requirements_file_that_is_not_there_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no requirements file"):
        check_setup(tmp_path / "nope.txt")


def test_an_old_python_differs(monkeypatch, pins):
    monkeypatch.setattr(tour, "MIN_PYTHON", (99, 0))
    python = check_setup(pins, show=False).rows[0]
    assert (python.name, python.status, python.pinned) == ("Python", "DIFFERS", ">=99.0")
    assert "needs Python 99.0 or newer" in python.used_for


def test_find_requirements_prefers_the_course_root(monkeypatch, tmp_path):
    assert tour.find_requirements() == REPO / "requirements.txt"
    monkeypatch.setattr(tour, "COURSE_ROOT", tmp_path / "site-packages")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert tour.find_requirements() is None
    (tmp_path / "requirements.txt").write_text("torch==1.0\n")
    assert tour.find_requirements() == tmp_path / "requirements.txt"


# ---------------------------------------------------------------------------------------------
# The plan table
# ---------------------------------------------------------------------------------------------

def test_settings_print_readably():
    assert runsize._setting(None) == "all"
    assert runsize._setting([2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]) == "[2, 4, ..., 1024] (10)"
    assert runsize._setting([4, 16, 64, 256]) == "[4, 16, 64, 256]"
    assert runsize._setting((1, 2)) == "[1, 2]" and runsize._setting(0.5) == "0.5"


def test_plan_table_marks_the_current_size_and_shortens_lists():
    table = plan_table("05_attention_math", "cpu")
    lines = table.splitlines()
    assert lines[0].split() == ["05_attention_math", "smoke", "cpu*", "gpu"]
    assert [line.split()[0] for line in lines[1:]] == list(PLANS["05_attention_math"]["cpu"])
    assert "[2, 4, ..., 1024] (10)" in table and max(map(len, lines)) <= 100
    assert plan_table("01_mnist_mlp").splitlines()[0].split() == ["01_mnist_mlp", "smoke", "cpu", "gpu"]


def test_show_plans_prints_every_notebook(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_RUN_SIZE", "gpu")
    show_plans()
    out = capsys.readouterr().out
    assert all(re.search(rf"^{notebook}\s+smoke\s+cpu\s+gpu\*$", out, re.M) for notebook in PLANS)
    assert "(n): a list of n values, shortened" in out
    show_plans("smoke", notebooks=["00_setup_and_tour"])
    out = capsys.readouterr().out
    assert "01_mnist_mlp" not in out and "shortened" not in out and "all: the whole split" in out


def test_show_plans_refuses_unknown_names():
    with pytest.raises(ValueError, match="'fast' is not a run size"):
        show_plans("fast")
    with pytest.raises(KeyError, match="no plan for notebook '99_nope'"):
        show_plans("cpu", notebooks=["99_nope"])


# ---------------------------------------------------------------------------------------------
# The module tour
# ---------------------------------------------------------------------------------------------

def test_the_tour_lists_every_module_once():
    package = REPO / "course_utils"
    modules = {p.stem for p in package.glob("[a-z]*.py")} - {"first_cell"}
    modules |= {p.parent.name for p in package.glob("*/__init__.py")}
    listed = tour_modules()
    assert len(listed) == len(set(listed)) and set(listed) == modules


def test_module_summary_is_the_first_paragraph_without_markup():
    assert module_summary("runsize").startswith("Run sizes, device choice and seeding")
    assert "ImageSet" in module_summary("images") and ":class:" not in module_summary("images")
    assert "``" not in module_summary("lab")
    assert module_summary("exercises").startswith("A small framework")  # a package: its __init__.py


@pytest.mark.parametrize("name", ["nope", "../conftest", "Runsize", ""])
def test_module_summary_refuses_what_is_not_a_module(name):
    with pytest.raises(ValueError, match="course_utils has no module"):
        module_summary(name)


def test_module_tour_prints_one_entry_per_module(capsys):
    module_tour(width=80)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == tour_modules()
    assert max(map(len, lines)) <= 80
    with pytest.raises(ValueError, match="no module 'nope'"):
        module_tour(["runsize", "nope"])


# ---------------------------------------------------------------------------------------------
# Where the results go, and what they hold
# ---------------------------------------------------------------------------------------------

def test_results_path_and_location(monkeypatch):
    monkeypatch.delenv("COURSE_RESULTS_DIR", raising=False)
    cpu, smoke = run_plan("00_setup_and_tour", size="cpu"), run_plan("01_mnist_mlp", size="smoke")
    assert results_path(cpu) == REPO / "results" / "00_setup_and_tour.json"
    assert results_location(cpu) == "results/00_setup_and_tour.json"
    assert results_location(smoke) == "results/smoke/01_mnist_mlp.json"
    monkeypatch.setenv("COURSE_RESULTS_DIR", "/somewhere/else")
    assert results_path(smoke) == Path("/somewhere/else/01_mnist_mlp.json")
    assert results_location(smoke) == "$COURSE_RESULTS_DIR/01_mnist_mlp.json"
    with pytest.raises(TypeError, match="expected the Plan of cu.run_plan"):
        results_path("00_setup_and_tour")


def _record(folder: Path, notebook: str, size: str, seconds: float, metrics: dict, **extra) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"notebook": notebook, "run_size": size, "device": "cuda" if size == "gpu" else "cpu",
              "seconds": seconds, "metrics": metrics, **extra}
    (folder / f"{notebook}.json").write_text(json.dumps(record))


def test_results_overview_prints_one_table_per_committed_size(tmp_path, capsys):
    _record(tmp_path, "01_mnist_mlp", "cpu", 32.0, {"mnist_test_acc": 0.9795, "other": 1}, threads=2)
    _record(tmp_path, "02_mnist_cnn", "cpu", 300.0, {"mnist_test_acc_seed_mean": 0.991, "fashion_test_acc": 0.9188},
            threads=2)
    _record(tmp_path / "gpu", "01_mnist_mlp", "gpu", 7.5, {"mnist_test_acc": 0.981})
    _record(tmp_path / "smoke", "01_mnist_mlp", "smoke", 3.0, {"mnist_test_acc": 0.5})
    results_overview(tmp_path)
    out = capsys.readouterr().out
    cpu, gpu = out.split("gpu run size")
    assert cpu.startswith("cpu run size: 2 notebooks, on cpu, 2 threads")
    assert re.search(r"^01_mnist_mlp\s+32 s\s+mnist_test_acc 0\.9795$", cpu, re.M)
    assert re.search(r"^02_mnist_cnn\s+5 min 00 s\s+mnist_test_acc_seed_mean 0\.9910, fashion_test_acc 0\.9188$",
                     cpu, re.M)
    assert re.search(r"^total\s+5 min 32 s", cpu, re.M)
    assert gpu.startswith(": 1 notebook, on cuda") and re.search(r"^01_mnist_mlp\s+7\.5 s", gpu, re.M)
    assert "smoke" not in out, "smoke runs are the tests', not figures to plan a lesson with"


def test_results_overview_says_when_a_size_has_no_results(tmp_path, capsys):
    _record(tmp_path, "01_mnist_mlp", "cpu", 32.0, {"mnist_test_acc": 0.9795})
    results_overview(tmp_path, sizes=("gpu", "smoke"))
    out = capsys.readouterr().out
    assert f"gpu: no results yet (a gpu run writes them to {tmp_path}/gpu/)" in out
    assert f"smoke: no results yet (a smoke run writes them to {tmp_path}/smoke/)" in out


def test_results_overview_reads_the_committed_results_by_default(capsys):
    results_overview(sizes=("cpu",))
    out = capsys.readouterr().out
    assert out.startswith("cpu run size:") and "00_setup_and_tour" in out and "total" in out


def test_results_overview_refuses_unknown_sizes_and_broken_files(tmp_path):
    with pytest.raises(ValueError, match=r"sizes \['laptop'\] are not run sizes"):
        results_overview(tmp_path, sizes=("cpu", "laptop"))
    (tmp_path / "01_mnist_mlp.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid results file"):
        results_overview(tmp_path)
