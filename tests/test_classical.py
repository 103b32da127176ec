"""Classical codec anchors (licfpga.host.classical) and the metrics they report."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from licfpga.host import classical, metrics
from licfpga.host.classical import (CODEC_NAMES, CodecUnavailable, available_codecs, encode_at_bpp,
                                    get_codec, measure, rd_curve)

from .conftest import require

ROOT = Path(__file__).resolve().parents[1]


def natural_image(size: int = 192) -> np.ndarray:
    """A ``size`` x ``size`` crop of a real photo: shipped sample (kodim23 first), else Kodak 23."""
    samples = sorted((ROOT / "host" / "samples").glob("*.png"), key=lambda p: p.name != "kodim23.png")
    src = samples[0] if samples else ROOT.parent / "shared" / "data" / "kodak" / "kodim23.png"
    with Image.open(src) as im:
        arr = np.asarray(im.convert("RGB"))
    h, w = arr.shape[:2]
    assert min(h, w) >= size, f"{src} is smaller than {size} px"
    y, x = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(arr[y:y + size, x:x + size])


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """MS-SSIM runs on torch; on 2 busy cores, extra torch threads only oversubscribe them."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def img() -> np.ndarray:
    return natural_image()


@pytest.fixture(scope="module")
def registry():
    return available_codecs(refresh=True)


def _codec_or_skip(registry, name):
    available, unavailable = registry
    require(name in available, f"{name} unavailable here: {unavailable.get(name)}")
    return available[name]


def _spread(qs):
    qs = sorted(qs)
    return [qs[0], qs[len(qs) // 2], qs[-1]]


# ----------------------------------------------------------------------------- metrics

def test_metrics_known_values():
    a = np.full((4, 5, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0] = 110  # one error of 10 among 60 values: MSE = 100 / 60
    assert metrics.psnr(a, a) == math.inf
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 * 60 / 100))
    assert metrics.bpp(1000, 100, 80) == pytest.approx(1.0)
    assert metrics.ms_ssim_db(0.99) == pytest.approx(20.0)
    assert metrics.ms_ssim_db(1.0) == math.inf
    assert math.isnan(metrics.ms_ssim_db(math.nan))
    with pytest.raises(ValueError):
        metrics.psnr(a, b[:, :4])
    with pytest.raises(ValueError):
        metrics.psnr(a.astype(np.float32), b)


def test_ms_ssim_size_rule(img):
    assert metrics.MS_SSIM_MIN_SIDE == 161
    noisy = np.clip(img.astype(int) + np.random.default_rng(0).integers(-8, 9, img.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    v = metrics.ms_ssim(img, noisy)
    assert 0.9 < v < 1.0
    assert metrics.ms_ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    small = img[:160, :]  # one row short of 5 scales: documented NaN, not a wrong number
    assert math.isnan(metrics.ms_ssim(small, noisy[:160, :]))
    assert not metrics.ms_ssim_supported(160, 500) and metrics.ms_ssim_supported(161, 161)


# ----------------------------------------------------------------------------- registry

def test_registry_covers_every_codec(registry):
    available, unavailable = registry
    assert set(available) | set(unavailable) == set(CODEC_NAMES)
    assert not set(available) & set(unavailable)
    assert all(isinstance(r, str) and r for r in unavailable.values())
    assert "jpeg" in available  # Pillow is a hard dependency: JPEG must always work
    for name, c in available.items():
        assert c.name == name and c.backend and c.label
        assert list(c.default_qualities) == sorted(c.default_qualities)
        lo, hi = c.quality_range
        assert all(lo <= q <= hi for q in c.default_qualities)


def test_unavailable_codecs_report_reasons(monkeypatch):
    def missing():
        raise ImportError("No module named 'fakecodec'")

    def garbage():  # builds fine, but its decoder ignores the bytes: the probe must catch it
        good = classical._jpeg_pillow()
        return classical.Codec("garbage", "Garbage", "test", (1, 100), True, (50,), "q", ".x",
                               good._encode, lambda data: np.zeros((48, 64, 3), np.uint8))

    monkeypatch.setattr(classical, "_PROBED", None)  # restored (real cache) after the test
    monkeypatch.setattr(classical, "_BACKENDS", {"jpeg": [classical._jpeg_pillow],
                                                 "missing": [missing], "garbage": [garbage]})
    available, unavailable = available_codecs(refresh=True)
    assert set(available) == {"jpeg"}
    assert "fakecodec" in unavailable["missing"] and "ImportError" in unavailable["missing"]
    assert "dB" in unavailable["garbage"]
    with pytest.raises(CodecUnavailable, match="fakecodec"):
        get_codec("missing")
    with pytest.raises(ValueError, match="unknown codec"):
        get_codec("nonesuch")


@pytest.mark.parametrize("name,factory", [(n, f) for n, fs in classical._BACKENDS.items() for f in fs],
                         ids=lambda v: v.__name__.lstrip("_") if callable(v) else v)
def test_every_backend_round_trips(name, factory, img):
    """Fallback backends too, wherever their library works here."""
    try:
        codec = factory()
        classical._probe(codec)
    except Exception as e:  # noqa: BLE001
        require(False, f"backend not usable here: {type(e).__name__}: {e}")
    assert codec.name == name
    data = codec.encode(img, max(codec.default_qualities))
    out = codec.decode(data)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert metrics.psnr(img, out) > 25.0


# ----------------------------------------------------------------------------- codecs

@pytest.mark.parametrize("name", CODEC_NAMES)
def test_round_trip_and_rate_grows_with_quality(name, registry, img):
    codec = _codec_or_skip(registry, name)
    rows = rd_curve(codec, img, _spread(codec.default_qualities))
    assert [set(r) for r in rows] == [{"quality", "bytes", "bpp", "psnr", "ms_ssim"}] * 3
    bpps = [r["bpp"] for r in rows]
    assert bpps == sorted(bpps) and bpps[0] < bpps[-1], bpps
    assert all(r["bpp"] == pytest.approx(r["bytes"] * 8 / img.shape[0] / img.shape[1]) for r in rows)
    assert rows[-1]["psnr"] > 25.0, rows
    assert rows[-1]["psnr"] > rows[0]["psnr"]
    assert all(0.5 < r["ms_ssim"] <= 1.0 for r in rows)
    # The decoder really decodes: bytes of another format must be refused, not "decoded".
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    with pytest.raises(Exception):
        codec.decode(buf.getvalue())


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_encode_at_bpp_hits_target(name, registry, img):
    codec = _codec_or_skip(registry, name)
    h, w = img.shape[:2]
    lo, hi = min(codec.default_qualities), max(codec.default_qualities)
    b_lo = metrics.bpp(len(codec.encode(img, lo)), h, w)
    b_hi = metrics.bpp(len(codec.encode(img, hi)), h, w)
    target = math.sqrt(b_lo * b_hi)  # inside the codec's range on this image
    data, dec, q = encode_at_bpp(codec, img, target)
    got = metrics.bpp(len(data), h, w)
    assert abs(got - target) / target < 0.15, (target, got, q)
    assert codec.quality_range[0] <= q <= codec.quality_range[1]
    assert np.array_equal(dec, codec.decode(data))
    assert data == codec.encode(img, q)  # the returned quality reproduces the file


def test_encode_at_bpp_clamps_and_validates(registry, img):
    jpeg = get_codec("jpeg")
    _, _, q_low = encode_at_bpp(jpeg, img, 1e-4)
    _, _, q_high = encode_at_bpp(jpeg, img, 1e3)
    assert (q_low, q_high) == jpeg.quality_range
    with pytest.raises(ValueError):
        encode_at_bpp(jpeg, img, 0.0)


def test_bad_inputs_rejected(registry, img):
    jpeg = get_codec("jpeg")
    with pytest.raises(ValueError):
        jpeg.encode(img.astype(np.float32), 50)
    with pytest.raises(ValueError):
        jpeg.encode(img[..., :2], 50)
    with pytest.raises(ValueError):
        jpeg.encode(img, 101)
    with pytest.raises(ValueError):
        jpeg.encode(img, 50.5)


def test_measure_small_image_has_no_ms_ssim(registry, img):
    row = measure("jpeg", img[:64, :64], 75)
    assert math.isnan(row["ms_ssim"]) and row["psnr"] > 25.0
