"""overlay.json format 2 (a whole-encoder / whole-decoder design) without a simulator:
its validation (host/pynq_driver.read_overlay_description), the multi-stream driver
(MultiStreamAccelerator: every receive channel armed before a send, every channel waited
with the deadline) and ``--backend fpga`` (FpgaIntegerCodec) on such an overlay, against a
fake PYNQ whose "FPGA" is the integer model computing from the bytes in the send buffers.
The same driver over the RTL: tests/hw/test_pynq_driver.py::test_pynq_driver_encoder_overlay.
"""

from __future__ import annotations

import copy
import json
import types
from pathlib import Path

import numpy as np
import pytest

from licfpga.host.integer_codec import FpgaIntegerCodec, IntegerCodec, shipped_artifacts
from licfpga.host.pynq_driver import DmaTimeout, MultiStreamAccelerator, OverlayError, read_overlay_description
from licfpga.overlay.vivado import overlay_description_v2

from .conftest import sample_image

SIZE = 128          # z 2x2x30: whole 32-bit words (at 64x64 z is 30 bytes, no DMA frame)


def _stream(port, tensor, shape, dt):
    return {"port": port, "tensor": tensor, "shape": shape, "datatype": dt, "stream_width": 8, "elem_bits": 8,
            "beats_per_frame": int(np.prod(shape))}


def _accel(side: str, M: int, N: int, size: int = SIZE) -> dict:
    """An accel.json (overlay/accel_top.py) of a ``size`` x ``size`` design, 8-bit streams."""
    x, y, z = [1, size, size, 3], [1, size // 16, size // 16, M], [1, size // 64, size // 64, N]
    if side == "encoder":
        streams = {"in": [_stream("s_axis_0", "x (RGB, NHWC)", x, "UINT8")],
                   "out": [_stream("m_axis_0", "y", y, "INT8"), _stream("m_axis_1", "z", z, "INT8"),
                           _stream("m_axis_2", "scale codes", y, "UINT8")]}
        tr = ("g_a", "h_a", "h_s")
    else:
        streams = {"in": [_stream("s_axis_0", "z", z, "INT8"), _stream("s_axis_1", "y hat", y, "INT8")],
                   "out": [_stream("m_axis_0", "scale codes", y, "UINT8"), _stream("m_axis_1", "x hat", x, "UINT8")]}
        tr = ("h_s", "g_s")
    return {"side": side, "top": f"{side}_top", "streams": streams, "transforms": {t: {} for t in tr},
            "max_exp_cycles": 200_000}


@pytest.fixture(scope="module")
def codec():
    return IntegerCodec(shipped_artifacts()[0], tile=SIZE)


def _desc(codec, side: str) -> dict:
    golden = {"name": codec.path.stem, "digest": codec.weights_hash.hex()}
    builds = {t: {"golden": golden, "board": "kv260", "clk_ns": 5.0} for t in _accel(side, 1, 1)["transforms"]}
    return overlay_description_v2(_accel(side, codec.model.M, codec.model.z_channels), builds)


def _write(tmp_path, desc) -> str:
    (tmp_path / "overlay.json").write_text(desc if isinstance(desc, str) else json.dumps(desc))
    return str(tmp_path / "licfpga.bit")


# ---------------------------------------------------------------- overlay.json v2
def test_v2_descriptions_and_v1_read(codec, tmp_path):
    """What overlay/vivado.py writes for each side reads back; the DMA mapping is the
    documented one; a format-1 (one transform) file still reads."""
    enc, dec = _desc(codec, "encoder"), _desc(codec, "decoder")
    for d in (enc, dec):
        assert read_overlay_description(Path(_write(tmp_path, d)).with_name("overlay.json")) == d
    assert enc["format"] == "licfpga-overlay/2" and enc["transforms"] == ["g_a", "h_a", "h_s"]
    assert dec["transforms"] == ["h_s", "g_s"]
    assert [(s["name"], s["dma"]) for s in enc["streams"]["out"]] == [("y", "dma_0"), ("z", "dma_1"),
                                                                       ("scale_codes", "dma_2")]
    assert [(s["name"], s["dma"]) for s in dec["streams"]["in"] + dec["streams"]["out"]] == [
        ("z", "dma_0"), ("y_hat", "dma_1"), ("scale_codes", "dma_0"), ("x_hat", "dma_1")]
    assert enc["est_fps"] == pytest.approx(1e9 / (5.0 * 200_000))
    v1 = {"format": "licfpga-overlay/1", "transform": "g_a", "golden": {"digest": "00"},
          "io": {"input": {"shape": [1, 64, 64, 3], "datatype": "UINT8"},
                 "output": {"shape": [1, 4, 4, 48], "datatype": "INT8"}}}
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    assert read_overlay_description(tmp_path / "v1.json") == v1


def _broken(path, value):
    def edit(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        if value is KeyError:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return d
    return edit


@pytest.mark.parametrize("edit, pattern", [
    (_broken(("format",), "licfpga-overlay/9"), r"format 'licfpga-overlay/9' unknown"),
    (_broken(("transforms",), KeyError), r"\(licfpga-overlay/2\) lacks transforms"),
    (_broken(("transforms",), ["g_a", "g_x", "h_s"]), r"transforms must be a list of distinct names"),
    (_broken(("transforms",), ["g_a", "g_a", "h_s"]), r"transforms must be a list of distinct names"),
    (_broken(("golden", "digest"), 7), r"golden\.digest is not a string"),
    (_broken(("streams", "out"), []), r"streams must be .* two non-empty lists"),
    (_broken(("streams", "out", 1, "dma"), KeyError), r"streams\.out\[1\] lacks dma"),
    (_broken(("streams", "out", 1, "shape"), [1, 2, 30]), r"streams\.out\[1\]\.shape must be an NHWC list"),
    (_broken(("streams", "out", 2, "datatype"), 8), r"streams\.out\[2\]\.datatype must be a non-empty string"),
    (_broken(("streams", "out", 2, "name"), "y"), r"stream name 'y' used twice"),
    (_broken(("streams", "out", 2, "dma"), "dma_1"), r"dma_1 carries two output streams \(z, scale_codes\)"),
    (_broken(("pipelines", 0, "out"), ["y", "z", "x"]), r"pipelines\[0\]\.out names \['x'\], not output streams"),
    (_broken(("pipelines", 0, "transforms"), ["g_a", "h_a"]), r"pipelines' transforms .* not each of transforms"),
    (_broken(("pipelines", 0, "out"), ["y", "z"]), r"pipelines' streams .* not each of the streams"),
    (lambda d: [d], r"is not a JSON object"),
])
def test_v2_description_validated(codec, tmp_path, edit, pattern):
    """A broken format-2 overlay.json: one OverlayError naming what is wrong (no KeyError)."""
    bit = _write(tmp_path, edit(copy.deepcopy(_desc(codec, "encoder"))))
    with pytest.raises(OverlayError, match=pattern):
        read_overlay_description(Path(bit).with_name("overlay.json"))
    with pytest.raises(OverlayError, match=pattern):      # what --backend fpga meets first
        FpgaIntegerCodec(codec.path, overlay=bit, pynq=types.SimpleNamespace())


# ---------------------------------------------------------------- the driver
class _ModelPynq:
    """PYNQ's ``Overlay`` / ``allocate`` for a format-2 overlay whose "FPGA" is the integer
    model: a send computes its pipeline from the bytes in the send buffer (NHWC, LSB first)
    and writes them into the receive buffers -- which must have been armed before (data
    that arrives at an unarmed S2MM channel is lost: here, an error). ``log``: (op, dma)."""

    def __init__(self, desc, model, stuck=()):
        self.desc, self.model, self.log, self.stuck = desc, model, [], set(stuck)
        self.streams = {s["name"]: s for d in ("in", "out") for s in desc["streams"][d]}
        self.armed = {}

    def _view(self, name, buf):
        s = self.streams[name]
        dt = {"UINT8": np.uint8, "INT8": np.int8}[s["datatype"]]
        return np.asarray(buf).view(dt).reshape(s["shape"][1:])

    def _compute(self, name, x):
        m, chw = self.model, np.moveaxis(x, -1, 0).astype(np.int64)
        if name == "x":
            y, z = m.analysis(x)
            return {"y": y, "z": z, "scale_codes": m.scale_codes(z)}
        if name == "z":
            return {"scale_codes": m.scale_codes(chw)}
        return {"x_hat": m.run_transform("g_s", chw)}

    def Overlay(self, bitfile):
        fake = self

        class Chan:
            def __init__(self, dma, name, recv):
                self.dma, self.name, self.recv = dma, name, recv

            @property
            def idle(self):
                return (self.dma, self.recv) not in fake.stuck

            def transfer(self, buf):
                fake.log.append(("arm" if self.recv else "send", self.dma))
                if self.recv:
                    fake.armed[self.name] = buf
                    return
                for out, v in self._outs(buf).items():
                    assert out in fake.armed, f"{out} arrived before its receive channel was armed"
                    fake._view(out, fake.armed.pop(out))[...] = np.moveaxis(v, 0, -1)

            def _outs(self, buf):
                return fake._compute(self.name, fake._view(self.name, buf))

            def wait(self):
                fake.log.append(("wait", self.dma))

        dmas = {}
        for d in ("in", "out"):
            for s in self.desc["streams"][d]:
                ns = dmas.setdefault(s["dma"], types.SimpleNamespace())
                setattr(ns, "recvchannel" if d == "out" else "sendchannel", Chan(s["dma"], s["name"], d == "out"))
        return types.SimpleNamespace(**dmas)

    @staticmethod
    def allocate(shape, dtype):
        return np.zeros(shape, dtype)


def _driver(codec, side, stuck=(), timeout=None):
    from licfpga.host.pynq_driver import Stream

    desc = _desc(codec, side)
    fake = _ModelPynq(desc, codec.model, stuck)
    by = {s["name"]: s for d in ("in", "out") for s in desc["streams"][d]}
    st = lambda n: Stream(n, tuple(by[n]["shape"][1:]), {"UINT8": np.uint8, "INT8": np.int8}[by[n]["datatype"]],  # noqa: E731
                          by[n]["dma"])
    pipes = [([st(n) for n in p["in"]], [st(n) for n in p["out"]]) for p in desc["pipelines"]]
    return MultiStreamAccelerator("x.bit", pipes, pynq=fake, timeout=timeout), fake


def test_multistream_driver_arms_every_receive_before_sending(codec):
    """Encoder: the three receive channels armed, then RGB sent, then every channel waited;
    y, z, scale codes == the integer model. Decoder: one pipeline runs alone (h_s: only
    dma_0 moves), a pipeline given half its inputs or an unknown stream is refused before
    anything moves."""
    acc, fake = _driver(codec, "encoder")
    rgb = sample_image(SIZE, SIZE)
    out = acc.run({"x": rgb})
    assert fake.log == [("arm", "dma_0"), ("arm", "dma_1"), ("arm", "dma_2"), ("send", "dma_0"),
                        ("wait", "dma_0"), ("wait", "dma_0"), ("wait", "dma_1"), ("wait", "dma_2")]
    y, z = codec.model.analysis(rgb)
    for n, v in (("y", y), ("z", z), ("scale_codes", codec.model.scale_codes(z))):
        assert np.array_equal(np.moveaxis(out[n], -1, 0), v), n
    assert acc.frames == 1
    with pytest.raises(ValueError, match="x frame shape"):
        acc.run({"x": rgb[:-1]})

    acc, fake = _driver(codec, "decoder")
    s = acc.run({"z": np.moveaxis(z, 0, -1)})
    assert list(s) == ["scale_codes"] and np.array_equal(np.moveaxis(s["scale_codes"], -1, 0), codec.model.scale_codes(z))
    assert fake.log == [("arm", "dma_0"), ("send", "dma_0"), ("wait", "dma_0"), ("wait", "dma_0")]
    with pytest.raises(ValueError, match=r"no input stream \['x'\]"):
        acc.run({"x": rgb})
    assert len(fake.log) == 4


def test_multistream_stuck_channel_names_its_dma(codec):
    """A stuck S2MM channel of dma_1 (z): DmaTimeout naming that DMA, after the deadline."""
    acc, _ = _driver(codec, "encoder", stuck={("dma_1", True)}, timeout=0.2)
    with pytest.raises(DmaTimeout, match=r"^DMA dma_1 receive channel \(S2MM\) stuck after 0\.2 s: 0 of 120 bytes"):
        acc.run({"x": np.zeros((SIZE, SIZE, 3), np.uint8)})
    assert acc.frames == 0


# ---------------------------------------------------------------- --backend fpga
def test_fpga_backend_whole_side_overlays_identical(codec, tmp_path):
    """Encoder overlay: compress of a 192x256 image in 128-px tiles == --backend integer's
    bytes, the two 128x128 tiles with y, z AND scale codes from the "FPGA" (the CPU's h_a /
    h_s not called for them), the two 64-row tiles on the CPU. Decoder overlay: decompress ==
    --backend integer's pixels, h_s and g_s on the "FPGA" for the two full tiles. Each
    overlay refuses the other direction."""
    img = sample_image(192, 256)
    lic = codec.encode(img)
    ref_rgb, _ = codec.decode(lic)
    for side in ("encoder", "decoder"):
        d = tmp_path / side
        d.mkdir()
        desc = _desc(codec, side)
        fpga = FpgaIntegerCodec(codec.path, overlay=_write(d, desc), tile=SIZE, pynq=_ModelPynq(desc, codec.model))
        assert fpga.frame == (SIZE, SIZE)
        calls = []
        real = fpga.model.run_transform
        fpga.model.run_transform = lambda name, x, *a, **k: (calls.append((name, x.shape)), real(name, x, *a, **k))[1]
        if side == "encoder":
            assert fpga.encode(img) == lic
            # the CPU ran h_a and h_s only for the two 64x128 tiles (z 1x2)
            assert sorted(c for c in calls if c[0] in ("h_a", "h_s")) == [("h_a", (codec.model.M, 4, 8))] * 2 + \
                [("h_s", (codec.model.z_channels, 1, 2))] * 2, calls
            with pytest.raises(Exception, match="use it to compress"):
                fpga.decode(lic)
        else:
            rgb, _ = fpga.decode(lic)
            assert np.array_equal(rgb, ref_rgb)
            assert sorted({c[1][1:] for c in calls if c[0] in ("h_s", "g_s")}) == [(1, 2), (4, 8)], calls
            with pytest.raises(Exception, match="use it to decompress"):
                fpga.encode(img)
        assert (fpga.fpga_tiles, fpga.cpu_tiles) == (2, 2), side


def test_fpga_encoder_overlay_refuses_an_impossible_latent(codec, tmp_path):
    """A z of -128 out of the encoder design (a hardware fault, results/faults/) is refused
    before anything is coded, as on the CPU path."""
    desc = _desc(codec, "encoder")
    fpga = FpgaIntegerCodec(codec.path, overlay=_write(tmp_path, desc), tile=SIZE, pynq=_ModelPynq(desc, codec.model))
    run = fpga.accelerator.run

    def faulty(inputs, copy=True):
        out = run(inputs, copy=copy)
        out["z"][0, 0, 0] = -128
        return out

    fpga.accelerator.run = faulty
    with pytest.raises(ValueError, match=r"latent z outside -127\.\.127"):
        fpga.encode(sample_image(SIZE, SIZE))
    assert fpga.fpga_tiles == 1
