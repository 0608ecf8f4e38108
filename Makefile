# One target per user action; `make` alone lists them. README, CI and tests call these targets.

# ---- GLOBALS -----------------------------------------------------------------------------
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

# Simulated data: `make data SCENARIO=covariate-shift DAYS=28`
SCENARIO ?= stable
DAYS ?= 14
SEED ?= 42
LANDING ?= var/landing

# The embedded MLflow tracking server (SQLite + local artifacts) and Prefect server (SQLite):
# see shared/servers.py
MLFLOW_PORT ?= 5000
PREFECT_PORT ?= 4200
# `make demo` runs these levels' demos in turn
DEMO_LEVELS ?= 0 1 2
# `make level1-replay`: how many simulated days, how fast
SECONDS_PER_DAY ?= 10
# `make test-ml`: which ML Test Score section of the tests
SECTION ?= model
# `make level2-traffic`: live requests to level 2's production service
RATE ?= 20
DURATION ?= 600

# Container stacks: `make up LEVEL=0`. STACK=docker runs a level's steps in its containers
# (e.g. `make level0-train STACK=docker`) instead of in the local venv.
LEVEL ?= 0
STACK ?= local
LEVEL_DIR_0 := level0_manual
LEVEL_DIR_1 := level1_ct
LEVEL_DIR_2 := level2_cicd
LEVEL_DIR := $(or $(LEVEL_DIR_$(LEVEL)),$(error LEVEL must be 0, 1 or 2))
# Level 2's production as REPLICAS replicas behind a load balancer (make up LEVEL=2 REPLICAS=3;
# level2_cicd/compose.replicas.yaml); pass it to every command of that stack
REPLICAS ?=
L2_FILES = -f level2_cicd/compose.yaml $(if $(REPLICAS),-f level2_cicd/compose.replicas.yaml)
COMPOSE = docker compose $(if $(filter 2,$(LEVEL)),$(L2_FILES),-f $(LEVEL_DIR)/compose.yaml)
L0_COMPOSE = docker compose -f level0_manual/compose.yaml
# Level 1's targets run in the level-2 stack with LEVEL=2 (its runner serves level 1's loop)
L1_COMPOSE = docker compose $(if $(filter 2,$(LEVEL)),$(L2_FILES),-f level1_ct/compose.yaml)
L2_COMPOSE = docker compose $(L2_FILES)
# The worker drill's Prefect workers, beside the level-2 stack (level2_cicd/compose.workers.yaml)
L2_WORKERS = $(L2_COMPOSE) -f level2_cicd/compose.workers.yaml
# Level 2's runner joins the Docker socket's group (CI builds images through it)
export DOCKER_GID ?= $(shell stat -c %g /var/run/docker.sock 2>/dev/null || echo 0)
ifeq ($(STACK),docker)
L0_PY = $(L0_COMPOSE) run --rm -T workbench python
# Level 1's on-demand runs go through the Prefect server in the stack (from the runner).
L1_RUN = $(L1_COMPOSE) exec -T runner python -m level1_ct.run
L2_RUN = $(L2_COMPOSE) exec -T runner python -m level2_cicd.run
# The drill talks to production's admin API from production's container: it holds the key
L2_DRILL = $(L2_COMPOSE) exec -T production python -m level2_cicd.run
# The steps run in the stack's image: no local venv needed.
L0_NEEDS = env
LANDING = /data/landing
else ifeq ($(STACK),local)
L0_PY = $(PY)
L0_NEEDS = venv
export L0_LANDING := $(LANDING)
export MLFLOW_TRACKING_URI ?= http://127.0.0.1:$(MLFLOW_PORT)
export DEMO_MLFLOW_PORT ?= $(MLFLOW_PORT)
export PREFECT_API_URL ?= http://127.0.0.1:$(PREFECT_PORT)/api
export L1_LANDING := $(LANDING)
L1_RUN = $(PY) -m level1_ct.run
L2_RUN = $(PY) -m level2_cicd.run
L2_DRILL = $(L2_RUN)
else
$(error STACK must be local or docker)
endif

# Fails with a hint unless `make images` has built the stacks' images
IMAGES_BUILT = docker image inspect mlops-levels/python:latest mlops-levels/python-env:latest mlops-levels/serving:latest mlops-levels/observability:latest mlops-levels/postgres:15 >/dev/null 2>&1 \
	|| { echo "images missing: run make images first"; exit 1; }

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

## Run the levels end to end without Docker (DEMO_LEVELS="0 1 2"): by hand, the CT loop, a push delivered
demo: venv
	@for level in $(DEMO_LEVELS); do \
		case $$level in \
			0) $(PY) -m level0_manual.demo || exit 1 ;; \
			1) $(PY) -m level1_ct.demo || exit 1 ;; \
			2) $(PY) -m level2_cicd.demo || exit 1 ;; \
			*) echo "no demo for level $$level"; exit 1 ;; \
		esac; \
	done

# The integration and e2e tiers wait on servers and polls more than they compute: their modules
# run on two pytest-xdist workers, each module whole on one (its servers are module fixtures, on
# free ports), the longest first (tests/tiers.py: `scheduled`). TIER_WORKERS= runs them in one
# process. The containers tier runs in one: its stacks compute, and two at once took as long.
TIER_WORKERS ?= -n 2 --dist loadfile --no-loadscope-reorder

## Run every test tier in turn (tests/tiers.toml): unit, integration, e2e, containers; the first that fails stops the run
test: venv
	@rm -rf var/test-times
	@$(MAKE) --no-print-directory test-unit test-integration test-e2e test-containers; status=$$?; \
		$(PY) -m tests.tiers; exit $$status

## Run the unit tier: one module at a time, no servers; stops at the first failure
test-unit: venv
	$(PY) -m pytest --tier unit tests/unit --exitfirst --durations=10

## Run the integration tier: real MLflow, Prefect, git and service processes on loopback
test-integration: venv
	$(PY) -m pytest --tier integration $(TIER_WORKERS) tests/integration --durations=10

## Run the e2e tier: each level's demo and make compare, end to end without Docker
test-e2e: venv
	$(PY) -m pytest --tier e2e $(TIER_WORKERS) tests/e2e --durations=10

## Run the containers tier: the stacks and make compare STACK=docker (builds the images first)
test-containers: venv
	@if docker info >/dev/null 2>&1; then \
		start=$$SECONDS; $(MAKE) --no-print-directory images || exit 1; \
		echo "images: $$((SECONDS - start)) s"; \
	fi
	$(PY) -m pytest --tier containers tests/docker --durations=10

## Run one ML Test Score section of the tests, SECTION=data|model|infrastructure (level 2's CI steps)
test-ml: venv
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/$(SECTION)

## Replay one scenario through levels 0, 1 and 2: report, plots, table (COMPARE_*: compare/settings.py; STACK=docker: the levels' services in their stacks)
compare: venv $(if $(filter docker,$(STACK)),env)
ifeq ($(STACK),docker)
	@$(IMAGES_BUILT)
endif
	OMP_NUM_THREADS=1 $(if $(filter docker,$(STACK)),COMPARE_STACK=docker) $(PY) -m compare

## Print serving latency and throughput figures of the level-0 service (bench/)
bench: venv
	$(PY) -m bench.serving_latency

## Print level 1's figures: serving at 16 connections vs mlflow models serve; batch-to-champion lead time
bench-level1: venv
	$(PY) -m bench.level1

## Print what a shadow rollout costs production's p99 (level 2's service, no Docker)
bench-shadow: venv
	$(PY) -m bench.shadow

## Print level 2's lead time from git push to the new model in production (STACK=local|docker)
bench-level2: venv $(if $(filter docker,$(STACK)),env)
	$(PY) -m bench.level2 --stack $(STACK)

## Print a stack's time from up to healthy and its idle memory (LEVEL=0|1|2; needs make images)
bench-stack: venv env
	$(PY) -m bench.stack_footprint --level $(LEVEL)

## Print level 2's production throughput as 1, 2 and 3 replicas behind its load balancer (needs make images)
bench-replicas: venv env
	$(PY) -m bench.replicas

## Lint and format-check the code with ruff
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## Land simulated daily batches in LANDING (SCENARIO=stable|covariate-shift|concept-drift|data-quality|group-harm|compare)
data: $(L0_NEEDS)
	$(L0_PY) -m shared.simulator --landing $(LANDING) --scenario $(SCENARIO) --days $(DAYS) --seed $(SEED)

## Start the MLflow tracking server and UI on SQLite at http://127.0.0.1:$(MLFLOW_PORT) (Ctrl-C stops)
mlflow: venv
	$(PY) -m shared.servers mlflow --port $(MLFLOW_PORT)

## Start the Prefect server and UI on SQLite at http://127.0.0.1:$(PREFECT_PORT) (Ctrl-C stops)
prefect: venv
	$(PY) -m shared.servers prefect --port $(PREFECT_PORT)

## Remove local state (var/) and the LEVEL stack with its volumes: runs, models, data are gone
clean:
	rm -rf var
	if docker info >/dev/null 2>&1; then $(COMPOSE) --profile '*' down -v --remove-orphans; fi

## Back to the starting state between exercises: remove var/ and every stack's volumes, restart the stacks that ran
reset: env
	rm -rf var
	@if docker info >/dev/null 2>&1; then \
		for pair in 0:level0_manual 1:level1_ct 2:level2_cicd; do \
			level=$${pair%%:*}; compose="docker compose -f $${pair#*:}/compose.yaml"; \
			running=$$($$compose ps -q); \
			$$compose --profile '*' down -v --remove-orphans || exit 1; \
			if [ -n "$$running" ]; then $(MAKE) --no-print-directory up LEVEL=$$level || exit 1; fi; \
		done; \
	fi

# ---- CONTAINER STACKS (see infra/README.md) ---------------------------------------------------

## Create .env from .env.example with random passwords (once) and link it into the level folders
env:
	@infra/scripts/make-env.sh

## Build every image the stacks need, with or without Docker Hub (OFFLINE=auto|0|1)
images: venv
	infra/scripts/build-images.sh

## Install a Docker engine and Compose v2 where there is none (Debian, as root) and start it
engine:
	infra/scripts/docker-engine.sh install
	infra/scripts/docker-engine.sh start

## Start the LEVEL stack (LEVEL=0|1|2; level 2 with REPLICAS=N production replicas) and wait until healthy
up: env
	@$(IMAGES_BUILT)
	$(COMPOSE) up -d --wait $(if $(and $(REPLICAS),$(filter 2,$(LEVEL))),--scale production=$(REPLICAS))
	@infra/scripts/stack-urls.sh $(LEVEL)

## Stop the LEVEL stack; its volumes (MLflow runs, models, data) stay for the next `up`
down:
	$(COMPOSE) --profile '*' down --remove-orphans

## Follow the logs of the LEVEL stack
logs:
	$(COMPOSE) logs -f --tail=200

## List the running stacks and the services of the LEVEL stack
ps:
	docker compose ls
	$(COMPOSE) ps

# ---- KUBERNETES (see deploy/k8s/README.md) ------------------------------------------------
K8S_CLUSTER ?= kind
K8S_OVERLAY = deploy/k8s/level$(LEVEL)
K8S_HAS_LEVEL = test -d $(K8S_OVERLAY) || { echo "no overlay $(K8S_OVERLAY): LEVEL=0, 1 or 2"; exit 1; }

## Print the LEVEL's Kubernetes manifests (kustomize; the Secret from .env): pipe into kubectl apply -f -
k8s-render: env
	@$(K8S_HAS_LEVEL)
	@kubectl kustomize --load-restrictor LoadRestrictionsNone $(K8S_OVERLAY)

## Run the LEVEL on a local kind or k3d cluster (K8S_CLUSTER=kind|k3d): load the images, apply, wait
k8s-up: env
	@$(K8S_HAS_LEVEL)
	@$(IMAGES_BUILT)
	infra/scripts/k8s-up.sh $(LEVEL) $(K8S_CLUSTER)

## Remove the LEVEL's namespace from the current Kubernetes cluster, its volumes included
k8s-down:
	kubectl delete namespace mlops-level$(LEVEL) --ignore-not-found

# ---- LEVEL 0: the manual process (see level0_manual/README.md) ----------------------------

## Level 0, step 2: open the exploration notebook in JupyterLab
level0-notebook: $(L0_NEEDS)
ifeq ($(STACK),docker)
	$(L0_COMPOSE) --profile notebook up -d --wait notebook
	@echo "JupyterLab: http://127.0.0.1:$${L0_NOTEBOOK_PORT:-8888}/lab (token: JUPYTER_TOKEN in .env)"
else
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --no-browser level0_manual/explore.ipynb
endif

## Level 0, step 3: train, evaluate, log to MLflow by hand and export the model file
level0-train: $(L0_NEEDS)
	$(L0_PY) -m level0_manual.train

## Level 0, step 4 (the manual hand-off): copy the exported model into the service's folder
level0-handoff: $(L0_NEEDS)
	$(L0_PY) -m level0_manual.handoff
ifeq ($(STACK),docker)
	@echo "ops restarts the service so it loads the new file:"
	$(L0_COMPOSE) restart serving
	$(L0_COMPOSE) up -d --wait serving
endif

## Level 0, step 5: serve the handed-off model at http://127.0.0.1:8000 (Ctrl-C stops)
level0-serve: $(L0_NEEDS)
ifeq ($(STACK),docker)
	$(L0_COMPOSE) up -d --wait serving
else
	$(PY) -m level0_manual.service
endif

## Level 0, step 6: send sample requests from the newest batch to the running service
level0-predict: $(L0_NEEDS)
	$(L0_PY) -m level0_manual.predict --landing $(LANDING)

# ---- LEVEL 1: continuous training (see level1_ct/README.md) --------------------------------

## Level 1: serve the pipeline's deployments and the replay (needs make mlflow and make prefect)
level1-runner: venv
	$(PY) -m level1_ct.flows.deployments all

## Level 1: the service that follows models:/churn@champion at http://127.0.0.1:8001 (Ctrl-C stops)
level1-serve: venv
	$(PY) -m level1_ct.service

## Level 1: retrain now, through the training deployment (trigger reason "manual")
level1-train: $(L0_NEEDS)
	$(L1_RUN) train $(if $(WINDOW_DAYS),--window-days $(WINDOW_DAYS))

## Level 1: replay DAYS more days of SCENARIO: batches land, traffic flows, the loop reacts
level1-replay: $(L0_NEEDS)
	$(L1_RUN) replay --scenario $(SCENARIO) --days $(DAYS) --seconds-per-day $(SECONDS_PER_DAY)

# ---- LEVEL 2: CI/CD of the pipeline (see level2_cicd/README.md) ----------------------------

## Level 2: create the git remote var/level2/remote.git, seeded with this code (FORCE=1 replaces it)
level2-remote: venv
	$(PY) -m level2_cicd.remote create $(if $(FORCE),--force)

## Level 2: serve CI and CD (every push to the remote starts CI) and the pipeline's worker
level2-runner: venv
	$(PY) -m level2_cicd.flows.deployments

## Level 2: run CI on a commit of the remote by hand (SHA=..., default: the tip of main)
level2-ci: $(L0_NEEDS)
	$(L2_RUN) ci $(SHA)

## Level 2: deliver a commit again by hand: staging, rollout, promotion (SHA=..., APPROVAL=manual, ROLLOUT=shadow)
level2-cd: $(L0_NEEDS)
	$(L2_RUN) cd $(SHA) $(if $(APPROVAL),--approval $(APPROVAL)) $(if $(ROLLOUT),--rollout $(ROLLOUT))

## Level 2: serve production (the champion, and a canary during a rollout) on :8001
level2-serve: venv
	$(PY) -m level2_cicd.service

## Level 2: send live requests to production (RATE=20 per second, DURATION=600 s)
level2-traffic: $(L0_NEEDS)
	$(L2_RUN) traffic --rate $(RATE) --seconds $(DURATION)

## Level 2: the canary drill: production's canary arm fails (ERRORS=0.5) or slows (DELAY_MS=300)
level2-fault: $(L0_NEEDS)
	$(L2_DRILL) fault --error-rate $(or $(ERRORS),0) --delay-ms $(or $(DELAY_MS),0)

## Level 2: the worker drill: WORKERS=3 Prefect workers, one pool (limit 3), RUNS=60 runs of RUN_SECONDS=2; kill a worker
level2-worker-drill: env
	@$(IMAGES_BUILT)
	$(L2_WORKERS) up -d --no-deps --scale pool-worker=$(or $(WORKERS),3) pool-worker
	$(L2_WORKERS) run --rm --no-deps -T pool-worker python -m level2_cicd.flows.pool_drill --runs $(or $(RUNS),60) --seconds $(or $(RUN_SECONDS),2)

.PHONY: help venv env lock demo compare reset k8s-render k8s-up k8s-down test test-unit test-integration test-e2e test-containers test-ml bench bench-level1 bench-shadow bench-level2 bench-stack bench-replicas lint data mlflow prefect clean images engine up \
	down logs ps level0-notebook level0-train level0-handoff level0-serve level0-predict \
	level1-runner level1-serve level1-train level1-replay level2-remote level2-runner level2-ci level2-cd \
	level2-serve level2-traffic level2-fault level2-worker-drill
