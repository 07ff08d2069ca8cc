# elearn: `make demo` runs the nightly pipeline end to end; `make test` runs the tests.
# Both create .venv from the pinned lock file when it is missing (quick when present).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

export ELEARN_HOME ?= $(CURDIR)/.elearn
export AIRFLOW_HOME ?= $(ELEARN_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export BENTOML_DO_NOT_TRACK ?= True
export PATH := $(BIN):$(PATH)

PYTEST_ARGS ?=
ALONE_ARGS ?=

.PHONY: venv demo test test-heavy test-alone notebook up clean system-deps system-deps-test help

help:
	@echo "make demo   - run the nightly retraining DAG once (real Airflow, Spark, TensorFlow, BentoML) and serve it"
	@echo "make test   - run the test suite"
	@echo "make test-alone - run a sample of the tests each in its own pytest (every test must pass alone)"
	@echo "make notebook - start a JupyterLab on 127.0.0.1 with elearn and the datastores at hand"
	@echo "make up     - start airflow standalone (UI on http://127.0.0.1:8080) with the elearn DAGs and plugin"
	@echo "make clean  - delete ELEARN_HOME ($(ELEARN_HOME)): databases, object store, Bentos, Airflow state"

# Java runs Spark; nginx splits traffic between released versions on one machine; the tests
# start a throwaway PostgreSQL from Debian's server binaries and drive Debian's chromium. All
# are installed from Debian when missing (sessions and CI run as root).
system-deps:
	@command -v java >/dev/null || { echo "installing Java (Spark needs it)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; }
	@{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null || { echo "installing nginx (the local canary proxy)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-core; }

system-deps-test: system-deps
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "installing PostgreSQL (the tests start their own)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }
	@command -v chromium >/dev/null || { echo "installing chromium (the Airflow UI page tests; Playwright cannot download its own)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@command -v prometheus >/dev/null || { echo "installing Prometheus (the live-gate tests scrape real Bentos with it)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

$(STAMP): requirements.lock pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the pinned requirements into $(VENV) (first time: a few minutes)"
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	$(VENV)/bin/pip check
	@touch $@

venv: $(STAMP)

demo: venv system-deps
	$(BIN)/elearn demo

test: venv system-deps-test
	$(BIN)/pytest $(PYTEST_ARGS)

test-heavy: venv system-deps-test
	$(BIN)/pytest -m heavy $(PYTEST_ARGS)

# e.g. ALONE_ARGS="--seed 7", "--all-of tests/e2e/test_nightly_pipeline.py" or node ids; see tests/run_alone.py
test-alone: venv system-deps-test
	$(BIN)/python tests/run_alone.py $(ALONE_ARGS)

# a JupyterLab on 127.0.0.1 (its URL, with the token, is printed); Ctrl-C stops it
notebook: venv
	$(BIN)/elearn notebook start $(NOTEBOOK) --wait

up: venv system-deps
	$(BIN)/airflow db migrate >/dev/null
	@echo "Airflow UI: http://127.0.0.1:8080  (user admin; password in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated)"
	$(BIN)/airflow standalone

clean:
	rm -rf "$(ELEARN_HOME)"
