"""Re-running notebooks, cleaning their outputs and refusing to save bad ones (course_utils.execute)."""
from __future__ import annotations

import io
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from tqdm import tqdm

from course_utils.execute import (
    WIDGET_VIEW,
    clean_outputs,
    execute,
    execute_all,
    installed_kernelspec,
    problems,
    without_progress_bars,
)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb"))


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


def _bar_text(steps: int, leave: bool, note_at: int | None = None, note: str = "") -> str:
    """What a tqdm bar writes to stderr, with ``note`` written by other code in the middle of it."""
    stream = io.StringIO()
    for step in tqdm(range(steps), desc="epoch 1/2", file=stream, mininterval=0, leave=leave):
        if step == note_at:
            stream.write(note)
    return stream.getvalue()


def test_without_progress_bars_keeps_only_the_other_text():
    warning = "note: the learning rate is large\n"
    assert without_progress_bars(_bar_text(4, leave=False)) == ""
    assert without_progress_bars(_bar_text(4, leave=True)) == ""
    assert without_progress_bars(_bar_text(4, leave=False, note_at=2, note=warning)) == warning
    assert without_progress_bars(_bar_text(4, leave=True, note_at=1, note=warning)) == warning
    unknown_total = io.StringIO()
    for _ in tqdm(iter(range(3)), file=unknown_total, mininterval=0, postfix={"loss": 0.3}, unit="batch"):
        pass
    assert without_progress_bars(unknown_total.getvalue()) == ""
    plain = "UserWarning: careful\n\n  50% | of the data\ndone"
    assert without_progress_bars(plain) == plain, "text without carriage returns stays as it is"


def test_clean_outputs_drops_widgets_and_progress_bars_but_keeps_the_rest():
    notebook = _notebook("train", "train with a warning", "plot")
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                                   "version_minor": 0}}
    bar = _bar_text(6, leave=False)
    notebook.cells[1].outputs = [
        new_output("display_data", data={WIDGET_VIEW: {"model_id": "abc", "version_major": 2, "version_minor": 0},
                                         "text/plain": "  0%|          | 0/6 [00:00<?, ?it/s]"}),
        new_output("stream", name="stderr", text=bar[: len(bar) // 2]),  # one bar, sent in two messages
        new_output("stream", name="stderr", text=bar[len(bar) // 2:]),
        new_output("stream", name="stdout", text="epoch 1/2: loss 0.51, val_acc 0.84\n"),
    ]
    warning = "warning: the learning rate is large\n"
    notebook.cells[2].outputs = [new_output("stream", name="stderr", text=_bar_text(6, True, 3, warning)),
                                 new_output("stream", name="stdout", text="done\n")]
    figure = new_output("display_data", data={"image/png": "iVBORw0KGgo", "text/plain": "<Figure>"})
    notebook.cells[3].outputs = [figure]

    clean_outputs(notebook)
    assert "widgets" not in notebook.metadata
    assert notebook.cells[1].outputs == [new_output("stream", name="stdout",
                                                    text="epoch 1/2: loss 0.51, val_acc 0.84\n")]
    assert [(o.name, o.text) for o in notebook.cells[2].outputs] == [("stderr", warning), ("stdout", "done\n")]
    assert notebook.cells[3].outputs == [figure]
    nbformat.validate(notebook)


@pytest.mark.slow
def test_execute_runs_top_to_bottom_and_saves(tmp_path, capsys):
    (tmp_path / "data.txt").write_text("41")
    path = _write(tmp_path / "01_demo.ipynb", _notebook(
        "n = int(open('data.txt').read())", "print(n + 1)",
        "import sys\nfrom tqdm.auto import tqdm\nfrom tqdm.std import tqdm as text_tqdm\n"
        "for _ in tqdm(range(3), leave=False): pass\nfor _ in text_tqdm(range(3), file=sys.stderr): pass\n"
        "print('warning: kept', file=sys.stderr)"))
    _write(tmp_path / "notes.ipynb", _notebook("raise SystemExit('not a course notebook')"))
    execute_all([str(tmp_path)])
    saved = nbformat.read(path, as_version=4)
    code = [c for c in saved.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3]
    assert code[1].outputs[0].text == "42\n"  # ran in the notebook's own folder
    assert [(o.output_type, o.get("text")) for o in code[2].outputs] == [("stream", "warning: kept\n")]
    assert "widgets" not in saved.metadata
    assert saved.metadata.kernelspec == installed_kernelspec(), "the notebook names the installed kernel"
    assert saved.metadata.language_info.name == "python"
    out = capsys.readouterr().out
    assert "01_demo.ipynb: running" in out and "01_demo.ipynb: done" in out and "notes" not in out


def test_installed_kernelspec_is_ipykernels():
    spec = installed_kernelspec()
    assert spec["name"] == "python3" and spec["language"] == "python" and spec["display_name"].startswith("Python 3")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebooks_name_the_installed_kernel(path):
    """JupyterLab marks a notebook modified on opening when its kernelspec differs from the kernel's."""
    kernelspec = nbformat.read(path, as_version=4).metadata.get("kernelspec")
    assert kernelspec == installed_kernelspec(), f"{path.name}: re-run it with `make execute`"


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
