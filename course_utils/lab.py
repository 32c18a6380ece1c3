"""Start JupyterLab on the course's ``notebooks/`` folder: ``python -m course_utils lab``.

``make lab`` runs this; the tests start the very same command headless on a free port.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def free_port() -> int:
    """A TCP port on localhost that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_command(port: int | None = None, token: str | None = None, headless: bool = False) -> list[str]:
    """The ``jupyter lab`` command line the course uses.

    Args:
        port: the port to serve on (default: JupyterLab's own choice, 8888 or the next free one).
        token: the access token (default: JupyterLab makes one and prints the link).
        headless: do not open a browser.
    """
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={NOTEBOOKS_DIR}", "--ServerApp.ip=127.0.0.1"]
    if port is not None:
        cmd.append(f"--ServerApp.port={port}")
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    if headless:
        cmd.append("--no-browser")
    if os.name != "nt" and hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def open_lab(headless: bool = False) -> int:
    """Run JupyterLab until it is stopped with Ctrl+C; return its exit code.

    On Linux and macOS JupyterLab replaces this process, so Ctrl+C reaches it alone and it shuts
    its kernels down cleanly. Elsewhere it runs as a child that this process waits for.
    """
    cmd = lab_command(headless=headless)
    if os.name == "posix":
        os.execv(cmd[0], cmd)
    with subprocess.Popen(cmd) as server:
        while True:
            try:
                return server.wait()
            except KeyboardInterrupt:  # the server got the same Ctrl+C and handles it
                continue
