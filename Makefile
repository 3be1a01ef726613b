# Two commands: `make test` and `make demo`. Each does its own set-up on a fresh
# Debian machine (run as root): system packages, then `.venv` holding exactly `uv.lock`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := prometheus prometheus-pushgateway postgresql chromium

# uv, pinned, in its own folder: `uv sync` makes .venv exactly the lock (so uv cannot
# live there), and a project-local copy needs no user-site install (which Debian's
# Python refuses) and never meets another project's uv.
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# Never download a Python build: use the machine's python3.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
LOCK_ARGS ?=

.PHONY: test demo bench lint system-packages setup venv lock lock-check clean

setup: system-packages venv

venv: $(STAMP)

# Debian packages the real-parts tests need: Prometheus (and its Pushgateway), PostgreSQL,
# Chromium.
system-packages:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-pushgateway >/dev/null || missing="$$missing prometheus-pushgateway"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(APT_PACKAGES); \
	fi

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
	  --target $(TOOLS) uv==$(UV_VERSION)

# The project (editable) and every dependency at the version `uv.lock` names, nothing else.
$(STAMP): pyproject.toml uv.lock | $(UV)
	@$(MAKE) --no-print-directory lock-check
	$(UV) sync --frozen --extra dev --quiet
	touch $(STAMP)

# CI fails here when pyproject.toml was changed without refreshing the lock.
lock-check: | $(UV)
	@$(UV) lock --check --quiet 2>/dev/null || { \
	  echo >&2 "uv.lock does not match pyproject.toml: run 'make lock' and commit uv.lock"; \
	  echo >&2 "(README, 'The lock': how to upgrade a dependency on purpose)"; \
	  $(UV) lock --check; exit 1; }

# Refresh the lock after editing pyproject.toml; upgrade on purpose with
# LOCK_ARGS='--upgrade-package anthropic' (one package) or LOCK_ARGS=--upgrade (all).
lock: | $(UV)
	$(UV) lock $(LOCK_ARGS)

test: setup lock-check
	$(BIN)/ruff check .
	$(BIN)/pytest

demo: setup
	$(BIN)/python -m sandbox.demo $(DEMO_ARGS)

bench: setup
	$(BIN)/python -m benchmarks.run

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache *.egg-info
