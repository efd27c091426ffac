# The two set-up commands of the README: `make test` and `make demo`.
# Each creates .venv if it is missing and installs skadapt with the pinned versions of constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

.PHONY: install test demo
install: $(BIN)/.installed

test: $(BIN)/.installed
	$(BIN)/ruff check skadapt tests benchmarks
	$(BIN)/pytest -q

demo: $(BIN)/.installed
	$(BIN)/python -m skadapt demo
