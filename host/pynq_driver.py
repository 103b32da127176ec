"""PYNQ driver for the licfpga overlay (runs on the board; NumPy only here).

The overlay (vivado/build_overlay.tcl) is one FINN dataflow accelerator between the two
channels of an AXI DMA: memory -> MM2S -> (width converter) -> accelerator -> TLAST
counter (hls/axis_frame_tlast) -> (width converter) -> S2MM -> memory, 32-bit streams on the
DMA side. :class:`StreamAccelerator` moves one frame through it: the NHWC integers of a
frame packed little-endian into 32-bit words (the width converters split/merge words LSB
first), a receive transfer armed before the send, both waited for -- with a deadline: PYNQ's own
``wait()`` spins forever on a stuck transfer; :func:`wait_dma` polls the channel's ``idle``
bit and raises :class:`DmaTimeout` (an :class:`FpgaUnavailable`) after ``timeout`` seconds.

``pynq`` is imported when a :class:`StreamAccelerator` is made (on the board: ``pip install
pynq``); pass ``pynq=`` another module with the same API to run the same code elsewhere, e.g.
``cocotbpynq``, which simulates the overlay's RTL under cocotb
(tests/hw/test_pynq_driver.py runs this class against the stitched g_a RTL that way).

    from licfpga.host.pynq_driver import StreamAccelerator
    g_a = StreamAccelerator("licfpga.bit", (64, 64, 3), np.uint8, (4, 4, 48), np.int8)
    y = g_a.run(rgb_crop)             # == IntegerModel.run_transform("g_a", ...) in NHWC
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import numpy as np

# what the driver and FpgaIntegerCodec read from overlay.json (dotted = nested keys)
OVERLAY_KEYS = ("transform", "golden.digest", "io.input.shape", "io.input.datatype",
                "io.output.shape", "io.output.datatype")
MAX_FRAME_ELEMENTS = 1 << 28      # one DMA frame; a larger declared shape is a broken descriptor


class FpgaUnavailable(RuntimeError):
    """No PYNQ (not on a board) or the overlay could not be loaded."""


class DmaTimeout(FpgaUnavailable):
    """A DMA channel did not finish its transfer in time (the accelerator or the DMA is stuck)."""


# The default DMA deadline: DMA_TIMEOUT_FRAMES frame times (1 / the overlay's expected fps)
# plus the bytes at a pessimistic DMA_MIN_RATE, and never under DMA_TIMEOUT_MIN_S. A 64x64
# frame at FINN's estimate (~4000 fps) or a 1080p frame at 30 fps: 1 s.
DMA_TIMEOUT_MIN_S = 1.0
DMA_TIMEOUT_FRAMES = 10
DMA_MIN_RATE = 100e6          # bytes/s; the HP port moves several GB/s
DMA_POLL_S = 1e-4


def dma_timeout(nbytes: int, fps: float | None = None) -> float:
    """The default deadline (s) of one frame's transfer of ``nbytes`` (the larger direction)."""
    # fps from overlay.json may be absent or malformed: then the frame time is not counted
    ok = isinstance(fps, (int, float)) and not isinstance(fps, bool) and 0 < fps < float("inf")
    frame = 1.0 / fps if ok else 0.0
    return max(DMA_TIMEOUT_MIN_S, DMA_TIMEOUT_FRAMES * (frame + nbytes / DMA_MIN_RATE))


def wait_dma(channel, name: str, nbytes: int, timeout: float, poll: float = DMA_POLL_S, clock=time.monotonic):
    """Wait until ``channel`` (a PYNQ ``_SDMAChannel``) is idle, at most ``timeout`` seconds,
    then call its ``wait()`` (which returns at once, checks the error bits, invalidates the
    receive buffer's cache lines and sets ``transferred``). PYNQ's ``wait()`` alone spins
    forever on a stuck transfer; here a stuck one raises :class:`DmaTimeout` naming the
    channel, the bytes and the time waited. A channel without ``idle`` (a simulation's, e.g.
    cocotbpynq's, whose simulated time only advances inside ``wait()``) is waited for with
    ``wait()``: no deadline applies to simulated time."""
    if not hasattr(channel, "idle"):
        channel.wait()
        return
    t0 = clock()
    while not channel.idle:
        if getattr(channel, "error", False):
            break                          # wait() raises PYNQ's message for the error bits
        waited = clock() - t0
        if waited > timeout:
            done = getattr(channel, "transferred", 0) or 0
            raise DmaTimeout(
                f"DMA {name} stuck after {waited:.1f} s: {done} of {nbytes} bytes reported done "
                f"(the AXI DMA reports the length at completion), channel not idle; the "
                f"accelerator or the DMA stopped. Reload the overlay (it resets the DMA); "
                f"the deadline is StreamAccelerator(timeout=...)")
        time.sleep(poll)
    channel.wait()


class OverlayError(ValueError):
    """``overlay.json`` is unreadable, or lacks or mistypes a key the driver needs."""


def read_overlay_description(path) -> dict:
    """``overlay.json`` (written by ``python -m licfpga.overlay.vivado``), checked: every key
    of :data:`OVERLAY_KEYS` present, frame shapes NHWC lists of positive integers of a
    plausible size, datatypes strings. Raises :class:`OverlayError` naming what is wrong."""
    path = Path(path)
    hint = "copy the overlay.json written by `python -m licfpga.overlay.vivado` beside the bitstream"
    try:
        desc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise OverlayError(f"cannot read {path}: {exc}; {hint}") from None
    missing = []
    for key in OVERLAY_KEYS:
        node = desc
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            missing.append(key)
    if missing:
        raise OverlayError(f"{path} lacks {', '.join(missing)}: not an overlay description; {hint}")
    for side in ("input", "output"):
        io = desc["io"][side]
        shape = io["shape"]
        if (not isinstance(shape, list) or len(shape) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
                or int(np.prod(shape, dtype=object)) > MAX_FRAME_ELEMENTS):
            raise OverlayError(f"{path}: io.{side}.shape must be an NHWC list of 4 positive integers "
                               f"(at most {MAX_FRAME_ELEMENTS} elements), got {shape!r}")
        if not isinstance(io["datatype"], str):
            raise OverlayError(f"{path}: io.{side}.datatype must be a FINN datatype name, got {io['datatype']!r}")
    if not isinstance(desc["transform"], str) or not isinstance(desc["golden"]["digest"], str):
        raise OverlayError(f"{path}: transform and golden.digest must be strings")
    return desc


def _import_pynq():
    try:
        return importlib.import_module("pynq")
    except Exception as exc:  # noqa: BLE001 - pynq raises assorted errors off-board
        raise FpgaUnavailable(
            "the FPGA backend runs on a PYNQ board with the licfpga overlay (pip install pynq there); "
            f"pynq is not usable here ({type(exc).__name__}: {exc}). The integer backend computes the "
            "same bytes on the CPU: --backend integer") from exc


class StreamAccelerator:
    """One frame in, one frame out through the overlay's AXI DMA.

    Args:
        bitfile: the overlay bitstream (``licfpga.bit``, with ``licfpga.hwh`` beside it).
        in_shape, in_dtype / out_shape, out_dtype: one frame (NHWC integers) each way, as the
            FINN build compiled it (``estimates.json``: input_shape / output_stream).
        dma: the DMA's block-design name (``dma`` in vivado/build_overlay.tcl).
        pynq: the module providing ``Overlay`` and ``allocate`` (default: ``import pynq``).
        fps: the overlay's expected frames/s (``overlay.json`` ``est_fps``), for the default
            DMA deadline (:func:`dma_timeout`).
        timeout: seconds each DMA channel may take for one frame before :class:`DmaTimeout`
            (default: :func:`dma_timeout` of the frame's bytes and ``fps``).
    """

    def __init__(self, bitfile, in_shape, in_dtype, out_shape, out_dtype, dma: str = "dma", pynq=None,
                 fps: float | None = None, timeout: float | None = None):
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.in_dtype, self.out_dtype = np.dtype(in_dtype), np.dtype(out_dtype)
        n_in = int(np.prod(self.in_shape)) * self.in_dtype.itemsize
        n_out = int(np.prod(self.out_shape)) * self.out_dtype.itemsize
        if n_in % 4 or n_out % 4:
            raise ValueError(f"frames must be whole 32-bit DMA words: {n_in} bytes in, {n_out} out")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"DMA timeout must be a positive number of seconds, got {timeout!r}")
        self.n_in, self.n_out = n_in, n_out
        self.timeout = float(timeout) if timeout is not None else dma_timeout(max(n_in, n_out), fps)
        pynq = pynq or _import_pynq()
        try:
            self.overlay = pynq.Overlay(str(bitfile))
        except Exception as exc:  # noqa: BLE001
            raise FpgaUnavailable(f"cannot load the overlay {bitfile}: {type(exc).__name__}: {exc}") from exc
        try:
            self.dma = getattr(self.overlay, dma)
        except (AttributeError, KeyError) as exc:
            raise FpgaUnavailable(f"the overlay {bitfile} has no DMA named {dma!r}") from exc
        self._in = pynq.allocate(shape=(n_in // 4,), dtype=np.uint32)
        self._out = pynq.allocate(shape=(n_out // 4,), dtype=np.uint32)
        # the same memory seen as one NHWC frame each (the 32-bit words are the frame's bytes
        # in memory order, LSB first): packing is one copy into the buffer, unpacking one out
        self._in_frame = np.asarray(self._in).view(self.in_dtype).reshape(self.in_shape)
        self._out_frame = np.asarray(self._out).view(self.out_dtype).reshape(self.out_shape)
        self.frames = 0

    @property
    def input_frame(self) -> np.ndarray:
        """The send buffer as one writable ``in_shape`` frame of ``in_dtype``: a caller may
        write the next frame there itself and pass this very array to :meth:`run` (no copy)."""
        return self._in_frame

    def run(self, x: np.ndarray, copy: bool = True) -> np.ndarray:
        """One frame through the accelerator; ``x`` must be ``in_shape`` integers that fit
        ``in_dtype`` (checked, unless its dtype cannot hold anything else: a silent wrap
        would give wrong latents), in any memory layout (e.g. a transposed view: it is
        packed in the one copy into the DMA buffer). Returns the ``out_shape`` frame: a new
        array, or with ``copy=False`` a view of the receive buffer that the next ``run``
        overwrites (for a caller that copies it out at once)."""
        x = np.asarray(x)
        if x.shape != self.in_shape:
            raise ValueError(f"frame shape {x.shape}, the overlay takes {self.in_shape}")
        if not np.can_cast(x.dtype, self.in_dtype, "safe"):
            info = np.iinfo(self.in_dtype)
            if x.size and (x.min() < info.min or x.max() > info.max):
                raise ValueError(f"frame values outside {self.in_dtype} [{info.min}, {info.max}]")
        if x is not self._in_frame:                          # (already written there: input_frame)
            np.copyto(self._in_frame, x, casting="unsafe")  # values checked to fit just above
        self.dma.recvchannel.transfer(self._out)          # armed before the data can arrive
        self.dma.sendchannel.transfer(self._in)
        wait_dma(self.dma.sendchannel, "send channel (MM2S)", self.n_in, self.timeout)
        wait_dma(self.dma.recvchannel, "receive channel (S2MM)", self.n_out, self.timeout)
        self.frames += 1
        return self._out_frame.copy() if copy else self._out_frame
