# nesydet: `make run` serves the API and a worker on http://localhost:8000 (embedded default:
# SQLite, a filesystem Celery transport, storage under ./var); `make test` runs lint, types and
# the whole suite. Both set up everything they need first.

PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements/torch.txt 2>/dev/null | cksum | cut -d' ' -f1)

# Debian/Ubuntu packages: what the worker needs to run, and what the tests need besides.
RUN_PACKAGES := swi-prolog-nox libgl1 libglib2.0-0
TEST_PACKAGES := $(RUN_PACKAGES) postgresql redis-server prometheus

export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := 0
export YOLO_CONFIG_DIR := $(CURDIR)/var/yolo_cfg
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install run test lint format types unit bench clean system-run system-test

help:
	@echo "make run    - install, migrate and serve the API and a worker on :8000"
	@echo "make test   - install, then lint, type-check and run the whole test suite"
	@echo "make bench  - run the benchmarks in bench/"

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

system-run:
	$(call need_packages,$(RUN_PACKAGES))

system-test:
	$(call need_packages,$(TEST_PACKAGES))

$(STAMP): pyproject.toml requirements/torch.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	# torch first, from the pinned builds (see requirements/torch.txt for why).
	$(BIN)/python -m pip install -q -r requirements/torch.txt
	$(BIN)/python -m pip install -q -e '.[dev,s3]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

run: system-run install
	@mkdir -p var
	$(BIN)/nesydet run

lint: install
	$(BIN)/ruff check src tests bench scripts migrations
	$(BIN)/ruff format --check src tests bench scripts migrations

format: install
	$(BIN)/ruff format src tests bench scripts migrations
	$(BIN)/ruff check --fix src tests bench scripts migrations

types: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest tests/unit -q

test: system-test install lint types
	$(BIN)/python -m pytest -q -ra

bench: system-test install
	$(BIN)/python -m bench.upload
	$(BIN)/python -m bench.quality
	$(BIN)/python -m bench.e2e

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
