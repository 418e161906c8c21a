# phlo-dagster: every target uses the project virtualenv in .venv/.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/.testbed/bin:$(PATH)

.PHONY: venv demo test unit integration lint format generate testbed-binaries testbed-up testbed-down postgres-up postgres-down bench kind-e2e clean

venv: $(STAMP)

$(STAMP): pyproject.toml examples/quickstart/plugin/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip setuptools wheel
	$(VENV)/bin/pip install -q -e '.[dbt,operator,dev]'
	$(VENV)/bin/pip install -q -e examples/quickstart/plugin
	touch $(STAMP)

## Build (or reuse from the cache outside the repo) etcd, kube-*, kwok, kubectl, helm.
testbed-binaries:
	bash tests/testbed/build.sh

testbed-up: venv testbed-binaries
	$(PY) -m tests.testbed up

testbed-down: venv
	$(PY) -m tests.testbed down

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy phlo_dagster operator/phlo_operator
	$(VENV)/bin/lint-imports

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Regenerate every generated artifact (CRD, chart CRD copy, values schema, docs tables).
generate: venv
	$(PY) -m phlo_operator.generate

unit: venv
	$(PY) -m pytest -m unit tests

integration: venv testbed-binaries
	$(PY) -m pytest -m integration tests

test: venv testbed-binaries lint
	$(PY) -m pytest tests

demo: venv
	$(PY) -m phlo_dagster.demo

bench: venv
	$(PY) bench/run.py

kind-e2e:
	bash tests/kind/e2e.sh

clean:
	rm -rf .testbed .phlo .pytest_cache .mypy_cache .ruff_cache
