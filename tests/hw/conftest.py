"""Fixtures of the RTL testbenches (tests/hw/cocotb_util.py holds the helpers)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))   # cocotb_util, shared cocotb tests

from cocotb_util import verilator_env as _find_verilator  # noqa: E402


@pytest.fixture(scope="module")
def verilator_env():
    """Verilator on PATH for this module's tests; small benches are compiled unoptimised
    (they build faster and run briefly)."""
    env = _find_verilator()
    env["MAKEFLAGS"] = "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
