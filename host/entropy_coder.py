"""The codecs' entropy coder: a small bounds-checked rANS in C (``host/rans/rans.c``, the
extension module ``licfpga.host._rans``), stream-compatible with CompressAI 1.2.8's
``compressai.ans.RansEncoder`` / ``RansDecoder``.

Same format (64-bit state, 32-bit renormalisation words, 16-bit CDFs, 4-bit bypass coding of
values outside a CDF, ``symbol - offset`` conventions): files written with CompressAI's coder
decode here and new streams are byte-identical to CompressAI's. Unlike CompressAI's decoder,
which reads past the buffer on a corrupt payload (and was seen to crash the process with
SIGSEGV), every read is checked against the buffer end, every CDF index against the table
count, the bypass chunk count against 8, the tables themselves on every call, and, by
default (``strict``), that the stream ends exactly where its encoder started. A malformed
stream raises :class:`ValueError` (the codecs turn it into ``ContainerError``).

* :class:`RansCoder` -- tables packed once into contiguous int32 arrays;
  ``encode(symbols, indexes) -> bytes``, ``decode(data, indexes) -> np.ndarray`` (int32).
  Symbols and indexes may be NumPy arrays of any integer dtype (int32 is taken without a
  copy), other buffers, or lists.
* :func:`encode_streams` / :func:`decode_streams` -- one group of symbols as S independent
  streams (format version 2: stream k holds symbols ``k*n//S .. (k+1)*n//S - 1`` in coding
  order), coded on a thread pool; the C loops run without the GIL, so the streams really run
  in parallel, and the bytes are the same whatever the pool.
* :class:`CompressAIEntropyCoder` -- a drop-in for CompressAI's ``_EntropyCoder``
  (``encode_with_indexes`` / ``decode_with_indexes`` with CompressAI's arguments), set as
  ``model.entropy_bottleneck.entropy_coder`` / ``model.gaussian_conditional.entropy_coder``.

This module needs only NumPy and the compiled extension, no torch or CompressAI (the board
runtime uses it). The extension is built by ``pip install [-e] .`` (pyproject.toml,
``[tool.setuptools] ext-modules``), so a board image installing licfpga from source must
provide a C compiler (gcc/cc) and the Python development headers (``Python.h``; Debian/PYNQ:
``python3-dev``); a prebuilt wheel for the board's Python needs neither.

Benchmark (ours vs CompressAI driven as the codec drove it, with Python lists):
``python -m licfpga.host.entropy_coder --bench``; streams x threads on a whole image through
the integer codec: ``python -m licfpga.host.entropy_coder --bench-streams IMAGE``.
"""

from __future__ import annotations

import numpy as np

from . import _rans

PRECISION = _rans.PRECISION
_I32 = np.iinfo(np.int32)


def as_int32(x, name: str = "array") -> np.ndarray:
    """``x`` as a flat C-contiguous int32 array (no copy when it already is one). Integer
    values outside int32 raise ValueError instead of wrapping."""
    a = np.asarray(x)
    if a.dtype != np.int32:
        if a.size == 0:
            return np.empty(0, np.int32)
        if a.dtype.kind not in "iub":
            raise ValueError(f"{name} must be integers, got dtype {a.dtype}")
        if a.dtype.kind != "b" and (a.min() < _I32.min or a.max() > _I32.max):
            raise ValueError(f"{name} has values outside int32 ({a.min()}..{a.max()})")
        a = a.astype(np.int32)
    return np.ascontiguousarray(a.reshape(-1))


def pack_cdfs(cdfs) -> np.ndarray:
    """CDF rows (a 2-D array, or a list of possibly ragged lists) -> C-contiguous int32 [n, width]."""
    if isinstance(cdfs, (list, tuple)) and cdfs and len({len(r) for r in cdfs}) > 1:
        out = np.zeros((len(cdfs), max(len(r) for r in cdfs)), np.int32)
        for k, r in enumerate(cdfs):
            out[k, :len(r)] = as_int32(r, "cdfs")
        return out
    a = np.asarray(cdfs)
    if a.size == 0:
        return np.zeros((0, 0), np.int32)
    if a.ndim != 2:
        raise ValueError(f"cdfs must be 2-D [tables, width], got shape {a.shape}")
    return as_int32(a, "cdfs").reshape(a.shape)


class RansCoder:
    """rANS with fixed tables: ``cdfs`` [n, width] quantised CDFs (16-bit precision),
    ``cdf_lengths`` [n] (entries used per row), ``offsets`` [n] (symbol of CDF entry 0), as
    CompressAI's entropy models and the integer artifacts store them."""

    def __init__(self, cdfs, cdf_lengths, offsets):
        self.cdfs = pack_cdfs(cdfs)
        self.cdf_lengths = as_int32(cdf_lengths, "cdf_lengths")
        self.offsets = as_int32(offsets, "offsets")
        self._tables = (self.cdfs, self.cdf_lengths, self.offsets)
        self.n_tables, self.width = _rans.check_tables(*self._tables)

    def encode(self, symbols, indexes) -> bytes:
        """symbols[i] with CDF indexes[i] -> the rANS stream."""
        return _rans.encode(as_int32(symbols, "symbols"), as_int32(indexes, "indexes"), *self._tables)

    def decode(self, data, indexes, strict: bool = True) -> np.ndarray:
        """The int32 symbols of ``data`` (one per index). ValueError on a malformed stream;
        ``strict``: also on trailing data or a final state that is not the encoder's."""
        idx = as_int32(indexes, "indexes")
        out = np.empty(idx.size, np.int32)
        _rans.decode(data, idx, *self._tables, out, strict)
        return out


def split_points(n: int, streams: int) -> list[int]:
    """Boundaries of S near-equal contiguous chunks of n symbols: stream k is [p[k], p[k+1])."""
    return [k * n // streams for k in range(streams + 1)]


def _map(pool, fn, items) -> list:
    return list(pool.map(fn, items)) if pool is not None else [fn(x) for x in items]


def encode_streams(coder: RansCoder, symbols, indexes, streams: int, pool=None) -> list[bytes]:
    """``symbols`` (with ``indexes``) as ``streams`` independent rANS streams of near-equal
    symbol counts (:func:`split_points`), encoded on ``pool`` (an Executor; None: here)."""
    sym, idx = as_int32(symbols, "symbols"), as_int32(indexes, "indexes")
    if sym.size != idx.size:
        raise ValueError(f"{sym.size} symbols but {idx.size} indexes")
    p = split_points(sym.size, streams)
    return _map(pool, lambda k: coder.encode(sym[p[k]:p[k + 1]], idx[p[k]:p[k + 1]]), range(streams))


def decode_streams(coder: RansCoder, payloads, indexes, pool=None) -> np.ndarray:
    """The int32 symbols of the streams ``payloads`` (one per index, split as
    :func:`encode_streams` split them), decoded on ``pool``, each strictly
    (:meth:`RansCoder.decode`). ValueError naming the stream if one is malformed."""
    idx = as_int32(indexes, "indexes")
    if len(payloads) == 1:
        return coder.decode(payloads[0], idx)
    p = split_points(idx.size, len(payloads))

    def one(k):
        try:
            return coder.decode(payloads[k], idx[p[k]:p[k + 1]])
        except ValueError as exc:
            raise ValueError(f"stream {k}: {exc}") from None

    return np.concatenate(_map(pool, one, range(len(payloads))))


class Streams(tuple):
    """The S byte strings of one latent group (what :class:`CompressAIEntropyCoder` returns
    and takes in place of one string when it codes in streams)."""


class CompressAIEntropyCoder:
    """Drop-in for ``compressai.entropy_models.entropy_models._EntropyCoder`` ("ans"), on
    :class:`RansCoder`. CompressAI passes the tables as lists on every call; the last packed
    tables are kept and reused while the lists are equal. ``decode_with_indexes`` returns an
    int32 array (CompressAI turns it into a tensor with ``torch.tensor``)."""

    name = "ans"                  # what EntropyModel.__getstate__ pickles

    def __init__(self, streams: int = 1):
        self._key = None
        self._coder = None
        self._encoder = self._decoder = self   # some CompressAI code calls coder._encoder.encode_with_indexes
        # streams > 1: encode returns Streams of that many strings (format version 2); pool:
        # the Executor to code them on (set by the codec while it codes, None: one thread)
        self.streams, self.pool = streams, None

    def _coder_for(self, cdfs, cdf_lengths, offsets) -> RansCoder:
        lists = all(isinstance(a, list) for a in (cdfs, cdf_lengths, offsets))
        key = (cdfs, cdf_lengths, offsets) if lists else None
        if key is not None and self._key is not None and key == self._key:
            return self._coder
        coder = RansCoder(cdfs, cdf_lengths, offsets)
        self._key, self._coder = key, coder
        return coder

    def encode_with_indexes(self, symbols, indexes, cdfs, cdf_lengths, offsets) -> "bytes | Streams":
        coder = self._coder_for(cdfs, cdf_lengths, offsets)
        if self.streams == 1:
            return coder.encode(symbols, indexes)
        return Streams(encode_streams(coder, symbols, indexes, self.streams, self.pool))

    def decode_with_indexes(self, string, indexes, cdfs, cdf_lengths, offsets) -> np.ndarray:
        """``string``: one stream (bytes) or the :class:`Streams` of a group."""
        coder = self._coder_for(cdfs, cdf_lengths, offsets)
        if isinstance(string, Streams):
            return decode_streams(coder, string, indexes, self.pool)
        return coder.decode(string, indexes)


# -- benchmark ---------------------------------------------------------------------------------
def _sample_symbols(tables: dict, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(symbols, indexes): indexes uniform over the tables, each symbol drawn from its own
    table's distribution (the escape slot -> a geometric-tailed value outside the CDF)."""
    rng = np.random.default_rng(seed)
    cdf, lens, off = tables["cdf"], tables["cdf_length"], tables["offset"]
    idx = rng.integers(0, len(lens), n).astype(np.int32)
    u = rng.integers(0, 1 << PRECISION, n)
    sym = np.empty(n, np.int32)
    for k in range(len(lens)):
        sel = idx == k
        s = np.searchsorted(cdf[k, :lens[k]], u[sel], side="right") - 1
        esc = s == lens[k] - 2
        tail = rng.geometric(0.3, int(esc.sum()))
        s[esc] = np.where(rng.random(int(esc.sum())) < 0.5, -tail, lens[k] - 3 + tail)
        sym[sel] = s + off[k]
    return sym, idx


def bench_entropy(n: int = 1_000_000, artifact: str = "int-student-0.013", repeat: int = 3) -> dict:
    """Symbols/s of encode and decode, ours vs CompressAI's RansEncoder/RansDecoder driven as
    the integer codec drove them (symbols, indexes as Python lists; tables as lists, built
    once), on ``n`` symbols drawn from the artifact's y tables. Best of ``repeat``."""
    import time

    from compressai.ans import RansDecoder, RansEncoder

    from licfpga.model.golden.network import IntegerModel

    from .integer_codec import resolve_artifact

    t = IntegerModel.load(resolve_artifact(artifact)).entropy_tables("y")
    sym, idx = _sample_symbols(t, n)
    ours = RansCoder(t["cdf"], t["cdf_length"], t["offset"])
    lists = ([list(map(int, r)) for r in t["cdf"]], t["cdf_length"].tolist(), t["offset"].tolist())

    def best(f):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = f()
            times.append(time.perf_counter() - t0)
        return min(times), out

    te_o, data = best(lambda: ours.encode(sym, idx))
    td_o, dec = best(lambda: ours.decode(data, idx))
    te_c, data_c = best(lambda: RansEncoder().encode_with_indexes(sym.tolist(), idx.tolist(), *lists))
    td_c, dec_c = best(lambda: np.asarray(RansDecoder().decode_with_indexes(data_c, idx.tolist(), *lists),
                                          dtype=np.int32))
    assert data == data_c and np.array_equal(dec, sym) and np.array_equal(dec_c, sym)
    res = {"symbols": n, "bytes": len(data), "bits_per_symbol": 8 * len(data) / n,
           "encode": {"ours": n / te_o, "compressai": n / te_c}, "decode": {"ours": n / td_o, "compressai": n / td_c}}
    print(f"{n} symbols from {artifact}'s y tables ({t['cdf'].shape[0]} CDFs, up to {t['cdf'].shape[1]} entries), "
          f"{len(data)} bytes ({res['bits_per_symbol']:.3f} bit/symbol), streams identical")
    for op in ("encode", "decode"):
        o, c = res[op]["ours"], res[op]["compressai"]
        print(f"{op}: ours {o / 1e6:7.2f} M symbols/s   CompressAI (lists) {c / 1e6:7.2f} M symbols/s   "
              f"ratio {o / c:5.2f}x")
    return res


def frame_1080p(data_dir="../shared/data/train") -> np.ndarray:
    """A 1920 x 1080 RGB frame of real photos: the training set has no 1080p photo, so a 2 x 2
    mosaic of the 960 x 540 centre crops of the first four photos (sorted by path) at least
    that large."""
    from pathlib import Path

    from .images import load_image

    crops = []
    for path in sorted(p for p in Path(data_dir).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        rgb, _ = load_image(path)
        h, w = rgb.shape[:2]
        if h >= 540 and w >= 960:
            y0, x0 = (h - 540) // 2, (w - 960) // 2
            crops.append(rgb[y0:y0 + 540, x0:x0 + 960])
        if len(crops) == 4:
            return np.ascontiguousarray(np.concatenate([np.concatenate(crops[:2], axis=1),
                                                        np.concatenate(crops[2:], axis=1)], axis=0))
    raise FileNotFoundError(f"fewer than four photos of at least 960x540 under {data_dir}")


def _parallel_control(threads: int, repeat: int = 5) -> float:
    """Speed-up of ``threads`` threads over one on a GIL-free C loop (hashlib's SHA-256 of
    large buffers): how many cores the machine actually gives a process right now."""
    import hashlib
    import os
    import time
    from concurrent.futures import ThreadPoolExecutor

    if threads <= 1:
        return 1.0
    buf = os.urandom(16 << 20)

    def run(pool):
        t0 = time.perf_counter()
        jobs = range(2 * threads)
        list(pool.map(lambda _: hashlib.sha256(buf).digest(), jobs)) if pool else [hashlib.sha256(buf).digest()
                                                                                   for _ in jobs]
        return time.perf_counter() - t0

    with ThreadPoolExecutor(threads) as pool:
        one, many = min(run(None) for _ in range(repeat)), min(run(pool) for _ in range(repeat))
    return one / many


def bench_streams(image=None, artifact: str = "int-student-0.013", tile: str = "1920x1088",
                  streams=(1, 2, 4), threads=(1, 2), repeat: int = 20, data_dir="../shared/data/train") -> list[dict]:
    """Entropy-coding time of one frame through the integer codec's coders, per (S, threads):
    y as S streams (:func:`encode_streams` / :func:`decode_streams` on a pool of that many
    threads) plus z (one stream); the transforms run once, outside the timing. ``image``: a
    path (default :func:`frame_1080p`), coded as one ``tile`` (the FPGA frame). Best of
    ``repeat``; asserts the bytes do not depend on the thread count and the symbols decode."""
    import os
    import time
    from concurrent.futures import ThreadPoolExecutor

    from .images import load_image
    from .integer_codec import IntegerCodec

    codec = IntegerCodec(artifact, tile=tile)
    rgb = load_image(image)[0] if image is not None else frame_1080p(data_dir)
    tw, th = codec.tile
    if rgb.shape[0] > th or rgb.shape[1] > tw:
        raise ValueError(f"image {rgb.shape[1]}x{rgb.shape[0]} is larger than one {tw}x{th} tile")
    t0 = time.perf_counter()
    y, z = codec._analysis(codec._pad(rgb))
    idx = codec.model.scale_indexes(codec.model.scale_codes(z))
    t_model = time.perf_counter() - t0
    zs, zi = z - codec._z_median[:, None, None], codec._z_indexes(z.shape)
    y32 = as_int32(y, "y")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{rgb.shape[1]}x{rgb.shape[0]} frame as one {tw}x{th} tile, {artifact}: y {y.shape} = {y.size} symbols, "
          f"z {z.shape} = {z.size}; transforms {t_model:.1f} s (not timed below); {os.cpu_count()} CPUs, "
          f"load average {load:.2f}; best of {repeat}, the configurations interleaved in shuffled rounds")
    configs = [(S, T) for S in streams for T in threads]
    pools = {T: ThreadPoolExecutor(T) if T > 1 else None for T in threads}
    flat_idx = idx.reshape(-1)
    enc = {c: [] for c in configs}
    dec = {c: [] for c in configs}
    alone = {S: ([], []) for S in streams}     # each stream coded alone, serially: (encode, decode) times
    coded = {}
    try:
        order = np.random.default_rng(0)
        for _ in range(repeat):      # round-robin, shuffled: every configuration sees the same machine load
            for S, T in [configs[i] for i in order.permutation(len(configs))]:
                pool = pools[T]
                t1 = time.perf_counter()
                ys, zb = encode_streams(codec.y_coder, y32, idx, S, pool), codec.z_coder.encode(zs, zi)
                t2 = time.perf_counter()
                yd, _ = decode_streams(codec.y_coder, ys, idx, pool), codec.z_coder.decode(zb, zi)
                t3 = time.perf_counter()
                enc[S, T].append(t2 - t1)
                dec[S, T].append(t3 - t2)
                assert np.array_equal(yd, y32), "streams did not decode to the symbols"
                assert coded.setdefault(S, (ys, zb)) == (ys, zb), "bytes depend on the thread count"
            for S in streams:
                p, (ys, _) = split_points(y32.size, S), coded[S]
                te, td = [], []
                for k in range(S):
                    t1 = time.perf_counter()
                    codec.y_coder.encode(y32[p[k]:p[k + 1]], flat_idx[p[k]:p[k + 1]])
                    t2 = time.perf_counter()
                    codec.y_coder.decode(ys[k], flat_idx[p[k]:p[k + 1]])
                    te.append(t2 - t1)
                    td.append(time.perf_counter() - t2)
                alone[S][0].append(te)
                alone[S][1].append(td)
            zb = coded[streams[0]][1]
            t1 = time.perf_counter()
            codec.z_coder.encode(zs, zi)
            t2 = time.perf_counter()
            codec.z_coder.decode(zb, zi)
            alone.setdefault("z", ([], []))
            alone["z"][0].append(t2 - t1)
            alone["z"][1].append(time.perf_counter() - t2)
    finally:
        for pool in pools.values():
            if pool is not None:
                pool.shutdown()
    print(f"control: {_parallel_control(max(threads)):.2f}x from {max(threads)} threads on SHA-256 of "
          f"{2 * max(threads)} x 16 MB "
          "(releases the GIL too): what the machine lets threads gain right now")
    print(f"{'S':>3} {'threads':>7} {'bytes':>8} {'encode ms':>10} {'decode ms':>10} {'enc speed-up':>13} "
          f"{'dec speed-up':>13}  {'enc path':>9} {'dec path':>9}")
    rows, base = [], (min(enc[configs[0]]), min(dec[configs[0]]))
    tz_e, tz_d = min(alone["z"][0]), min(alone["z"][1])
    for S, T in configs:
        ys, zb = coded[S]
        te, td = min(enc[S, T]), min(dec[S, T])
        # the longest stream (best of its own runs) + z: the time with one free core per stream
        pe = tz_e + max(min(r[k] for r in alone[S][0]) for k in range(S))
        pd = tz_d + max(min(r[k] for r in alone[S][1]) for k in range(S))
        row = {"streams": S, "threads": T, "bytes": sum(map(len, ys)) + len(zb), "encode_ms": te * 1e3,
               "decode_ms": td * 1e3, "encode_path_ms": pe * 1e3, "decode_path_ms": pd * 1e3}
        rows.append(row)
        print(f"{S:>3} {T:>7} {row['bytes']:>8} {te * 1e3:>10.2f} {td * 1e3:>10.2f} {base[0] / te:>12.2f}x "
              f"{base[1] / td:>12.2f}x  {pe * 1e3:>9.2f} {pd * 1e3:>9.2f}")
    print("speed-ups against the first row; path: the longest y stream coded alone + z (the time on one free "
          "core per stream); bytes identical for every thread count")
    return rows


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m licfpga.host.entropy_coder", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", action="store_true", help="encode/decode throughput, ours vs CompressAI")
    ap.add_argument("-n", type=int, default=1_000_000, help="symbols (default 1e6)")
    ap.add_argument("--model", default="int-student-0.013", help="integer artifact whose y tables to use")
    ap.add_argument("--bench-streams", action="store_true",
                    help="entropy-coding time of one frame (integer codec), per streams S x threads")
    ap.add_argument("--image", help="--bench-streams: the frame (default: a 1920x1080 mosaic of training photos)")
    ap.add_argument("--data", default="../shared/data/train", help="--bench-streams: the training photos")
    ap.add_argument("--streams", default="1,2,4", help="--bench-streams: S values (default 1,2,4)")
    ap.add_argument("--threads", default="1,2", help="--bench-streams: thread counts (default 1,2)")
    ap.add_argument("--repeat", type=int, default=20, help="--bench-streams: best of (default 20)")
    args = ap.parse_args(argv)
    if args.bench_streams:
        ints = lambda v: tuple(int(x) for x in v.split(","))    # noqa: E731
        bench_streams(args.image, args.model, streams=ints(args.streams), threads=ints(args.threads),
                      repeat=args.repeat, data_dir=args.data)
    elif args.bench:
        bench_entropy(args.n, args.model)
    else:
        ap.print_help()


if __name__ == "__main__":
    main()
