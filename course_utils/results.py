"""Each notebook's headline figures, saved as JSON and printed as one table.

``record_results(plan, {"mnist_test_acc": 0.981})`` writes ``results/<notebook>.json``::

    {"notebook": "01_mnist_mlp", "run_size": "cpu", "device": "cpu", "seconds": 97.3,
     "metrics": {"mnist_test_acc": 0.981}}

Only the ``cpu`` run writes to ``results/`` (the committed figures); other run sizes write to
``results/<run size>/``, so running the tests at ``smoke`` never overwrites them. The variable
``COURSE_RESULTS_DIR`` sends every run somewhere else. ``python -m course_utils results``
prints the table.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .runsize import Plan

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
RESULTS_ENV = "COURSE_RESULTS_DIR"


def results_dir(run_size: str) -> Path:
    """Where a run of ``run_size`` writes: ``$COURSE_RESULTS_DIR``, else ``results/`` or ``results/<size>/``."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    return RESULTS_DIR if run_size == "cpu" else RESULTS_DIR / run_size


def _number(value: float) -> str:
    """A metric for printing: whole numbers as such, others to four decimals (tiny ones in e-notation)."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def record_results(plan: Plan, metrics: dict[str, float]) -> None:
    """Save ``metrics`` with the plan's notebook, run size, device and elapsed seconds, and print them.

    The file is ``results_dir(plan.size) / f"{plan.notebook}.json"``. Whole numbers (counts) stay
    integers; other values keep 6 significant digits (a 4.8e-07 error stays 4.8e-07).

    Raises:
        ValueError: a metric is not a finite number.
    """
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"metric {name!r} must be a finite number, got {value!r}")
        clean[name] = value if isinstance(value, int) else float(f"{value:.6g}")
    record = {"notebook": plan.notebook, "run_size": plan.size, "device": plan.device.type,
              "seconds": round(plan.elapsed(), 1), "metrics": clean}
    folder = results_dir(plan.size)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{plan.notebook}.json").write_text(json.dumps(record, indent=2) + "\n")
    shown = ", ".join(f"{k}={_number(v)}" for k, v in clean.items()) or "no metrics"
    print(f"recorded {plan.notebook} ({plan.size}, {plan.device.type}, {record['seconds']} s): {shown}")


def load_results(folder: Path | None = None) -> list[dict]:
    """All records in ``folder`` (default ``results/``), sorted by notebook."""
    folder = RESULTS_DIR if folder is None else Path(folder)
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a valid results file ({error})") from error
    return records


def results_table(records: list[dict]) -> str:
    """A plain-text table, one row per metric."""
    header = ("notebook", "run size", "device", "seconds", "metric", "value")
    rows = [(r["notebook"], r["run_size"], r["device"], f"{r['seconds']:.1f}", name, _number(value))
            for r in records for name, value in (r["metrics"].items() or [("-", math.nan)])]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_results(folder: Path | None = None) -> None:
    """Print the table of ``folder`` (default ``results/``): ``python -m course_utils results``."""
    folder = RESULTS_DIR if folder is None else Path(folder)
    records = load_results(folder)
    print(results_table(records) if records else f"no results in {folder}")
