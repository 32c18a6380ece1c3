# Make `course_utils` importable. In the course's environment (`make lab`) it already is: nothing happens.
# On Colab: clone the course once into /content and import it from there. Colab ships every package the
# course imports, torch included, so nothing is installed and nothing is reinstalled; should a runtime
# lack one of LIGHT_PACKAGES, only that one is pip-installed, --no-deps (Colab's torch stays untouched).
# Notebooks 04 and 06 then load their text encoder from the Hugging Face hub, not from the 88 MB
# offline package the lab installs.
# A fork or a classroom: change COURSE_REPO below, or run `%env COURSE_REPO=<git URL>` before this cell.
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

COURSE_REPO = os.environ.get("COURSE_REPO", "https://github.com/llm-vision-course/llm-vision-course.git")
LIGHT_PACKAGES = {"tqdm": "tqdm", "seaborn": "seaborn", "sklearn": "scikit-learn", "skimage": "scikit-image"}
if importlib.util.find_spec("course_utils") is None:
    if "google.colab" in sys.modules:
        root = Path("/content") / COURSE_REPO.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        cloned = not root.exists()
        if cloned:
            subprocess.run(["git", "clone", "--quiet", "--depth=1", COURSE_REPO, str(root)], check=True)
        missing = [pip for module, pip in LIGHT_PACKAGES.items() if importlib.util.find_spec(module) is None]
        if missing:
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *missing], check=True)
            importlib.invalidate_caches()
        print(f"Colab: {'cloned ' + COURSE_REPO + ' into' if cloned else 'the course is already in'} {root}; "
              + (f"pip-installed {', '.join(missing)}" if missing else "nothing to install"))
    else:  # a Jupyter started outside the course's environment: use the course this notebook sits in
        root = Path.cwd().parent
        print("course_utils is not installed here: using the course one folder up; `make lab` sets it up")
    sys.path.insert(0, str(root))
