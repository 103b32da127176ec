"""Coverage-guided fuzzing of the ``.lic`` reader: the container parser and both decoders.

::

    python -m licfpga.host.fuzz --target container|float|integer|all --runs N \\
        --timeout-ms T --rss-mb M --out results/fuzz/

Targets (each fuzzed by `atheris <https://github.com/google/atheris>`_, i.e. libFuzzer,
with the ``licfpga.host`` modules and the integer model instrumented for coverage):

``container``  :func:`licfpga.host.container.unpack` of the input as it is *and* of the input
               with its CRC32 trailer recomputed; a file it accepts must re-``pack`` to the
               same bytes (the format is canonical).
``float``      ``Codec.decode`` (model ``mean-scale-0.013``) of the input, CRC recomputed.
``integer``    ``IntegerCodec.decode`` (artifact ``int-student-0.013``), CRC recomputed.

The seed corpus is real files: 64x64 and 128x192 crops of ``host/samples/*.png``, a gray
one and a 6-tile one, encoded by both backends. A structure-aware mutator
(:class:`LicMutator`, libFuzzer's custom mutator) parses the input into its fields and
changes a header field (sizes, tile, groups, streams, layout, model id, weights hash, latent shapes,
index CRCs, declared payload lengths, the tile table), re-tiles the image consistently, or
changes payload bytes (libFuzzer's own byte mutator on one payload, truncation, swaps ...),
then re-packs with a valid CRC so the fuzzer gets past it. A tenth of the time it mutates
the raw bytes instead.

Outcomes per input: ``ok`` (decoded; the image must have the header's size), ``clear``
(an error the CLI reports in one line: :class:`ContainerError` or another of the project's
error classes), ``unclear`` (a bare ``ValueError`` from a library: the CLI prints it, but
its message is not the codec's), and the findings: ``unexpected`` (any other exception),
``bad_output`` (accepted but wrong: a non-canonical container, an image of the wrong size),
``hangs`` (over ``--timeout-ms``; libFuzzer kills at the next whole second after it),
``crashes`` (a signal: libFuzzer saves the input, the supervisor restarts the worker and
goes on) and ``ooms`` (over ``--rss-mb``; allocations beyond the address-space cap
``--as-mb`` (RLIMIT_AS) fail inside the decoder instead and show as exceptions).

The supervisor (this module's ``main``, no torch) runs one worker process per target at a
time; workers load the models once. Findings are saved under ``OUT/<target>/findings/``
(``.lic`` + ``.txt`` with the traceback), libFuzzer's crash/timeout/oom inputs under
``OUT/<target>/artifacts/``. After fuzzing, the corpus is replayed under coverage.py for the
line coverage of the parser/decoder modules. Figures go to stdout, ``OUT/fuzz.json`` and
``OUT/fuzz.md``; the exit status is 1 when there is any finding.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import mmap
import os
import random
import re
import resource
import struct
import subprocess
import sys
import time
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path

TARGETS = ("container", "float", "integer")
FLOAT_MODEL = "mean-scale-0.013"
INTEGER_MODEL = "int-student-0.013"
SAMPLES = Path(__file__).resolve().parent / "samples"
# modules whose branches feed libFuzzer's coverage: the read path we own. The integer model
# (licfpga.model.golden) is imported uninstrumented first: atheris 3.0.0 leaks the result of
# every instrumented comparison of non-scalar objects (a numpy array per `a < b`: measured
# +1 MB per 1 Mi-element comparison), which grew an integer worker by ~0.1-0.5 MB per input
# (found by this harness's RSS figures; LICFPGA_FUZZ_TRACE_RSS=1 tallies growth per outcome).
INSTRUMENT = ["licfpga.host.container", "licfpga.host.codec_base", "licfpga.host.codec", "licfpga.host.integer_codec",
              "licfpga.host.entropy_coder"]
UNINSTRUMENTED = ["licfpga.model.golden.network"]
COUNTERS = ("executed", "ok", "clear", "unclear", "unexpected", "bad_output", "hangs")
FINDING_KEYS = ("crashes", "hangs", "ooms", "unexpected", "bad_output")

_PRE = struct.Struct("<4sBI")
_FIX = struct.Struct("<IIBIB")          # version 1: width, height, layout, tile, groups
_FIX2 = struct.Struct("<IIBIIBB")       # version 2: width, height, layout, tile_w, tile_h, groups, streams
_ENTRY = struct.Struct("<HHI")


def fix_crc(data: bytes) -> bytes:
    """``data`` with its last 4 bytes replaced by the CRC32 of everything before them."""
    if len(data) < 4:
        return data
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


# ---------------------------------------------------------------------------------------
# structure-aware mutation
# ---------------------------------------------------------------------------------------
@dataclass
class TileRec:
    lh: int
    lw: int
    icrc: int
    payloads: list
    declared: list | None = None     # payload lengths written in the table (None: the real ones)


@dataclass
class LicStruct:
    """A ``.lic`` file as fields that may hold any value (nothing is validated)."""
    magic: bytes
    version: int
    mid: bytes
    whash: bytes
    width: int
    height: int
    layout: int
    tile: int
    groups: int
    tiles: list = field(default_factory=list)
    extra: bytes = b""
    header_len: int | None = None    # None: the real length
    break_crc: bool = False
    tile_h: int | None = None        # version 2 (tile is then the width): None for version 1
    streams: int = 1                 # version 2: streams per latent group

    def n_payloads(self) -> int:
        """Payloads per tile the header implies ((groups - 1) * streams + 1 in version 2)."""
        g = self.groups & 0xFF
        return g if self.tile_h is None else ((g - 1) * (self.streams & 0xFF) + 1 if g else 0)

    @property
    def tile_hh(self) -> int:
        return self.tile if self.tile_h is None else self.tile_h

    @classmethod
    def parse(cls, data: bytes) -> "LicStruct | None":
        """Lenient parse: any file whose lengths are consistent (the CRC is not checked)."""
        n = len(data)
        try:
            magic, version, hlen = _PRE.unpack_from(data)
            off, end = _PRE.size, _PRE.size + hlen
            if end > n - 4:
                return None
            (mlen,) = struct.unpack_from("<H", data, off)
            off += 2
            mid = data[off:off + mlen]
            off += mlen
            whash = data[off:off + 32]
            off += 32
            if version == 2:
                width, height, layout, tile, tile_h, groups, streams = _FIX2.unpack_from(data, off)
                off += _FIX2.size
            else:
                width, height, layout, tile, groups = _FIX.unpack_from(data, off)
                off += _FIX.size
            if off > end or len(whash) != 32:
                return None
            s = cls(magic, version, mid, whash, width, height, layout, tile, groups)
            if version == 2:
                s.tile_h, s.streams = tile_h, streams
            npl, lens = s.n_payloads(), []
            while off < end:
                lh, lw, icrc = _ENTRY.unpack_from(data, off)
                ln = struct.unpack_from(f"<{npl}I", data, off + _ENTRY.size)
                off += _ENTRY.size + 4 * npl
                s.tiles.append(TileRec(lh, lw, icrc, []))
                lens.append(ln)
            if off != end:
                return None
            for t, ln in zip(s.tiles, lens):
                for k in ln:
                    if off + k > n - 4:
                        return None
                    t.payloads.append(data[off:off + k])
                    off += k
            s.extra = data[off:n - 4]
            return s
        except struct.error:
            return None

    def serialize(self) -> bytes:
        mid = self.mid[:0xFFFF]
        if self.tile_h is None:
            fixed = _FIX.pack(self.width & 0xFFFFFFFF, self.height & 0xFFFFFFFF, self.layout & 0xFF,
                              self.tile & 0xFFFFFFFF, self.groups & 0xFF)
        else:
            fixed = _FIX2.pack(self.width & 0xFFFFFFFF, self.height & 0xFFFFFFFF, self.layout & 0xFF,
                               self.tile & 0xFFFFFFFF, self.tile_h & 0xFFFFFFFF, self.groups & 0xFF,
                               self.streams & 0xFF)
        head = [struct.pack("<H", len(mid)), mid, self.whash, fixed]
        for t in self.tiles:
            head.append(_ENTRY.pack(t.lh & 0xFFFF, t.lw & 0xFFFF, t.icrc & 0xFFFFFFFF))
            lens = t.declared if t.declared is not None else [len(p) for p in t.payloads]
            head.append(b"".join(struct.pack("<I", v & 0xFFFFFFFF) for v in lens))
        header = b"".join(head)
        hlen = len(header) if self.header_len is None else self.header_len & 0xFFFFFFFF
        body = _PRE.pack(self.magic[:4].ljust(4, b"\0"), self.version & 0xFF, hlen) + header + b"".join(
            p for t in self.tiles for p in t.payloads) + self.extra
        crc = zlib.crc32(body) ^ (0x1 if self.break_crc else 0)
        return body + struct.pack("<I", crc)


def _interesting(rng: random.Random, cur: int, bits: int) -> int:
    top = (1 << bits) - 1
    pool = [0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 63, 64, 65, 127, 128, 129, 191, 192, 255, 256, 257,
            511, 512, 1023, 1024, 1025, 4095, 4096, 16384, 32767, 32768, 65535, 65536, 1 << 20,
            (1 << 20) + 1, 1 << 24, (1 << 31) - 1, 1 << 31, top - 1, top]
    r = rng.random()
    if r < 0.45:
        v = rng.choice(pool)
    elif r < 0.8:
        v = cur + rng.choice([-64, -2, -1, 1, 2, 64]) if r < 0.7 else cur * rng.choice([2, 4]) // rng.choice([1, 3])
    else:
        v = rng.getrandbits(bits)
    return v & top


def _small_dim(rng: random.Random) -> int:
    if rng.random() < 0.5:
        return rng.choice([1, 2, 31, 63, 64, 65, 100, 127, 128, 129, 191, 192, 193, 255, 256, 257])
    return rng.randint(1, 320)


class LicMutator:
    """libFuzzer custom mutator/crossover over :class:`LicStruct` (see the module doc)."""

    def __init__(self, byte_mutate=None, identities=(), target: str = "container"):
        # byte_mutate(data, max_size) -> bytes: libFuzzer's own mutator (atheris.Mutate) in the
        # workers; a tiny stand-in elsewhere (tests, replay)
        self.byte_mutate = byte_mutate or _simple_byte_mutate
        self.identities = list(identities)      # (model id, weights hash) of the seed files
        # weights: the parser's branches are all in the header; the decoders' in the payloads
        w = (4, 4, 1, 2, 1, 8, 1, 1) if target == "container" else (2, 3, 1, 2, 1, 16, 1, 0.5)
        self.raw = 0.1 if target == "container" else 0.05
        self.ops = list(zip((self._field, self._tile_field, self._table, self._retile, self._fix_latents,
                             self._payload, self._groups, self._identity), w))

    # -- entry points ----------------------------------------------------------------------
    def mutate(self, data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        s = LicStruct.parse(data)
        if s is None or rng.random() < self.raw:
            out = self.byte_mutate(data, max_size)
            return (fix_crc(out) if rng.random() < 0.9 else out)[:max_size]
        ops, weights = zip(*self.ops)
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            rng.choices(ops, weights)[0](s, rng, max_size)
        if rng.random() < 0.03:
            s.break_crc = True
        out = s.serialize()
        if len(out) > max_size:     # grew past -max_len: fall back to a byte mutation
            out = fix_crc(self.byte_mutate(data, max_size))
        if rng.random() < 0.02 and len(out) > 1:                # truncated file
            out = out[:rng.randrange(min(len(out), 16) if rng.random() < 0.3 else len(out))]
        return out[:max_size]

    def crossover(self, d1: bytes, d2: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        a, b = LicStruct.parse(d1), LicStruct.parse(d2)
        if a is None or b is None or not a.tiles or not b.tiles:
            i, j = rng.randrange(len(d1) + 1), rng.randrange(len(d2) + 1)
            return fix_crc(d1[:i] + d2[j:])[:max_size]
        r = rng.random()
        if r < 0.5:          # a tile's payloads from the other file
            ta, tb = rng.choice(a.tiles), rng.choice(b.tiles)
            ta.payloads, ta.declared = list(tb.payloads), None
        elif r < 0.8:        # the other file's tile table, own payloads
            k = min(len(a.tiles), len(b.tiles))
            for ta, tb in zip(a.tiles[:k], b.tiles[:k]):
                ta.lh, ta.lw, ta.icrc = tb.lh, tb.lw, tb.icrc
            a.width, a.height, a.tile = b.width, b.height, b.tile
            if a.tile_h is not None:
                a.tile_h = b.tile_hh
        else:                # the other file's identity
            a.mid, a.whash = b.mid, b.whash
        out = a.serialize()
        return out[:max_size] if len(out) <= max_size else fix_crc(d1)

    # -- operations --------------------------------------------------------------------------
    def _field(self, s: LicStruct, rng, _max):
        f = rng.choice(["width", "height", "width", "height", "tile", "tile", "groups", "layout",
                        "version", "magic", "header_len", "mid", "whash"]
                       + (["tile_h", "tile_h", "streams", "streams"] if s.tile_h is not None else []))
        if f == "streams":
            s.streams = _interesting(rng, s.streams, 8) if rng.random() < 0.5 else s.streams + rng.choice([-1, 1])
        elif f in ("width", "height", "tile", "tile_h"):
            setattr(s, f, _interesting(rng, getattr(s, f), 32))
        elif f in ("groups", "layout", "version"):
            setattr(s, f, _interesting(rng, getattr(s, f), 8) if rng.random() < 0.5
                    else getattr(s, f) + rng.choice([-1, 1]))
        elif f == "magic":
            m = bytearray(s.magic)
            m[rng.randrange(4)] ^= 1 << rng.randrange(8)
            s.magic = bytes(m)
        elif f == "header_len":
            s.header_len = _interesting(rng, len(s.serialize()) - _PRE.size - 4 - sum(
                len(p) for t in s.tiles for p in t.payloads) - len(s.extra), 32)
        elif f == "mid":
            m = bytearray(s.mid)
            r = rng.random()
            if r < 0.3 and m:
                m[rng.randrange(len(m))] = rng.getrandbits(8)
            elif r < 0.5:
                m = m[:rng.randrange(len(m) + 1)]
            elif r < 0.7:
                m += bytes([rng.getrandbits(8) for _ in range(rng.randint(1, 8))])
            elif r < 0.85:
                m = bytearray(rng.choice([b"", b"\xff\xfe", b"mean-scale", b"int-", b"int-hyperprior{}",
                                          "int-\u00e9".encode(), b"\xc3(", b"a" * 300]))
            else:
                m = bytearray(self.byte_mutate(bytes(m), len(m) + 16))
            s.mid = bytes(m)
        else:
            h = bytearray(s.whash)
            h[rng.randrange(32)] ^= 1 << rng.randrange(8)
            s.whash = bytes(h)

    def _tile_field(self, s: LicStruct, rng, _max):
        if not s.tiles:
            return self._table(s, rng, _max)
        t = rng.choice(s.tiles)
        f = rng.choice(["lh", "lw", "lh", "lw", "icrc", "declared"])
        if f in ("lh", "lw"):
            setattr(t, f, _interesting(rng, getattr(t, f), 16))
        elif f == "icrc":
            t.icrc = _interesting(rng, t.icrc, 32) if rng.random() < 0.5 else t.icrc ^ (1 << rng.randrange(32))
        elif t.payloads:
            t.declared = [len(p) for p in t.payloads]
            k = rng.randrange(len(t.declared))
            t.declared[k] = _interesting(rng, t.declared[k], 32)

    def _table(self, s: LicStruct, rng, max_size):
        """Add, drop or duplicate tile entries (the tile count stops matching the grid)."""
        r = rng.random()
        if s.tiles and r < 0.4:
            s.tiles.pop(rng.randrange(len(s.tiles)))
        elif s.tiles and r < 0.8:
            t = rng.choice(s.tiles)
            s.tiles.insert(rng.randrange(len(s.tiles) + 1), TileRec(t.lh, t.lw, t.icrc, list(t.payloads)))
        else:
            s.tiles.append(TileRec(rng.getrandbits(4), rng.getrandbits(4), rng.getrandbits(32),
                                   [b""] * s.n_payloads()))

    def _retile(self, s: LicStruct, rng, max_size):
        """A new image size and tile edge with a consistent tile table (payloads reused)."""
        if rng.random() < 0.15:      # a large image (pixel limit, big latents, allocation)
            big = [4096, 16384, 16385, 65535, 65536, 1 << 19, 1 << 20]
            s.width, s.height = rng.choice(big + [rng.randint(1, 1 << 20)]), rng.choice(big + [_small_dim(rng)])
            s.tile = rng.choice([max(s.width, s.height), 1 << 20, 2**32 - 1, 16384, 65536])
        else:
            s.width, s.height = _small_dim(rng), _small_dim(rng)
            s.tile = rng.choice([64, 64, 128, 128, 192, 256, 1024, 1 << 16, rng.randint(1, 320)])
        if s.tile_h is not None:     # version 2: rectangular tiles too
            s.tile_h = s.tile if rng.random() < 0.5 else rng.choice([64, 128, 192, 1088, rng.randint(1, 320)])
        self._fix_latents(s, rng, max_size)

    def _fix_latents(self, s: LicStruct, rng, max_size):
        """Make the tile table match width/height/tile: grid count, latent shapes."""
        if not (s.width and s.height and s.tile and s.tile_hh):
            return
        tx, ty = -(-s.width // s.tile), -(-s.height // s.tile_hh)
        if tx * ty > 64:
            return
        old = s.tiles or [TileRec(0, 0, 0, [b""] * s.n_payloads())]
        tiles = []
        for k in range(tx * ty):
            j, i = divmod(k, tx)
            th, tw = min(s.tile_hh, s.height - j * s.tile_hh), min(s.tile, s.width - i * s.tile)
            src = old[k % len(old)] if rng.random() < 0.8 else rng.choice(old)
            tiles.append(TileRec(-(-th // 64), -(-tw // 64), src.icrc, list(src.payloads)))
        s.tiles = tiles

    def _payload(self, s: LicStruct, rng, max_size):
        cands = [(t, g) for t in s.tiles for g in range(len(t.payloads))]
        if not cands:
            return
        t, g = rng.choice(cands)
        p = t.payloads[g]
        t.declared = None
        r = rng.random()
        if r < 0.45:
            p = self.byte_mutate(p, max(len(p) + 64, 8))
        elif r < 0.55:
            p = p[:rng.randrange(len(p) + 1)]
        elif r < 0.6:
            p = p + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
        elif r < 0.65:
            p = b""
        elif r < 0.72:
            p = bytes([rng.choice((0, 0xFF))]) * len(p)
        elif r < 0.8 and p:
            b = bytearray(p)
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            p = bytes(b)
        elif r < 0.9:
            t2, g2 = rng.choice(cands)
            p, t2.payloads[g2] = t2.payloads[g2], p
            t2.declared = None
        else:
            p = rng.choice(cands)[0].payloads[0] if rng.random() < 0.5 else p * 2
        t.payloads[g] = p

    def _groups(self, s: LicStruct, rng, max_size):
        """Change the payload group count, keeping the table consistent with it."""
        g = rng.choice([0, 1, 1, 3, 3, 4, 255]) if rng.random() < 0.7 else max(0, (s.groups & 0xFF) + rng.choice((-1, 1)))
        s.groups = g
        if s.tile_h is not None and rng.random() < 0.5:     # version 2: the stream count too
            s.streams = rng.choice([0, 1, 2, 3, 4, 5, 64, 65, 255])
        n = s.n_payloads()
        for t in s.tiles:
            t.declared = None
            t.payloads = (t.payloads + [b"" if rng.random() < 0.5 else bytes(rng.getrandbits(8) for _ in range(8))
                                        for _ in range(n)])[:n]

    def _identity(self, s: LicStruct, rng, _max):
        if self.identities:
            s.mid, s.whash = rng.choice(self.identities)


def _simple_byte_mutate(data: bytes, max_size: int) -> bytes:
    """A small stand-in for libFuzzer's byte mutator (used outside a libFuzzer process)."""
    rng = random.Random(zlib.crc32(data) ^ len(data))
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if b and r < 0.5:
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        elif b and r < 0.7:
            del b[rng.randrange(len(b))]
        else:
            b.insert(rng.randrange(len(b) + 1), rng.getrandbits(8))
    return bytes(b[:max_size])


# ---------------------------------------------------------------------------------------
# targets (run inside a worker)
# ---------------------------------------------------------------------------------------
class Counters:
    """Per-target totals in a memory-mapped file, so they survive a worker's crash."""

    def __init__(self, path: Path | None):
        self._mm = None
        self.local = [0] * len(COUNTERS)
        if path is not None:
            if not path.exists() or path.stat().st_size != 8 * len(COUNTERS):
                path.write_bytes(bytes(8 * len(COUNTERS)))
            self._fd = os.open(path, os.O_RDWR)
            self._mm = mmap.mmap(self._fd, 8 * len(COUNTERS))

    def add(self, name: str, k: int = 1) -> None:
        i = COUNTERS.index(name)
        self.local[i] += k
        if self._mm is not None:
            (v,) = struct.unpack_from("<q", self._mm, 8 * i)
            struct.pack_into("<q", self._mm, 8 * i, v + k)

    @staticmethod
    def read(path: Path) -> dict:
        if not path.exists():
            return dict.fromkeys(COUNTERS, 0)
        vals = struct.unpack(f"<{len(COUNTERS)}q", path.read_bytes()[:8 * len(COUNTERS)])
        return dict(zip(COUNTERS, vals))


def _vm_rss_kb() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except OSError:
        return 0


def _signature(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
    return f"{type(exc).__name__}@{where}"


def _category(exc: BaseException) -> str:
    msg = re.sub(r"0x[0-9a-f]+|[0-9a-f]{12,}|-?\d+", "N", str(exc).split("\n")[0])
    return f"{type(exc).__name__}: {msg[:90]}"


class Harness:
    """The per-input bookkeeping shared by the three targets."""

    def __init__(self, target: str, workdir: Path | None, timeout_ms: float, record: bool = True):
        self.target, self.workdir, self.timeout_ms = target, workdir, timeout_ms
        self.counters = Counters(workdir / "counters.bin" if workdir else None)
        self.findings_dir = workdir / "findings" if workdir else None
        self.categories: dict[str, int] = {}
        self.signatures: dict[str, int] = {}
        self.record = record and workdir is not None
        self._last_flush, self._dirty = time.monotonic(), False
        self.trace_rss, self.rss_growth = bool(os.environ.get("LICFPGA_FUZZ_TRACE_RSS")), {}
        self.budget = None          # this worker's -runs: flush the tallies at the last one
        from licfpga.host.container import ContainerError      # noqa: F401 (instrumented by now)
        from licfpga.host.images import ImagePolicyError

        clear = [ContainerError, ImagePolicyError]
        if target != "container":       # (the container target does not import torch)
            from licfpga.host.pynq_driver import FpgaUnavailable
            from licfpga.model.checkpoint import CheckpointError
            from licfpga.model.golden.network import ArtifactError

            clear += [CheckpointError, ArtifactError, FpgaUnavailable]
        self.clear = tuple(clear)
        # what the CLI turns into a one-line error (host/cli.py main())
        self.cli_errors = self.clear + (ValueError, FileNotFoundError)

    def classify(self, exc: BaseException) -> str:
        if isinstance(exc, self.clear):
            return "clear"
        if isinstance(exc, self.cli_errors):
            # a bare ValueError (numpy, torch ...) or a project-defined subclass
            return "clear" if type(exc).__module__.startswith("licfpga") else "unclear"
        return "unexpected"

    def finding(self, kind: str, data: bytes, sig: str, detail: str) -> None:
        self.signatures[f"{kind}:{sig}"] = self.signatures.get(f"{kind}:{sig}", 0) + 1
        if not self.record:
            return
        self._dirty = True          # findings are tallied exactly: flushed after this input
        tag = hashlib.sha1(f"{kind}:{sig}".encode()).hexdigest()[:10]
        self.findings_dir.mkdir(parents=True, exist_ok=True)
        lic = self.findings_dir / f"{kind}-{tag}.lic"
        if not lic.exists():
            lic.write_bytes(data)
            (self.findings_dir / f"{kind}-{tag}.txt").write_text(
                f"target {self.target}\nkind {kind}\nsignature {sig}\ninput sha1 "
                f"{hashlib.sha1(data).hexdigest()} ({len(data)} bytes)\n\n{detail}\n")
            self.flush()

    def flush(self) -> None:
        if self.workdir is None:
            return
        path = self.workdir / f"tally-{os.getpid()}.json"
        path.write_text(json.dumps({"categories": self.categories, "signatures": self.signatures,
                                    "rss_growth_kb": self.rss_growth, "vm_rss_kb": _vm_rss_kb()}))
        self._last_flush, self._dirty = time.monotonic(), False

    def run(self, data: bytes, body) -> None:
        """Run ``body(data)`` (returns None or a 'bad output' message) and classify it."""
        self.counters.add("executed")
        r0 = _vm_rss_kb() if self.trace_rss else 0
        cat = "ok"
        t0 = time.perf_counter()
        try:
            bad = body(data)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 -- classifying is the point
            kind = self.classify(exc)
            self.counters.add(kind)
            if kind != "clear" or len(self.categories) < 500 or self.trace_rss:
                cat = _category(exc)
                self.categories[cat] = self.categories.get(cat, 0) + 1
            if kind != "clear":
                self.finding(kind, data, _signature(exc), "".join(
                    traceback.format_exception(type(exc), exc, exc.__traceback__)))
        else:
            if bad:
                self.counters.add("bad_output")
                self.finding("bad_output", data, bad.split(":")[0], bad)
            else:
                self.counters.add("ok")
        ms = (time.perf_counter() - t0) * 1e3
        if self.trace_rss:     # debugging aid: RSS growth per outcome (LICFPGA_FUZZ_TRACE_RSS=1)
            self.rss_growth[cat] = self.rss_growth.get(cat, 0) + _vm_rss_kb() - r0
        if ms > self.timeout_ms:
            self.counters.add("hangs")
            self.finding("hang", data, f"slow>{self.timeout_ms:.0f}ms", f"took {ms:.0f} ms")
        n = self.counters.local[0]
        if self._dirty or (self.budget and n >= self.budget) or time.monotonic() - self._last_flush > 1.0:
            self.flush()


def container_body():
    from licfpga.host.container import ContainerError, pack, unpack

    def body(data: bytes):
        fixed = fix_crc(data)
        for d in (data, fixed) if fixed != data else (data,):
            try:
                f = unpack(d)
            except ContainerError:
                continue
            again = pack(f)
            if again != d:
                return (f"non-canonical: unpack accepted a file that re-packs differently "
                        f"({len(d)} -> {len(again)} bytes, model id {f.model_id!r})")
        unpack(fixed)       # raise the (clear) error of the CRC-fixed file, for the tallies
        return None

    return body


def decoder_body(codec):
    from licfpga.host.container import unpack

    def body(data: bytes):
        data = fix_crc(data)
        rgb, layout = codec.decode(data)
        f = unpack(data)
        if getattr(rgb, "shape", None) != (f.height, f.width, 3) or str(rgb.dtype) != "uint8":
            return f"bad image: decoded {getattr(rgb, 'shape', None)} {rgb.dtype}, header {f.width}x{f.height}"
        if layout not in ("rgb", "gray") or (layout == "gray") != (f.layout == 1):
            return f"bad layout: {layout!r} for header layout {f.layout}"
        return None

    return body


def load_codec(target: str):
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    if target == "float":
        from licfpga.host.codec import Codec

        return Codec.load(FLOAT_MODEL)
    from licfpga.host.integer_codec import IntegerCodec

    return IntegerCodec.load(INTEGER_MODEL)


def make_body(target: str):
    return container_body() if target == "container" else decoder_body(load_codec(target))


def write_seeds(out: Path) -> dict:
    """Real files from both backends -> ``out/{float,integer}/*.lic``; returns their identities."""
    import numpy as np

    from licfpga.host.images import load_image

    ids = {}
    for target in ("float", "integer"):
        codec = load_codec(target)
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for png in sorted(SAMPLES.glob("*.png")):
            rgb, _ = load_image(png)
            for h, w in ((64, 64), (128, 192)):
                (d / f"{png.stem}-{h}x{w}.lic").write_bytes(codec.encode(np.ascontiguousarray(rgb[:h, :w])))
        rgb, _ = load_image(sorted(SAMPLES.glob("*.png"))[0])
        gray = np.repeat(rgb[:96, :80].mean(axis=2, keepdims=True).round().astype(np.uint8), 3, axis=2)
        (d / "gray-96x80.lic").write_bytes(codec.encode(gray, "gray"))
        codec.tile = 64
        (d / "tiles-128x192-t64.lic").write_bytes(codec.encode(np.ascontiguousarray(rgb[-128:, -192:])))
        codec.tile, codec.streams = "128x64", 3     # version 2: rectangular tiles, 3 streams of y
        (d / "streams3-136x200-t128x64.lic").write_bytes(codec.encode(np.ascontiguousarray(rgb[-136:, -200:])))
        ids[target] = [codec.model_id, codec.weights_hash.hex()]
    return ids


def _identities(seeds: Path) -> list:
    out = set()
    for p in seeds.glob("*/*.lic"):
        s = LicStruct.parse(p.read_bytes())
        if s is not None:
            out.add((s.mid, s.whash))
    return sorted(out)


def worker_main(target: str, workdir: Path, seeds: Path, timeout_ms: float, budget: int | None,
                libfuzzer_args: list) -> None:
    import atheris

    import importlib

    if target != "container":
        for m in UNINSTRUMENTED + list(filter(None, os.environ.get("LICFPGA_FUZZ_NO_INSTRUMENT", "").split(","))):
            importlib.import_module(m)      # imported first: left uninstrumented
    with atheris.instrument_imports(include=INSTRUMENT):
        import licfpga.host.container  # noqa: F401
        if target != "container":
            import licfpga.host.codec  # noqa: F401
            import licfpga.host.integer_codec  # noqa: F401
    body = make_body(target)
    h = Harness(target, workdir, timeout_ms)
    h.budget = budget
    mut = LicMutator(lambda d, m: atheris.Mutate(d, m), _identities(seeds), target)  # late-bound: set up by Fuzz()

    def one(data: bytes) -> None:
        h.run(data, body)

    atheris.Setup([sys.argv[0]] + libfuzzer_args, one, custom_mutator=mut.mutate,
                  custom_crossover=mut.crossover)
    atheris.Fuzz()


# the read path: the functions a decode runs, per module (their lines are the coverage figure)
READ_PATH = {
    "container.py": ["unpack", "_parse", "tile_grid", "tile_wh", "n_payloads", "LicFile.group_payloads"],
    "codec_base.py": ["BaseCodec.decode", "BaseCodec.check_file", "BaseCodec.check_identity", "BaseCodec.matches",
                      "BaseCodec._tile_box", "BaseCodec._decode_tiles", "BaseCodec._coding_pool"],
    "codec.py": ["Codec.decode", "Codec.expected_groups", "Codec._decompress_tile", "Codec._index_crc_of",
                 "Codec._y_streams"],
    "integer_codec.py": ["IntegerCodec._decompress_tile", "IntegerCodec._z_indexes", "IntegerCodec._synthesis"],
    "entropy_coder.py": ["RansCoder.decode", "CompressAIEntropyCoder.decode_with_indexes",
                         "CompressAIEntropyCoder._coder_for", "as_int32", "decode_streams", "split_points", "_map"],
}
REPLAY_MODULES = {"container": ["container.py"], "float": ["container.py", "codec_base.py", "codec.py", "entropy_coder.py"],
                  "integer": ["container.py", "codec_base.py", "integer_codec.py", "entropy_coder.py"]}


def _function_lines(path: Path, names: list) -> set:
    """Line numbers spanned by the named (``Class.method`` or ``function``) definitions."""
    import ast

    tree, lines = ast.parse(path.read_text()), set()

    def walk(node, prefix):
        for ch in ast.iter_child_nodes(node):
            if isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                q = prefix + ch.name
                if q in names and not isinstance(ch, ast.ClassDef):
                    lines.update(range(ch.lineno, ch.end_lineno + 1))
                walk(ch, q + ".")

    walk(tree, "")
    return lines


def replay_main(target: str, files: list, out_json: Path) -> None:
    """Replay ``files`` under coverage.py: line coverage of the read-path functions and of
    the whole modules -> json."""
    import coverage

    host = Path(__file__).resolve().parent
    paths = [host / m for m in REPLAY_MODULES[target] if (host / m).exists()]
    cov = coverage.Coverage(include=[str(p) for p in paths], data_file=None, branch=False)
    cov.start()
    body = make_body(target)
    h = Harness(target, None, 1e9, record=False)
    for data in [b""] + [Path(p).read_bytes() for p in files]:
        h.run(data, body)
    cov.stop()
    res = {"_replayed": len(files) + 1}
    for path in paths:
        _, stmts, _, missing, _ = cov.analysis2(str(path))
        fn = _function_lines(path, READ_PATH.get(path.name, []))
        rs, rm = [x for x in stmts if x in fn], [x for x in missing if x in fn]
        res[path.name] = {"statements": len(stmts), "covered": len(stmts) - len(missing),
                          "percent": round(100 * (len(stmts) - len(missing)) / max(1, len(stmts)), 1),
                          "read_path_statements": len(rs), "read_path_covered": len(rs) - len(rm),
                          "read_path_percent": round(100 * (len(rs) - len(rm)) / max(1, len(rs)), 1),
                          "read_path_missing": rm}
    out_json.write_text(json.dumps(res))


# ---------------------------------------------------------------------------------------
# supervisor
# ---------------------------------------------------------------------------------------
_EVENTS = (("crashes", re.compile(r"==ERROR: libFuzzer: deadly signal|ERROR: libFuzzer: (fuzz target exited|"
                                  r"fuzz target overwrites|out-of-memory \(malloc)")),
           ("hangs", re.compile(r"ERROR: libFuzzer: timeout after|ALARM: working on the last Unit")),
           ("ooms", re.compile(r"ERROR: libFuzzer: out-of-memory")))
_STAT = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/")


def _py() -> str:
    return sys.executable


def _env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


def _limit_as(as_mb: int):
    def pre():
        if as_mb > 0:
            resource.setrlimit(resource.RLIMIT_AS, (as_mb << 20, as_mb << 20))
    return pre


def _wait(p: subprocess.Popen) -> tuple[int, float]:
    """Wait for ``p``; (exit status, its peak RSS in MB)."""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_maxrss / 1024


def fuzz_target(target: str, out: Path, seeds: Path, runs: int | None, max_time: float | None,
                a) -> dict:
    wd = out / target
    corpus, arts = wd / "corpus", wd / "artifacts"
    for d in (corpus, arts):
        d.mkdir(parents=True, exist_ok=True)
    for old in list(wd.glob("tally-*.json")) + [wd / "counters.bin"]:
        old.unlink(missing_ok=True)
    seed_dirs = [seeds / "float", seeds / "integer"] if target == "container" else [seeds / target]
    hard_s = max(1, math.ceil(a.timeout_ms / 1000)) + 1
    res = {"target": target, "crashes": 0, "ooms": 0, "libfuzzer_hangs": 0, "restarts": 0, "peak_rss_mb": 0.0,
           "cov": 0, "ft": 0, "corpus": 0, "artifacts": []}
    t0 = time.monotonic()
    restarts = 0
    while True:
        done = Counters.read(wd / "counters.bin")["executed"]
        left_runs = None if runs is None else runs - done
        left_time = None if max_time is None else max_time - (time.monotonic() - t0)
        if (left_runs is not None and left_runs <= 0) or (left_time is not None and left_time < 1):
            break
        lf = [f"-timeout={hard_s}", f"-rss_limit_mb={a.rss_mb}", f"-max_len={a.max_len}",
              f"-artifact_prefix={arts}/", "-print_final_stats=1", "-error_exitcode=77",
              "-timeout_exitcode=70", f"-seed={a.seed + restarts if a.seed else 0}", "-len_control=0"]
        if left_runs is not None:
            lf.append(f"-runs={left_runs}")
        if left_time is not None:
            lf.append(f"-max_total_time={max(1, int(left_time))}")
        lf += [str(corpus)] + [str(d) for d in seed_dirs]
        log = wd / f"worker-{restarts}.log"
        cmd = [_py(), "-m", "licfpga.host.fuzz", "--worker", target, "--workdir", str(wd), "--seeds", str(seeds),
               "--timeout-ms", str(a.timeout_ms), "--budget", str(left_runs or 0), "--", *lf]
        with open(log, "w") as fh:
            p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env(), preexec_fn=_limit_as(a.as_mb))
            rc, rss = _wait(p)
        res["peak_rss_mb"] = max(res["peak_rss_mb"], round(rss, 1))
        text = log.read_text(errors="replace")
        for m in _STAT.finditer(text):
            res["cov"], res["ft"] = max(res["cov"], int(m.group(2))), max(res["ft"], int(m.group(3)))
        event = next((k for k, rx in _EVENTS if rx.search(text)), None)
        arts_now = re.findall(r"Test unit written to (\S+)", text)
        res["artifacts"] += arts_now
        if event is None and rc != 0:
            event = "crashes"               # died without libFuzzer's report (killed, or a bug here)
            if "Traceback" in text and not arts_now:
                raise RuntimeError(f"fuzz worker for {target} failed (see {log}):\n{text[-3000:]}")
        if event is None:
            break
        res["crashes" if event == "crashes" else "ooms" if event == "ooms" else "libfuzzer_hangs"] += 1
        restarts += 1
        res["restarts"] = restarts
        if restarts > a.max_restarts:
            res["stopped_early"] = f"more than {a.max_restarts} worker restarts"
            break
    res["wall_s"] = round(time.monotonic() - t0, 1)
    res["corpus"] = len(list(corpus.iterdir()))
    res.update(Counters.read(wd / "counters.bin"))
    res["hangs"] += res.pop("libfuzzer_hangs")
    cats, sigs = {}, {}
    for t in wd.glob("tally-*.json"):
        d = json.loads(t.read_text())
        for k, v in d["categories"].items():
            cats[k] = cats.get(k, 0) + v
        for k, v in d["signatures"].items():
            sigs[k] = sigs.get(k, 0) + v
    res["errors"] = dict(sorted(cats.items(), key=lambda kv: -kv[1])[:25])
    res["findings"] = sigs
    res["finding_files"] = sorted(str(p) for p in (wd / "findings").glob("*.lic")) if (wd / "findings").exists() else []
    res["exec_per_s"] = round(res["executed"] / max(res["wall_s"], 1e-9), 1)
    if a.coverage:
        files = sorted(corpus.iterdir()) + sorted(p for d in seed_dirs for p in d.glob("*.lic"))
        files = files[:a.coverage_max]
        cj = wd / "coverage.json"
        cp = subprocess.run([_py(), "-m", "licfpga.host.fuzz", "--replay", target, "--coverage-json", str(cj),
                             "--", *map(str, files)], env=_env(), capture_output=True, text=True,
                            preexec_fn=_limit_as(a.as_mb))
        res["line_coverage"] = json.loads(cj.read_text()) if cp.returncode == 0 and cj.exists() else {
            "error": cp.stderr[-500:]}
    return res


def _split(spec: str, targets: list) -> dict:
    if not spec:
        return {t: 1 / len(targets) for t in targets}
    w = {k: float(v) for k, v in (kv.split("=") for kv in spec.split(","))}
    tot = sum(w.get(t, 0) for t in targets)
    return {t: w.get(t, 0) / tot for t in targets}


def _git_state() -> dict:
    """HEAD and the uncommitted files (with their blob hashes) the run's code came from."""
    root = Path(__file__).resolve().parent.parent

    def git(*args):
        r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    head = git("rev-parse", "HEAD")
    if not head:
        return {}
    dirty = {}
    for line in git("status", "--porcelain", "--untracked-files=all", "--", "host", "model").splitlines():
        path = line[3:]
        if path.endswith((".py", ".c", ".h", ".so", ".json", ".npz", ".pt")) and (root / path).is_file():
            dirty[path] = git("hash-object", path)
    for so in sorted(root.glob("host/*.so")):       # built extensions (ignored by git)
        dirty[str(so.relative_to(root))] = git("hash-object", str(so))
    return {"head": head, "uncommitted": dirty}


def markdown(rep: dict) -> str:
    cols = ["target", "executed", "ok", "clear", "unclear", "unexpected", "bad_output", "crashes", "hangs", "ooms",
            "peak_rss_mb", "cov", "ft", "corpus", "lines", "wall_s", "exec_per_s"]
    head = [c if c != "lines" else "line coverage: read path (module)" for c in cols]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(cols)]
    for r in rep["targets"]:
        lc = r.get("line_coverage") or {}
        lines = ", ".join(f"{k} {v['read_path_percent']}% ({v['percent']}%)" for k, v in lc.items()
                          if isinstance(v, dict) and "percent" in v)
        rows.append("| " + " | ".join(str(r.get(c, "")) if c != "lines" else lines for c in cols) + " |")
    t = rep["total"]
    rows.append("| **total** | " + " | ".join(str(t.get(c, "")) for c in cols[1:]) + " |")
    rows.append("\nok: decoded/accepted; clear: a one-line error of the codec's own classes; unclear: a bare "
                "library ValueError; unexpected, bad_output, crashes, hangs, ooms: findings. cov/ft: libFuzzer's "
                "coverage counters; line coverage: coverage.py over the final corpus and the seeds.")
    return "\n".join(rows) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m licfpga.host.fuzz", description=__doc__.split("\n")[0])
    p.add_argument("--target", choices=TARGETS + ("all",), default="all")
    p.add_argument("--runs", type=int, default=None, help="inputs in all (split over the targets with --split)")
    p.add_argument("--max-time", type=float, default=None, help="seconds in all (split like --runs)")
    p.add_argument("--split", default="", help="with --target all: weights, e.g. container=8,float=1,integer=1")
    p.add_argument("--timeout-ms", type=float, default=5000, help="per-input time limit (a hang past it)")
    p.add_argument("--rss-mb", type=int, default=3072, help="libFuzzer's RSS limit per worker (-rss_limit_mb)")
    p.add_argument("--as-mb", type=int, default=0,
                   help="RLIMIT_AS of a worker in MB (default: --rss-mb + 4096, room for torch's reservations)")
    p.add_argument("--max-len", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0, help="libFuzzer -seed (0: random)")
    p.add_argument("--max-restarts", type=int, default=50)
    p.add_argument("--no-coverage", dest="coverage", action="store_false", help="skip the coverage.py replay")
    p.add_argument("--coverage-max", type=int, default=3000, help="at most this many corpus files replayed")
    p.add_argument("--out", default="results/fuzz")
    # internal: worker / replay processes
    p.add_argument("--worker", choices=TARGETS, help=argparse.SUPPRESS)
    p.add_argument("--replay", choices=TARGETS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--seeds", help=argparse.SUPPRESS)
    p.add_argument("--budget", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--coverage-json", help=argparse.SUPPRESS)
    p.add_argument("--write-seeds", help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    a = p.parse_args(argv)
    if a.worker:
        worker_main(a.worker, Path(a.workdir), Path(a.seeds), a.timeout_ms, a.budget or None, rest)
        return 0
    if a.replay:
        replay_main(a.replay, rest, Path(a.coverage_json))
        return 0
    if a.write_seeds:
        print(json.dumps(write_seeds(Path(a.write_seeds))))
        return 0
    if a.runs is None and a.max_time is None:
        p.error("give --runs and/or --max-time")
    a.as_mb = a.as_mb or a.rss_mb + 4096
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = list(TARGETS) if a.target == "all" else [a.target]
    share = _split(a.split, targets)
    t0 = time.monotonic()
    seeds = out / "seeds"
    subprocess.run([_py(), "-m", "licfpga.host.fuzz", "--write-seeds", str(seeds)], check=True, env=_env(),
                   stdout=subprocess.DEVNULL)
    seed_s = time.monotonic() - t0
    rep = {"command": "python -m licfpga.host.fuzz " + " ".join(sys.argv[1:] if argv is None else argv),
           "settings": {"timeout_ms": a.timeout_ms, "rss_mb": a.rss_mb, "as_mb": a.as_mb, "max_len": a.max_len,
                        "split": share, "float_model": FLOAT_MODEL, "integer_model": INTEGER_MODEL},
           "seed_files": len(list(seeds.glob("*/*.lic"))), "seed_s": round(seed_s, 1), "git": _git_state(),
           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "targets": []}
    for t in targets:
        if share[t] <= 0:
            continue
        runs = None if a.runs is None else max(1, round(a.runs * share[t]))
        mt = None if a.max_time is None else a.max_time * share[t]
        r = fuzz_target(t, out, seeds, runs, mt, a)
        rep["targets"].append(r)
        print(f"{t}: {r['executed']} inputs, {r['crashes']} crashes, {r['hangs']} hangs, {r['unexpected']} unexpected, "
              f"{r['bad_output']} bad outputs, {r['ooms']} ooms, peak RSS {r['peak_rss_mb']} MB, cov {r['cov']} "
              f"ft {r['ft']}, {r['wall_s']} s", flush=True)
    tot = {k: sum(r[k] for r in rep["targets"]) for k in
           ("executed", "ok", "clear", "unclear", "unexpected", "bad_output", "crashes", "hangs", "ooms", "corpus")}
    tot["peak_rss_mb"] = max((r["peak_rss_mb"] for r in rep["targets"]), default=0)
    tot["wall_s"] = round(time.monotonic() - t0, 1)
    tot["findings"] = sum(tot[k] for k in FINDING_KEYS)
    rep["total"] = tot
    (out / "fuzz.json").write_text(json.dumps(rep, indent=1))
    md = markdown(rep)
    (out / "fuzz.md").write_text(f"`{rep['command']}`\n\n" + md)
    print(md)
    return 1 if tot["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
