#!/bin/bash
# The fault-injection runs of results/faults/README.md, one process at a time (nice 5, 1 thread).
# Sweeps: SUBSET = kodim03 kodim09 kodim15 kodim21 (every 6th Kodak image from kodim03), 256x256
# centre crops; headline: all 24 Kodak images, full size.
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
F="nice -n 5 .venv/bin/python -W ignore -m licfpga.host.faults"
O=results/faults
$F run layer-params --seeds 3 --out $O/layer-params.json
$F run layer-params --view hw --seeds 3 --out $O/layer-params-hw.json
$F run single-layer --flips 24 --out $O/single-layer.json
$F run single-kind --flips 16 --out $O/single-kind.json
$F run layer-acts --seeds 2 --out $O/layer-acts.json
$F run kind-params --rates 1e-6 1e-5 1e-4 1e-3 --seeds 2 --out $O/kind-params.json
$F run network --layers g_a h_a g_s --targets weights acts --rates 1e-6 1e-5 1e-4 1e-3 --seeds 2 --clamp both \
   --out $O/network.json
$F run network --images all --crop 0 --layers g_a h_a g_s --targets weights acts hs-params --rates 1e-5 --seeds 1 \
   --clamp both --out $O/headline.json
$F report $O/layer-params.json $O/layer-params-hw.json $O/single-layer.json $O/single-kind.json $O/layer-acts.json \
   $O/kind-params.json $O/network.json $O/headline.json --out $O
# RTL experiment (tests/hw/test_fault_rtl.py) and the clamp's Yosys cost (needs `make yosys`)
nice -n 5 .venv/bin/python -m pytest -q -s tests/hw/test_fault_rtl.py
nice -n 5 .venv/bin/python $O/clamp_cost.py
