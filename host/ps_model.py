"""The ARM (PS) side of the codec per 1080p frame: measured here, modeled on KV260 / ZCU102.

``python -m licfpga.host.ps_model --out results/board`` writes ``ps_model.md`` + ``.json``:

1. **Measured here (x86)**: a real 1920x1080 frame (four training photos, each a native
   960x540 centre crop, no resampling; never Kodak) goes through the integer model once for
   realistic latents; then the PS work of ``--backend fpga`` (:class:`FpgaIntegerCodec`) is
   timed part by part, in the order the code does it, with a loopback stand-in for PYNQ's DMA
   (the transform's result is already in the receive buffer: the FPGA's time is not PS time):
   DMA buffer packing / unpacking, h_a and h_s (NumPy: they still run on the PS today), scale
   indexes, rANS of y and z (wrapper and C loop apart), CRC, container, and the rest of the
   Python (end-to-end time minus the parts).
2. **Modeled on the boards**: the C coding loops of ``host/rans/rans.c`` are built for aarch64
   (Debian's gcc-aarch64-linux-gnu, the extension's -O2 -fwrapv) into ``host/rans/bench_frame.c``,
   which codes this very frame's symbols (dumped with their indexes and CDF tables); qemu-aarch64
   user mode runs it and its own log (``-d in_asm,exec,nochain``, read by
   ``host/rans/count_insns.c``) gives the executed instructions; a run that codes nothing is
   subtracted. Cycles = instructions / IPC (stated range), time = cycles / APU clock (the
   boards' data sheets). The aarch64 streams are checked byte-identical to the extension's, and
   x86 instructions (valgrind callgrind) are given as a cross-check. The NumPy / Python parts
   cannot be counted that way: they are modeled as their x86 time times a factor derived from
   the same measurements (the C loop's modeled A53 time over its x86 time), labelled rough.
3. **fps** of the PS side, encoder and decoder, both boards: single core, and 4 cores with y in
   4 independent rANS streams (container version 2): the slowest of the 4 slices' instruction
   counts (each counted) plus everything else serial. Two configurations: the code as it is
   (h_a and h_s on the PS) and with h_a / h_s on the FPGA (planned elsewhere), where the PS
   keeps packing, scale indexes, entropy coding and the container.

Every board figure is **modeled, never run on a board**.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import types
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]          # the source checkout (host/rans lives here)
RANS_DIR = ROOT / "host" / "rans"
DEFAULT_BUILD = ROOT / "overlay" / "build" / "ps_model"
DEFAULT_ARTIFACT = "int-student-0.013"
FRAME = (1080, 1920)                                  # rows, columns of the frame
# four training photos (../shared/data/train/sun80), each cropped to its central 960x540
DEFAULT_IMAGES = ("abbey_sun_asztnlqhlrvirneh.jpg", "aqueduct_sun_ancegghzusmmvzjn.jpg",
                  "badlands_sun_bvwwfrhtvupdxldb.jpg", "balcony_interior_sun_bammhtthmkjntkqh.jpg")
TRAIN_DIR = ROOT.parent / "shared" / "data" / "train" / "sun80"

CFLAGS = ["-O2", "-fwrapv", "-Wall"]                  # the extension's (pyproject extra-compile-args)
CROSS_CC = "aarch64-linux-gnu-gcc"
STREAMS = 4                                           # y streams of the 4-core path (the default S)
QEMU = "qemu-aarch64"

# --- the boards (APU clocks from AMD's data sheets) ------------------------------------------
BOARDS = {
    "kv260": {
        "name": "KV260 (K26 SOM)", "device": "XCK26-SFVC784-2LV-C", "cores": 4, "apu_mhz": 1333,
        "source": "Kria K26 SOM Data Sheet DS987 (v1.1): the SOM's Zynq UltraScale+ (XCK26-SFVC784-2LV-C) "
                  "with a quad-core Arm Cortex-A53 APU up to 1.333 GHz",
    },
    "zcu102": {
        "name": "ZCU102", "device": "XCZU9EG-2FFVB1156E", "cores": 4, "apu_mhz": 1333,
        "source": "Zynq UltraScale+ MPSoC Data Sheet DS925, processor performance: maximum APU clock "
                  "1333 MHz for the -2 speed grade (ZCU102's XCZU9EG-2); a board image may run it lower "
                  "(read /sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq there; the fps scale with it)",
    },
}

CLOCK_NOTE = ("The two clocks are the data sheets' maximum APU frequencies as this project reads them, not "
              "re-read from the tables: the documentation searches of this project found DS987 v1.1 (July 2021) "
              "naming the K26's device XCK26-SFVC784-2LV-C but no excerpt with its APU frequency, and UG1228 "
              "(v1.0, Zynq UltraScale+ MPSoC Embedded Design Methodology Guide) giving the family's top APU speed, "
              "'APU - Up to 1.5 GHz', a top speed for the family (it names no speed grade), not the -2 grades' value. Confirm 1333 MHz in DS987 / "
              "DS925 and on the board (cpuinfo_max_freq) before relying on it; the fps scale with the clock.")

# --- IPC of a Cortex-A53 on this code (stated assumption, see IPC_SOURCE) ---------------------
IPC = {"low": 0.5, "mid": 0.7, "high": 1.0}
IPC_SOURCE = (
    "Cortex-A53: in-order, dual-issue, so at most 2 instructions per cycle and, on real code, fewer "
    "(pipeline stalls, cache misses, dependencies: systemonchips.com, 'Cortex-A53 MIPS and FLOPS "
    "calculation: limitations and practical measurements'; the core's pipeline in detail: "
    "chipsandcheese.com, 2023-05-28, 'ARM's Cortex A53: Tiny But Important'). The rANS loops are "
    "dependency chains: the encoder's 64-bit division per symbol (multi-cycle on an A53), the "
    "decoder's 6-step dependent binary search over the CDF (a load-to-use latency each step). "
    "IPC 0.7, range 0.5-1.0, is this project's assumption, not a measurement and not a figure "
    "from those sources; the fps scale with it.")


# ---------------------------------------------------------------------------------------------
# the frame and its symbols
def load_frame(images=None) -> tuple[np.ndarray, list[str]]:
    """A 1080x1920 uint8 RGB frame: 2x2 mosaic of 960x540 centre crops of ``images`` (paths;
    default: four sun80 training photos)."""
    from PIL import Image

    paths = [Path(p) for p in images] if images else [TRAIN_DIR / n for n in DEFAULT_IMAGES]
    if len(paths) != 4:
        raise ValueError(f"--image takes 4 photos (a 2x2 mosaic of 960x540 crops), got {len(paths)}")
    h, w = FRAME[0] // 2, FRAME[1] // 2
    frame = np.empty((*FRAME, 3), np.uint8)
    for k, p in enumerate(paths):
        if not p.is_file():
            raise FileNotFoundError(f"frame photo not found: {p} (pass 4 photos of at least 960x540 with --image)")
        im = np.asarray(Image.open(p).convert("RGB"))
        if im.shape[0] < h or im.shape[1] < w:
            raise ValueError(f"{p} is {im.shape[1]}x{im.shape[0]}: smaller than the 960x540 crop")
        y0, x0 = (im.shape[0] - h) // 2, (im.shape[1] - w) // 2
        r, c = divmod(k, 2)
        frame[r * h:(r + 1) * h, c * w:(c + 1) * w] = im[y0:y0 + h, x0:x0 + w]
    return frame, [os.path.relpath(p, ROOT) for p in paths]


def frame_latents(codec, frame: np.ndarray, build: Path) -> tuple[np.ndarray, np.ndarray]:
    """(y, z) of the padded frame through the integer model (what the overlay's g_a + the PS's
    h_a compute); cached in ``build`` by frame and artifact hash."""
    from licfpga.model.geometry import pad_to_stride

    key = hashlib.sha256(frame.tobytes() + codec.weights_hash).hexdigest()[:16]
    cache = build / f"latents-{key}.npz"
    if cache.is_file():
        d = np.load(cache)
        return d["y"], d["z"]
    y, z = codec.model.analysis(pad_to_stride(frame, codec.stride))
    build.mkdir(parents=True, exist_ok=True)
    np.savez(cache, y=y, z=z)
    return y, z


def symbols(codec, y: np.ndarray, z: np.ndarray) -> dict:
    """What the entropy coder gets for this frame: flat int32 symbols + indexes + tables."""
    idx = codec.model.scale_indexes(codec.model.scale_codes(z))
    zs = (z - codec._z_median[:, None, None]).astype(np.int32)
    return {
        "y": {"sym": y.astype(np.int32).ravel(), "idx": idx.astype(np.int32).ravel(), "coder": codec.y_coder},
        "z": {"sym": zs.ravel(), "idx": np.ascontiguousarray(codec._z_indexes(z.shape), np.int32).ravel(),
              "coder": codec.z_coder},
    }


def write_bench_data(path: Path, syms: dict) -> None:
    """The harness's DATA file (format in host/rans/bench_frame.c)."""
    with open(path, "wb") as f:
        f.write(b"LPSB" + struct.pack("<I", 1))
        for part in ("y", "z"):
            c, s = syms[part]["coder"], syms[part]
            f.write(struct.pack("<ii", *c.cdfs.shape))
            for a in (c.cdfs, c.cdf_lengths, c.offsets):
                f.write(np.ascontiguousarray(a, "<i4").tobytes())
            f.write(struct.pack("<i", s["sym"].size))
            f.write(s["sym"].astype("<i4").tobytes())
            f.write(s["idx"].astype("<i4").tobytes())


def read_streams(path: Path) -> list[bytes]:
    """The harness's STREAMS file -> [z, y0, ..., y(K-1)]."""
    data = Path(path).read_bytes()
    if data[:4] != b"LPSS":
        raise ValueError(f"{path}: not a bench_frame stream file")
    (count,), pos, out = struct.unpack_from("<I", data, 4), 8, []
    for _ in range(count):
        (n,) = struct.unpack_from("<I", data, pos)
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


# ---------------------------------------------------------------------------------------------
# tools: build, run under qemu, count
def require_tools() -> None:
    missing = [t for t in (CROSS_CC, QEMU, "gcc") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)}: run `make aarch64-tools` (Debian gcc-aarch64-linux-gnu, "
                           "qemu-user)")


def build_tools(build: Path) -> dict:
    """Compile the harness for aarch64 (static) and x86, and the log counter; returns paths
    and the commands used."""
    require_tools()
    src, inc = RANS_DIR / "bench_frame.c", RANS_DIR / "standalone"
    if not src.is_file():
        raise RuntimeError(f"{src} not found: the PS model builds host/rans/ from a source checkout of licfpga")
    build.mkdir(parents=True, exist_ok=True)
    cmds = {
        "aarch64": [CROSS_CC, *CFLAGS, "-static", f"-I{inc}", "-o", str(build / "bench_frame.aarch64"), str(src)],
        "x86": ["gcc", *CFLAGS, f"-I{inc}", "-o", str(build / "bench_frame.x86"), str(src)],
        "counter": ["gcc", "-O2", "-Wall", "-o", str(build / "count_insns"), str(RANS_DIR / "count_insns.c")],
    }
    for c in cmds.values():
        r = subprocess.run(c, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"{' '.join(c)} failed:\n{r.stderr}")
    return {"aarch64": build / "bench_frame.aarch64", "x86": build / "bench_frame.x86",
            "counter": build / "count_insns",
            "commands": {k: " ".join(v).replace(f"{ROOT}/", "") for k, v in cmds.items()}}


def qemu_count(tools: dict, args: list[str]) -> int:
    """Guest instructions the aarch64 harness executes with ``args`` (qemu-aarch64's log of
    translated and executed blocks, counted by count_insns); RuntimeError if it fails."""
    counter = subprocess.Popen([str(tools["counter"])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    q = subprocess.run([QEMU, "-d", "in_asm,exec,nochain", str(tools["aarch64"]), *args],
                       stdout=subprocess.PIPE, stderr=counter.stdin)
    counter.stdin.close()
    out = counter.stdout.read()
    counter.wait()
    if q.returncode:
        raise RuntimeError(f"bench_frame {' '.join(args)} under qemu exited {q.returncode}")
    if counter.returncode or not out.split():
        raise RuntimeError(f"count_insns could not count bench_frame {' '.join(args)}: {out.strip()}")
    return int(out.split()[0])


def run_native(tools: dict, args: list[str]) -> str:
    r = subprocess.run([str(tools["x86"]), *args], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"bench_frame {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def callgrind_count(tools: dict, args: list[str]) -> int | None:
    """x86 instructions (valgrind callgrind's Ir) of the native harness; None without valgrind."""
    if shutil.which("valgrind") is None:
        return None
    r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", str(tools["x86"]), *args],
                       capture_output=True, text=True)
    for line in r.stderr.splitlines():
        if "Collected :" in line:
            return int(line.split(":")[-1])
    return None


def count_instructions(tools: dict, data: Path, work: Path, slices: int = 4, x86: bool = True) -> dict:
    """Instruction counts of entropy coding this frame on aarch64: z, y (one stream) and each
    of ``slices`` y streams, encode and decode, each minus the matching do-nothing run."""
    s1, sk = work / "streams1.bin", work / f"streams{slices}.bin"
    run_native(tools, ["encode", "all", "1", str(data), str(s1)])
    run_native(tools, ["encode", "all", str(slices), str(data), str(sk)])
    d = str(data)
    base_e = qemu_count(tools, ["load", "all", "1", d])
    base_d1 = qemu_count(tools, ["load", "all", "1", d, str(s1)])
    base_dk = qemu_count(tools, ["load", "all", str(slices), d, str(sk)])
    enc_z_out, enc_y_out = work / "a64_z.bin", work / "a64_y.bin"
    res = {
        "baseline": {"encode": base_e, "decode_1": base_d1, f"decode_{slices}": base_dk},
        "encode": {"z": qemu_count(tools, ["encode", "z", "1", d, str(enc_z_out)]) - base_e,
                   "y": qemu_count(tools, ["encode", "y", "1", d, str(enc_y_out)]) - base_e},
        "decode": {"z": qemu_count(tools, ["decode", "z", "1", d, str(s1)]) - base_d1,
                   "y": qemu_count(tools, ["decode", "y", "1", d, str(s1)]) - base_d1},
        "slices": slices,
        "encode_slices": [qemu_count(tools, ["encode", f"y{j}", str(slices), d]) - base_e for j in range(slices)],
        "decode_slices": [qemu_count(tools, ["decode", f"y{j}", str(slices), d, str(sk)]) - base_dk
                          for j in range(slices)],
    }
    res["aarch64_streams"] = {"z": read_streams(enc_z_out)[0], "y": read_streams(enc_y_out)[1]}
    if x86:
        ce, cd = callgrind_count(tools, ["encode", "all", "1", d]), callgrind_count(tools, ["decode", "all", "1", d, str(s1)])
        le, ld = callgrind_count(tools, ["load", "all", "1", d]), callgrind_count(tools, ["load", "all", "1", d, str(s1)])
        res["x86_callgrind"] = None if None in (ce, cd, le, ld) else {"encode": ce - le, "decode": cd - ld}
    return res


# ---------------------------------------------------------------------------------------------
# x86 timing of the PS work
class LoopbackPynq:
    """PYNQ's ``Overlay`` / ``allocate`` for :class:`StreamAccelerator` without a board: the
    receive transfer copies ``reply`` (what the FPGA would have written) into the buffer.
    ``copy_s`` totals that copy's time, which the DMA engine, not the PS, does on a board."""

    def __init__(self):
        self.reply, self.copy_s = None, 0.0
        outer = self

        class _Chan:
            def __init__(self, recv):
                self.recv = recv

            def transfer(self, buf):
                if self.recv:
                    t0 = time.thread_time()
                    buf[:] = outer.reply
                    outer.copy_s += time.thread_time() - t0

            def wait(self):
                pass

        class _Overlay:
            def __init__(self, path):
                self.dma = types.SimpleNamespace(sendchannel=_Chan(False), recvchannel=_Chan(True))

        self.Overlay = _Overlay

    @staticmethod
    def allocate(shape, dtype):
        return np.zeros(shape, dtype)


def _overlay_dir(build: Path, codec, transform: str, pad_hw) -> Path:
    """A folder with an overlay.json for a 1088x1920 g_a (encoder) or g_s (decoder) overlay."""
    d = build / f"overlay_{transform}"
    d.mkdir(parents=True, exist_ok=True)
    h, w = pad_hw
    rgb = {"shape": [1, h, w, 3], "datatype": "UINT8"}
    lat = {"shape": [1, h // 16, w // 16, codec.model.M], "datatype": "INT8"}
    io = {"input": rgb, "output": lat} if transform == "g_a" else {"input": lat, "output": rgb}
    desc = {"transform": transform, "golden": {"digest": codec.weights_hash.hex(), "name": codec.path.stem}, "io": io}
    (d / "overlay.json").write_text(json.dumps(desc))
    return d / "licfpga.bit"


def best(f, repeat: int) -> tuple[float, object]:
    """Shortest CPU time of this thread over ``repeat`` calls of f (seconds) and f's last
    result. CPU time, not wall time: this 2-core machine is shared with a training run, and
    the waits for a core are not PS work (everything here runs on the calling thread: one
    stream, one coding thread)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.thread_time()
        out = f()
        times.append(time.thread_time() - t0)
    return min(times), out


def measure_x86(artifact: str, frame: np.ndarray, y: np.ndarray, z: np.ndarray, build: Path,
                repeat: int = 5) -> dict:
    """Seconds of each part of the PS work per frame here, best of ``repeat``; the end-to-end
    codec times (one stream, one thread: today's single-core path) give the Python rest."""
    from licfpga.model.geometry import pad_to_stride

    from . import _rans
    from .container import pack, unpack
    from .entropy_coder import as_int32
    from .integer_codec import FpgaIntegerCodec, IntegerCodec, _index_crc, _narrow

    padded = pad_to_stride(frame, 64)
    tile = f"{padded.shape[1]}x{padded.shape[0]}"
    probe = IntegerCodec(artifact)
    ov = {t: _overlay_dir(build, probe, t, padded.shape[:2]) for t in ("g_a", "g_s")}
    fakes = {}

    def codec(transform, streams, threads):
        fakes[transform, streams] = LoopbackPynq()
        return FpgaIntegerCodec(artifact, overlay=ov[transform], pynq=fakes[transform, streams], tile=tile,
                                streams=streams, threads=threads)

    enc, dec = codec("g_a", 1, 1), codec("g_s", 1, 1)
    # y in STREAMS streams on a pool of as many threads (what a board runs): the calling
    # thread's CPU time is the serial part; the streams' C loops run on the pool's threads
    enc_k, dec_k = codec("g_a", STREAMS, STREAMS), codec("g_s", STREAMS, STREAMS)
    fake_e, fake_d = fakes["g_a", 1], fakes["g_s", 1]
    m = enc.model
    y_nhwc = np.ascontiguousarray(np.moveaxis(y, 0, -1).astype(np.int8))
    for (tr, _), fk in fakes.items():
        # the receive buffer's contents: g_a's latents; for g_s the padded frame's pixels (same size)
        fk.reply = np.frombuffer((y_nhwc if tr == "g_a" else padded).tobytes(), np.uint32)

    t, e, d = {}, {}, {}
    # -- encoder, in FpgaIntegerCodec._compress_tile's order (the codec's own functions)
    e["pad"], buf = best(lambda: enc._pad(np.ascontiguousarray(frame)), repeat)    # into the DMA buffer
    assert buf is enc.accelerator.input_frame and np.array_equal(buf, padded)
    fake_e.copy_s = 0.0
    t_run, out = best(lambda: enc.accelerator.run(buf, copy=False), repeat)
    e["dma_pack_unpack"] = max(t_run - fake_e.copy_s / repeat, 0.0)
    e["latents_to_chw"], y32 = best(lambda: np.ascontiguousarray(np.moveaxis(out, -1, 0), dtype=np.int32), repeat)
    e["h_a"], z2 = best(lambda: m.run_transform("h_a", y32), repeat)
    assert np.array_equal(z2, z) and np.array_equal(y32, y), "the loopback frame is not the model's"
    e["range_checks"], _ = best(lambda: (_narrow(y32), _narrow(z2)), repeat)
    e["h_s"], codes = best(lambda: m.scale_codes(z), repeat)
    e["scale_indexes"], idx = best(lambda: m.scale_indexes(codes), repeat)
    # the reference (a binary search per element, what the code did before the table lookup)
    t["scale_indexes_reference"], ref = best(lambda: m.scale_indexes_reference(codes), repeat)
    assert np.array_equal(ref, idx), "the table lookup differs from the reference"
    zs = z - enc._z_median[:, None, None]
    zi = enc._z_indexes(z.shape)
    i32 = as_int32(idx)
    z32, zi32 = as_int32(zs), as_int32(zi)
    yc, zc = enc.y_coder, enc.z_coder
    e["rans_y_wrapper"], _ = best(lambda: (as_int32(y32), as_int32(idx)), repeat)
    e["rans_y_c"], ystr = best(lambda: _rans.encode(y32.reshape(-1), i32, *yc._tables), repeat)
    e["rans_z_wrapper"], _ = best(lambda: (as_int32(zs), as_int32(zi)), repeat)
    e["rans_z_c"], zstr = best(lambda: _rans.encode(z32, zi32, *zc._tables), repeat)
    e["crc"], _ = best(lambda: _index_crc(idx), repeat)
    # end to end (container pack included), with h_a / h_s and without them (answered from a
    # cache): the Python rest = end to end without them minus the other parts, so that it is
    # not buried in the run-to-run noise of the two big NumPy transforms
    fake_e.copy_s = 0.0
    t_enc, lic = best(lambda: enc.encode(frame), repeat)
    t["encode_end_to_end"] = t_enc - fake_e.copy_s / repeat
    with _cached_hyper(enc.model, z, codes):
        fake_e.copy_s = 0.0
        t_enc, lic2 = best(lambda: enc.encode(frame), repeat)
        t["encode_without_h_a_h_s"] = t_enc - fake_e.copy_s / repeat
    assert lic2 == lic
    with _cached_hyper(enc_k.model, z, codes):
        fk = fakes["g_a", STREAMS]
        fk.copy_s = 0.0
        t_enc, lic_k = best(lambda: enc_k.encode(frame), repeat)
        t[f"encode_{STREAMS}_streams_calling_thread"] = t_enc - fk.copy_s / repeat
    f = unpack(lic)
    e["container_pack"], _ = best(lambda: pack(f), repeat)
    _rest(e, t["encode_without_h_a_h_s"], t[f"encode_{STREAMS}_streams_calling_thread"])

    # -- decoder, in _decompress_tile's order
    d["container_unpack_checks"], _ = best(lambda: dec.check_file(unpack(lic)), repeat)
    zsh = (m.z_channels, *f.tiles[0].latent_shape)
    d["rans_z_c"], zsym = best(lambda: zc.decode(f.tiles[0].payloads[1], dec._z_indexes(zsh)), repeat)
    d["z_from_symbols"], zd = best(lambda: zsym.astype(np.int64).reshape(zsh) + dec._z_median[:, None, None], repeat)
    d["h_s"], codes_d = best(lambda: m.scale_codes(zd), repeat)
    d["scale_indexes"], idx_d = best(lambda: m.scale_indexes(codes_d), repeat)
    outy = np.empty(idx_d.size, np.int32)
    d["rans_y_wrapper"], i32d = best(lambda: as_int32(idx_d), repeat)
    d["rans_y_c"], _ = best(lambda: _rans.decode(f.tiles[0].payloads[0], i32d, *yc._tables, outy, True), repeat)
    d["latents_checks"], yd = best(lambda: (lambda a: (a, _narrow(a)))(outy.reshape(y.shape))[0], repeat)
    d["crc"], _ = best(lambda: _index_crc(idx_d), repeat)
    fake_d.copy_s = 0.0
    t_run, px = best(lambda: dec.accelerator.run(np.moveaxis(yd, 0, -1), copy=False).astype(np.uint8, copy=False),
                     repeat)
    d["dma_pack_unpack"] = max(t_run - fake_d.copy_s / repeat, 0.0)
    canvas = np.empty((*FRAME, 3), np.uint8)
    d["crop_to_frame"], _ = best(lambda: canvas.__setitem__(slice(None), px[:FRAME[0], :FRAME[1]]), repeat)
    fake_d.copy_s = 0.0
    t_dec, (rgb, _) = best(lambda: dec.decode(lic), repeat)
    t["decode_end_to_end"] = t_dec - fake_d.copy_s / repeat
    assert np.array_equal(codes_d, codes)
    with _cached_hyper(dec.model, z, codes):
        fake_d.copy_s = 0.0
        t_dec, _ = best(lambda: dec.decode(lic), repeat)
        t["decode_without_h_s"] = t_dec - fake_d.copy_s / repeat
    with _cached_hyper(dec_k.model, z, codes):
        fk = fakes["g_s", STREAMS]
        fk.copy_s = 0.0
        t_dec, (rgb_k, _) = best(lambda: dec_k.decode(lic_k), repeat)
        t[f"decode_{STREAMS}_streams_calling_thread"] = t_dec - fk.copy_s / repeat
    assert np.array_equal(rgb_k, rgb)
    _rest(d, t["decode_without_h_s"], t[f"decode_{STREAMS}_streams_calling_thread"])
    assert np.array_equal(yd, y) and ystr == lic_payload(f, 0) and zstr == lic_payload(f, 1)
    return {"encode": e, "decode": d, "end_to_end": t, "file_bytes": len(lic),
            "bits_per_pixel": 8 * len(lic) / (FRAME[0] * FRAME[1]), "file_bytes_streams": len(lic_k),
            "streams": {"y": ystr, "z": zstr}, "tile": tile, "repeat": repeat, "pool_streams": STREAMS}


def _rest(parts: dict, one_stream: float, k_streams: float) -> None:
    """``python_rest`` (one stream, one thread: end to end minus the parts timed alone) and
    ``python_rest_streams`` (y in STREAMS streams on the pool: the calling thread's CPU time
    minus the parts it runs itself, i.e. all but y's C loop); 0 where the parts add up to more."""
    own = sum(v for k, v in parts.items() if k not in HYPER_PARTS)
    parts["python_rest"] = max(one_stream - own, 0.0)
    parts["python_rest_streams"] = max(k_streams - (own - parts["rans_y_c"]), 0.0)


class _cached_hyper:
    """Within: ``model``'s h_a returns ``z`` and its scale codes are ``codes`` (no NumPy work)."""

    def __init__(self, model, z, codes):
        self.model, self.z, self.codes = model, z, codes

    def __enter__(self):
        run = type(self.model).run_transform.__get__(self.model)
        self.model.run_transform = lambda name, x, trace=None: self.z if name == "h_a" else run(name, x, trace)
        self.model.scale_codes = lambda z: self.codes
        return self

    def __exit__(self, *exc):
        del self.model.run_transform, self.model.scale_codes


def lic_payload(f, k: int) -> bytes:
    return bytes(f.tiles[0].payloads[k])


# ---------------------------------------------------------------------------------------------
# the model
# which measured parts are C loops modeled from instruction counts, which only run with h_a/h_s on the PS
C_PARTS = {"rans_y_c": "y", "rans_z_c": "z"}
HYPER_PARTS = {"h_a", "h_s"}
REST_PARTS = {"python_rest", "python_rest_streams"}


def serial_parts(parts: dict, hyper_on_ps: bool, cores: int) -> dict:
    """The measured x86 parts the model scales by the NumPy factor: all but the C loops (from
    instruction counts) and, with h_a / h_s on the FPGA, those two; of the two Python rests
    the one of the path modeled (``python_rest``: one stream; ``python_rest_streams``: the
    calling thread with y on the pool, used for cores > 1 when it was measured)."""
    rest = "python_rest_streams" if cores > 1 and "python_rest_streams" in parts else "python_rest"
    return {k: v for k, v in parts.items()
            if k not in C_PARTS and (hyper_on_ps or k not in HYPER_PARTS)
            and (k == rest or k not in REST_PARTS)}


def numpy_factor(counts: dict, meas: dict, apu_mhz: float) -> dict:
    """x86 -> A53 time factor for the NumPy / Python parts: the C coding loop's modeled A53
    time (IPC mid) over its measured x86 time, averaged over encode and decode of y; the range
    is that /2 .. x2 (vectorised NumPy and memory copies do not scale like a scalar loop)."""
    ratios = []
    for op in ("encode", "decode"):
        a53 = counts[op]["y"] / IPC["mid"] / (apu_mhz * 1e6)
        ratios.append(a53 / meas[op]["rans_y_c"])
    mid = float(np.mean(ratios))
    return {"low": mid / 2, "mid": mid, "high": mid * 2, "per_op": ratios}


def board_times(counts: dict, meas: dict, board: dict, ipc: float, factor: float, hyper_on_ps: bool,
                cores: int, mhz: float | None = None) -> dict:
    """Modeled seconds per frame of the PS side (encode, decode) on ``board``: C loops from
    instruction counts at ``ipc``, the rest x86 time x ``factor``; cores = 4: y's slices in
    parallel (the slowest), the rest serial."""
    hz = (mhz or board["apu_mhz"]) * 1e6
    out = {}
    for op in ("encode", "decode"):
        parts = serial_parts(meas[op], hyper_on_ps, cores)
        serial = sum(v * factor for v in parts.values())
        z = counts[op]["z"] / ipc / hz
        if cores == 1:
            y = counts[op]["y"] / ipc / hz
        else:
            sl = counts[f"{op}_slices"]
            if cores < len(sl):
                raise ValueError(f"{len(sl)} slices need {len(sl)} cores, got {cores}")
            y = max(sl) / ipc / hz
        out[op] = {"seconds": serial + z + y, "rans_y": y, "rans_z": z, "rest": serial}
    return out


def breakdown(counts: dict, meas: dict, board: dict, op: str, ipc: float, factor: float, cores: int,
              hyper_on_ps: bool = False) -> list[tuple[str, float]]:
    """Modeled seconds of each part of ``op`` on ``board``, largest first."""
    hz = board["apu_mhz"] * 1e6
    out = [(k, v * factor) for k, v in serial_parts(meas[op], hyper_on_ps, cores).items()]
    y = counts[op]["y"] if cores == 1 else max(counts[f"{op}_slices"])
    out += [("rans_y_c" + (f" (slowest of {counts['slices']})" if cores > 1 else ""), y / ipc / hz),
            ("rans_z_c", counts[op]["z"] / ipc / hz)]
    return sorted(out, key=lambda kv: -kv[1])


def model(counts: dict, meas: dict) -> dict:
    """Modeled fps for each board, configuration (hyper on PS / on FPGA), cores (1, 4), IPC
    (low, mid, high) with the NumPy factor at its matching end (low IPC ~ high factor)."""
    res = {}
    for bname, b in BOARDS.items():
        fac = numpy_factor(counts, meas, b["apu_mhz"])
        rows = []
        for hyper in (True, False):
            for cores in (1, counts["slices"]):
                fps = {}
                for end, ipc, f in (("worst", IPC["low"], fac["high"]), ("mid", IPC["mid"], fac["mid"]),
                                    ("best", IPC["high"], fac["low"])):
                    t = board_times(counts, meas, b, ipc, f, hyper, cores)
                    fps[end] = {op: 1.0 / t[op]["seconds"] for op in t}
                    if end == "mid":
                        detail = t
                rows.append({"hyper_on_ps": hyper, "cores": cores, "fps": fps, "mid_seconds": detail})
        res[bname] = {"factor": fac, "rows": rows}
    return res


# ---------------------------------------------------------------------------------------------
# report
def _ms(s: float) -> str:
    return f"{s * 1e3:.2f}"


def report(data: dict) -> str:
    m, c, b = data["measured_x86"], data["instructions"], data["model"]
    L = ["# PS side per 1080p frame: measured here, modeled on KV260 / ZCU102", "",
         "**Every board figure below is modeled, never run on a board.** Recompute: "
         f"`{data['command']}` ({data['runtime_s']:.0f} s here).", "",
         f"Frame: {FRAME[1]}x{FRAME[0]} (padded {data['tile']}), a 2x2 mosaic of 960x540 centre crops of "
         f"four training photos ({', '.join(Path(p).name for p in data['images'])}); artifact "
         f"`{data['artifact']}`, one tile, {m['bits_per_pixel']:.3f} bpp ({m['file_bytes']} bytes). "
         f"y: {data['symbols']['y']} symbols ({data['latents']['y']}), z: {data['symbols']['z']} ({data['latents']['z']}).",
         "", "## 1. Measured here (x86, CPU time of one thread, best of "
         f"{m['repeat']}; machine: {data['host']['cpu']}, load average {data['host']['load']})", "",
         "The `--backend fpga` path (`FpgaIntegerCodec`, one y stream, one thread; the parts are the codec's own "
         "functions, timed alone) with a loopback DMA stand-in: the transform's output is already in the receive "
         "buffer, its copy time subtracted.", "",
         "| part | encode ms | decode ms | on a board |", "|---|---:|---:|---|"]
    kinds = {"rans_y_c": "C loop: aarch64 instructions counted", "rans_z_c": "C loop: aarch64 instructions counted",
             "h_a": "NumPy on the PS today (x86 time x factor)", "h_s": "NumPy on the PS today (x86 time x factor)"}
    keys = list(dict.fromkeys([*m["encode"], *m["decode"]]))
    for k in keys:
        ev, dv = m["encode"].get(k), m["decode"].get(k)
        L.append(f"| {k} | {_ms(ev) if ev is not None else '-'} | {_ms(dv) if dv is not None else '-'} | "
                 f"{kinds.get(k, 'NumPy/Python (x86 time x factor)')} |")
    L += [f"| **end to end** | **{_ms(m['end_to_end']['encode_end_to_end'])}** | "
          f"**{_ms(m['end_to_end']['decode_end_to_end'])}** | |",
          f"| end to end, h_a / h_s answered from a cache | {_ms(m['end_to_end']['encode_without_h_a_h_s'])} | "
          f"{_ms(m['end_to_end']['decode_without_h_s'])} | |"]
    k_enc, k_dec = (m["end_to_end"].get(f"{op}_{m.get('pool_streams')}_streams_calling_thread") for op in ("encode", "decode"))
    if k_enc is not None:
        L.append(f"| end to end, h_a / h_s from a cache, y in {m['pool_streams']} streams on {m['pool_streams']} "
                 f"threads: the calling thread's CPU time | {_ms(k_enc)} | {_ms(k_dec)} | |")
    L += ["",
          "`python_rest` = end to end without h_a / h_s minus the other parts (tiling, Tile objects, the codec's "
          "Python, first-touch page faults of the fresh output frame; 0 where the parts timed alone add up to more); "
          "`python_rest_streams` = the same for the 4-stream path: the calling thread's CPU time (the streams' C "
          "loops run on the pool's threads) minus the parts it runs itself (thread-pool hand-offs, the decoder's "
          "concatenation of the 4 streams' symbols); the 1-core model uses the first, the 4-core model the second. "
          "`pad` = the frame padded straight into the DMA send buffer; "
          "`dma_pack_unpack` = `StreamAccelerator.run` (checks, packing into the 32-bit DMA buffer where the frame "
          "is not already there, the receive buffer handed back as a view).", "",
          "## 2. Instructions on aarch64 (qemu-aarch64 user mode, counted)", "",
          f"Harness `host/rans/bench_frame.c` (rans.c's loops), `{data['tools']['commands']['aarch64']}`; "
          f"counts from `{QEMU} -d in_asm,exec,nochain` read by `host/rans/count_insns.c` (Debian's qemu-user ships "
          "no TCG plugin such as libinsn), minus a run that loads the same files and codes nothing. "
          f"The aarch64 streams are byte-identical to the extension's: {data['streams_identical']}. "
          f"Two runs give the same count (checked in tests/test_ps_model.py).", "",
          "| stream | encode instructions | decode instructions | per symbol enc / dec |", "|---|---:|---:|---:|"]
    for p in ("y", "z"):
        n = data["symbols"][p]
        L.append(f"| {p} (one stream) | {c['encode'][p]:,} | {c['decode'][p]:,} | "
                 f"{c['encode'][p] / n:.1f} / {c['decode'][p] / n:.1f} |")
    L.append(f"| y in {c['slices']} streams: each | {', '.join(f'{v:,}' for v in c['encode_slices'])} | "
             f"{', '.join(f'{v:,}' for v in c['decode_slices'])} | |")
    if c.get("x86_callgrind"):
        L += ["", f"Cross-check, x86 (valgrind callgrind, native build, same harness, y + z): encode "
              f"{c['x86_callgrind']['encode']:,}, decode {c['x86_callgrind']['decode']:,} instructions "
              f"(aarch64: {c['encode']['y'] + c['encode']['z']:,} / {c['decode']['y'] + c['decode']['z']:,})."]
    L += ["", "## 3. Model", "",
          f"* **IPC** {IPC['low']}-{IPC['high']} (central {IPC['mid']}). {IPC_SOURCE}"]
    for bn, bd in BOARDS.items():
        L.append(f"* **{bd['name']}** APU clock {bd['apu_mhz']} MHz: {bd['source']}.")
    L.append(f"* {CLOCK_NOTE}")
    f0 = b["kv260"]["factor"]
    L += [f"* **NumPy/Python parts**: x86 time x factor {f0['mid']:.1f} (range {f0['low']:.1f}-{f0['high']:.1f}): "
          "the C coding loop's modeled A53 time (IPC 0.7, 1333 MHz) over its x86 time here "
          f"({', '.join(f'{r:.1f}' for r in f0['per_op'])} for y encode / decode), halved and doubled for the range. "
          "A rough estimate: vectorised NumPy (BLAS in h_a/h_s, memory copies in the DMA packing) does not scale "
          "like a scalar loop, and the x86 here is shared with a background training run. PYNQ's cache "
          "flush/invalidate of the DMA buffers is not included.",
          f"* **4 cores**: y in {c['slices']} independent rANS streams (container version 2, "
          "`split_points`: contiguous near-equal slices of the flat [M, h, w] symbols), one per core "
          "(the coder releases the GIL: a thread pool); the slowest slice counts; z, scale indexes, packing, "
          "container and the rest stay serial on one core. Memory-bandwidth contention between the cores is "
          "not modeled.", "",
          "## 4. Modeled fps of the PS side at 1080p (modeled, never run on a board)", "",
          "fps = 1 / (PS seconds per frame); central (IPC 0.7, factor mid) with the range worst-best "
          "(IPC 0.5 with factor x2 .. IPC 1.0 with factor /2). The FPGA's own time is not in it.", "",
          "| board | h_a, h_s | cores | encoder fps | decoder fps | encode ms (y / z / rest) | decode ms (y / z / rest) |",
          "|---|---|---:|---:|---:|---|---|"]
    for bn, bd in BOARDS.items():
        for r in b[bn]["rows"]:
            fm, fw, fb = r["fps"]["mid"], r["fps"]["worst"], r["fps"]["best"]
            s = r["mid_seconds"]
            L.append(f"| {bd['name']} | {'on the PS (today)' if r['hyper_on_ps'] else 'on the FPGA'} | {r['cores']} | "
                     f"{fm['encode']:.1f} ({fw['encode']:.1f}-{fb['encode']:.1f}) | "
                     f"{fm['decode']:.1f} ({fw['decode']:.1f}-{fb['decode']:.1f}) | "
                     f"{_ms(s['encode']['seconds'])} ({_ms(s['encode']['rans_y'])} / {_ms(s['encode']['rans_z'])} / "
                     f"{_ms(s['encode']['rest'])}) | {_ms(s['decode']['seconds'])} ({_ms(s['decode']['rans_y'])} / "
                     f"{_ms(s['decode']['rans_z'])} / {_ms(s['decode']['rest'])}) |")
    kb, k = BOARDS["kv260"], c["slices"]
    fac = b["kv260"]["factor"]["mid"]
    L += ["", f"Where the PS time goes with h_a / h_s on the FPGA, {k} cores, {kb['name']}, central (ms per frame, "
          "largest first; modeled):", ""]
    for op in ("encode", "decode"):
        parts = breakdown(c, m, kb, op, IPC["mid"], fac, k)
        L.append(f"* {op}: " + ", ".join(f"{n} {_ms(v)}" for n, v in parts if v >= 0.5e-3))
    ref = m["end_to_end"].get("scale_indexes_reference")
    if ref is not None:
        L += ["", f"The scale index is a table lookup (`IntegerModel.scale_indexes`: one `np.take` in a 256-entry "
              f"table built from the reference, lut[q] = #{{thresholds < q}}): {_ms(m['encode']['scale_indexes'])} ms "
              f"here; the reference (`scale_indexes_reference`, a binary search per element, what the code ran "
              f"before) {_ms(ref)} ms on the same {data['symbols']['y']:,} codes, equal element for element (checked "
              "here and in tests/test_ps_fast_paths.py)."]
    if data.get("before"):
        L += ["", "## Before and after the PS fast paths (same frame, same model)", "", data["before"]["note"], "",
              "| | x86 ms encode / decode, h_a / h_s from a cache | KV260 modeled fps, h_a/h_s on the FPGA, 1 core "
              "(enc / dec) | KV260 modeled fps, h_a/h_s on the FPGA, 4 cores (enc / dec) |", "|---|---|---|---|"]
        for name, sm in (("before", data["before"]), ("after (this run)", summary(data))):
            L.append(f"| {name} | {_ms(sm['x86_encode'])} / {_ms(sm['x86_decode'])} | "
                     + " | ".join(f"{sm['fps'][str(k)]['encode']:.1f} / {sm['fps'][str(k)]['decode']:.1f}"
                                  for k in (1, c["slices"])) + " |")
    L += ["", "## What follows", ""] + [f"* {x}" for x in data["conclusions"]] + [
          f"* With h_a / h_s on the FPGA and {c['slices']} cores the PS side costs {_budget(b, c['slices'])} the 33 ms "
          "budget of 30 fps (modeled, central; the range in the table above). What is left on the calling core is "
          "the breakdown above: the frame's one copy into the DMA buffer (`pad`) and out of it (`crop_to_frame`, "
          "`latents_to_chw`), the index CRC (zlib), z's rANS, the scale-index lookup, the range checks, and the "
          "Python of the codec; y's rANS runs on the 4 cores. Each would need re-measuring on a board."]
    return "\n".join(L) + "\n"


def summary(data: dict) -> dict:
    """KV260's modeled central fps with h_a / h_s on the FPGA (1 and 4 cores) and the x86 end to
    end without h_a / h_s, of a run's data (for the before / after table)."""
    rows = {r["cores"]: r["fps"]["mid"] for r in data["model"]["kv260"]["rows"] if not r["hyper_on_ps"]}
    t = data["measured_x86"]["end_to_end"]
    return {"x86_encode": t["encode_without_h_a_h_s"], "x86_decode": t["decode_without_h_s"],
            "fps": {str(k): v for k, v in rows.items()}}


def _budget(mod: dict, cores: int) -> str:
    """'N.Nx / M.Mx' (encode / decode): KV260's modeled seconds, h_a/h_s on the FPGA, over 1/30 s."""
    r = next(r for r in mod["kv260"]["rows"] if not r["hyper_on_ps"] and r["cores"] == cores)
    return " / ".join(f"{r['mid_seconds'][op]['seconds'] * 30:.1f}x" for op in ("encode", "decode")) + " (encode / decode)"


def conclusions(data: dict) -> list[str]:
    out = []
    for bn, bd in BOARDS.items():
        rows = {(r["hyper_on_ps"], r["cores"]): r for r in data["model"][bn]["rows"]}
        today = rows[(True, 1)]["fps"]["mid"]
        out.append(f"{bd['name']}, the code as it is (h_a and h_s in NumPy on the PS, one core): modeled "
                   f"{today['encode']:.2f} fps encode, {today['decode']:.2f} fps decode: far from 30 fps; "
                   "h_a/h_s dominate.")
        k = data["instructions"]["slices"]
        for cores in (1, k):
            r = rows[(False, cores)]["fps"]
            ok = all(r["worst"][op] >= 30 for op in r["worst"])
            mid_ok = all(r["mid"][op] >= 30 for op in r["mid"])
            verdict = ("keeps 30 fps even at the worst end of the range" if ok else
                       "keeps 30 fps at the central estimate, not at the worst end" if mid_ok else
                       "cannot keep 30 fps")
            out.append(f"{bd['name']}, h_a/h_s on the FPGA, {cores} core{'s' if cores > 1 else ''}: "
                       f"{r['mid']['encode']:.1f} / {r['mid']['decode']:.1f} fps (encode / decode, central): {verdict}.")
        # the entropy coder alone (C loops, y + z), at the central IPC and at the worst (0.5)
        for cores in (1, k):
            fps = {}
            for end, ipc in (("mid", IPC["mid"]), ("worst", IPC["low"])):
                t = board_times(data["instructions"], data["measured_x86"], bd, ipc, 0.0, False, cores)
                fps[end] = {op: 1 / (t[op]["rans_y"] + t[op]["rans_z"]) for op in t}
            out.append(f"{bd['name']}, rANS alone (y + z), {cores} core{'s' if cores > 1 else ''}: "
                       f"{fps['mid']['encode']:.0f} / {fps['mid']['decode']:.0f} fps encode / decode "
                       f"(IPC 0.5: {fps['worst']['encode']:.0f} / {fps['worst']['decode']:.0f})"
                       + (": one core cannot decode 30 fps" if fps["mid"]["decode"] < 30 else "") + ".")
    return out


def run(out: Path, build: Path = DEFAULT_BUILD, artifact: str = DEFAULT_ARTIFACT, images=None, repeat: int = 7,
        slices: int = 4, command: str | None = None) -> dict:
    from .integer_codec import IntegerCodec

    t0 = time.perf_counter()
    require_tools()
    tools = build_tools(build)
    frame, paths = load_frame(images)
    codec = IntegerCodec(artifact)
    y, z = frame_latents(codec, frame, build)
    syms = symbols(codec, y, z)
    data_file = build / "frame_symbols.bin"
    write_bench_data(data_file, syms)
    meas = measure_x86(artifact, frame, y, z, build, repeat)
    with tempfile.TemporaryDirectory(dir=build) as work:
        counts = count_instructions(tools, data_file, Path(work), slices)
    a64 = counts.pop("aarch64_streams")
    identical = a64["y"] == meas["streams"]["y"] and a64["z"] == meas["streams"]["z"]
    if not identical:
        raise RuntimeError("the aarch64 harness's streams differ from the extension's: the counts would not be of "
                           "the shipped coder")
    meas.pop("streams")
    data = {
        "label": "modeled, never run on a board",
        "command": command or f"python -m licfpga.host.ps_model --out {out}",
        "artifact": artifact, "images": paths, "tile": meas["tile"],
        "latents": {"y": "x".join(map(str, y.shape)), "z": "x".join(map(str, z.shape))},
        "symbols": {"y": int(y.size), "z": int(z.size)},
        "measured_x86": meas, "instructions": counts, "streams_identical": identical,
        "ipc": IPC, "ipc_source": IPC_SOURCE, "boards": BOARDS, "clock_note": CLOCK_NOTE,
        "tools": {"commands": tools["commands"], "qemu": f"{QEMU} -d in_asm,exec,nochain BINARY ARGS 2>&1 >/dev/null | count_insns"},
        "host": {"cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0],
                 "load": " ".join(f"{v:.2f}" for v in os.getloadavg())},
    }
    data["host"]["cpu"] = _cpu_name()
    data["model"] = model(counts, meas)
    data["conclusions"] = conclusions(data)
    before = out / BEFORE_FILE
    if before.is_file():
        data["before"] = {**summary(json.loads(before.read_text())), "note": BEFORE_NOTE}
    data["runtime_s"] = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    (out / "ps_model.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    (out / "ps_model.md").write_text(report(data))
    return data


def render(out: Path) -> dict:
    """Rebuild ps_model.md/.json from the measurements and counts recorded in
    ``out/ps_model.json``, with this code's model, sources and wording (nothing re-measured)."""
    data = json.loads((out / "ps_model.json").read_text())
    data.update(ipc=IPC, ipc_source=IPC_SOURCE, boards=BOARDS, clock_note=CLOCK_NOTE,
                label="modeled, never run on a board")
    data["model"] = model(data["instructions"], data["measured_x86"])
    data["conclusions"] = conclusions(data)
    (out / "ps_model.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    (out / "ps_model.md").write_text(report(data))
    return data


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.machine()


BEFORE_FILE = "ps_model.before.json"    # the run before the fast paths, kept verbatim beside the report
BEFORE_NOTE = ("Before: `results/board/ps_model.before.json`, the run of commit b1c8625's code (recorded at e1e8a2c): "
               "`searchsorted` scale index, the DMA buffers packed and unpacked through `tobytes` copies, a padded "
               "copy of the frame, int64 latents, `np.abs` range checks, the CRC of a copy of the indexes. After: "
               "the fast paths (a table-lookup scale index equal to the reference, one copy into and one out of "
               "each DMA buffer, the frame padded straight into the send buffer, int32 latents, min/max range "
               "checks, the CRC read from the index array); the files are byte-identical "
               "(tests/test_ps_fast_paths.py). x86 times are CPU time on this shared machine (noisy to ~10%).")

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def main(argv=None) -> None:
    if argv is None and any(os.environ.get(k) != v for k, v in ONE_THREAD.items()):
        # BLAS threads would do h_a / h_s's work off the timed thread (and a board's PS runs
        # it on one core): start again with one-thread BLAS before NumPy loads it
        os.execve(sys.executable, [sys.executable, "-m", "licfpga.host.ps_model", *sys.argv[1:]],
                  {**os.environ, **ONE_THREAD})
    ap = argparse.ArgumentParser(prog="python -m licfpga.host.ps_model", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/board"), help="folder for ps_model.md/.json")
    ap.add_argument("--build", type=Path, default=DEFAULT_BUILD, help="scratch folder (binaries, latents cache)")
    ap.add_argument("--model", default=DEFAULT_ARTIFACT, help="integer artifact")
    ap.add_argument("--image", nargs=4, metavar="PHOTO", help="4 photos for the 2x2 mosaic (default: sun80 training photos)")
    ap.add_argument("--repeat", type=int, default=7, help="x86 timings: best of this many")
    ap.add_argument("--render", action="store_true",
                    help="only rebuild ps_model.md/.json from the recorded OUT/ps_model.json (no measuring)")
    args = ap.parse_args(argv)
    if args.render:
        try:
            data = render(args.out)
        except (OSError, ValueError, KeyError) as exc:
            sys.exit(f"ps_model: cannot render from {args.out / 'ps_model.json'}: {exc}")
        print("\n".join(data["conclusions"]))
        return
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    try:
        data = run(args.out, args.build, args.model, args.image, args.repeat,
                   command="python -m licfpga.host.ps_model " + " ".join(argv if argv is not None else sys.argv[1:]))
    except (RuntimeError, FileNotFoundError, ValueError) as exc:
        sys.exit(f"ps_model: {exc}")
    print("\n".join(data["conclusions"]))
    print(f"wrote {args.out / 'ps_model.md'} and ps_model.json")


if __name__ == "__main__":
    main()
