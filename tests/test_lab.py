"""``make lab`` starts a JupyterLab that serves the course's notebooks (course_utils.lab).

The test starts the very command ``make lab`` runs (``lab_command``), headless on a free port with a
token, lists the notebooks through the server's REST API, and stops it, leaving no process behind.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from course_utils.lab import NOTEBOOKS_DIR, free_port, lab_command

EXPECTED = {"00_setup_and_tour.ipynb", "01_mnist_mlp.ipynb", "02_mnist_cnn.ipynb"}
START_TIMEOUT = 15  # seconds for the server to answer


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _wait_until_up(process: subprocess.Popen, url: str, token: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jupyter lab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if _get(url, token)[0] == 200:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.2)
    pytest.fail(f"jupyter lab did not answer within {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")


def test_command_is_jupyterlab_on_the_notebooks_folder():
    cmd = lab_command(port=8890, token="abc", headless=True)
    assert cmd[1:3] == ["-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={NOTEBOOKS_DIR}" in cmd and "--ServerApp.ip=127.0.0.1" in cmd
    assert "--ServerApp.port=8890" in cmd and "--IdentityProvider.token=abc" in cmd and "--no-browser" in cmd
    assert "--no-browser" not in lab_command()
    assert not any(arg.startswith(("--ServerApp.port", "--IdentityProvider")) for arg in lab_command())


def test_free_port_is_free():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # raises if it were taken


@pytest.mark.skipif(os.name != "posix", reason="process-group clean-up is POSIX-only")
def test_lab_serves_the_course_notebooks(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    log = tmp_path / "lab.log"
    # Server state files (runtime info, cookie secret) go to a temporary folder, not the user's.
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    base = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        process = subprocess.Popen(lab_command(port=port, token=token, headless=True), stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   start_new_session=True)
    try:
        _wait_until_up(process, f"{base}/api/contents", token, log)
        status, body = _get(f"{base}/api/contents", token)
        listing = json.loads(body)
        names = {item["name"] for item in listing["content"] if item["type"] == "notebook"}
        assert EXPECTED <= names, f"missing notebooks: {sorted(EXPECTED - names)}"
        on_disk = {p.name for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")}
        assert on_disk <= names
        assert _get(f"{base}/api/contents")[0] == 403, "the API must refuse requests without the token"
        status, page = _get(f"{base}/lab", token)
        assert status == 200 and b"JupyterLab" in page, "the server must serve JupyterLab itself"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        try:  # anything the server started is in its process group: none may survive it
            os.killpg(process.pid, 0)
            leftover = True
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            leftover = False
    assert not leftover, "jupyter lab left processes running"
    assert process.returncode is not None
