# Every target creates the virtualenv and installs what it needs: a fresh
# machine with Python 3.11 and the package registries is enough.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv test lint bench demo clean

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

test: venv lint
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python -m distilld.bench

demo: venv
	$(BIN)/python -m distilld.demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
