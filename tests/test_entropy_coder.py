"""Our rANS (host/rans/rans.c via licfpga.host.entropy_coder) against CompressAI's.

(a) byte-identical streams to CompressAI's RansEncoder on random tables/symbols, bypass
    values included; (b) each decoder decodes the other's streams; (c) truncated, extended,
    random and bit-flipped streams raise ValueError or decode to int32 values, never read
    out of bounds (a subprocess decodes from memory that ends at a PROT_NONE guard page, so
    an over-read is a SIGSEGV, i.e. a failed test); (d) both codecs still round-trip, write
    the same files as with CompressAI's coder, decode old files written with it, and turn a
    garbled payload behind a valid file CRC into a ContainerError.
"""

import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from compressai.ans import RansDecoder, RansEncoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from licfpga.host import entropy_coder as ec
from licfpga.host.entropy_coder import CompressAIEntropyCoder, RansCoder

from .conftest import sample_image

RANS_L = 1 << 31
HYP = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# ---- random tables and symbols -----------------------------------------------------------
def random_cdf(rng, length: int) -> np.ndarray:
    """A valid 16-bit quantised CDF of ``length`` entries (``length - 1`` symbols, each >= 1)."""
    w = rng.gamma(0.4, size=length - 1) + 1e-9
    f = 1 + np.floor(w / w.sum() * (65536 - (length - 1))).astype(np.int64)
    f[np.argmax(f)] += 65536 - f.sum()
    return np.concatenate([[0], np.cumsum(f)])


def random_tables(rng, n=None, max_len=40):
    n = n or int(rng.integers(1, 7))
    lens = rng.integers(3, max_len, n)
    width = int(lens.max() + rng.integers(0, 3))
    cdfs = rng.integers(-5, 70000, (n, width))            # junk beyond each length: never read
    for k, L in enumerate(lens):
        cdfs[k, :L] = random_cdf(rng, L)
    return cdfs.astype(np.int32), lens.astype(np.int32), rng.integers(-50, 50, n).astype(np.int32)


def random_symbols(rng, tables, n, p_out=0.15, max_bits=26):
    """Symbols drawn from their tables, a fraction ``p_out`` outside them (bypass coded),
    |value| < 2^max_bits: CompressAI's encoder loops forever on a bypass value >= 2^28
    (its chunk count loop shifts a uint32 by 32, which x86 takes as a shift by 0)."""
    cdfs, lens, offs = tables
    idx = rng.integers(0, len(lens), n).astype(np.int32)
    u = rng.integers(0, 65536, n)
    val = np.array([np.searchsorted(cdfs[k, :lens[k]], v, side="right") - 1 for k, v in zip(idx, u)], np.int64)
    out = rng.random(n) < p_out
    mag = rng.integers(1, 1 << rng.integers(1, max_bits + 1, n))
    val[out] = np.where(rng.random(out.sum()) < 0.5, -mag[out], lens[idx[out]] - 2 + mag[out] - 1)
    return (val + offs[idx]).astype(np.int32), idx


def cai_encode(sym, idx, tables) -> bytes:
    cdfs, lens, offs = tables
    return RansEncoder().encode_with_indexes(sym.tolist(), idx.tolist(), cdfs.tolist(), lens.tolist(), offs.tolist())


def cai_decode(data, idx, tables) -> np.ndarray:
    cdfs, lens, offs = tables
    return np.asarray(RansDecoder().decode_with_indexes(data, idx.tolist(), cdfs.tolist(), lens.tolist(),
                                                        offs.tolist()), np.int32)


def craft(ops) -> bytes:
    """Reference rANS encoder in Python (CompressAI's format) for arbitrary operation lists, in
    decoding order: ("s", start, freq) a 16-bit symbol, ("b", v) a 4-bit bypass chunk."""
    x, words = RANS_L, []
    for op in reversed(ops):
        freq = op[2] if op[0] == "s" else 1 << 12
        if x >= ((RANS_L >> 16) << 32) * freq:
            words.append(x & 0xFFFFFFFF)
            x >>= 32
        x = ((x // freq) << 16) + x % freq + op[1] if op[0] == "s" else (x << 4) | op[1]
    return struct.pack("<II", x & 0xFFFFFFFF, x >> 32) + b"".join(struct.pack("<I", w) for w in reversed(words))


def y_tables():
    from licfpga.model.golden.network import IntegerModel

    from licfpga.host.integer_codec import resolve_artifact

    t = IntegerModel.load(resolve_artifact("int-student-0.013")).entropy_tables("y")
    return t["cdf"], t["cdf_length"], t["offset"]


# ---- (a) + (b): CompressAI compatibility -------------------------------------------------
@HYP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(16, 3000), p_out=st.sampled_from([0.0, 0.02, 0.3, 1.0]))
def test_streams_identical_to_compressai_and_cross_decode(seed, n, p_out):
    rng = np.random.default_rng(seed)
    tables = random_tables(rng)
    sym, idx = random_symbols(rng, tables, n, p_out)
    coder = RansCoder(*tables)
    ours, theirs = coder.encode(sym, idx), cai_encode(sym, idx, tables)
    assert ours == theirs
    np.testing.assert_array_equal(coder.decode(theirs, idx), sym)          # CompressAI's stream, our decoder
    np.testing.assert_array_equal(cai_decode(ours, idx, tables), sym)      # our stream, CompressAI's decoder


def test_shipped_y_tables_identical_to_compressai():
    tables = y_tables()
    rng = np.random.default_rng(1)
    sym, idx = ec._sample_symbols(dict(zip(("cdf", "cdf_length", "offset"), tables)), 50_000)
    sym[::97] += rng.integers(-5000, 5000, sym[::97].size).astype(np.int32)      # plenty of bypass values
    data = RansCoder(*tables).encode(sym, idx)
    assert data == cai_encode(sym, idx, tables)
    np.testing.assert_array_equal(RansCoder(*tables).decode(data, idx), sym)


def test_python_reference_matches_the_escape_scheme():
    """The C encoder's bypass layout equals the format as written out in `craft`."""
    cdf = np.array([[0, 20000, 40000, 65536]], np.int32)
    coder = RansCoder(cdf, [4], [-1])
    # symbol -1 -> value 0 (in range); 1 -> value 2 = escape, raw 0; 40 -> raw 2*(41-2) = 78 = 0x4E;
    # -3 -> value -2, raw 3
    data = coder.encode([-1, 1, 40, -3], [0, 0, 0, 0])
    esc = ("s", 40000, 25536)
    assert data == craft([("s", 0, 20000), esc, ("b", 0), esc, ("b", 2), ("b", 0xE), ("b", 0x4), esc, ("b", 1), ("b", 3)])


def test_int32_extremes_round_trip():
    cdf = np.array([[0, 30000, 60000, 65536]], np.int32)
    coder = RansCoder(cdf, [4], [0])
    sym = np.array([-2**31, 2**31 - 1, 0, 1, 2, -1, 2**30, -2**30], np.int32)
    idx = np.zeros_like(sym)
    np.testing.assert_array_equal(coder.decode(coder.encode(sym, idx), idx), sym)


def test_empty_and_input_types():
    tables = random_tables(np.random.default_rng(3))
    coder = RansCoder(*tables)
    assert coder.encode([], []) == struct.pack("<II", RANS_L, 0)
    assert coder.decode(coder.encode([], []), []).shape == (0,)
    sym, idx = random_symbols(np.random.default_rng(4), tables, 100)
    data = coder.encode(sym, idx)
    assert coder.encode(sym.tolist(), idx.tolist()) == data                    # lists
    assert coder.encode(sym.astype(np.int64).reshape(10, 10), idx.astype(np.int16)) == data   # other ints, N-d
    np.testing.assert_array_equal(coder.decode(bytearray(data), idx.tolist()), sym)
    np.testing.assert_array_equal(coder.decode(memoryview(data), idx), sym)
    with pytest.raises(ValueError, match="outside int32"):
        coder.encode(np.array([2**31] * 100), idx)
    with pytest.raises(ValueError, match="integers"):
        coder.encode(sym.astype(np.float32), idx)
    with pytest.raises(ValueError, match="symbols but"):
        coder.encode(sym[:-1], idx)


def test_compressai_drop_in():
    """CompressAIEntropyCoder takes CompressAI's list arguments (tables passed on every call)."""
    rng = np.random.default_rng(5)
    tables = random_tables(rng)
    sym, idx = random_symbols(rng, tables, 500)
    cdfs, lens, offs = (t.tolist() for t in tables)
    drop = CompressAIEntropyCoder()
    assert drop.name == "ans" and drop._encoder.encode_with_indexes is not None
    data = drop.encode_with_indexes(sym.tolist(), idx.tolist(), cdfs, lens, offs)
    assert data == cai_encode(sym, idx, tables)
    assert drop.encode_with_indexes(sym.tolist(), idx.tolist(), cdfs, lens, offs) == data   # cached tables
    np.testing.assert_array_equal(drop.decode_with_indexes(data, idx.tolist(), cdfs, lens, offs), sym)
    other = random_tables(rng)                                  # new tables: not the cached ones
    s2, i2 = random_symbols(rng, other, 200)
    assert drop.encode_with_indexes(s2.tolist(), i2.tolist(), *(t.tolist() for t in other)) == cai_encode(s2, i2, other)


def test_imports_without_torch_or_compressai():
    code = ("import sys, licfpga.host.entropy_coder as e; "
            "assert not {'torch', 'compressai'} & set(sys.modules), sorted(sys.modules); "
            "print(e.RansCoder([[0, 65535, 65536]], [3], [0]).encode([0, 5], [0, 0]).hex())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---- (c) malformed tables, indexes and streams -------------------------------------------
def test_invalid_tables_and_indexes_raise():
    cdf = np.array([[0, 100, 65536], [0, 65536, 0]], np.int32)
    for bad in ([[1, 100, 65536]], [[0, 100, 65535]], [[0, 100, 100, 65536]], [[0, 200, 100, 65536]]):
        with pytest.raises(ValueError, match="CDF 0"):
            RansCoder(bad, [len(bad[0])], [0])
    with pytest.raises(ValueError, match="length"):
        RansCoder(cdf, [3, 4], [0, 0])
    with pytest.raises(ValueError, match="offsets"):
        RansCoder(cdf, [3, 2], [0])
    coder = RansCoder(cdf, [3, 2], [0, 0])
    data = coder.encode([0, 1, 7], [0, 1, 1])
    for bad_idx in ([0, 2, 0], [0, -1, 0], [0, 2**31 - 1, 0]):
        with pytest.raises(ValueError, match="CDF index"):
            coder.encode([0, 0, 0], bad_idx)
        with pytest.raises(ValueError, match="CDF index"):
            coder.decode(data, bad_idx)
    np.testing.assert_array_equal(coder.decode(data, [0, 1, 1]), [0, 1, 7])


def test_stream_length_and_strict_end():
    tables = random_tables(np.random.default_rng(6))
    coder = RansCoder(*tables)
    sym, idx = random_symbols(np.random.default_rng(7), tables, 300)
    data = coder.encode(sym, idx)
    for bad in (b"", data[:4], data[:-1], data + b"\0"):
        with pytest.raises(ValueError, match="multiple of 4"):
            coder.decode(bad, idx)
    with pytest.raises(ValueError, match="truncated"):
        coder.decode(data[:-4], idx)
    with pytest.raises(ValueError, match="trailing"):
        coder.decode(data + bytes(4), idx)
    # CompressAI ignores trailing data; so does strict=False
    np.testing.assert_array_equal(coder.decode(data + bytes(8), idx, strict=False), sym)
    with pytest.raises(ValueError, match="truncated|final state"):
        coder.decode(data, idx[:-1].tolist() + [idx[-1]] * 50)         # more symbols than were coded
    with pytest.raises(ValueError, match="final state|trailing"):
        coder.decode(data, idx[:-3])                                    # fewer


def test_bypass_chunk_count_is_bounded():
    cdf = np.array([[0, 20000, 40000, 65536]], np.int32)
    coder = RansCoder(cdf, [4], [0])
    esc = ("s", 40000, 25536)
    ok = craft([esc, ("b", 8)] + [("b", 0xF)] * 8)              # raw 0xFFFFFFFF: value -2^31
    assert coder.decode(ok, [0]).tolist() == [-2**31]
    for ops in ([("b", 9)] + [("b", 1)] * 9,                    # 9 chunks: more than 32 bits
                [("b", 15), ("b", 15), ("b", 15)] + [("b", 1)] * 45,
                [("b", 15)] * 40):                              # CompressAI's unbounded `while (val == 15)` loop
        with pytest.raises(ValueError, match="bypass chunks"):
            coder.decode(craft([esc] + ops), [0])
    with pytest.raises(ValueError, match="overflows int32"):
        coder.decode(craft([esc, ("b", 8)] + [("b", 0xE)] + [("b", 0xF)] * 7), [0])   # raw 0xFFFFFFFE


def _corruptions(rng, data: bytes, k: int):
    """Truncations, extensions, bit flips, random words and random streams of ``data``."""
    n = len(data)
    for _ in range(k):
        kind = rng.integers(0, 5)
        if kind == 0:
            yield data[:rng.integers(0, n)]
        elif kind == 1:
            yield data + rng.bytes(int(rng.integers(1, 64)))
        elif kind == 2:
            b = bytearray(data)
            for p in rng.integers(0, 8 * n, rng.integers(1, 4)):
                b[p // 8] ^= 1 << (p % 8)
            yield bytes(b)
        elif kind == 3:
            b = bytearray(data)
            p = 4 * int(rng.integers(0, n // 4))
            b[p:p + 4] = rng.bytes(4)
            yield bytes(b)
        else:
            yield rng.bytes(4 * int(rng.integers(0, 2 * n // 4 + 3)))


@HYP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400), p_out=st.sampled_from([0.0, 0.1, 1.0]))
def test_malformed_streams_raise_or_decode(seed, n, p_out):
    rng = np.random.default_rng(seed)
    tables = random_tables(rng)
    coder = RansCoder(*tables)
    sym, idx = random_symbols(rng, tables, n, p_out)
    data = coder.encode(sym, idx)
    for bad in _corruptions(rng, data, 20):
        for strict in (True, False):
            try:
                out = coder.decode(bad, idx, strict=strict)
            except ValueError as e:
                assert "rANS stream" in str(e)
            else:
                assert out.dtype == np.int32 and out.shape == (n,)


GUARDED_DECODE = textwrap.dedent("""
    import ctypes, mmap, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from tests.test_entropy_coder import _corruptions, random_symbols, random_tables, y_tables
    from licfpga.host.entropy_coder import RansCoder

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    PAGE = mmap.PAGESIZE

    def guarded(data):
        # data copied to end exactly at a PROT_NONE page: reading one byte past it faults
        pages = max(1, -(-len(data) // PAGE))
        mm = mmap.mmap(-1, (pages + 1) * PAGE)
        c = ctypes.c_char.from_buffer(mm)
        addr = ctypes.addressof(c)
        del c
        assert libc.mprotect(addr + pages * PAGE, PAGE, 0) == 0, ctypes.get_errno()   # PROT_NONE
        start = pages * PAGE - len(data)
        mm[start:start + len(data)] = data
        return mm, memoryview(mm)[start:pages * PAGE]

    rng = np.random.default_rng(int(sys.argv[2]))
    cases = [(y_tables(), 20000)] + [(random_tables(rng), int(rng.integers(1, 2000))) for _ in range(10)]
    decoded = raised = 0
    for tables, n in cases:
        coder = RansCoder(*tables)
        sym, idx = random_symbols(rng, tables, n, 0.1)
        data = coder.encode(sym, idx)
        mm, view = guarded(data)
        assert (coder.decode(view, idx) == sym).all()
        view.release(); mm.close()
        for bad in _corruptions(rng, data, int(sys.argv[3])):
            for strict in (True, False):
                mm, view = guarded(bad)
                try:
                    coder.decode(view, idx, strict=strict)
                    decoded += 1
                except ValueError:
                    raised += 1
                view.release(); mm.close()
    print("decoded", decoded, "raised", raised)
""")


def test_corrupt_streams_never_read_past_the_buffer(tmp_path):
    """Decoding from memory followed by a guard page: an out-of-bounds read is a SIGSEGV."""
    from pathlib import Path

    r = subprocess.run([sys.executable, "-c", GUARDED_DECODE, str(Path(__file__).parents[1]), "11", "150"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"decoder crashed or failed (rc {r.returncode}): {r.stderr[-3000:]}"
    assert "raised" in r.stdout


# ---- (d) the codecs ----------------------------------------------------------------------
class _CompressAIBacked:
    """A RansCoder stand-in driving CompressAI's coder as the integer codec used to."""

    def __init__(self, coder: RansCoder):
        self.tables = (coder.cdfs, coder.cdf_lengths, coder.offsets)

    def encode(self, symbols, indexes):
        return cai_encode(np.asarray(symbols).reshape(-1), np.asarray(indexes).reshape(-1), self.tables)

    def decode(self, data, indexes):
        return cai_decode(data, np.asarray(indexes).reshape(-1), self.tables)


def _garble_payloads(data: bytes, rng, k: int):
    """Files with one payload corrupted and a valid container (file CRC recomputed)."""
    from licfpga.host.container import pack, unpack

    for _ in range(k):
        f = unpack(data)
        t = f.tiles[int(rng.integers(0, len(f.tiles)))]
        g = int(rng.integers(0, len(t.payloads)))
        t.payloads[g] = next(_corruptions(rng, t.payloads[g], 1))
        yield pack(f)


def _decodes_or_container_error(codec, files) -> int:
    from licfpga.host.container import ContainerError

    errors = 0
    for d in files:
        try:
            rgb, _ = codec.decode(d)
            assert rgb.dtype == np.uint8
        except ContainerError:
            errors += 1
    return errors


def test_integer_codec_same_files_as_compressai_and_old_files_decode():
    from licfpga.host.integer_codec import IntegerCodec

    img = sample_image(128, 192)
    new = IntegerCodec("int-student-0.013", tile=64)
    old = IntegerCodec("int-student-0.013", tile=64)
    old.y_coder, old.z_coder = _CompressAIBacked(old.y_coder), _CompressAIBacked(old.z_coder)
    old_file = old.encode(img)
    assert new.encode(img) == old_file
    rgb, _ = new.decode(old_file)
    np.testing.assert_array_equal(rgb, old.decode(old_file)[0])
    assert np.abs(rgb.astype(int) - img).mean() < 20
    errors = _decodes_or_container_error(new, _garble_payloads(old_file, np.random.default_rng(8), 60))
    assert errors >= 50


@pytest.fixture(scope="module")
def float_ckpt(tmp_path_factory):
    import torch

    from licfpga.model.checkpoint import save_checkpoint
    from licfpga.model.zoo import build_model

    kw = {"N": 16, "M": 24, "gdn": "gdn"}
    torch.manual_seed(4)
    m = build_model("hyperprior", **kw).eval()
    m.update(force=True)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, m, "hyperprior", kw, {"name": "tiny"})
    return path


def test_float_codec_same_files_as_compressai_and_old_files_decode(float_ckpt):
    from compressai.entropy_models.entropy_models import _EntropyCoder

    from licfpga.host.codec import Codec

    img = sample_image(96, 160)
    new = Codec.load(float_ckpt, tile=128)
    assert isinstance(new.model.entropy_bottleneck.entropy_coder, CompressAIEntropyCoder)
    assert isinstance(new.model.gaussian_conditional.entropy_coder, CompressAIEntropyCoder)
    old = Codec.load(float_ckpt, tile=128)
    old.model.entropy_bottleneck.entropy_coder = _EntropyCoder("ans")
    old.model.gaussian_conditional.entropy_coder = _EntropyCoder("ans")
    old_file = old.encode(img)
    assert new.encode(img) == old_file
    rgb, _ = new.decode(old_file)
    np.testing.assert_array_equal(rgb, old.decode(old_file)[0])
    errors = _decodes_or_container_error(new, _garble_payloads(old_file, np.random.default_rng(9), 40))
    assert errors >= 30
