# Every target installs what it needs: `setup` builds .venv once and refreshes it when
# requirements.txt or pyproject.toml change (the stamp file records the last install).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint format clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

lint: setup
	$(PY) -m ruff check bench tests
	$(PY) -m ruff format --check bench tests

format: setup
	$(PY) -m ruff format bench tests
	$(PY) -m ruff check --fix bench tests

test: lint
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
