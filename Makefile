# Every target installs what it needs the first time: the .venv and its packages here, the
# Kafka jars and mongod in ~/.cache/jakpreneur (see deploy/local/launcher.py).
PYTHON ?= python3.11
# The local stack, the tests, the demo and the benchmark run on the development keys and
# tokens in git; the services refuse them anywhere else (JAKPRENEUR_ENV unset = production).
export JAKPRENEUR_ENV ?= development
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test up down lint bench chaos fuzz install infra chromium schemas clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar on -q --upgrade pip
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

infra: $(STAMP)  ## download the Kafka jars and mongod into the cache (once)
	$(PY) -m deploy.local install

run: infra  ## the main job: the stack, a batch of registrations, a tally; Ctrl-C stops it
	$(PY) -m deploy.local run

chromium:  ## Debian's chromium, for the dashboard test (headless)
	@command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: infra chromium  ## the whole suite on a real Kafka broker and a real mongod
	$(PY) -m pytest

bench: infra  ## the pipeline under load beside a bare aiokafka baseline (ARGS=--participants N)
	$(PY) -m tools.bench $(ARGS)

chaos: infra  ## SIGKILL each service, mongod and Kafka under load; prove every guarantee held
	$(PY) -m tools.chaos $(ARGS)

fuzz: infra  ## 10,000 hostile records on every consumed topic (ARGS=--fuzz-seed=N to vary)
	$(PY) -m pytest tests/e2e/test_fuzz.py -k hostile -s -q --fuzz-records=10000 $(ARGS)

up: infra  ## the stack in the background; writes .run/stack.env
	$(PY) -m deploy.local up

down: $(STAMP)
	$(PY) -m deploy.local down

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

schemas: $(STAMP)  ## rewrite the contract snapshots (after a compatible change) and the personal-data map
	$(PY) -m shared.contracts
	$(PY) -m shared.personal_data

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache

# ------------------------------------------------------------------ containers (issue 8)
# The stack in containers: deploy/compose.yaml, configured by deploy/.env (created once from
# deploy/.env.example with fresh secrets). Needs a Docker engine with Compose v2.
COMPOSE := docker compose -f deploy/compose.yaml --env-file deploy/.env
OVERLAY ?= dev

.PHONY: compose-up compose-down deploy-check k8s-render

deploy/.env: deploy/.env.example  ## created once; what a newer example adds is appended
	$(PYTHON) -m deploy.envfile deploy/.env.example $@

compose-up: deploy/.env  ## build the image, start Kafka, MongoDB and the services, wait for healthy
	$(COMPOSE) up -d --build --wait

compose-down: deploy/.env  ## stop and remove the containers; the data volumes stay
	$(COMPOSE) down

deploy-check: $(STAMP)  ## offline checks of the Dockerfile, compose file and k8s manifests
	$(PY) -m pytest tests/deploy -q -p no:cacheprovider

k8s-render: $(STAMP)  ## print the rendered manifests of deploy/k8s/overlays/$(OVERLAY)
	$(PY) -m tests.deploy.tools kustomize deploy/k8s/overlays/$(OVERLAY)
