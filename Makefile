# phlo-dagster: every target uses the project virtualenv in .venv/.
SHELL := /bin/bash
# The interpreter: PYTHON if given, else the first Python 3.12 that runs (a pyenv shim whose version is not
# active fails, so each candidate is tried), else python3 (3.11 keeps working).
PYTHON_CANDIDATES := python3.12 $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12) \
	$(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) /usr/local/bin/python3.12 /usr/bin/python3.12
ifndef PYTHON
PYTHON := $(or $(firstword $(foreach c,$(PYTHON_CANDIDATES),$(shell $(c) -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && echo $(c)))),python3)
endif
PYTHON_VERSION := $(shell $(PYTHON) -c 'import platform; print(platform.python_version())' 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
# The stamp names the interpreter version: a different interpreter recreates the venv.
STAMP := $(VENV)/.installed-py$(PYTHON_VERSION)
# The PATH without the test bed's binaries: the first pass of `make test` runs before they exist.
HOST_PATH := $(PATH)
export PATH := $(CURDIR)/.testbed/bin:$(PATH)
# The one lock the venv and the images install from (`make lock` regenerates it with a pinned uv).
LOCK := requirements.lock
UV_VERSION := 0.13.8
UV := .testbed/tools/uv-$(UV_VERSION)/bin/uv

.PHONY: realnode-up realnode-down e2e venv lock lock-previous images demo test unit integration reliability lint format generate testbed-binaries testbed-up testbed-down postgres-up postgres-down bench kind-e2e clean

# The quickstart's example plugin is never installed here (every project using this venv would gain its assets):
# `make demo` and the quickstart's tests put it on PYTHONPATH (phlo_dagster/demo.py). A venv an older Makefile
# installed it into loses it.
OLD_QUICKSTART_PLUGIN := $(wildcard $(VENV)/lib/python*/site-packages/phlo_quickstart_plugin-*.dist-info)
venv: $(STAMP)
	$(if $(OLD_QUICKSTART_PLUGIN),$(VENV)/bin/pip uninstall -q -y phlo-quickstart-plugin)
	@echo "venv: $(VENV) uses $(PYTHON) (Python $(PYTHON_VERSION))"

$(STAMP): pyproject.toml $(LOCK)
	@test -n "$(PYTHON_VERSION)" || { echo "PYTHON=$(PYTHON) does not run" >&2; exit 1; }
	@if test -x $(PY) && test "$$($(PY) -c 'import platform; print(platform.python_version())' 2>/dev/null)" != "$(PYTHON_VERSION)"; then \
		echo "venv: $(VENV) has another Python; recreating it"; rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip setuptools wheel
	$(VENV)/bin/pip install -q -c $(LOCK) -e '.[dbt,s3,operator,dev]'
	touch $(STAMP)

## Re-resolve requirements.lock (universal: Python 3.11 and 3.12) from pyproject.toml and operator/requirements.txt.
## The index is the one pip is configured with, if any (never written into the repository).
lock: $(UV)
	index="$$($(PYTHON) -m pip config get global.index-url 2>/dev/null || true)"; \
	$(UV) pip compile --quiet --universal --python-version 3.11 --system-certs \
		$${index:+--index-url "$$index"} --custom-compile-command 'make lock' \
		pyproject.toml --extra dbt --extra s3 --extra operator --extra dev operator/requirements.txt -o $(LOCK)
	$(PYTHON) -m tests.images.lock stamp $(LOCK)

## Re-resolve tests/images/previous/requirements.lock: the runtime one Dagster family back (the real-node upgrade
## test's starting image), every package the two share held at requirements.lock's version.
PREVIOUS_LOCK := tests/images/previous/requirements.lock
lock-previous: $(UV)
	grep -E '^[A-Za-z0-9_.-]+==' $(LOCK) | grep -v -i -e '^dagster' -e '^kubernetes==' >$(PREVIOUS_LOCK).constraints
	index="$$($(PYTHON) -m pip config get global.index-url 2>/dev/null || true)"; \
	$(UV) pip compile --quiet --python-version 3.12 --system-certs $${index:+--index-url "$$index"} \
		--custom-compile-command 'make lock-previous' --constraint $(PREVIOUS_LOCK).constraints \
		tests/images/previous/requirements.in -o $(PREVIOUS_LOCK); \
	status=$$?; rm -f $(PREVIOUS_LOCK).constraints; \
	sed -i 's|-c $(PREVIOUS_LOCK).constraints|requirements.lock (held at its version)|' $(PREVIOUS_LOCK); exit $$status

$(UV):
	$(PYTHON) -m venv $(abspath $(dir $(UV))/..)
	$(dir $(UV))pip install -q uv==$(UV_VERSION)

## Build (or take from the cache outside the repo) the base images, phlo-dagster and phlo-dagster-operator as OCI
## archives (docs/images.md); IMAGE=name:tag [WORKFLOWS_DIR= DBT_DIR= PLUGIN_DIR=] also bakes a workflow image.
## When the real node's containerd runs, the images are imported into it.
REALNODE_CONTAINERD_SOCK ?= $(CURDIR)/.testbed/realnode/containerd/containerd.sock
REALNODE_CTR ?= .testbed/bin/ctr
images:
	$(PYTHON) -m tests.images build $(if $(IMAGE),--image '$(IMAGE)') $(if $(WORKFLOWS_DIR),--workflows-dir '$(WORKFLOWS_DIR)') \
		$(if $(DBT_DIR),--dbt-dir '$(DBT_DIR)') $(if $(PLUGIN_DIR),--plugin-dir '$(PLUGIN_DIR)')
	@if test -S $(REALNODE_CONTAINERD_SOCK); then \
		$(PYTHON) -m tests.images load --ctr $(REALNODE_CTR) --address $(REALNODE_CONTAINERD_SOCK); fi

## Build (or reuse from the cache outside the repo) etcd, kube-*, kwok, kubectl, helm.
testbed-binaries:
	bash tests/testbed/build.sh

testbed-up: venv testbed-binaries
	$(PY) -m tests.testbed up

testbed-down: venv
	$(PY) -m tests.testbed down

## The control plane plus one real node (kubelet, containerd, runc, CNI, kube-proxy, CoreDNS) in namespaces of
## its own; writes .testbed/kubeconfig. Idempotent. `make realnode-down` stops it and leaves the host as it was.
realnode-up: venv testbed-binaries
	$(PY) -m tests.testbed.realnode up

realnode-down: venv
	$(PY) -m tests.testbed.realnode down

## The end-to-end suite on the real node (starts one for the session unless `make realnode-up` left one running).
e2e: venv testbed-binaries images
	$(PY) -m pytest -m e2e tests/e2e

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

## The figures of RELIABILITY.md: the bad-input corpus (tests/corpus) on the bed, the property tests over the model
## with RELIABILITY_EXAMPLES examples and the server-side dry runs of what it renders with RELIABILITY_BED_EXAMPLES,
## the documented RBAC, and the faults (tests/integration/test_faults.py: operator SIGKILLs, API server and etcd
## restarts), and the API's 429s (priority and fairness) and 409s (tests/integration/test_api_throttling.py, with
## RELIABILITY_THROTTLE_WORKFLOWS workflows), and PostgreSQL stopped under `phlo dev` for RELIABILITY_OUTAGE_SECONDS
## (tests/integration/test_dev_postgres_outage.py, within the default PHLO_POSTGRES_RETRY_SECONDS of 300), then once
## more for RELIABILITY_BEYOND_OUTAGE_SECONDS beyond a budget of RELIABILITY_BEYOND_BUDGET_SECONDS (what is lost then).
## `make test` runs the same tests with 100 and 15 examples and 6 workflows, 5 kills, 2 restarts, 4 throttled
## workflows, a 20 s outage.
RELIABILITY_EXAMPLES ?= 2000
RELIABILITY_BED_EXAMPLES ?= 500
RELIABILITY_FAULT_WORKFLOWS ?= 20
RELIABILITY_FAULT_KILLS ?= 50
RELIABILITY_FAULT_RESTARTS ?= 10
RELIABILITY_THROTTLE_WORKFLOWS ?= 20
RELIABILITY_OUTAGE_SECONDS ?= 120
RELIABILITY_BEYOND_BUDGET_SECONDS ?= 30
RELIABILITY_BEYOND_OUTAGE_SECONDS ?= 60
# A test's time limit at the full counts (make test's 900 s cut the 2,000-example property test short at a load of 30).
RELIABILITY_TIMEOUT ?= 3600
RELIABILITY_TESTS := tests/unit/test_corpus.py tests/unit/test_model_properties.py tests/unit/test_rbac_documented.py \
	tests/integration/test_corpus.py tests/integration/test_render_dry_run.py tests/integration/test_rbac_documented.py \
	tests/integration/test_faults.py tests/unit/test_retry.py tests/integration/test_api_throttling.py \
	tests/unit/test_webserver_pool.py tests/unit/test_postgres_retry.py tests/integration/test_dev_postgres_outage.py
reliability: venv testbed-binaries
	PHLO_PROPERTY_EXAMPLES=$(RELIABILITY_EXAMPLES) PHLO_PROPERTY_BED_EXAMPLES=$(RELIABILITY_BED_EXAMPLES) \
		PHLO_FAULT_WORKFLOWS=$(RELIABILITY_FAULT_WORKFLOWS) PHLO_FAULT_KILLS=$(RELIABILITY_FAULT_KILLS) \
		PHLO_FAULT_RESTARTS=$(RELIABILITY_FAULT_RESTARTS) PHLO_THROTTLE_WORKFLOWS=$(RELIABILITY_THROTTLE_WORKFLOWS) \
		PHLO_OUTAGE_SECONDS=$(RELIABILITY_OUTAGE_SECONDS) \
		$(PY) -m pytest -s --durations=0 --timeout=$(RELIABILITY_TIMEOUT) $(RELIABILITY_TESTS)
	PHLO_POSTGRES_RETRY_SECONDS=$(RELIABILITY_BEYOND_BUDGET_SECONDS) PHLO_OUTAGE_SECONDS=$(RELIABILITY_BEYOND_OUTAGE_SECONDS) \
		$(PY) -m pytest -s --durations=0 --timeout=$(RELIABILITY_TIMEOUT) tests/integration/test_dev_postgres_outage.py

## The whole suite, in three passes so the slow cold build of the Go binaries overlaps other work. While
## tests/testbed/build.sh builds them in the background (cached by version; a build .ci/run started is waited
## for), the images build, the Phlo environments fill, and every test not marked `binaries` runs without them
## (an empty PHLO_TESTBED_BIN_DIR and PATH, so a test that needs them and is not marked fails on any machine).
## When the control plane's binaries are linked (.testbed/bin/.control-plane-ready) the kwok and chart tests start
## in the background while the real node's binaries still build; once those are linked the `node` tests (the image
## loads and the e2e suite) run beside them: both passes mostly wait on API servers and pods, not on the cores.
TEST_LOGS := .testbed/logs
CONTROL_PLANE_READY := .testbed/bin/.control-plane-ready
test: venv lint
	@mkdir -p $(TEST_LOGS); status=0; \
	bash tests/testbed/build.sh >$(TEST_LOGS)/testbed-binaries.log 2>&1 & binaries=$$!; \
	$(PY) -m tests.fixtures.phlo018.envs >$(TEST_LOGS)/phlo-envs.log 2>&1 & envs=$$!; \
	$(MAKE) --no-print-directory images || status=1; \
	PATH="$(HOST_PATH)" PHLO_TESTBED_BIN_DIR="$(CURDIR)/.testbed/no-binaries-in-the-first-pass" \
		$(PY) -m pytest tests -m 'not binaries' --durations=15 || status=1; \
	wait $$envs || echo "test: building the Phlo environments early failed (the tests above say how)"; \
	until test -e $(CONTROL_PLANE_READY) || ! kill -0 $$binaries 2>/dev/null; do sleep 2; done; \
	kwok=; if test -e $(CONTROL_PLANE_READY); then grep 'control plane ready' $(TEST_LOGS)/testbed-binaries.log; \
		echo "test: the kwok pass runs beside the real node's; its output follows theirs ($(TEST_LOGS)/pass-kwok.log)"; \
		env --default-signal=INT $(PY) -m pytest tests -m 'binaries and not node' --durations=15 \
			>$(TEST_LOGS)/pass-kwok.log 2>&1 & kwok=$$!; fi; \
	if ! wait $$binaries; then echo "test: tests/testbed/build.sh failed:"; tail -n 40 $(TEST_LOGS)/testbed-binaries.log; \
		test -z "$$kwok" || kill $$kwok; exit 1; fi; \
	tail -n 1 $(TEST_LOGS)/testbed-binaries.log; \
	$(PY) -m pytest tests -m node --durations=15 || status=1; \
	if test -n "$$kwok"; then wait $$kwok || status=1; echo "=== the kwok pass:"; cat $(TEST_LOGS)/pass-kwok.log; fi; \
	exit $$status

demo: venv
	$(PY) -m phlo_dagster.demo

# Every benchmark, BENCHMARKS.md rewritten; ONLY=<name>[,<name>] runs those sections (bench/run.py --list),
# BENCH_ARGS="--sizes 100" passes arguments to the one section ONLY names.
bench: venv
	$(PY) bench/run.py $(if $(ONLY),--only $(ONLY)) $(if $(BENCH_ARGS),-- $(BENCH_ARGS))

kind-e2e:
	bash tests/kind/e2e.sh

clean:
	rm -rf .testbed .phlo .pytest_cache .mypy_cache .ruff_cache
