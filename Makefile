# The course's commands. `make lab` and `make test` are all most people need.
# Windows without make: see README ("Without make").

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_DEB_DIR := /usr/share/datasets/fashion-mnist

.PHONY: lab test setup unit lint execute results data clean help

help:  ## list the commands
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

lab: setup  ## set everything up and open the course in JupyterLab
	$(PY) -m course_utils lab

test: setup  ## set everything up, lint, then run the unit tests and every notebook (smoke size)
	$(PY) -m ruff check course_utils tests conftest.py
	COURSE_RUN_SIZE=smoke $(PY) -m pytest

setup: $(STAMP)  ## virtual environment, pinned packages, course_utils, offline data

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@$(MAKE) --no-print-directory data
	touch $(STAMP)

data:  ## the offline copy of Fashion-MNIST (Debian package) where apt is available; then show sources
	@if [ ! -d $(FASHION_DEB_DIR) ] && command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } || \
	    echo "note: could not install dataset-fashion-mnist; Fashion-MNIST will download when online"; \
	  else \
	    echo "note: for Fashion-MNIST offline run: sudo apt-get install dataset-fashion-mnist"; \
	  fi; \
	fi
	$(PY) -m course_utils data

unit: setup  ## only the unit tests, without the slow ones (under a minute)
	COURSE_RUN_SIZE=smoke $(PY) -m pytest tests -m "not slow"

lint: setup  ## ruff: errors, style and import order
	$(PY) -m ruff check course_utils tests conftest.py

execute: setup  ## re-run every notebook top to bottom at the cpu size and save it in place
	COURSE_RUN_SIZE=cpu $(PY) -m course_utils execute notebooks

results:  ## each notebook's time at every run size and its headline figures, as one table
	$(PY) -m course_utils results

clean:  ## remove the virtual environment and caches (keeps data and results)
	rm -rf $(VENV) .pytest_cache course_utils.egg-info course_utils/__pycache__ tests/__pycache__
