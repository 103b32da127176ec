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

A whole-encoder or whole-decoder overlay (overlay/accel_top.py; ``overlay.json`` format 2)
has one DMA per stream pair: :class:`MultiStreamAccelerator` (of which StreamAccelerator
is the one-stream case) arms every receive channel, sends every input, waits every channel
with the same deadline, and returns every output frame by stream name::

    enc = MultiStreamAccelerator("licfpga.bit", [([Stream("x", (128, 128, 3), np.uint8, "dma_0")],
                                                  [Stream("y", (8, 8, 48), np.int8, "dma_0"), ...])])
    out = enc.run({"x": rgb})         # {"y": ..., "z": ..., "scale_codes": ...}
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
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
                f"the deadline is the accelerator's timeout=...")
        time.sleep(poll)
    channel.wait()


class OverlayError(ValueError):
    """``overlay.json`` is unreadable, or lacks or mistypes a key the driver needs."""


FORMAT_V1, FORMAT_V2 = "licfpga-overlay/1", "licfpga-overlay/2"
TRANSFORMS = ("g_a", "h_a", "h_s", "g_s")
STREAM_KEYS = ("name", "port", "shape", "datatype", "dma")


def _check_shape(path, where: str, shape) -> None:
    if (not isinstance(shape, list) or len(shape) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
            or int(np.prod(shape, dtype=object)) > MAX_FRAME_ELEMENTS):
        raise OverlayError(f"{path}: {where} must be an NHWC list of 4 positive integers "
                           f"(at most {MAX_FRAME_ELEMENTS} elements), got {shape!r}")


def read_overlay_description(path) -> dict:
    """``overlay.json`` (written by ``python -m licfpga.overlay.vivado``), checked. Format 1
    (one transform, one DMA): every key of :data:`OVERLAY_KEYS`. Format 2 (a whole-encoder
    or whole-decoder design): see :func:`_check_v2`. Frame shapes NHWC lists of positive
    integers of a plausible size, datatypes strings. Raises :class:`OverlayError` naming
    what is wrong."""
    path = Path(path)
    hint = "copy the overlay.json written by `python -m licfpga.overlay.vivado` beside the bitstream"
    try:
        desc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise OverlayError(f"cannot read {path}: {exc}; {hint}") from None
    if not isinstance(desc, dict):
        raise OverlayError(f"{path} is not a JSON object: not an overlay description; {hint}")
    fmt = desc.get("format", FORMAT_V1)         # the earliest files had no format key
    if fmt == FORMAT_V2:
        return _check_v2(path, desc, hint)
    if fmt != FORMAT_V1:
        raise OverlayError(f"{path}: format {fmt!r} unknown (this driver reads {FORMAT_V1} and {FORMAT_V2}); {hint}")
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
        _check_shape(path, f"io.{side}.shape", io["shape"])
        if not isinstance(io["datatype"], str):
            raise OverlayError(f"{path}: io.{side}.datatype must be a FINN datatype name, got {io['datatype']!r}")
    if not isinstance(desc["transform"], str) or not isinstance(desc["golden"]["digest"], str):
        raise OverlayError(f"{path}: transform and golden.digest must be strings")
    return desc


def _check_v2(path, desc: dict, hint: str) -> dict:
    """Format 2: ``transforms`` (the design's, e.g. ["g_a", "h_a", "h_s"]); ``streams``
    {"in": [...], "out": [...]}, each {name, port, shape (NHWC), datatype, dma}; ``pipelines``
    [{"transforms", "in", "out"}] (stream names: what one run sends and receives; every
    stream and transform in exactly one); ``golden.digest``. A DMA carries at most one input
    (its MM2S channel) and one output (its S2MM channel)."""
    missing = [k for k in ("transforms", "streams", "pipelines", "golden") if desc.get(k) is None]
    if missing or not isinstance(desc["golden"], dict) or not isinstance(desc["golden"].get("digest"), str):
        raise OverlayError(f"{path} ({FORMAT_V2}) lacks {', '.join(missing) or 'golden.digest'} "
                           f"(or golden.digest is not a string); {hint}")
    tr = desc["transforms"]
    if (not isinstance(tr, list) or not tr or len(set(map(str, tr))) != len(tr)
            or not all(isinstance(t, str) and t in TRANSFORMS for t in tr)):
        raise OverlayError(f"{path}: transforms must be a list of distinct names among {', '.join(TRANSFORMS)}, got {tr!r}")
    st = desc["streams"]
    if not isinstance(st, dict) or not all(isinstance(st.get(d), list) and st.get(d) for d in ("in", "out")):
        raise OverlayError(f"{path}: streams must be {{\"in\": [...], \"out\": [...]}}, two non-empty lists, got {st!r}")
    names, channels = {}, {}
    for d in ("in", "out"):
        for i, s in enumerate(st[d]):
            where = f"streams.{d}[{i}]"
            if not isinstance(s, dict) or any(s.get(k) is None for k in STREAM_KEYS):
                lacks = [k for k in STREAM_KEYS if not isinstance(s, dict) or s.get(k) is None]
                raise OverlayError(f"{path}: {where} lacks {', '.join(lacks)}")
            for k in ("name", "port", "datatype", "dma"):
                if not isinstance(s[k], str) or not s[k]:
                    raise OverlayError(f"{path}: {where}.{k} must be a non-empty string, got {s[k]!r}")
            _check_shape(path, f"{where}.shape", s["shape"])
            if s["name"] in names:
                raise OverlayError(f"{path}: stream name {s['name']!r} used twice")
            names[s["name"]] = d
            ch = (s["dma"], d)
            if ch in channels:
                raise OverlayError(f"{path}: {s['dma']} carries two {'input' if d == 'in' else 'output'} streams "
                                   f"({channels[ch]}, {s['name']}); an AXI DMA has one MM2S and one S2MM channel")
            channels[ch] = s["name"]
    pl = desc["pipelines"]
    if not isinstance(pl, list) or not pl:
        raise OverlayError(f"{path}: pipelines must be a non-empty list, got {pl!r}")
    seen_t, seen_s = [], []
    for i, p in enumerate(pl):
        if not isinstance(p, dict) or not all(isinstance(p.get(k), list) and p.get(k) for k in ("transforms", "in", "out")):
            raise OverlayError(f"{path}: pipelines[{i}] must hold non-empty lists transforms, in, out")
        for d in ("in", "out"):
            bad = [n for n in p[d] if names.get(n) != d]
            if bad:
                raise OverlayError(f"{path}: pipelines[{i}].{d} names {bad!r}, not {d}put streams of streams.{d}")
        seen_t += p["transforms"]
        seen_s += p["in"] + p["out"]
    if sorted(map(str, seen_t)) != sorted(tr):
        raise OverlayError(f"{path}: the pipelines' transforms {seen_t!r} are not each of transforms {tr!r} once")
    if sorted(map(str, seen_s)) != sorted(names):
        raise OverlayError(f"{path}: the pipelines' streams {seen_s!r} are not each of the streams {sorted(names)!r} once")
    return desc


def _import_pynq():
    try:
        return importlib.import_module("pynq")
    except Exception as exc:  # noqa: BLE001 - pynq raises assorted errors off-board
        raise FpgaUnavailable(
            "the FPGA backend runs on a PYNQ board with the licfpga overlay (pip install pynq there); "
            f"pynq is not usable here ({type(exc).__name__}: {exc}). The integer backend computes the "
            "same bytes on the CPU: --backend integer") from exc


@dataclass(frozen=True)
class Stream:
    """One frame of one AXI stream: its name (overlay.json), NHWC shape without N, dtype, and
    the block-design name of the DMA whose MM2S (input) or S2MM (output) channel carries it."""
    name: str
    shape: tuple
    dtype: np.dtype
    dma: str


class MultiStreamAccelerator:
    """Frames through a design with several AXI streams, one DMA channel each (a whole
    encoder: RGB in, y, z and scale codes out; a decoder: z -> scale codes and y hat -> RGB,
    two independent pipelines).

    Args:
        bitfile: the overlay bitstream (``licfpga.bit``, with ``licfpga.hwh`` beside it).
        pipelines: [(inputs, outputs)], lists of :class:`Stream`: what one :meth:`run` of the
            pipeline sends and receives (outputs that depend on inputs of another pipeline
            must be in that pipeline).
        pynq, fps, timeout: as :class:`StreamAccelerator` (the deadline is per channel, of the
            largest frame of any stream).
    """

    def __init__(self, bitfile, pipelines, pynq=None, fps: float | None = None, timeout: float | None = None):
        self.pipelines = [(tuple(ins), tuple(outs)) for ins, outs in pipelines]
        streams = [s for ins, outs in self.pipelines for s in ins + outs]
        if len({s.name for s in streams}) != len(streams):
            raise ValueError(f"stream names must be distinct: {[s.name for s in streams]}")
        nbytes = {s.name: int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in streams}
        odd = {n: b for n, b in nbytes.items() if b % 4}
        if odd:
            raise ValueError(f"frames must be whole 32-bit DMA words: {odd} bytes")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"DMA timeout must be a positive number of seconds, got {timeout!r}")
        self.nbytes = nbytes
        self.timeout = float(timeout) if timeout is not None else dma_timeout(max(nbytes.values()), fps)
        pynq = pynq or _import_pynq()
        try:
            self.overlay = pynq.Overlay(str(bitfile))
        except Exception as exc:  # noqa: BLE001
            raise FpgaUnavailable(f"cannot load the overlay {bitfile}: {type(exc).__name__}: {exc}") from exc
        self.dmas = {}
        for s in streams:
            if s.dma not in self.dmas:
                try:
                    self.dmas[s.dma] = getattr(self.overlay, s.dma)
                except (AttributeError, KeyError) as exc:
                    raise FpgaUnavailable(f"the overlay {bitfile} has no DMA named {s.dma!r}") from exc
        # channel names in messages: the DMA's name too once there are several
        self._label = (lambda dma, ch: ch) if len(self.dmas) == 1 else (lambda dma, ch: f"{dma} {ch}")
        self._buf, self._frame = {}, {}
        for s in streams:
            self._buf[s.name] = pynq.allocate(shape=(nbytes[s.name] // 4,), dtype=np.uint32)
            # the same memory seen as one NHWC frame (the 32-bit words are the frame's bytes in
            # memory order, LSB first): packing is one copy into the buffer, unpacking one out
            self._frame[s.name] = np.asarray(self._buf[s.name]).view(np.dtype(s.dtype)).reshape(tuple(s.shape))
        self.frames = 0

    def input_frame(self, name: str) -> np.ndarray:
        """The send buffer of input ``name`` as one writable frame: a caller may write the
        next frame there itself and pass this very array to :meth:`run` (no copy)."""
        return self._frame[name]

    def _load(self, s: Stream, x) -> None:
        """``x`` checked (shape; values that fit the dtype, unless its dtype cannot hold
        anything else: a silent wrap would give wrong latents) and packed into its buffer."""
        x = np.asarray(x)
        buf = self._frame[s.name]
        if x.shape != buf.shape:
            raise ValueError(f"{s.name} frame shape {x.shape}, the overlay takes {buf.shape}")
        if not np.can_cast(x.dtype, buf.dtype, "safe"):
            info = np.iinfo(buf.dtype)
            if x.size and (x.min() < info.min or x.max() > info.max):
                raise ValueError(f"{s.name} frame values outside {buf.dtype} [{info.min}, {info.max}]")
        if x is not buf:                                   # (already written there: input_frame)
            np.copyto(buf, x, casting="unsafe")            # values checked to fit just above

    def run(self, frames: dict, copy: bool = True) -> dict:
        """One frame through every pipeline whose inputs are all in ``frames`` ({input
        name: array}; a pipeline given part of its inputs is refused). Every receive channel
        of those pipelines is armed before anything is sent (the design's outputs back-pressure
        each other: the encoder's y, z and scale codes leave one pipeline), then the inputs
        are sent, then every channel is waited for with the deadline. Returns {output name:
        frame}: new arrays, or with ``copy=False`` views of the receive buffers that the next
        ``run`` overwrites."""
        known = {s.name for ins, _ in self.pipelines for s in ins}
        unknown = set(frames) - known
        if unknown:
            raise ValueError(f"no input stream {sorted(unknown)}; the overlay takes {sorted(known)}")
        runs = []
        for ins, outs in self.pipelines:
            given = [s.name in frames for s in ins]
            if any(given) and not all(given):
                raise ValueError(f"a pipeline takes {[s.name for s in ins]} together, got {sorted(frames)}")
            if all(given):
                runs.append((ins, outs))
        if not runs:
            raise ValueError(f"no frame given; the overlay takes {sorted(known)}")
        for ins, _ in runs:                    # every check before anything moves
            for s in ins:
                self._load(s, frames[s.name])
        for _, outs in runs:
            for s in outs:
                self.dmas[s.dma].recvchannel.transfer(self._buf[s.name])    # armed before data can arrive
        for ins, _ in runs:
            for s in ins:
                self.dmas[s.dma].sendchannel.transfer(self._buf[s.name])
        for ins, outs in runs:
            for s in ins:
                wait_dma(self.dmas[s.dma].sendchannel, self._label(s.dma, "send channel (MM2S)"),
                         self.nbytes[s.name], self.timeout)
            for s in outs:
                wait_dma(self.dmas[s.dma].recvchannel, self._label(s.dma, "receive channel (S2MM)"),
                         self.nbytes[s.name], self.timeout)
        self.frames += 1
        return {s.name: (self._frame[s.name].copy() if copy else self._frame[s.name]) for _, outs in runs for s in outs}


class StreamAccelerator(MultiStreamAccelerator):
    """One frame in, one frame out through the overlay's AXI DMA (a one-transform overlay).

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
        super().__init__(bitfile, [([Stream("in", self.in_shape, self.in_dtype, dma)],
                                    [Stream("out", self.out_shape, self.out_dtype, dma)])],
                         pynq=pynq, fps=fps, timeout=timeout)
        self.n_in, self.n_out = self.nbytes["in"], self.nbytes["out"]
        self.dma = self.dmas[dma]
        self._in, self._out = self._buf["in"], self._buf["out"]       # the DMA buffers

    @property
    def input_frame(self) -> np.ndarray:
        """The send buffer as one writable ``in_shape`` frame of ``in_dtype``: a caller may
        write the next frame there itself and pass this very array to :meth:`run` (no copy)."""
        return self._frame["in"]

    def run(self, x: np.ndarray, copy: bool = True) -> np.ndarray:
        """One frame through the accelerator; ``x`` must be ``in_shape`` integers that fit
        ``in_dtype``, in any memory layout (packed in the one copy into the DMA buffer).
        Returns the ``out_shape`` frame: a new array, or with ``copy=False`` a view of the
        receive buffer that the next ``run`` overwrites."""
        return super().run({"in": x}, copy)["out"]
