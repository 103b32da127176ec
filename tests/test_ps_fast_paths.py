"""The PS fast paths of ``--backend fpga`` (issue 11, results/board/ps_model.md): each is equal
to what it replaced, bit for bit.

* ``IntegerModel.scale_indexes`` (a table lookup) = ``scale_indexes_reference`` (the golden
  definition, a binary search per element) on every code, random codes, extreme values, every
  integer dtype and odd shapes;
* the PYNQ driver's one-copy packing / unpacking = the bytes the ``tobytes`` version put in
  the DMA buffers and read back; a frame written into ``input_frame`` is sent as is;
* padding straight into the DMA buffer = ``pad_to_stride``;
* the files: the same ``.lic`` bytes (and decoded pixels) as the code before the fast paths,
  for the shipped samples and a 1080p frame (digests in tests/data/ps_fast_paths_digests.json).
"""

import hashlib
import json
import types

import numpy as np
import pytest

from licfpga.host.integer_codec import FpgaIntegerCodec, IntegerCodec, _index_crc, _narrow, _pad_into
from licfpga.host.pynq_driver import StreamAccelerator
from licfpga.model.geometry import pad_to_stride

from .conftest import ROOT, SAMPLES, require

DIGESTS = json.loads((ROOT / "tests" / "data" / "ps_fast_paths_digests.json").read_text())
# the artifacts the digests were written with (the students shipped then, now in previous/)
ARTIFACTS = ("previous/int-student-0.013", "previous/int-student-0.0035")


def _h(b) -> str:
    return hashlib.sha256(bytes(b)).hexdigest()[:16]


@pytest.fixture(scope="module", params=ARTIFACTS)
def model(request):
    return IntegerCodec(request.param).model


# -- the scale index -----------------------------------------------------------------------------
def _same(model, codes):
    got, ref = model.scale_indexes(codes), model.scale_indexes_reference(codes)
    assert got.dtype == ref.dtype == np.int32 and np.shape(got) == np.shape(ref)
    np.testing.assert_array_equal(got, ref)
    return got


def test_scale_index_every_code(model):
    lo, lut = model.index_table()
    (hs_lo, hs_hi) = model.schema["transforms"]["h_s"][-1]["out_range"]
    assert (lo, lut.size) == (hs_lo, hs_hi - hs_lo + 1) == (0, 256)
    _same(model, np.arange(lo, lo + lut.size))           # every code h_s can give (the table)
    _same(model, np.arange(lo, lo + lut.size + 1))       # and one past it (the reference)
    _same(model, np.arange(-300, 7000))                  # far past the thresholds both ways
    t = model.arrays[model.schema["entropy"]["arrays"]["y_thresholds"]].astype(np.int64)
    near = np.concatenate([t - 1, t, t + 1])             # at and beside every threshold
    _same(model, near)
    _same(model, near[(near >= lo) & (near < lo + lut.size)])


def test_scale_index_in_range_takes_the_table(model, monkeypatch):
    """Codes inside the table's range never reach the binary search; any code outside does."""
    lo, lut = model.index_table()
    ref = model.scale_indexes_reference
    calls = []
    monkeypatch.setattr(model, "scale_indexes_reference", lambda q: calls.append(1) or ref(q))
    for dt in (np.uint8, np.int16, np.int32, np.int64, np.uint64):
        model.scale_indexes(np.arange(lo, lo + lut.size).astype(dt))
    assert calls == []
    for out in ([lo - 1, lo], [lo, lo + lut.size]):
        model.scale_indexes(np.array(out))
    assert len(calls) == 2


def test_scale_index_random_extreme_dtypes_shapes(model):
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, (48, 68, 120))          # what h_s gives for a 1080p tile
    idx = _same(model, codes)
    assert idx.flags.c_contiguous
    i64 = np.iinfo(np.int64)
    _same(model, np.array([i64.min, -1, 0, 255, 256, i64.max]))
    _same(model, np.array([[0, 255], [128, 7]]).T)       # non-contiguous
    _same(model, codes[:, ::3, 1::2])
    for dt in (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64):
        info = np.iinfo(dt)
        _same(model, np.array([info.min, info.max, 0, 1, 100], dtype=dt))
        _same(model, rng.integers(max(info.min, -5), min(info.max, 400), 1000).astype(dt))
    _same(model, np.arange(256, dtype=np.uint8))
    _same(model, np.array([True, False]))               # not integers: the reference decides
    _same(model, np.array([0.0, 3.7, 255.0, 1e4]))
    _same(model, np.zeros((0, 3), np.int64))
    _same(model, np.int64(200))
    _same(model, [3, 4, 5000])                           # a list


def test_index_table_built_from_the_reference(model):
    lo, lut = model.index_table()
    np.testing.assert_array_equal(lut, model.scale_indexes_reference(np.arange(lo, lo + lut.size)))
    assert model.index_table()[1] is lut                 # built once


# -- the codec's helpers ---------------------------------------------------------------------------
def test_pad_into_is_pad_to_stride():
    rng = np.random.default_rng(3)
    for h, w in ((1080, 1920), (64, 64), (1, 1), (63, 65), (100, 128)):
        src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref = pad_to_stride(src, 64)
        dst = np.full(ref.shape, 77, np.uint8)           # stale contents must all be overwritten
        assert _pad_into(dst, src) is dst
        np.testing.assert_array_equal(dst, ref)


def test_narrow_and_crc():
    assert _narrow(np.array([-127, 0, 127])) and _narrow(np.zeros(0, np.int64))
    for bad in ([-128], [128], [0, 1000], [-(2**40)]):
        assert not _narrow(np.array(bad, np.int64))
    assert not _narrow(np.array([-128], np.int8))
    idx = np.random.default_rng(0).integers(0, 64, (48, 17, 30)).astype(np.int32)
    import zlib
    for a in (idx, idx.astype(np.int64), idx.transpose(2, 0, 1)):
        assert _index_crc(a) == zlib.crc32(a.astype(np.int32).tobytes())


# -- the driver's packing --------------------------------------------------------------------------
class _Chan:
    def __init__(self, log, reply=None):
        self.log, self.reply = log, reply

    def transfer(self, buf):
        if self.reply is None:
            self.log.append(np.asarray(buf).tobytes())   # what the DMA reads from memory
        else:
            buf[:] = self.reply

    def wait(self):
        pass


def _acc(in_shape, in_dt, out_shape, out_dt, reply):
    sent = []
    dma = types.SimpleNamespace(sendchannel=_Chan(sent), recvchannel=_Chan(sent, reply))
    pynq = types.SimpleNamespace(Overlay=lambda bitfile: types.SimpleNamespace(dma=dma),
                                 allocate=lambda shape, dtype: np.zeros(shape, dtype))
    return StreamAccelerator("x.bit", in_shape, in_dt, out_shape, out_dt, pynq=pynq), sent


def _old_pack(x, dt):      # the driver's packing before the fast paths
    return np.frombuffer(np.ascontiguousarray(x, dtype=dt).tobytes(), dtype=np.uint32).tobytes()


def test_driver_packs_and_unpacks_the_same_bytes():
    rng = np.random.default_rng(5)
    reply_px = rng.integers(0, 2**32, 16 * 32 * 3 // 4, dtype=np.uint64).astype(np.uint32)
    # g_s: [M, h, w] int64 / int32 latents given as a transposed (NHWC) view
    acc, sent = _acc((4, 8, 48), np.int8, (16, 32, 3), np.uint8, reply_px)
    for dt in (np.int64, np.int32):
        y = rng.integers(-127, 128, (48, 4, 8)).astype(dt)
        x = np.moveaxis(y, 0, -1)
        out = acc.run(x)
        assert sent[-1] == _old_pack(x, np.int8)
        old_out = np.frombuffer(reply_px.tobytes(), np.uint8).reshape(16, 32, 3)
        np.testing.assert_array_equal(out, old_out)
        assert out.dtype == np.uint8 and not np.shares_memory(out, acc._out)
        view = acc.run(x, copy=False)
        np.testing.assert_array_equal(view, old_out)
        assert np.shares_memory(view, acc._out)
    with pytest.raises(ValueError, match=r"frame values outside int8 \[-128, 127\]"):
        acc.run(np.full((4, 8, 48), 128, np.int64))
    with pytest.raises(ValueError, match="frame shape"):
        acc.run(np.zeros((4, 8, 47), np.int8))
    # g_a: uint8 pixels; int8 latents out (signed bytes read back as the FPGA wrote them)
    reply_y = rng.integers(0, 2**32, 4 * 8 * 48 // 4, dtype=np.uint64).astype(np.uint32)
    acc, sent = _acc((16, 32, 3), np.uint8, (4, 8, 48), np.int8, reply_y)
    px = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
    out = acc.run(px)
    assert sent[-1] == _old_pack(px, np.uint8)
    np.testing.assert_array_equal(out, np.frombuffer(reply_y.tobytes(), np.int8).reshape(4, 8, 48))
    # a frame written into input_frame is sent as it is (no copy of its own)
    acc.input_frame[:] = px[::-1]
    acc.run(acc.input_frame)
    assert sent[-1] == _old_pack(px[::-1], np.uint8)
    with pytest.raises(ValueError, match=r"outside uint8"):
        acc.run(np.full((16, 32, 3), -1, np.int16))


# -- the files -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_shipped_samples_give_the_same_files_and_pixels():
    from licfpga.host.images import load_image

    for art in ARTIFACTS:
        codec = IntegerCodec(art)
        for name in ("kodim04.png", "kodim15.png", "kodim23.png"):
            rgb, _ = load_image(SAMPLES / name)
            lic = codec.encode(rgb)
            px, _ = codec.decode(lic)
            assert {"lic": _h(lic), "pixels": _h(px.tobytes())} == DIGESTS["samples"][f"{art.split('/')[-1]}/{name}"], (art, name)


class _Loopback:
    """PYNQ stand-in: the receive transfer writes ``reply``; the send transfer records the bytes."""

    def __init__(self):
        self.reply, self.sent = None, []
        outer = self

        class _Ch:
            def __init__(self, recv):
                self.recv = recv

            def transfer(self, buf):
                if self.recv:
                    buf[:] = outer.reply
                else:
                    outer.sent.append(np.asarray(buf).tobytes())

            def wait(self):
                pass

        self.Overlay = lambda path: types.SimpleNamespace(dma=types.SimpleNamespace(sendchannel=_Ch(False),
                                                                                    recvchannel=_Ch(True)))

    @staticmethod
    def allocate(shape, dtype):
        return np.zeros(shape, dtype)


@pytest.mark.slow
def test_1080p_frame_gives_the_same_files(tmp_path):
    """One 1920x1088 tile, S = 1 and 4: the integer backend and the fpga backend (loopback DMA
    answering with the integer model's g_a) write the files the code wrote before the fast
    paths; the fpga decoder sends g_s exactly the NHWC int8 latents the old packing sent and
    hands back the receive buffer's pixels."""
    from licfpga.host import ps_model as P

    require(all((P.TRAIN_DIR / n).is_file() for n in P.DEFAULT_IMAGES), f"the sun80 photos under {P.TRAIN_DIR}")
    frame, _ = P.load_frame()
    codec = IntegerCodec(ARTIFACTS[0], tile="1920x1088")
    padded = pad_to_stride(frame, 64)
    y, z = codec.model.analysis(padded)
    codec._analysis = lambda rgb: (y, z)                 # g_a computed once (the slow part)
    fakes = {"g_a": _Loopback(), "g_s": _Loopback()}
    fakes["g_a"].reply = np.frombuffer(np.ascontiguousarray(np.moveaxis(y, 0, -1), np.int8).tobytes(), np.uint32)
    pixels = np.random.default_rng(1).integers(0, 256, padded.shape, dtype=np.uint8)     # stands for g_s
    fakes["g_s"].reply = np.frombuffer(pixels.tobytes(), np.uint32)
    fp = {}
    for tr in ("g_a", "g_s"):
        fp[tr] = FpgaIntegerCodec(ARTIFACTS[0], overlay=P._overlay_dir(tmp_path, codec, tr, padded.shape[:2]),
                                  pynq=fakes[tr], tile="1920x1088")
    for S in (1, 4):
        codec.streams = fp["g_a"].streams = fp["g_s"].streams = S
        lic = codec.encode(frame)
        assert _h(lic) == DIGESTS["frame_1080p"][f"int/S{S}"]
        assert fp["g_a"].encode(frame) == lic
        assert fakes["g_a"].sent[-1] == _old_pack(padded, np.uint8)
        out, _ = fp["g_s"].decode(lic)
        assert fakes["g_s"].sent[-1] == _old_pack(np.moveaxis(y, 0, -1), np.int8)
        np.testing.assert_array_equal(out, pixels[:1080])
        assert fp["g_a"].fpga_tiles == fp["g_s"].fpga_tiles == {1: 1, 4: 2}[S]      # on the "overlay"
