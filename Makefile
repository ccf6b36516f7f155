# The two README commands: `make run` and `make test`. Both create ./.venv
# with the interpreter named by PYTHON (3.11 or newer) when it is missing and
# reinstall the project into it whenever pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tailrace needs Python 3.11 or newer; set PYTHON=...")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/tailrace broker --listen 127.0.0.1:7420 --kafka-listen 127.0.0.1:9092 --data-dir ./data

test: $(STAMP)
	$(BIN)/ruff check broker client testing tests tools
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check broker client testing tests tools
	$(BIN)/ruff format --check broker client testing tests tools

format: $(STAMP)
	$(BIN)/ruff format broker client testing tests tools
	$(BIN)/ruff check --fix broker client testing tests tools

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
