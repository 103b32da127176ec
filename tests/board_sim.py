"""Board-venv side of tests/test_board_install.py::test_simulated_overlay_driver_in_board_venv.

Run with the board venv's python (``.venv-board/bin/python tests/board_sim.py JOB.json``),
never by pytest (no ``test_`` prefix): it builds the stitched g_a inside pynq_sim_top with
that venv's cocotb + Verilator and runs tests/hw/test_pynq_driver.py's cocotb side (the
driver and ``--backend fpga`` under cocotbpynq) in it. The simulator embeds this
interpreter (cocotb's runner passes ``sys.executable`` and ``sys.path``), so the licfpga,
numpy and cocotbpynq the driver uses are the board venv's, where torch cannot be imported.
The RTL sources, the case file and the overlay description come from the main venv (FINN,
QONNX export), listed in JOB.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HW = Path(__file__).resolve().parent / "hw"


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    import licfpga

    where = Path(licfpga.__path__[0]).resolve()
    prefix = Path(sys.prefix).resolve()
    assert prefix in where.parents, f"licfpga imported from {where}, not from this venv ({prefix})"
    main_venv = [p for p in sys.path if p and Path(p).resolve().is_relative_to(job["main_prefix"])]
    assert not main_venv, f"the main venv is on sys.path: {main_venv}"
    for m in ("torch", "compressai", "brevitas"):
        try:
            __import__(m)
        except ImportError:
            continue
        raise AssertionError(f"{m} is importable in {prefix}")

    sys.path.insert(0, str(HW))
    from cocotb_util import run_cocotb, verilator_env
    from stitched import verilator_build

    os.environ.update(verilator_env())
    runner = verilator_build([Path(s) for s in job["sources"]], job["top"], Path(job["build_dir"]), job["public"],
                             parameters=job["parameters"], defines=job["defines"])
    run_cocotb(runner, Path(job["build_dir"]), Path(job["test_dir"]), "test_pynq_driver", job["top"], None, 3,
               job["env"], Path(job["log"]))
    assert "torch" not in sys.modules
    print(json.dumps({"licfpga": str(where), "python": sys.executable}))


if __name__ == "__main__":
    main(sys.argv[1])
