# jobplane: `make dev` runs the platform, `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev example test bench chaos lint src-tree format install lock clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt --editable '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Debian's headless Chromium for the dashboard's browser test (Playwright drives it and
## never downloads a browser). Installed only when missing; needs root (apt-get).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

## Run the whole platform on SQLite + the in-process broker, with the API at :8000.
dev: install
	$(BIN)/jobplane dev

## The FastAPI example (examples/fastapi_app) on the embedded default, start to finish:
## both migrations, jobplane dev beside the app, one report enqueued and written, stop.
EXAMPLE := examples/fastapi_app
example: install
	cd $(EXAMPLE) && $(CURDIR)/$(BIN)/python run_example.py

## Run every test (starts local PostgreSQL/Redis if installed but stopped).
test: install $(CHROMIUM)
	$(BIN)/pytest

## Benchmarks on PostgreSQL + Redis; figures are printed, see bench/README.md.
bench: install
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/enqueue.py
	$(BIN)/python bench/priority.py

## The fault suite (kills, PostgreSQL and Redis restarts, Redis read-only, half a queue
## lost, on private servers), then the partition proof (network namespaces; needs root).
chaos: install
	$(BIN)/python bench/chaos.py
	$(BIN)/python bench/partition.py

## mypy and import-linter read packages from directories, and the installed package,
## jobplane, is four of the repository's folders (pyproject.toml's package-dir): lint
## checks a tree of links laid out as it is installed. Rebuilt on every run.
SRC_TREE := .build/src
src-tree:
	rm -rf $(SRC_TREE) && mkdir -p $(SRC_TREE)
	cp -rs $(CURDIR)/app $(SRC_TREE)/jobplane
	cp -rs $(CURDIR)/workers $(SRC_TREE)/jobplane/workers
	cp -rs $(CURDIR)/outbox $(SRC_TREE)/jobplane/outbox
	cp -rs $(CURDIR)/migrations $(SRC_TREE)/jobplane/migrations
	find $(SRC_TREE) -name __pycache__ -prune -exec rm -rf {} +

## The dashboard's ES modules (app/static/js) are JavaScript with JSDoc types, served as
## they are: no build; TypeScript only checks them. It is pinned by app/static's
## package-lock.json and installed into .build/npm, not next to the dashboard: a
## node_modules in the package folder would be served by `jobplane dev` and linked into
## the lint tree. Needs node and npm; `make test` does not. To move TypeScript on:
## `cd app/static && npm install --package-lock-only --save-exact typescript@<version>`.
DASHBOARD := app/static
NPM_DIR   := .build/npm
NPM_STAMP := $(NPM_DIR)/.installed
$(NPM_STAMP): $(DASHBOARD)/package.json $(DASHBOARD)/package-lock.json
	mkdir -p $(NPM_DIR)
	cp $^ $(NPM_DIR)/
	cd $(NPM_DIR) && npm ci --no-audit --no-fund
	touch $@

## The layers (pyproject.toml's [tool.importlinter]) are checked on the same tree: grimp
## finds the modules under a directory of PYTHONPATH, as mypy does. The example is
## type-checked from its own directory, where its `app` is the example's, not jobplane's.
lint: install src-tree $(NPM_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy tests/typecheck  # the types application code sees (Job's ParamSpec)
	PYTHONPATH=$(SRC_TREE) $(BIN)/lint-imports --no-cache
	$(NPM_DIR)/node_modules/.bin/tsc --noEmit -p $(DASHBOARD)/tsconfig.json
	cd $(EXAMPLE) && MYPYPATH=$(CURDIR)/$(SRC_TREE) $(CURDIR)/$(BIN)/mypy app migrations/env.py run_example.py

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Refresh the pinned versions after changing dependencies in pyproject.toml.
lock:
	rm -rf /tmp/jobplane-lock && $(PYTHON) -m venv /tmp/jobplane-lock
	/tmp/jobplane-lock/bin/pip install --quiet '.[dev]'
	/tmp/jobplane-lock/bin/pip freeze --exclude-editable | grep -v '^jobplane' > constraints.txt

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .mypy_cache .build
