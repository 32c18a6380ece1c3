"""The lab as a learner meets it, in a real browser: open notebook 00, Run All, read the outputs.

Debian's ``chromium``, driven by Playwright, opens the lab started the README's way (``lab_command``,
here headless on a free port with a token) at the ``smoke`` run size. It checks that the lab opens on
``notebooks/`` without JupyterLab's news pop-up, that the file browser reaches README.md at the
repository root, and that Run All in notebook 00 runs every code cell with no error or other stderr
output and shows the exercise checker's verdicts. The notebook is never saved (autosave is off in the
test's own settings) and a screenshot of the checker's output is left in the test's ``tmp_path``.

Skipped, with the reason, where Playwright or chromium is missing (``.ci/run`` installs chromium where
apt is available; Playwright never downloads a browser here).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from typing import TYPE_CHECKING

import nbformat
import pytest
from test_lab import running_lab

from course_utils.lab import NOTEBOOKS_DIR

if TYPE_CHECKING:
    from playwright.sync_api import Page

NOTEBOOK = NOTEBOOKS_DIR / "00_setup_and_tour.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN_ALL_TIMEOUT_MS = 90_000  # notebook 00 runs in 10-20 s at the smoke size
STDERR = "application/vnd.jupyter.stderr"  # JupyterLab renders error outputs and stderr text with this type
# The test's own JupyterLab user settings: no autosave (the run must never write to notebooks/), and
# every cell rendered, also those out of view (by default JupyterLab renders only what is on screen).
TEST_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}
# Every code cell's prompt once it has run: "[12]:" (a queued or running cell shows "[*]:", a cleared one "[ ]:").
ALL_CELLS_RAN = """() => {
    const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')];
    return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim()));
}"""

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.name != "posix", reason="the lab's process-group clean-up is POSIX-only")]


@pytest.fixture(scope="module")
def chromium() -> str:
    """The path of Debian's chromium, with Playwright importable; skips the test without either."""
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -r requirements.txt)")
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed (Debian: sudo apt-get install chromium)")
    return path


def test_run_all_in_notebook_00(chromium, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import expect, sync_playwright

    before = NOTEBOOK.read_bytes()
    code_cells = sum(cell.cell_type == "code" for cell in nbformat.read(NOTEBOOK, as_version=4).cells)
    # The kernel runs at the smoke size and draws its figures inline as in any lab (not with the
    # tests' Agg backend).
    with running_lab(tmp_path, env={"COURSE_RUN_SIZE": "smoke", "MPLBACKEND": None}) as lab:
        for plugin, settings in TEST_SETTINGS.items():
            path = lab.settings_dir / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(settings))

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{lab.url}/?token={lab.token}")
                expect(page.locator(".jp-BreadCrumbs")).to_contain_text("notebooks")
                listing = page.locator(".jp-DirListing-item")
                listing.filter(has_text=NOTEBOOK.name).dblclick()

                panel = page.locator(".jp-NotebookPanel")
                prompts = panel.locator(".jp-CodeCell .jp-InputPrompt")
                expect(prompts).to_have_count(code_cells)  # the saved notebook is loaded
                expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle", timeout=30_000)  # its kernel too
                _menu(page, "Edit", "editmenu:clear-all")  # so that every output seen is fresh
                expect(prompts).to_have_text(["[ ]:"] * code_cells)
                _menu(page, "Run", "runmenu:run-all")
                try:
                    page.wait_for_function(ALL_CELLS_RAN, timeout=RUN_ALL_TIMEOUT_MS)
                except PlaywrightTimeoutError:
                    page.screenshot(path=tmp_path / "run-all-timeout.png")
                    pytest.fail(f"Run All did not finish in {RUN_ALL_TIMEOUT_MS // 1000} s; prompts: "
                                f"{prompts.all_inner_texts()}")

                stderr = panel.locator(f".jp-OutputArea-output[data-mime-type='{STDERR}']")
                assert stderr.count() == 0, "error or stderr output:\n" + "\n---\n".join(stderr.all_inner_texts())
                verdicts = panel.locator(".jp-OutputArea-output").filter(has_text=re.compile(r"^(TODO|FAILED) relu",
                                                                                            re.MULTILINE))
                expect(verdicts).to_have_count(2)  # the unsolved exercise, then two wrong answers in one cell
                verdicts.first.scroll_into_view_if_needed()
                expect(verdicts.first).to_contain_text("TODO relu: not attempted yet")
                expect(verdicts.last).to_contain_text("FAILED relu: that is abs(x)")
                page.screenshot(path=tmp_path / "notebook-00.png")
                expect(page.get_by_text("official Jupyter news")).to_have_count(0)

                page.locator(".jp-BreadCrumbs-home").click()
                expect(listing.filter(has_text="README.md")).to_have_count(1)
            finally:
                browser.close()
    assert NOTEBOOK.read_bytes() == before, "the browser run must not change the committed notebook"


def _menu(page: Page, menu: str, command: str) -> None:
    """Click ``menu`` in JupyterLab's menu bar, then its item that runs ``command``."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.locator(f".lm-Menu-item[data-command='{command}']").click()
