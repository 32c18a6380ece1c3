"""Re-run notebooks top to bottom and save them in place: ``python -m course_utils execute notebooks``.

``make execute`` runs this at the ``cpu`` run size; the committed notebooks are its output. After
each run it cleans the outputs (:func:`clean_outputs`: no progress-bar widgets or progress-bar text,
which only make sense while a cell runs), names the installed kernel in the notebook's metadata (so
that JupyterLab opens the notebook unmodified), and refuses to save a notebook whose outputs hold an
error or a path of this machine.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

KERNEL_NAME = "python3"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# One frame of a tqdm bar as a terminal gets it after a carriage return: a description, then
# " 45%|####5     | 9/20 [00:01<00:01, 8.1it/s, loss=0.3]" (or "9it [00:01, 8.1it/s]" without a
# total), then the spaces that blank out a longer previous frame.
TQDM_FRAME = re.compile(r"[^\r\n]*?(?:\d+%\|[^\r\n]*?\| *)?[\d.]+[kMGTPEZY]?(?:/[\d.]+[kMGTPEZY]?|[A-Za-z]*) "
                        r"\[\d[^\]\r\n]*\] *")

# Folders whose paths belong to one machine (home folders, scratch space, a CI workspace).
LOCAL_ROOTS = ("home", "Users", "root", "tmp", "work", "private/var")
LOCAL_PATH = re.compile("|".join(f"/{root}/" for root in LOCAL_ROOTS) + r"|[A-Za-z]:\\\\?Users")


def problems(notebook: nbformat.NotebookNode) -> list[str]:
    """Error outputs and local paths in a notebook's outputs."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
            text = {k: v for k, v in output.items() if k != "data"}  # images are base64: search text only
            text["data"] = {mime: v for mime, v in output.get("data", {}).items() if not mime.startswith("image/")}
            match = LOCAL_PATH.search(str(text))
            if match:
                found.append(f"cell {index}: output holds a local path ({match.group(0)}...)")
    return found


def installed_kernelspec(name: str = KERNEL_NAME) -> dict[str, str]:
    """The ``kernelspec`` metadata JupyterLab writes for the installed kernel ``name``.

    JupyterLab replaces a notebook's ``kernelspec`` with this when it starts the kernel; a notebook
    saved with anything else (e.g. ``"display_name": "Python 3"``) opens marked as modified.
    """
    spec = KernelSpecManager().get_kernel_spec(name)
    return {"display_name": spec.display_name, "language": spec.language, "name": name}


def without_progress_bars(text: str) -> str:
    """A stderr stream's ``text`` without its tqdm frames; every other line stays as it is.

    Only lines with a carriage return are touched: the tqdm frames in them and the blanks that
    clear a finished bar go, and a line left with nothing else goes with its newline.
    """
    lines = text.split("\n")
    kept = []
    for index, line in enumerate(lines):
        newline = "\n" if index < len(lines) - 1 else ""
        if "\r" not in line:
            kept.append(line + newline)
            continue
        first, *frames = line.split("\r")
        pieces = [first] + [frame[bar.end():] if (bar := TQDM_FRAME.match(frame)) else frame for frame in frames]
        pieces = [piece for piece in pieces if piece.strip()]
        if pieces:
            kept.append("\r".join(pieces) + newline)
    return "".join(kept)


def clean_outputs(notebook: nbformat.NotebookNode) -> None:
    """Drop what only makes sense while a cell runs, in place: progress bars.

    - Jupyter widget views (``tqdm.auto`` bars in a kernel with ipywidgets) and the notebook's saved
      widget state: a saved notebook has no live widgets, so they would show as stale text or errors.
    - tqdm's text bars on stderr (carriage-return frames): a saved run needs no bar, and JupyterLab
      shows stderr in red. Warnings and any other stderr text stay.

    Consecutive stream outputs of the same name are merged first, as JupyterLab shows them, so that a
    bar split across several outputs is recognised whole.
    """
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs: list[nbformat.NotebookNode] = []
        for output in cell.outputs:
            if WIDGET_VIEW in output.get("data", {}):
                continue
            previous = outputs[-1] if outputs else None
            if (output.output_type == "stream" and previous is not None and previous.output_type == "stream"
                    and previous.name == output.name):
                previous.text += output.text
            else:
                outputs.append(output)
        for output in outputs:
            if output.output_type == "stream" and output.name == "stderr":
                output.text = without_progress_bars(output.text)
        cell.outputs = [output for output in outputs if output.output_type != "stream" or output.text]


def execute(path: Path, timeout: int = 1800) -> float:
    """Execute ``path`` in its own folder, clean it and save it in place; return the seconds it took.

    The saved notebook names the installed kernel (:func:`installed_kernelspec`) and holds the
    ``language_info`` the kernel reported.
    """
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name=KERNEL_NAME, record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    clean_outputs(notebook)
    notebook.metadata["kernelspec"] = installed_kernelspec()
    found = problems(notebook)
    if found:
        raise SystemExit(f"{path.name}: not saved, " + "; ".join(found))
    nbformat.write(notebook, path)
    return seconds


def execute_all(args: list[str]) -> None:
    """Execute the notebooks named in ``args`` (files, or folders of ``NN_*.ipynb``) one by one."""
    paths = []
    for arg in args or ["notebooks"]:
        p = Path(arg)
        paths += sorted(p.glob("[0-9][0-9]*_*.ipynb")) if p.is_dir() else [p]
    for path in paths:
        print(f"{path.name}: running...", flush=True)
        print(f"{path.name}: done in {execute(path):.0f} s", flush=True)
