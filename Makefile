# nesydet: `make run` serves the API and a worker on http://localhost:8000 (embedded default:
# SQLite, a filesystem Celery transport, storage under ./var); `make test` runs lint, types and
# the whole suite. Both set up everything they need first. `make help` lists the targets.

PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) 2>/dev/null | cksum | cut -d' ' -f1)

# uv only writes the lock; pip installs from it. A pinned uv in its own venv, so that the same
# inputs give the same lock on every machine.
UV_VERSION := 0.13.8
UV := $(VENV)/uv-$(UV_VERSION)/bin/uv

# Debian/Ubuntu packages: what the worker needs to run, and what the tests need besides.
RUN_PACKAGES := swi-prolog-nox libgl1 libglib2.0-0
TEST_PACKAGES := $(RUN_PACKAGES) postgresql redis-server prometheus nginx

export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := 0
export YOLO_CONFIG_DIR := $(CURDIR)/var/yolo_cfg
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# The lock's inputs as one digest, which `make lock` writes into the lock's header: check-lock
# compares it offline and at once, where re-resolving would need the network and change by day.
define LOCK_DIGEST
import hashlib, json, tomllib
pyproject = tomllib.load(open("pyproject.toml", "rb"))
torch_pins = [line.split("#")[0].strip() for line in open("requirements/torch.txt")]
inputs = [
    pyproject["build-system"]["requires"],
    pyproject["project"]["requires-python"],
    pyproject["project"]["dependencies"],
    pyproject["project"]["optional-dependencies"],
    [pin for pin in torch_pins if pin],
]
digest = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()
print(f"# inputs: sha256={digest} (pyproject.toml: dependencies, build-system; torch.txt)")
endef
export LOCK_DIGEST

# The build requirements are locked too: the project is then built from hashed packages, without
# build isolation and so without a download.
BUILD_REQUIRES := $(PY) -c 'import tomllib; \
	print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'

.PHONY: help install lock check-lock run test lint format types imports unit bench clean node-deps \
	system-run system-test

help:  ## list the targets
	@awk '/^[a-z][a-z0-9-]*:/ && !/^[^:]*:=/ { \
	  name = $$0; sub(/:.*/, "", name); desc = "(no description: add one after ## on its line)"; \
	  if (match($$0, /## /)) desc = substr($$0, RSTART + 3); printf "make %-12s %s\n", name, desc }' \
	  $(MAKEFILE_LIST)

# System packages: installed with apt-get when root, otherwise the exact command is printed.
define need_packages
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if ! $(PY) -m venv --help >/dev/null 2>&1; then missing="$$missing python3-venv"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else \
	    echo "missing system packages:$$missing"; \
	    echo "run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

system-run:  ## install (or print) the Debian packages that `make run` needs
	$(call need_packages,$(RUN_PACKAGES))

system-test:  ## install (or print) the Debian packages that `make test` needs
	$(call need_packages,$(TEST_PACKAGES))

# Exactly the lock, PyTorch included: --no-deps so nothing is resolved anew, wheels only so
# nothing is built; pip check then proves the lock complete for this machine.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps --only-binary :all: -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	@rm -f $(VENV)/.installed-*
	@touch $@

install: check-lock $(STAMP)  ## create .venv: requirements/lock.txt (hashes checked), the project

$(UV):
	$(PY) -m venv $(VENV)/uv-$(UV_VERSION)
	$(VENV)/uv-$(UV_VERSION)/bin/python -m pip install -q --only-binary :all: uv==$(UV_VERSION)

# Current pins are kept unless a changed input needs otherwise; UPGRADE=1 takes the newest.
# Universal: one lock for x86_64 and aarch64 (requirements/torch.txt pins each) and Python 3.11.
lock: $(UV)  ## regenerate requirements/lock.txt after a dependency change (UPGRADE=1: newest)
	$(BUILD_REQUIRES) | $(UV) pip compile --quiet --universal --python-version 3.11 \
	  --generate-hashes --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) \
	  --extra dev --extra s3 pyproject.toml requirements/torch.txt - -o $(LOCK)
	digest="$$($(PY) -c "$$LOCK_DIGEST")" && sed -i "2a $$digest" $(LOCK)

check-lock:  ## fail when the dependencies changed but requirements/lock.txt did not follow
	@digest="$$($(PY) -c "$$LOCK_DIGEST")" && grep -qxF "$$digest" $(LOCK) || \
	  { echo "$(LOCK) is older than the dependencies it locks: run make lock"; exit 1; }

run: system-run install  ## install, migrate and serve the API and a worker on :8000
	@mkdir -p var
	$(BIN)/nesydet run

lint: install  ## ruff check and ruff format --check
	$(BIN)/ruff check src tests bench scripts migrations
	$(BIN)/ruff format --check src tests bench scripts migrations

format: install  ## ruff format, then ruff check --fix
	$(BIN)/ruff format src tests bench scripts migrations
	$(BIN)/ruff check --fix src tests bench scripts migrations

types: install  ## mypy --strict
	$(BIN)/mypy

imports: install  ## check the layering contracts in .importlinter (import-linter)
	$(BIN)/lint-imports

unit: install  ## the unit tests only
	$(BIN)/python -m pytest tests/unit -q

# The clients' Node packages (newman; openapi-typescript, openapi-fetch, typescript), exactly
# their package-lock.json, from the npm cache where it has them; the tests fetch nothing.
NODE_CLIENTS := clients/postman clients/typescript

node-deps: $(NODE_CLIENTS:%=%/node_modules/.installed)  ## npm ci the clients' Node packages

clients/%/node_modules/.installed: clients/%/package.json clients/%/package-lock.json
	@command -v npm >/dev/null || { echo "missing: Node 18+ and npm"; \
	  echo "run: sudo apt-get install -y nodejs npm"; exit 1; }
	cd clients/$* && npm ci --prefer-offline --no-audit --no-fund --loglevel=error
	@touch $@

# Test files are spread over TEST_PROCESSES processes, each file whole on one of them (its
# servers and fixtures stay private to it): on 2 cores, 14.5 min instead of 27.
TEST_PROCESSES ?= 2

test: check-lock system-test install node-deps lint types imports  ## the lock, lint, types, layering, all tests
	$(BIN)/python -m pytest -q -ra -n $(TEST_PROCESSES) --dist loadfile

bench: system-test install  ## run the benchmarks in bench/
	$(BIN)/python -m bench.upload
	$(BIN)/python -m bench.pipeline_speed
	$(BIN)/python -m bench.pollers
	$(BIN)/python -m bench.auth_timing
	$(BIN)/python -m bench.quality
	$(BIN)/python -m bench.e2e
	$(BIN)/python -m bench.capacity
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.dashboard
	$(BIN)/python -m bench.batch
	$(BIN)/python -m bench.download
	$(BIN)/python -m bench.sahi_compare
	$(BIN)/python -m bench.int8
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.gpu

clean:  ## remove runtime state and caches (var/, tool caches; not .venv)
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
