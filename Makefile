# licfpga: every target creates/reuses the virtual environment itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BOARD  ?= kv260
TRAIN_ARGS ?=

.PHONY: demo test train eval bench clean help overlay overlay-plan overlay-finn overlay-vivado

help:
	@echo "make demo | test | train TRAIN_ARGS='...' | eval | bench | clean"
	@echo "make overlay BOARD=kv260|zcu102 [RESOLUTION=1920x1080 FPS=30]"

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

# ---- hardware flow: plan -> FINN -> Vivado (overlay/README.md, vivado/README.md) ----------
RESOLUTION ?= 1920x1080
FPS        ?= 30
BUILD_DIR  ?= overlay/build

overlay: overlay-plan overlay-finn overlay-vivado

# Folding plan for the board (model estimates) -> $(BUILD_DIR)/$(BOARD)/plan.{md,json}
overlay-plan: $(STAMP)
	$(PY) -m licfpga.overlay.plan --board $(BOARD) --resolution $(RESOLUTION) --fps $(FPS) \
	  --side both --md $(BUILD_DIR)/$(BOARD)/plan.md --json $(BUILD_DIR)/$(BOARD)/plan.json

# >>> FINN step goes here (QONNX export + FINN+ build writing $(BUILD_DIR)/$(BOARD)/stitched_ip).
# Not built yet: this target only says so; it makes nothing.
overlay-finn: overlay-plan
	@echo "FINN step: not implemented yet, see overlay/README.md ($(BUILD_DIR)/$(BOARD)/stitched_ip is not produced)"

# Vivado project inputs; runs Vivado only where it is installed (exit 3 otherwise: no bitstream)
overlay-vivado: $(STAMP)
	$(PY) -m licfpga.overlay.vivado --board $(BOARD) --build-dir $(BUILD_DIR)
