# Convenience targets; the README's commands are the reference.
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: setup install test demo lint ci

setup:
	$(SUDO) scripts/setup-host --docker --chromium

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'

install: $(PY)

test:
	$(SUDO) scripts/quickstart test

demo:
	$(SUDO) scripts/quickstart demo

lint: $(PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

ci:
	$(SUDO) env CI=true bash .ci/run
