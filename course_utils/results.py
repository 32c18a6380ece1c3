"""Each notebook's headline figures, saved as JSON and printed as tables.

``record_results(plan, {"mnist_test_acc": 0.981})`` writes ``results/<notebook>.json``::

    {"notebook": "01_mnist_mlp", "run_size": "cpu", "device": "cpu", "seconds": 97.3,
     "metrics": {"mnist_test_acc": 0.981}}

Only the ``cpu`` run writes to ``results/`` (the committed figures); other run sizes write to
``results/<run size>/``, so running the tests at ``smoke`` never overwrites them. The variable
``COURSE_RESULTS_DIR`` sends every run somewhere else.

``python -m course_utils results`` prints one row per notebook: its time at each run size that has
results, then its headline figures (``HEADLINE``). ``--markdown`` prints the README's table (the
committed sizes only), ``--all`` every metric of every record.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch

from .runsize import RUN_SIZES, Plan

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
RESULTS_ENV = "COURSE_RESULTS_DIR"
# The sizes whose results are committed, so the README's table shows them (results/smoke/ is git-ignored).
COMMITTED_SIZES = ("cpu", "gpu")
# The figures the summary shows for each notebook; a notebook missing here shows all of its metrics.
HEADLINE: dict[str, list[str]] = {
    "00_setup_and_tour": [],
    "01_mnist_mlp": ["mnist_test_acc"],
    "02_mnist_cnn": ["mnist_test_acc_seed_mean", "fashion_test_acc", "bn_train_mode_acc"],
    "03_vision_transformer": ["mnist_test_acc", "fashion_test_acc", "permutation_max_diff"],
    "04_bert_image_text": ["pipeline_test_acc", "visual_tokens_test_acc", "fpt_frozen_pretrained_test_acc",
                           "fpt_frozen_random_test_acc"],
    "05_attention_math": ["online_softmax_max_diff", "permutation_max_diff", "fused_speedup_forward",
                          "fused_speedup_forward_backward"],
    "06_multimodal_fusion": ["fusion_test_acc", "paraphrase_fusion_test_acc", "zero_shot_test_acc"],
    "07_fine_tuning": ["linear_probe_test_acc", "full_ft_test_acc", "lora_test_acc"],
    "07a_scaling_out": ["single_process_test_acc", "ddp_test_acc"],
    "08_evaluation": ["macro_f1", "ece_after", "imbalanced_balanced_acc_best", "noise40_acc_mitigated", "ood_auroc",
                      "fgsm_acc_fixed", "int8_size_ratio"],
    "09_interview_prep": ["questions", "coding_exercises", "bug_exercises", "design_prompts", "glossary_terms"],
}
USAGE = """usage: python -m course_utils results [--markdown | --all] [FOLDER]

  (no option)  one row per notebook: its time at each run size, then its headline figures
  --markdown   the same table in Markdown, committed sizes only (the README's table)
  --all        every metric of every record, one row per metric
  FOLDER       where the results are (default: results/)"""


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


def _metric(name: str, value: object) -> int | float:
    """``value`` as a plain int or float: Python numbers, NumPy scalars and one-element tensors are accepted.

    Raises:
        ValueError: ``value`` is not a number, or is NaN or infinite.
    """
    if hasattr(value, "numel") and hasattr(value, "item"):  # a torch tensor
        if value.numel() != 1:
            raise ValueError(f"metric {name!r} must be one number, got a tensor of shape {tuple(value.shape)}; "
                             f"reduce it first (e.g. .mean())")
        value = value.item()
    elif type(value).__module__ == "numpy" and hasattr(value, "item"):  # a NumPy scalar or 0-d array
        if getattr(value, "size", 1) != 1:
            raise ValueError(f"metric {name!r} must be one number, got an array of shape {value.shape}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"metric {name!r} must be a number (int, float, NumPy scalar or one-element tensor), "
                         f"got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"metric {name!r} must be a finite number, got {value!r}: did a training run diverge?")
    return value


def record_results(plan: Plan, metrics: dict[str, object]) -> None:
    """Save ``metrics`` with the plan's notebook, run size, device, CPU threads and elapsed seconds; print them.

    The thread count is there because it changes the figures: a seeded run repeats bit for bit on the
    same CPU with the same number of threads, and moves slightly with another (the order of the
    floating-point sums inside the kernels changes).

    The file is ``results_dir(plan.size) / f"{plan.notebook}.json"``, written atomically (a temporary
    file in the same folder, then ``os.replace``), so two kernels writing at once never leave it corrupt
    or empty. Metrics may be Python numbers, NumPy scalars or one-element tensors; whole numbers
    (counts) stay integers, other values keep 6 significant digits (a 4.8e-07 error stays 4.8e-07).

    Raises:
        ValueError: a metric is not a finite number.
    """
    if not isinstance(metrics, dict):
        raise TypeError(f"metrics: expected a dict of name -> number, got {type(metrics).__name__}")
    clean: dict[str, int | float] = {}
    for name, value in metrics.items():
        value = _metric(name, value)
        clean[name] = value if isinstance(value, int) else float(f"{value:.6g}")
    record = {"notebook": plan.notebook, "run_size": plan.size, "device": plan.device.type,
              "threads": torch.get_num_threads(), "seconds": round(plan.elapsed(), 1), "metrics": clean}
    folder = results_dir(plan.size)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(folder / f"{plan.notebook}.json", json.dumps(record, indent=2) + "\n")
    shown = ", ".join(f"{k}={_number(v)}" for k, v in clean.items()) or "no metrics"
    print(f"recorded {plan.notebook} ({plan.size}, {plan.device.type}, {record['seconds']} s): {shown}")


def _read(path: Path) -> dict:
    """One results file.

    Raises:
        ValueError: the file is not valid JSON.
    """
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a valid results file ({error})") from error


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a part of either."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_results(folder: Path | None = None) -> list[dict]:
    """All records in ``folder`` (default ``results/``), sorted by notebook; sub-folders are not read."""
    folder = RESULTS_DIR if folder is None else Path(folder)
    return [_read(path) for path in sorted(folder.glob("*.json"))]


def load_by_size(folder: Path | None = None) -> dict[str, dict[str, dict]]:
    """Every record under ``folder`` (default ``results/``): its files and those of ``<folder>/<size>/``.

    Returns:
        ``{run size: {notebook: record}}``, sizes in the order of ``RUN_SIZES`` and only those with
        records, notebooks sorted. A record's own ``run_size`` decides where it goes, so a folder
        written with ``COURSE_RESULTS_DIR`` reads the same.
    Raises:
        ValueError: a file is not valid JSON, names an unknown run size, or repeats a notebook and size.
    """
    folder = RESULTS_DIR if folder is None else Path(folder)
    found: dict[str, dict[str, tuple[Path, dict]]] = {}
    sub_folders = [folder / size for size in RUN_SIZES]
    for path in [*sorted(folder.glob("*.json")), *(path for sub in sub_folders for path in sorted(sub.glob("*.json")))]:
        record = _read(path)
        size = record.get("run_size")
        if size not in RUN_SIZES:
            raise ValueError(f"{path}: run_size {size!r} is not one of {', '.join(RUN_SIZES)}")
        earlier = found.setdefault(size, {}).get(record["notebook"])
        if earlier is not None:
            raise ValueError(f"{earlier[0]} and {path} both hold {record['notebook']} at {size}: keep one")
        found[size][record["notebook"]] = (path, record)
    return {size: {name: found[size][name][1] for name in sorted(found[size])} for size in RUN_SIZES if size in found}


def duration(seconds: float) -> str:
    """``1.7 s``, ``19 s``, ``5 min 04 s``: a run time as an instructor plans with it."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _figures(record: dict, code: bool) -> str:
    """The record's headline figures as ``name value`` pairs, names in backticks when ``code``."""
    metrics = record["metrics"]
    names = HEADLINE.get(record["notebook"], list(metrics))
    quote = "`" if code else ""
    return ", ".join(f"{quote}{name}{quote} {_number(metrics[name])}" for name in names if name in metrics)


def _summary_rows(by_size: dict[str, dict[str, dict]], code: bool) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary: notebook, time per size, headline figures per size; then the total time."""
    sizes = list(by_size)
    header = ["notebook", *(f"{size} time" for size in sizes), *(f"{size} figures" for size in sizes)]
    notebooks = sorted({name for records in by_size.values() for name in records})
    rows = []
    for name in notebooks:
        found = [by_size[size].get(name) for size in sizes]
        times = [duration(record["seconds"]) if record else "-" for record in found]
        figures = [(_figures(record, code) or "-") if record else "-" for record in found]
        rows.append([name, *times, *figures])
    totals = [duration(sum(record["seconds"] for record in by_size[size].values())) for size in sizes]
    rows.append(["total", *totals, *([""] * len(sizes))])
    return header, rows


def summary_table(by_size: dict[str, dict[str, dict]]) -> str:
    """A plain-text table of ``load_by_size``'s records, one row per notebook and a total.

    Columns: the notebook, its time at each run size, then its ``HEADLINE`` figures at each size.
    """
    header, rows = _summary_rows(by_size, code=False)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def summary_markdown(by_size: dict[str, dict[str, dict]]) -> str:
    """The table of :func:`summary_table` in Markdown (metric names in backticks)."""
    header, rows = _summary_rows(by_size, code=True)
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(cell for cell in row) + " |" for row in lines)


def readme_markdown(folder: Path | None = None) -> str:
    """The README's table: :func:`summary_markdown` of the committed sizes (``COMMITTED_SIZES``) in ``folder``.

    Raises:
        ValueError: no committed size has results in ``folder``.
    """
    by_size = {size: records for size, records in load_by_size(folder).items() if size in COMMITTED_SIZES}
    if not by_size:
        raise ValueError(f"no results of {' or '.join(COMMITTED_SIZES)} in {folder or RESULTS_DIR}")
    return summary_markdown(by_size)


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
    """Print every metric of every record under ``folder`` (default ``results/``), its run-size folders included."""
    folder = RESULTS_DIR if folder is None else Path(folder)
    records = [record for records in load_by_size(folder).values() for record in records.values()]
    print(results_table(records) if records else f"no results in {folder}")


def print_summary(folder: Path | None = None, markdown: bool = False) -> None:
    """Print the summary of ``folder`` (default ``results/``): every size as text, or the README's Markdown."""
    folder = RESULTS_DIR if folder is None else Path(folder)
    if markdown:
        print(readme_markdown(folder))
        return
    by_size = load_by_size(folder)
    print(summary_table(by_size) if by_size else f"no results in {folder}")


def main(args: list[str]) -> int:
    """``python -m course_utils results [--markdown | --all] [FOLDER]``; returns the exit status."""
    options = [arg for arg in args if arg.startswith("-")]
    folders = [arg for arg in args if not arg.startswith("-")]
    if len(options) > 1 or set(options) - {"--markdown", "--all"} or len(folders) > 1:
        print(USAGE)
        return 2
    folder = Path(folders[0]) if folders else None
    try:
        if options == ["--all"]:
            print_results(folder)
        else:
            print_summary(folder, markdown=options == ["--markdown"])
    except ValueError as error:
        print(f"error: {error}")
        return 1
    return 0
