# TSCNC: `make test` installs into .venv and runs the whole suite; `make demo` starts the stack.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# System packages the test suite drives: Debian's Chromium (browser tests) and the
# docker-compose client (validates docker-compose.yml; there is no Docker engine here).
SYSTEM_PACKAGES := chromium docker-compose

.PHONY: install system-packages test demo lint typecheck clean

install: $(STAMP) system-packages

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

system-packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 \
	  || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing -- install them (e.g. sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

test: install
	$(PY) -m pytest -q -m "not gpu" tests

lint: install
	$(VENV)/bin/ruff check tscnc backend worker tests bench
	$(VENV)/bin/mypy tscnc

demo: install
	$(VENV)/bin/tscnc up --demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
