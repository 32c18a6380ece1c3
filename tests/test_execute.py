"""Re-running notebooks and refusing to save bad outputs (course_utils.execute)."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_utils.execute import execute, execute_all, problems


def _notebook(*sources: str) -> nbformat.NotebookNode:
    notebook = new_notebook(cells=[new_markdown_cell("# test")] + [new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def _write(path: Path, notebook: nbformat.NotebookNode) -> Path:
    nbformat.write(notebook, path)
    return path


def test_problems_finds_errors_and_local_paths():
    notebook = _notebook("a", "b", "c")
    assert problems(notebook) == []
    notebook.cells[1].outputs = [new_output("error", ename="ValueError", evalue="boom", traceback=[])]
    notebook.cells[2].outputs = [new_output("stream", name="stdout", text="saved to /home/ana/x.json\n")]
    notebook.cells[3].outputs = [new_output("execute_result", data={"text/plain": "PosixPath('/work/repo/r.json')"},
                                            execution_count=3)]
    found = problems(notebook)
    assert len(found) == 3
    assert "cell 1: ValueError: boom" in found[0] and "/home/" in found[1] and "/work/" in found[2]


def test_problems_ignores_image_data():
    """A PNG's base64 text can contain "/tmp/" by chance; that is not a path."""
    notebook = _notebook("plot")
    notebook.cells[1].outputs = [new_output("display_data", data={"image/png": "iVBORw0KGgo/tmp/AAAA/work/x",
                                                                   "text/plain": "<Figure size 640x480>"})]
    assert problems(notebook) == []
    notebook.cells[1].outputs[0].data["text/plain"] = "<Figure saved to /tmp/fig.png>"
    assert len(problems(notebook)) == 1


def test_execute_runs_top_to_bottom_and_saves(tmp_path, capsys):
    (tmp_path / "data.txt").write_text("41")
    path = _write(tmp_path / "01_demo.ipynb", _notebook("n = int(open('data.txt').read())", "print(n + 1)"))
    _write(tmp_path / "notes.ipynb", _notebook("raise SystemExit('not a course notebook')"))
    execute_all([str(tmp_path)])
    saved = nbformat.read(path, as_version=4)
    code = [c for c in saved.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2]
    assert code[1].outputs[0].text == "42\n"  # ran in the notebook's own folder
    out = capsys.readouterr().out
    assert "01_demo.ipynb: running" in out and "01_demo.ipynb: done" in out and "notes" not in out


def test_execute_refuses_to_save_a_local_path(tmp_path):
    notebook = _notebook("import os; print(os.getcwd())")
    path = _write(tmp_path / "02_paths.ipynb", notebook)
    before = path.read_text()
    with pytest.raises(SystemExit, match="local path"):
        execute(path)
    assert path.read_text() == before, "a notebook with problems must not be saved"


def test_execute_stops_at_an_error(tmp_path):
    path = _write(tmp_path / "03_error.ipynb", _notebook("1 / 0", "print('never')"))
    before = path.read_text()
    with pytest.raises(Exception, match="ZeroDivisionError"):
        execute(path)
    assert path.read_text() == before
