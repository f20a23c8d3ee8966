# Two commands do all the set-up on a fresh machine:
#   make run    creates .venv, installs NeuroScope, runs the default experiment (ARGS="..." for overrides)
#   make test   the same set-up plus test tools, then the test suite (PYTEST_ARGS="..." to narrow)
#   make check  the quick edit-test loop: the suite without the tests marked slow, stopping at the first failure
# TORCH_SPEC picks the torch build; it is installed first so nothing pulls a second one.
# On Linux, PyPI's torch==2.13.0 is the CUDA build; pass any pip arguments for another build.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,joblib,submitit
# The suite runs on pytest-xdist workers, one per core up to 4 (XDIST= runs it in one process);
# tests sharing a module-scoped fixture stay on one worker (tests/conftest.py, --dist loadgroup).
XDIST ?= -n auto --maxprocesses=4 --dist loadgroup
BIN := $(VENV)/bin

.PHONY: setup run test check bench clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/neuroscope $(ARGS)

test: setup
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

check: setup
	$(BIN)/python -m pytest $(XDIST) -m "not slow" -x -q -p no:cacheprovider $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/bench_sharpness.py --quick
	$(BIN)/python benchmarks/bench_render.py --frames 60

clean:
	rm -rf $(VENV) build *.egg-info
