# Two commands on a fresh machine:
#   make quickstart   set up .venv and run the demo (synthetic data, train, evaluate, submission)
#   make test         set up .venv and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two threads that yield when the other core is busy degrade gracefully instead of spinning.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: quickstart test setup clean

quickstart: $(VENV)/.installed
	$(BIN)/nanorec quickstart

# two workers (pytest-xdist): the suite is mostly single-process work, one per core
test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n 2

setup: $(VENV)/.installed

# torch is pinned first: 2.13.0 is the CPU build that lies on this machine's disk;
# the package itself only asks for torch>=2.5, which 2.13.0 satisfies.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[all]"
	touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache
