"""The fast CPU training step: bf16 autocast with fp32 islands, channels_last, torch.compile,
and batches prepared off the critical path.

Why islands: plain bf16 autocast (8 mantissa bits) cost 3-12 % validation RD loss per step
against fp32 in this project's first 5000 steps. The likelihoods feed ``log2`` (the rate
term) and GDN feeds a square root of a sum of squares; both lose most in bf16. So the entropy
models and every GDN/IGDN run in fp32 (autocast off, inputs cast up), the convolutions in
bf16. ``licfpga bench-train`` measures every combination side by side.
"""

from __future__ import annotations

import contextlib
import queue
import threading

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN

PRECISIONS = ("fp32", "bf16", "bf16-islands")
# modules kept in fp32 under "bf16-islands": the rate term and the normalisation
FP32_ISLANDS = (EntropyBottleneck, GaussianConditional, GDN)


def _fp32_forward(forward):
    def run(*args, **kwargs):
        up = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        with torch.autocast("cpu", enabled=False):
            return forward(*up, **kwargs)
    return run


def keep_fp32(net: torch.nn.Module) -> int:
    """Make every entropy model and GDN of ``net`` run in fp32 under autocast. Returns how many."""
    n = 0
    for m in net.modules():
        if isinstance(m, FP32_ISLANDS) and not getattr(m, "_licfpga_fp32", False):
            m.forward = _fp32_forward(m.forward)   # instance attribute: nn.Module.__call__ uses it
            m._licfpga_fp32 = True
            n += 1
    return n


def autocast(precision: str):
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def prepare(net: torch.nn.Module, precision: str = "fp32", channels_last: bool = False,
            compile: bool = False):
    """Set ``net`` up for the chosen training step; returns the callable to train with
    (``net`` itself, or its compiled wrapper; the weights are shared either way)."""
    if precision == "bf16-islands":
        keep_fp32(net)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    return torch.compile(net) if compile else net


def to_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


class Prefetcher:
    """Draws batches on a background thread (PIL and NumPy release the GIL for most of the
    work), ``depth`` batches ahead, so the training step never waits on crops."""

    def __init__(self, draw, depth: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._draw, self._stop = draw, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="licfpga-prefetch")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._draw()
            except Exception as exc:  # surface the error in the training loop, not silently
                item = exc
            while not self._stop.is_set():
                try:
                    self._q.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue

    def next(self) -> torch.Tensor:
        item = self._q.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
