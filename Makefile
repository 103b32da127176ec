# licfpga: every target creates/reuses the virtual environment itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BOARD  ?= kv260
TRAIN_ARGS ?=

.PHONY: demo test train eval bench clean help

help:
	@echo "make demo | test | train TRAIN_ARGS='...' | eval | bench | clean"

# torch/torchvision come from the machine's local wheels (see README, "Installing");
# pyproject.toml pins the matched pair so pip never resolves a different build.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,hw]'
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/licfpga demo

test: $(STAMP)
	$(PY) -m pytest

train: $(STAMP)
	$(VENV)/bin/licfpga train $(TRAIN_ARGS)

eval: $(STAMP)
	$(VENV)/bin/licfpga eval --data ../shared/data/kodak --out results/kodak

bench: $(STAMP)
	$(VENV)/bin/licfpga bench

clean:
	rm -rf demo_out results/eval .pytest_cache tests/hw/sim_build
