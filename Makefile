# TSCNC: `make test` installs into .venv and runs the whole suite; `make demo` starts the stack.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test demo lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

test: install
	$(PY) -m pytest -q -m "not gpu" tests

lint: install
	$(VENV)/bin/ruff check tscnc backend worker tests bench
	$(VENV)/bin/mypy tscnc

demo: install
	$(VENV)/bin/tscnc up --demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
