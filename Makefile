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
.PHONY: npm asyncapi docs-ui

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar on -q --upgrade pip
	$(PY) -m pip install --progress-bar on -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

infra: $(STAMP)  ## download the Kafka jars and mongod into the cache (once)
	$(PY) -m deploy.local install

run: infra  ## the main job (tools/run.py): the stack, the simulated programme, the funnel; Ctrl-C stops it
	$(PY) -m tools.run

chromium:  ## Debian's chromium, for the dashboard test (headless)
	@command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The official AsyncAPI tooling from npm, as package-lock.json pins it (node 20 and npm):
# the parser tests/docs runs on every AsyncAPI document, and the renderer that docs-ui
# vendors into shared/docs_ui. No install scripts run.
NODE_MODULES := node_modules/.package-lock.json
$(NODE_MODULES): package.json package-lock.json
	@command -v npm >/dev/null || { echo "need node 20 and npm"; exit 1; }
	npm ci --ignore-scripts --no-audit --no-fund
	@touch $(NODE_MODULES)

npm: $(NODE_MODULES)  ## node_modules from package-lock.json (the AsyncAPI parser and renderer)

asyncapi: $(STAMP)  ## write docs/asyncapi.yaml again from the catalogue (after a contract change)
	$(PY) -m tools.asyncapi

UI := node_modules/@asyncapi/react-component
docs-ui: npm  ## copy the AsyncAPI renderer the services serve from node_modules (after a bump)
	cp $(UI)/browser/standalone/index.js shared/docs_ui/asyncapi-standalone.js
	cp $(UI)/browser/standalone/index.js.LICENSE.txt shared/docs_ui/asyncapi-standalone.js.LICENSE.txt
	cp $(UI)/styles/default.min.css shared/docs_ui/asyncapi-default.min.css
	cp $(UI)/LICENSE shared/docs_ui/LICENSE

# What the suite needs, installed side by side (downloads beside the Go builds), then the suite
# in two workers (whole files each), each with a Kafka and a mongod of its own: most tests
# wait on events flowing, so two share the two cores well (about 400 s against 600-700).
# On servers named by the environment (KAFKA_BOOTSTRAP_SERVERS...), one worker: two would
# each set the principals' passwords there, the second undoing the first's.
WORKERS := $(if $(KAFKA_BOOTSTRAP_SERVERS),,-n 2 --dist loadfile)
test:  ## the whole suite on a real Kafka broker and a real mongod
	$(MAKE) --no-print-directory -j4 infra chromium npm deploy-tools
	$(PY) -m pytest $(WORKERS)

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

schemas: $(STAMP)  ## rewrite the contract snapshots (after a compatible change), the personal-data map, docs/asyncapi.yaml
	$(PY) -m shared.contracts
	$(PY) -m shared.personal_data
	$(PY) -m tools.asyncapi

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache

# ------------------------------------------------------------------ containers (issue 8)
# The stack in containers: deploy/compose.yaml, configured by deploy/.env (created once from
# deploy/.env.example with fresh secrets). Needs a Docker engine with Compose v2.
COMPOSE := docker compose -f deploy/compose.yaml --env-file deploy/.env
OVERLAY ?= dev

.PHONY: compose-up compose-down deploy-check deploy-tools k8s-render

deploy/.env: deploy/.env.example  ## created once; what a newer example adds is appended
	$(PYTHON) -m deploy.envfile deploy/.env.example $@

compose-up: deploy/.env  ## build the image, start Kafka, MongoDB and the services, wait for healthy
	$(COMPOSE) up -d --build --wait

compose-down: deploy/.env  ## stop and remove the containers; the data volumes stay
	$(COMPOSE) down

deploy-tools: $(STAMP)  ## build kustomize and composecheck from the Go module proxy into the cache (once)
	$(PY) -m tests.deploy.tools build

deploy-check: $(STAMP)  ## offline checks of the Dockerfile, compose file and k8s manifests
	$(PY) -m pytest tests/deploy -q -p no:cacheprovider

k8s-render: $(STAMP)  ## print the rendered manifests of deploy/k8s/overlays/$(OVERLAY)
	$(PY) -m tests.deploy.tools kustomize deploy/k8s/overlays/$(OVERLAY)
