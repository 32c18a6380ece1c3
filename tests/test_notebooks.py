"""Static checks of the committed notebooks, and of the commands that run them.

nbval runs every notebook at the ``smoke`` size (``make test``); these tests check what is committed:
the saved outputs come from one clean top-to-bottom run (``make execute``), hold no error, warning or
local path, and every notebook follows the course's conventions. They also check that the Makefile,
README, pyproject and CI script agree on how the course is run and tested.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from course_utils.colab import first_cell_source
from course_utils.execute import LOCAL_PATH
from course_utils.runsize import PLANS

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
FOUNDATION = ["00_setup_and_tour", "01_mnist_mlp", "02_mnist_cnn"]
WARNING = re.compile(r"\b[A-Z][A-Za-z]*Warning\b")


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(notebook: nbformat.NotebookNode) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _outputs_text(cell) -> str:
    """A cell's outputs as text, without image data (base64 text can spell a path by chance)."""
    outputs = [{**output, "data": {mime: value for mime, value in output.get("data", {}).items()
                                   if not mime.startswith("image/")}}
               for output in cell.get("outputs", [])]
    return json.dumps(outputs, ensure_ascii=False)


notebooks = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])


def test_the_foundation_notebooks_exist():
    stems = [p.stem for p in NOTEBOOKS]
    assert all(stem in stems for stem in FOUNDATION), f"found {stems}"


@notebooks
def test_valid_nbformat_and_kernel(path):
    notebook = _read(path)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    kernel = notebook.metadata.get("kernelspec", {})
    assert kernel.get("name") == "python3"  # the display name is the installed kernel's: see test_execute


@notebooks
def test_starts_with_a_title_then_the_bootstrap_cell(path):
    cells = _read(path).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "cell 1: a markdown title"
    assert cells[1].cell_type == "code", "cell 2: the bootstrap code cell"
    assert cells[1].source == first_cell_source(), "cell 2 must be exactly course_utils/first_cell.py"


@notebooks
def test_has_a_plan_and_records_results(path):
    code = _code_cells(_read(path))
    assert path.stem in PLANS, f"no PLANS entry for {path.stem!r} in course_utils/runsize.py"
    assert any(f'cu.run_plan("{path.stem}")' in cell.source for cell in code[:3]), \
        f'cell 3 must call cu.run_plan("{path.stem}")'
    assert "cu.record_results(plan" in code[-1].source, "the last code cell must call cu.record_results(plan, ...)"


@notebooks
def test_saved_from_one_clean_top_to_bottom_run(path):
    counts = [cell.execution_count for cell in _code_cells(_read(path))]
    assert any(c is not None for c in counts), f"{path.name} has no outputs: run `make execute`"
    assert counts == list(range(1, len(counts) + 1)), \
        f"execution counts {counts}: re-run the notebook top to bottom (`make execute`)"


@notebooks
def test_outputs_hold_no_error_warning_or_local_path(path):
    problems = []
    for index, cell in enumerate(_read(path).cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                problems.append(f"cell {index}: {output.ename}: {output.evalue}")
            if "application/vnd.jupyter.widget-view+json" in output.get("data", {}):
                problems.append(f"cell {index}: a widget output (use plain progress bars)")
        text = _outputs_text(cell)
        for pattern, what in ((LOCAL_PATH, "a local path"), (WARNING, "a warning")):
            match = pattern.search(text)
            if match:
                problems.append(f"cell {index}: {what}: ...{text[max(0, match.start() - 60):match.end() + 60]}...")
    assert not problems, "\n".join(problems)


@notebooks
def test_sources_hold_no_local_path(path):
    for index, cell in enumerate(_read(path).cells):
        match = LOCAL_PATH.search(cell.source)
        assert not match, f"cell {index} mentions a local path: {match.group(0)}"


# ---------------------------------------------------------------------------------------------
# Makefile, README, pyproject and CI agree
# ---------------------------------------------------------------------------------------------

def _make_targets() -> dict[str, list[str]]:
    """Each Makefile target with its recipe lines."""
    targets: dict[str, list[str]] = {}
    current = None
    for line in (REPO / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z_.$()/-]+):", line)
        if match and not line.startswith("\t"):
            current = match.group(1)
            targets[current] = []
        elif line.startswith("\t") and current:
            targets[current].append(line.strip())
    return targets


def test_ci_runs_make_test():
    script = REPO / ".ci" / "run"
    commands = [line.strip() for line in script.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert "make test" in commands
    assert os.access(script, os.X_OK), ".ci/run must be executable"


def test_make_test_runs_unit_tests_and_notebooks_at_smoke():
    recipe = " ".join(_make_targets()["test"])
    assert "COURSE_RUN_SIZE=smoke" in recipe and "-m pytest" in recipe
    assert not re.search(r"pytest\s+\S", recipe), "make test must run pytest's testpaths (tests and notebooks)"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'testpaths\s*=\s*\["tests",\s*"notebooks"\]', pyproject)
    assert "--nbval-lax" in pyproject


def test_make_execute_and_lab_run_the_course_commands():
    targets = _make_targets()
    execute = " ".join(targets["execute"])
    assert "COURSE_RUN_SIZE=cpu" in execute and "course_utils execute" in execute
    assert any("-m course_utils lab" in line for line in targets["lab"])
    assert any("COURSE_RUN_SIZE=smoke" in line and "pytest tests" in line for line in targets["unit"])


def test_readme_commands_exist_in_the_makefile():
    readme = (REPO / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    named = set(re.findall(r"`make (\w+)`", readme))
    missing = named - set(_make_targets())
    assert not missing, f"README names make targets the Makefile lacks: {sorted(missing)}"


def test_readme_links_every_notebook_and_only_existing_ones():
    readme = (REPO / "README.md").read_text()
    linked = set(re.findall(r"\]\((notebooks/[^)]+\.ipynb)\)", readme))
    assert {f"notebooks/{p.name}" for p in NOTEBOOKS} <= linked, "every notebook needs a row in the README table"
    missing = sorted(link for link in linked if not (REPO / link).exists())
    assert not missing, f"README links notebooks that do not exist: {missing}"
