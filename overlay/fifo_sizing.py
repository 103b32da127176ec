"""FIFO sizing by characterisation, without Vivado (NumPy only: used by the FINN flow and
by the Verilator bench).

FINN's ``step_set_fifo_depths`` simulates the stitched design in Vivado xsim and sets every
FIFO to its observed maximum occupancy. Ours does the same with the Verilator simulation of
``tests/hw/test_g_a_rtl.py``: build once with deep FIFOs on every edge (uniform depth,
``finn_flow --fifo-depth 256``), stream frames back to back with no back-pressure, read
every FIFO's own occupancy monitor (``maxcount`` output of finn-rtllib ``fifo.sv``: the
maximum fill since reset) and size each FIFO from it (:func:`size_fifos`). A FIFO that never
fills behaves like an unbounded one, so as long as no FIFO reached its depth during the
characterisation, the sized design keeps the characterised schedule; the slack covers the
small latency differences of the shallower implementation (fifo.sv picks SRL / LUTRAM /
BRAM by depth). The result is valid for the folding and image size it was measured at.
"""

from __future__ import annotations

import math


def size_fifos(maxcount: dict, slack: float = 0.25, minimum: int = 2, cap: int | None = None) -> dict:
    """{fifo: maxcount} -> {fifo: depth}, depth = maxcount + ceil(slack*maxcount) + 1, at least
    ``minimum``, at most ``cap`` (the characterisation depth: a FIFO that reached it was
    limited by it, and that depth is known to work -- the simulation ran with it)."""
    out = {}
    for k, v in maxcount.items():
        d = max(minimum, int(v) + math.ceil(slack * int(v)) + 1)
        out[k] = min(d, cap) if cap else d
    return out
