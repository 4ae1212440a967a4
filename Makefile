# rollup developer commands; `make help` lists them.
PYTHON ?= python3
PIP_FLAGS ?= --disable-pip-version-check --root-user-action=ignore -q

.PHONY: help install demo test test-fast lint typecheck bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## install rollup with every extra (Spark, Iceberg runtime, Prefect, charts, dev tools)
	$(PYTHON) -m pip install $(PIP_FLAGS) -e '.[dev]'

demo: install  ## set up and run `rollup demo` on the embedded default (local Spark, ./warehouse)
	$(PYTHON) -m rollup.cli demo

test: install  ## run the whole test suite (unit, Spark, slow and integration tests); 15 slowest
	$(PYTHON) -m pytest -n 2 --dist loadfile --durations=15

test-fast:  ## unit tests only (no Spark, no services)
	$(PYTHON) -m pytest -m "not spark and not slow and not integration"

lint:  ## ruff
	$(PYTHON) -m ruff check src tests flows jobs benchmarks

typecheck:  ## mypy (strict) on src/rollup
	$(PYTHON) -m mypy

bench:  ## the benchmark suite (default size; see docs/benchmarks.md)
	$(PYTHON) -m rollup.cli bench
