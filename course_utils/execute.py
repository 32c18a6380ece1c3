"""Re-run notebooks top to bottom and save them in place: ``python -m course_utils execute notebooks``.

``make execute`` runs this at the ``cpu`` run size; the committed notebooks are its output. After
each run it refuses to save a notebook whose outputs hold an error or a path of this machine.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

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


def execute(path: Path, timeout: int = 1800) -> float:
    """Execute ``path`` in its own folder, save it in place, return the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
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
        paths += sorted(p.glob("[0-9][0-9]_*.ipynb")) if p.is_dir() else [p]
    for path in paths:
        print(f"{path.name}: running...", flush=True)
        print(f"{path.name}: done in {execute(path):.0f} s", flush=True)
