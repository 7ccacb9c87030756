# Two commands on a fresh machine: `make demo` and `make test`. Both build their own virtual environment.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Which PyTorch build `make venv` installs (torch's version is pinned in constraints.txt):
#   local  a wheel that pip finds without an index (pip's find-links, e.g. PIP_FIND_LINKS=/opt/wheels)
#   cpu    PyTorch's CPU wheel index (TORCH_CPU_INDEX): about 200 MB instead of the CUDA build's gigabytes
#   cuda   the default package index, whose Linux torch is the CUDA build
#   auto   local when pip finds a local wheel, else cuda when `nvidia-smi` runs, else cpu
TORCH_INDEX ?= auto
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_VERSION := $(shell sed -n 's/^torch==//p' constraints.txt)
# A shell command that prints the chosen source (local, cpu or cuda); it needs the virtual environment's pip.
TORCH_SOURCE_SH = case "$(TORCH_INDEX)" in \
	auto) if "$(PY)" -m pip install --dry-run --ignore-installed --no-index --no-deps -q "torch==$(TORCH_VERSION)" \
		>/dev/null 2>&1; then echo local; elif command -v nvidia-smi >/dev/null 2>&1; then echo cuda; \
		else echo cpu; fi ;; \
	local|cpu|cuda) echo "$(TORCH_INDEX)" ;; \
	*) echo "TORCH_INDEX must be auto, local, cpu or cuda, got '$(TORCH_INDEX)'" >&2; exit 2 ;; \
	esac

.PHONY: venv torch-source demo test test-all lint typecheck bench gpu-check clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(PY)
	@source=$$($(TORCH_SOURCE_SH)) && echo "torch $(TORCH_VERSION): $$source build (TORCH_INDEX=$(TORCH_INDEX))" && \
	case $$source in \
	local) "$(PY)" -m pip install -q --no-index --no-deps "torch==$(TORCH_VERSION)" && \
		"$(PY)" -m pip install -q "torch==$(TORCH_VERSION)" ;; \
	cpu) "$(PY)" -m pip install -q --index-url "$(TORCH_CPU_INDEX)" "torch==$(TORCH_VERSION)" ;; \
	cuda) "$(PY)" -m pip install -q "torch==$(TORCH_VERSION)" ;; \
	esac
	"$(PY)" -m pip install -q -e '.[test,export]'
	touch $@

venv: $(VENV)/.installed

# Print which torch build `make venv` would install here (local, cpu or cuda).
torch-source: | $(PY)
	@source=$$($(TORCH_SOURCE_SH)) && echo "$$source"

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

# Every CUDA check and timing in <= 8 minutes on one GPU (docs/results/gpu.md). No venv prerequisite: a lent GPU
# machine has no network; the script takes .venv/bin/python when present, else python3 (its --wheels adds the rest).
# CPU dry run: make gpu-check GPU_CHECK_ARGS="--device cpu --tiny"
GPU_CHECK_ARGS ?=
gpu-check:
	bash scripts/gpu_check.sh $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) demo_output gpu_out .pytest_cache .mypy_cache .ruff_cache build *.egg-info
