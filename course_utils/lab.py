"""Start JupyterLab for the course: ``python -m course_utils lab``.

The lab serves the whole repository (README, ``course_utils``, ``results``) and opens on
``notebooks/``. Its settings overrides in ``course_utils/lab_settings/`` turn off JupyterLab's
news and update pop-ups. ``make lab`` runs this; the tests start the very same command headless on
a free port.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
# JupyterLab's application settings folder for the course: ``overrides.json`` sets the defaults of
# JupyterLab's own settings (a learner's changes in Settings still win).
LAB_SETTINGS_DIR = Path(__file__).resolve().parent / "lab_settings"
# Where the lab opens: the file browser shows notebooks/, one level below the repository root.
START_URL = "/lab/tree/notebooks"


def free_port() -> int:
    """A TCP port on localhost that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command(port: int | None = None, token: str | None = None, headless: bool = False,
                terminals: bool = False, extra: Sequence[str] = ()) -> list[str]:
    """The ``jupyter lab`` command line the course uses.

    Args:
        port: the port to serve on (default: JupyterLab's own choice, 8888 or the next free one).
        token: the access token (default: JupyterLab makes one and prints the link).
        headless: do not open a browser.
        terminals: allow JupyterLab's terminals. Off by default: whoever holds the token would get a shell
            with this account's rights (root's, in a container).
        extra: further JupyterLab options, passed on as they are (after the course's, so they win).
    """
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={REPO_ROOT}", "--ServerApp.ip=127.0.0.1",
           f"--LabApp.default_url={START_URL}", f"--LabApp.app_settings_dir={LAB_SETTINGS_DIR}",
           f"--ServerApp.terminals_enabled={terminals}"]
    if port is not None:
        cmd.append(f"--ServerApp.port={port}")
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    if headless:
        cmd.append("--no-browser")
    if _is_root():
        cmd.append("--allow-root")
    return cmd + list(extra)


def _is_root() -> bool:
    return os.name != "nt" and hasattr(os, "geteuid") and os.geteuid() == 0


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """``python -m course_utils lab`` arguments: the course's own options, and the rest for JupyterLab."""
    parser = argparse.ArgumentParser(
        prog="python -m course_utils lab",
        description="Open JupyterLab on the course (the repository, starting in notebooks/), on 127.0.0.1 with "
                    "a token. Options it does not know are passed on to JupyterLab, e.g. "
                    "--ServerApp.open_browser=False.")
    parser.add_argument("--port", type=int, help="port to serve on (default: 8888, or the next free one)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser; open the printed link")
    parser.add_argument("--terminals", action="store_true",
                        help="allow JupyterLab's terminals (off by default: a token holder would get a shell)")
    options, rest = parser.parse_known_args(list(argv))
    if options.port is not None and not 0 < options.port < 65536:
        parser.error(f"--port: expected a port number between 1 and 65535, got {options.port}")
    return options, rest


def open_lab(argv: Sequence[str] = ()) -> int:
    """Run JupyterLab until it is stopped with Ctrl+C; return its exit code.

    ``argv`` are the command's arguments (see :func:`parse_args`; ``--help`` prints them and starts
    nothing). On Linux and macOS JupyterLab replaces this process, so Ctrl+C reaches it alone and it
    shuts its kernels down cleanly. Elsewhere it runs as a child that this process waits for.
    """
    options, rest = parse_args(argv)
    if _is_root():
        print("running as root (a container or CI machine): JupyterLab gets --allow-root; it listens on "
              "127.0.0.1 only, asks for its token, and has its terminals off")
    cmd = lab_command(port=options.port, headless=options.no_browser, terminals=options.terminals, extra=rest)
    if os.name == "posix":
        os.execv(cmd[0], cmd)
    with subprocess.Popen(cmd) as server:
        while True:
            try:
                return server.wait()
            except KeyboardInterrupt:  # the server got the same Ctrl+C and handles it
                continue
