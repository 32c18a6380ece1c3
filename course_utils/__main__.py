"""The course's command line: ``python -m course_utils COMMAND``.

Commands:
    lab [--port N] [--no-browser] [--terminals] [JUPYTERLAB OPTIONS]
                           open JupyterLab on the course, starting in notebooks/ (``make lab``)
    data                   load MNIST and Fashion-MNIST once; print where each came from
    results [--markdown | --all] [FOLDER]
                           each notebook's time at every run size and headline figures, as one table
    bench                  time the offline fallbacks against their targets
    checkers [--write]     the exercise checkers: hidden cases, named mistakes, forbidden calls
                           (``--write`` updates course_utils/exercises/CHECKERS.md)
    execute [PATH ...]     re-run notebooks top to bottom and save them (``make execute``)
"""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "lab":
        from .lab import open_lab
        return open_lab(args)
    if command == "data":
        from .data import report_sources
        return report_sources()
    elif command == "results":
        from .results import main as results_main
        return results_main(args)
    elif command == "bench":
        from .bench import main as bench_main
        return bench_main(args)
    elif command == "checkers":
        from .exercises import write_checker_table
        return write_checker_table(args)
    elif command == "execute":
        from .execute import execute_all
        execute_all(args)
    else:
        print(__doc__)
        return 0 if command in ("", "-h", "--help") else 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
