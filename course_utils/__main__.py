"""The course's command line: ``python -m course_utils COMMAND``.

Commands:
    lab [--no-browser]     open JupyterLab on notebooks/ (what ``make lab`` runs)
    data                   load MNIST and Fashion-MNIST once; print where each came from
    results [FOLDER]       print every notebook's recorded figures as one table
    execute [PATH ...]     re-run notebooks top to bottom and save them (``make execute``)
"""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "lab":
        from .lab import open_lab
        return open_lab(headless="--no-browser" in args)
    if command == "data":
        from .data import report_sources
        report_sources()
    elif command == "results":
        from .results import print_results
        print_results(args[0] if args else None)
    elif command == "execute":
        from .execute import execute_all
        execute_all(args)
    else:
        print(__doc__)
        return 0 if command in ("", "-h", "--help") else 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
