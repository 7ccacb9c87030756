# Two commands on a fresh machine: `make demo` and `make test`. Both build their own virtual environment.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test test-all lint typecheck bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/medseg demo --output demo_output

test: $(VENV)/.installed
	$(PY) -m pytest -q medseg data_tools tests

test-all: $(VENV)/.installed
	$(PY) -m pytest -q -m "" medseg data_tools tests

lint: $(VENV)/.installed
	$(VENV)/bin/ruff format --check medseg data_tools tests
	$(VENV)/bin/ruff check medseg data_tools tests

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	$(VENV)/bin/medseg bench loss
	$(VENV)/bin/medseg bench infer

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache
