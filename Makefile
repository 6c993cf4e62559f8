# Two set-up commands: `make demo` and `make test`. Each creates .venv if missing and installs
# the project into it once (a second call skips the install while pyproject.toml is unchanged).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pnl-da-installed
# torch 2.14.1 / torchvision 0.29.1 are the releases this project is tested with (and the ones
# served from local disk on the development machines); override to use others.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint install clean-demo docs

# torch's CUDA build takes about 5.5 GiB in the venv; a full disk would otherwise surface as pip's
# 'OSError: [Errno 28]' half-way through the install.
DISK_NEEDED_GIB ?= 6

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' \
	  || { free=$$(df -Pk $(VENV) | awk 'NR==2 {print int($$4 / 1048576)}'); \
	       if [ "$$free" -lt $(DISK_NEEDED_GIB) ]; then \
	         echo "make: only $$free GiB free on the disk of $(VENV); installing torch needs about $(DISK_NEEDED_GIB) GiB: free some space, or set VENV=<folder on a larger disk>" >&2; \
	         exit 1; fi; }
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pnl-da run digits 'uci->mnist-sample' --out runs/demo --resume

clean-demo:
	rm -rf runs/demo

lint: $(STAMP)
	$(BIN)/ruff check .

# the documentation as a site (site/); strict: a broken link or a page left out of the nav fails
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# --durations: CI's 20-minute limit is close, so every run names its slowest tests
test: $(STAMP)
	$(BIN)/ruff check .
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	$(BIN)/python -m pytest -q --durations=15
