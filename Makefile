# One target per user action; `make` alone lists them. README, CI and tests call these targets.

# ---- GLOBALS -----------------------------------------------------------------------------
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# Simulated data: `make data SCENARIO=covariate-shift DAYS=28`
SCENARIO ?= stable
DAYS ?= 14
SEED ?= 42
LANDING ?= var/landing

# The embedded MLflow tracking server (SQLite + local artifacts): see shared/servers.py
MLFLOW_PORT ?= 5000

# ---- COMMANDS ----------------------------------------------------------------------------

## Show this help
help:
	@echo "usage: make <target> [VAR=value]"
	@awk '/^## /{desc=substr($$0,4); next} /^[a-zA-Z0-9_-]+:/{if (desc) printf "  %-18s %s\n", substr($$1,1,length($$1)-1), desc} {desc=""}' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found. Install Python 3.11 or pass PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: $(VENV) is not Python 3.11; remove it and pass PYTHON=python3.11"; exit 1; }
	@echo "installing the locked dependencies into $(VENV) (first run: a few minutes; log: $(VENV)/install.log)"
	@$(PY) -m pip install --disable-pip-version-check -r requirements.lock > $(VENV)/install.log 2>&1 \
		&& $(PY) -m pip install --disable-pip-version-check --no-deps -e . >> $(VENV)/install.log 2>&1 \
		|| { grep -v '^WARNING: Location' $(VENV)/install.log | tail -30; echo "error: install failed, see $(VENV)/install.log"; exit 1; }
	@touch $@

## Create the virtual environment from requirements.lock (other targets do this when needed)
venv: $(VENV)/.installed

## Re-resolve pyproject.toml's ranges into requirements.lock (needs network)
lock:
	rm -rf /tmp/mlops-levels-lock && $(PYTHON) -m venv /tmp/mlops-levels-lock
	/tmp/mlops-levels-lock/bin/pip install -q . && /tmp/mlops-levels-lock/bin/pip check
	{ sed -n '1,2p' requirements.lock; /tmp/mlops-levels-lock/bin/pip freeze --exclude mlops-levels; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf /tmp/mlops-levels-lock

## Run level 0 end to end without Docker: data, training, MLflow, hand-off, served predictions
demo: venv
	$(PY) -m level0_manual.demo

## Run every test kind: unit, integration, e2e (and container tests once they exist)
test: venv
	$(PY) -m pytest

## Print serving latency and throughput figures of the level-0 service (bench/)
bench: venv
	$(PY) -m bench.serving_latency

## Lint and format-check the code with ruff
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## Land simulated daily batches in LANDING (SCENARIO=stable|covariate-shift|concept-drift|data-quality)
data: venv
	$(PY) -m shared.simulator --landing $(LANDING) --scenario $(SCENARIO) --days $(DAYS) --seed $(SEED)

## Start the MLflow tracking server and UI on SQLite at http://127.0.0.1:$(MLFLOW_PORT) (Ctrl-C stops)
mlflow: venv
	$(PY) -m shared.servers mlflow --port $(MLFLOW_PORT)

## Remove the embedded mode's state: landed data, MLflow runs, exported models (var/)
clean:
	rm -rf var

# ---- LEVEL 0: the manual process (see level0_manual/README.md) ----------------------------

## Level 0, step 2: open the exploration notebook in JupyterLab
level0-notebook: venv
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --no-browser level0_manual/explore.ipynb

## Level 0, step 3: train, evaluate, log to MLflow by hand and export the model file
level0-train: venv
	$(PY) -m level0_manual.train --landing $(LANDING)

## Level 0, step 4 (the manual hand-off): copy the exported model into the service's folder
level0-handoff: venv
	$(PY) -m level0_manual.handoff

## Level 0, step 5: serve the handed-off model at http://127.0.0.1:8000 (Ctrl-C stops)
level0-serve: venv
	$(PY) -m level0_manual.service

## Level 0, step 6: send sample requests from the newest batch to the running service
level0-predict: venv
	$(PY) -m level0_manual.predict --landing $(LANDING)

.PHONY: help venv lock demo test bench lint data mlflow clean \
	level0-notebook level0-train level0-handoff level0-serve level0-predict
