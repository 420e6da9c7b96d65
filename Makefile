# One command each: `make test` sets up .venv and runs the suite; `make check` is what CI enforces.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo check lint format typecheck bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The whole flow offline on loopback; `make demo DEMO_ARGS=--keep` keeps the demo servers up.
demo: $(STAMP)
	$(BIN)/pullctl demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/validate_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .pullctl
