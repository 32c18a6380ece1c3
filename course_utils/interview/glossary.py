"""The English-Chinese glossary, ``docs/glossary.md``: its table of terms, read for notebook 09 and the tests."""
from __future__ import annotations

from pathlib import Path

GLOSSARY = Path(__file__).resolve().parents[2] / "docs" / "glossary.md"
COLUMNS = ("English", "中文", "Meaning", "Where in the course")


def glossary_rows(path: Path = GLOSSARY) -> list[tuple[str, ...]]:
    """The rows of the glossary's table of terms: ``(english, chinese, meaning, where)`` each.

    Raises:
        ValueError: the file has no table with the four columns, or a row has another number of cells.
    """
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    header = "| " + " | ".join(COLUMNS) + " |"
    if header not in lines:
        raise ValueError(f"{path.name}: no table with the columns {', '.join(COLUMNS)}")
    rows = []
    for line in lines[lines.index(header) + 2:]:
        if not line.startswith("|"):
            break
        cells = tuple(cell.strip() for cell in line.strip("|").split("|"))
        if len(cells) != len(COLUMNS):
            raise ValueError(f"{path.name}: the row {line!r} has {len(cells)} cells, expected {len(COLUMNS)}")
        rows.append(cells)
    return rows
