# Convenience targets; the README's commands are the reference.
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: setup install test lint ci

setup:
	$(SUDO) scripts/setup-host --docker --chromium

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'

install: $(PY)

test: $(PY)
	$(SUDO) $(PY) -m pytest -q

lint: $(PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

ci:
	$(SUDO) env CI=true bash .ci/run
