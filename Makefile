# Two commands: `make test` and `make demo`. Each does its own set-up on a fresh
# Debian machine (run as root): system packages, a virtualenv, the project install.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := prometheus prometheus-pushgateway postgresql chromium

.PHONY: test demo bench lint system-packages setup clean

setup: system-packages $(STAMP)

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

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
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
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
