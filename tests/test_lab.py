"""``make lab`` starts a JupyterLab that serves the course and opens on its notebooks (course_utils.lab).

The test starts the very command ``make lab`` runs (``lab_command``), headless on a free port with a
token, lists the repository and the notebooks and reads the course's settings through the server's
REST API, and stops it, leaving no process behind. ``running_lab`` does the starting and stopping for
these tests and for the browser test (tests/test_browser.py).
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import pytest

from course_utils import lab
from course_utils.lab import (
    LAB_SETTINGS_DIR,
    NOTEBOOKS_DIR,
    REPO_ROOT,
    START_URL,
    free_port,
    lab_command,
    open_lab,
    parse_args,
)

EXPECTED = {"00_setup_and_tour.ipynb", "01_mnist_mlp.ipynb", "02_mnist_cnn.ipynb"}
START_TIMEOUT = 15  # seconds for the server to answer
NOTIFICATION_PLUGIN = "@jupyterlab/apputils-extension:notification"  # the news and update pop-ups


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


@dataclass(frozen=True)
class Lab:
    """A running lab: its address, its token, and the folder of its user settings."""

    url: str
    token: str
    settings_dir: Path


@contextmanager
def running_lab(tmp_path: Path, env: Mapping[str, str | None] | None = None) -> Iterator[Lab]:
    """Run ``lab_command`` headless on a free port with a token while the block runs, then stop it.

    Server state files (runtime info, cookie secret, notebook signatures), user settings and
    workspaces go to ``tmp_path``: the user's own JupyterLab settings do not apply and nothing is
    written to their folders. ``env`` sets variables for the server and its kernels (``None`` removes
    one). After the block, no process the server started may survive it.
    """
    port, token = free_port(), secrets.token_hex(16)
    log = tmp_path / "lab.log"
    settings_dir = tmp_path / "settings"
    server_env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
                      JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTERLAB_SETTINGS_DIR=str(settings_dir),
                      JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    for name, value in (env or {}).items():
        if value is None:
            server_env.pop(name, None)
        else:
            server_env[name] = value
    with open(log, "wb") as out:
        process = subprocess.Popen(lab_command(port=port, token=token, headless=True), stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=server_env,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, f"{url}/api/contents", token, log)
        yield Lab(url, token, settings_dir)
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


def test_command_is_jupyterlab_on_the_repository_opening_on_the_notebooks():
    cmd = lab_command(port=8890, token="abc", headless=True)
    assert cmd[1:3] == ["-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={REPO_ROOT}" in cmd and "--ServerApp.ip=127.0.0.1" in cmd
    assert START_URL == "/lab/tree/" + NOTEBOOKS_DIR.relative_to(REPO_ROOT).as_posix()
    assert f"--LabApp.default_url={START_URL}" in cmd and f"--LabApp.app_settings_dir={LAB_SETTINGS_DIR}" in cmd
    assert "--ServerApp.port=8890" in cmd and "--IdentityProvider.token=abc" in cmd and "--no-browser" in cmd
    assert "--no-browser" not in lab_command()
    assert not any(arg.startswith(("--ServerApp.port", "--IdentityProvider")) for arg in lab_command())


def test_terminals_are_off_unless_asked_for_and_extra_options_come_last():
    assert "--ServerApp.terminals_enabled=False" in lab_command()
    assert "--ServerApp.terminals_enabled=True" in lab_command(terminals=True)
    assert lab_command(extra=["--ServerApp.open_browser=False"])[-1] == "--ServerApp.open_browser=False"


def test_arguments_are_parsed_and_the_rest_goes_to_jupyterlab():
    options, rest = parse_args(["--port", "9000", "--no-browser", "--ServerApp.open_browser=False"])
    assert options.port == 9000 and options.no_browser and not options.terminals
    assert rest == ["--ServerApp.open_browser=False"]
    assert parse_args(["--terminals"])[0].terminals


@pytest.mark.parametrize("argv", [["--port", "0"], ["--port", "http"], ["--port", "70000"]])
def test_a_bad_port_is_refused_before_anything_starts(argv, monkeypatch, capsys):
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("JupyterLab must not start"))
    with pytest.raises(SystemExit) as exit_info:
        open_lab(argv)
    assert exit_info.value.code == 2 and "--port" in capsys.readouterr().err


def test_help_prints_the_options_and_starts_nothing(monkeypatch, capsys):
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("JupyterLab must not start"))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("JupyterLab must not start"))
    with pytest.raises(SystemExit) as exit_info:
        open_lab(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "--port" in out and "--no-browser" in out and "--terminals" in out


class _Started(Exception):
    """Raised by the fake ``os.execv``: JupyterLab would have replaced the process here."""


def test_as_root_it_says_why_it_allows_root(monkeypatch, capsys):
    started = []

    def fake_execv(path, cmd):
        started.append(cmd)
        raise _Started

    monkeypatch.setattr(lab, "_is_root", lambda: True)
    monkeypatch.setattr(os, "execv", fake_execv)
    monkeypatch.setattr(os, "name", "posix")
    with pytest.raises(_Started):
        open_lab(["--no-browser", "--port", "9001"])
    line = capsys.readouterr().out.strip()
    assert line.startswith("running as root") and "--allow-root" in line and "127.0.0.1" in line
    assert "--allow-root" in started[0] and "--ServerApp.port=9001" in started[0] and "--no-browser" in started[0]
    monkeypatch.setattr(lab, "_is_root", lambda: False)
    with pytest.raises(_Started):
        open_lab([])
    assert "--allow-root" not in started[1] and capsys.readouterr().out == ""


def test_settings_turn_off_the_news_and_update_pop_ups():
    overrides = json.loads((LAB_SETTINGS_DIR / "overrides.json").read_text())
    assert overrides[NOTIFICATION_PLUGIN] == {"fetchNews": "false", "checkForUpdates": False}


def test_free_port_is_free():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # raises if it were taken


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="process-group clean-up is POSIX-only")
def test_lab_serves_the_course_notebooks(tmp_path):
    with running_lab(tmp_path) as lab:
        base, token = lab.url, lab.token
        root = {item["name"] for item in json.loads(_get(f"{base}/api/contents", token)[1])["content"]}
        assert {"README.md", "course_utils", "notebooks"} <= root, f"the lab must serve the repository: {root}"
        status, body = _get(f"{base}/api/contents/notebooks", token)
        listing = json.loads(body)
        names = {item["name"] for item in listing["content"] if item["type"] == "notebook"}
        assert EXPECTED <= names, f"missing notebooks: {sorted(EXPECTED - names)}"
        on_disk = {p.name for p in NOTEBOOKS_DIR.glob("[0-9][0-9]*_*.ipynb")}
        assert on_disk <= names
        assert _get(f"{base}/api/contents")[0] == 403, "the API must refuse requests without the token"
        status, page = _get(f"{base}/lab", token)
        assert status == 200 and b"JupyterLab" in page, "the server must serve JupyterLab itself"
        request = urllib.request.Request(f"{base}/", headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=5) as response:  # follows the redirect
            assert response.url == base + START_URL, "the lab must open on notebooks/"
        status, body = _get(f"{base}/lab/api/settings/{NOTIFICATION_PLUGIN}", token)
        defaults = json.loads(body)["schema"]["properties"]  # the overrides replace the schema's defaults
        assert status == 200 and defaults["fetchNews"]["default"] == "false"
        assert defaults["checkForUpdates"]["default"] is False
