# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-db lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## Start Shipyard on SQLite (migrates, creates the first admin, serves on 127.0.0.1:8080)
run: $(STAMP)
	$(BIN)/shipyard serve

## Run the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

## Re-run the database-backed tests against SHIPYARD_TEST_DATABASE_URL
test-db: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m db

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) .shipyard
