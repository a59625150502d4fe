# Every target creates the virtualenv and installs what it needs: a fresh
# machine with Python 3.11 and the package registries is enough.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv test lint bench demo docs clean system-tools

# promtool and the Prometheus server for the monitoring tests (Debian's package;
# CI runs as root). Skipped when already there.
system-tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "promtool missing and cannot apt-get install prometheus here: its tests will be skipped"; fi; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev,bench]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check distilld tests
	$(BIN)/ruff format --check distilld tests
	$(BIN)/mypy

test: venv lint system-tools
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python -m distilld.bench

demo: venv
	$(BIN)/python -m distilld.demo $(DEMO_ARGS)

# the API reference from the docstrings; warnings are errors (a test builds it too)
docs: venv
	$(BIN)/sphinx-build -W --keep-going -q -b html docs build/docs
	@echo "docs: build/docs/index.html"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build
