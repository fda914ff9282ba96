# Two commands set everything up on a fresh machine with Python 3.11:
#   make run    create .venv from the lock file, register the dev stack, then train,
#               deploy and score a batch (run.py all)
#   make test   create .venv from the lock file, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit lint dashboard lock clean

# Python may cache the project's own bytecode, and pytest its rewritten test modules, in
# the git-ignored __pycache__/: with PYTHONDONTWRITEBYTECODE set (as some images and
# shells do), every pytest worker rewrote all 46 unit test modules again (2 s of its
# 5 s collection) and every command compiled the project's modules again.
unexport PYTHONDONTWRITEBYTECODE

# Bytecode is compiled at install time: with PYTHONDONTWRITEBYTECODE set, every
# run would otherwise recompile ZenML, MLflow and friends (about 5 s a run).
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==0.13.9"
	$(BIN)/uv pip sync --quiet --require-hashes --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --no-deps --editable . --python $(BIN)/python
	touch $(STAMP)

# A blank ZenML store and a blank MLflow tracking store, which each new store starts
# as a copy of (tabular_mlops/adapters/blank_stores.py: 4 s off a first run); made
# again after each install, so named by the installed versions.
BLANK := $(VENV)/share/tabular-mlops/.made
$(BLANK): $(STAMP) tabular_mlops/adapters/blank_stores.py
	$(BIN)/python -m tabular_mlops.adapters.blank_stores
	touch $(BLANK)

run: $(BLANK)
	$(BIN)/python run.py all --env dev

# One worker more than there are cores (the tests spend much of their time waiting on the
# servers and commands they start: beside a CPU hog on 2 cores, 3 workers took 19.0 min,
# 2 took 22.8); each test module runs whole on one worker (its tests share a trained
# model or a live service), with its own ZenML store, state and free ports.
# The modules start longest first (tests/conftest.py), not xdist's most-tests-first.
# `make test PYTEST_ARGS=--module-times` prints each module's wall time, to keep that list.
WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: $(BLANK)
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The edit loop: logic, config, CLI errors and the layering check; no pipelines (seconds).
# Whole modules to each worker too: what a module imports (ONNX, ZenML, MLflow) is then
# imported by one worker, not both (20.1-20.6 s against 21.1-23.0 s, 2026-12-06).
test-unit: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder tests/unit

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

dashboard: $(BLANK)
	$(BIN)/python run.py dashboard

lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) .zen .pytest_cache .mypy_cache .ruff_cache
