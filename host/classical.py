"""Classical image codecs, measured in the same run (same images, same metrics) as our codec.

Registry (name -> backends tried in order; the first that passes a real round-trip wins):

=========  =========================================  ========================================
name       backend(s)                                 ``quality`` parameter
=========  =========================================  ========================================
jpeg       Pillow / libjpeg-turbo, 4:2:0, optimize    1..100 (int), libjpeg quality
webp       Pillow / libwebp, lossy, method 6          0..100 (int), libwebp quality
jpeg2000   Pillow / OpenJPEG (9/7 wavelet, RCT/ICT    15..60 dB (float): the *target PSNR* of
           on, raw J2K codestream);                   OpenJPEG's fixed-quality mode
           fallback imagecodecs / OpenJPEG            (``-q`` of opj_compress)
heif       pillow-heif / libheif + x265 (HEVC intra,  0..100 (int), libheif quality
           4:2:0, ``tune=psnr``)
avif       Pillow native / libavif + aom (4:2:0,      0..100 (int), libavif quality
           speed 6, ``tune=psnr``); fallbacks
           imagecodecs / libavif
jpegxl     imagecodecs / libjxl (effort 7, VarDCT)    0..99 (float), cjxl-style quality
=========  =========================================  ========================================

Every codec maps a higher ``quality`` to more bits, so :func:`encode_at_bpp` can bisect it.
HEVC and AV1 are run with ``tune=psnr``: libheif's x265 default is ``tune=ssim`` and
libavif 1.4's aom default is a perceptual tune, both of which cost 0.3-0.5 dB PSNR at equal
rate; our models are trained for MSE, so the PSNR-tuned anchors are the fair ones (they
are a little pessimistic for the anchors in MS-SSIM plots).

``decode`` always decodes the encoded bytes (with the format forced, so a wrong file type
fails loudly): all metrics come from the actual file. Nothing here crashes when a library
is missing; :func:`available_codecs` reports why a codec cannot be used.

Default quality lists span roughly 0.1-1.5 bpp over Kodak (768x512); detailed images
(kodim01) reach higher rates at the top, smooth ones (kodim23) lower at the bottom.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .metrics import bpp as _bpp
from .metrics import ms_ssim as _ms_ssim
from .metrics import psnr as _psnr

CODEC_NAMES: tuple[str, ...] = ("jpeg", "webp", "jpeg2000", "heif", "avif", "jpegxl")


class CodecUnavailable(RuntimeError):
    """The codec has no working backend on this machine (the message says why)."""


@dataclass(frozen=True)
class Codec:
    """One classical codec bound to one backend library."""

    name: str                       # registry key, e.g. "jpeg"
    label: str                      # human-readable, for plots and tables
    backend: str                    # library and version actually used
    quality_range: tuple[float, float]
    integer_quality: bool
    default_qualities: tuple[float, ...]
    quality_meaning: str
    ext: str                        # file extension of the bytes, e.g. ".jpg"
    _encode: Callable[[np.ndarray, float], bytes] = field(repr=False, compare=False)
    _decode: Callable[[bytes], np.ndarray] = field(repr=False, compare=False)

    def check_quality(self, quality) -> float | int:
        lo, hi = self.quality_range
        q = float(quality)
        if not (lo <= q <= hi):
            raise ValueError(f"{self.name}: quality {quality} outside [{lo}, {hi}] ({self.quality_meaning})")
        if self.integer_quality:
            if q != int(q):
                raise ValueError(f"{self.name}: quality must be an integer, got {quality}")
            return int(q)
        return q

    def encode(self, img, quality) -> bytes:
        """Encode a uint8 H x W x 3 RGB image at ``quality``; returns the file's bytes."""
        img = _check_image(img)
        return bytes(self._encode(img, self.check_quality(quality)))

    def decode(self, data: bytes) -> np.ndarray:
        """Decode bytes produced by :meth:`encode` into a uint8 H x W x 3 RGB array."""
        out = np.asarray(self._decode(bytes(data)))
        if out.dtype != np.uint8 or out.ndim != 3 or out.shape[2] != 3:
            raise RuntimeError(f"{self.name}: decoder returned {out.dtype} {out.shape}, not uint8 HxWx3")
        return np.ascontiguousarray(out)


def _check_image(img) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be a uint8 H x W x 3 RGB array, got {img.dtype} {img.shape}")
    return np.ascontiguousarray(img)


# --------------------------------------------------------------------------- backends
# Each factory imports its library lazily and returns a Codec; ImportError and friends are
# caught by the probe in available_codecs().

def _pil_decoder(fmt: str) -> Callable[[bytes], np.ndarray]:
    def decode(data: bytes) -> np.ndarray:
        from PIL import Image
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            return np.asarray(im.convert("RGB"))
    return decode


def _pil_encoder(fmt: str, **params) -> Callable[[np.ndarray, float], bytes]:
    def encode(img: np.ndarray, quality) -> bytes:
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, fmt, **params, **_quality_kw(fmt, quality))
        return buf.getvalue()
    return encode


def _quality_kw(fmt: str, quality) -> dict:
    if fmt == "JPEG2000":
        return {"quality_mode": "dB", "quality_layers": [float(quality)]}
    return {"quality": int(quality)}


def _pillow_version(feature: str) -> str:
    import PIL
    from PIL import features
    if not features.check(feature):
        raise RuntimeError(f"this Pillow build ({PIL.__version__}) has no {feature} support")
    return f"Pillow {PIL.__version__}"


def _jpeg_pillow() -> Codec:
    from PIL import features
    ver = _pillow_version("jpg")
    lib = features.version("libjpeg_turbo")
    lib = f"libjpeg-turbo {lib}" if lib else f"libjpeg {features.version('jpg')}"
    return Codec(
        "jpeg", "JPEG (4:2:0)", f"{ver} / {lib}", (1, 100), True,
        (5, 10, 20, 30, 40, 55, 75, 90), "libjpeg quality", ".jpg",
        _pil_encoder("JPEG", subsampling="4:2:0", optimize=True), _pil_decoder("JPEG"))


def _webp_pillow() -> Codec:
    from PIL import features
    ver = _pillow_version("webp")
    return Codec(
        "webp", "WebP", f"{ver} / libwebp {features.version('webp')}", (0, 100), True,
        (0, 10, 25, 40, 55, 70, 80, 90), "libwebp quality", ".webp",
        _pil_encoder("WEBP", lossless=False, method=6), _pil_decoder("WEBP"))


_J2K_QUALITIES = (24.0, 26.0, 28.0, 30.0, 32.0, 34.0, 36.0, 38.0, 40.0, 42.0)
_J2K_MEANING = "target PSNR in dB of OpenJPEG's fixed-quality mode"


def _jpeg2000_pillow() -> Codec:
    from PIL import features
    ver = _pillow_version("jpg_2000")
    return Codec(
        "jpeg2000", "JPEG 2000", f"{ver} / OpenJPEG {features.version('jpg_2000')}", (15.0, 60.0),
        False, _J2K_QUALITIES, _J2K_MEANING, ".j2k",
        # mct=1: RGB->YCbCr before the wavelet (Pillow's default is no colour transform,
        # which costs ~40 % rate); irreversible: CDF 9/7 wavelet for lossy coding.
        _pil_encoder("JPEG2000", irreversible=True, mct=1, no_jp2=True), _pil_decoder("JPEG2000"))


def _jpeg2000_imagecodecs() -> Codec:
    import imagecodecs
    if not imagecodecs.JPEG2K.available:
        raise RuntimeError(f"imagecodecs {imagecodecs.__version__} was built without JPEG 2000")

    def encode(img, quality):
        return imagecodecs.jpeg2k_encode(img, level=float(quality), codecformat="J2K")

    return Codec(
        "jpeg2000", "JPEG 2000", f"imagecodecs {imagecodecs.__version__} / {imagecodecs.jpeg2k_version()}",
        (15.0, 60.0), False, _J2K_QUALITIES, _J2K_MEANING, ".j2k", encode, imagecodecs.jpeg2k_decode)


def _heif_pillow_heif() -> Codec:
    import pillow_heif
    info = pillow_heif.libheif_info()
    if not info.get("HEIF"):
        raise RuntimeError(f"pillow-heif {pillow_heif.__version__} (libheif {info.get('libheif')}) has no HEVC encoder")

    def encode(img, quality):
        h, w = img.shape[:2]
        buf = io.BytesIO()
        pillow_heif.from_bytes("RGB", (w, h), img.tobytes()).save(
            buf, quality=int(quality), chroma=420, tile_size=0, enc_params={"tune": "psnr"})
        return buf.getvalue()

    return Codec(
        "heif", "HEVC intra (HEIF)",
        f"pillow-heif {pillow_heif.__version__} / libheif {info.get('libheif')} / {info['HEIF']}",
        (0, 100), True, (8, 15, 22, 29, 36, 43, 50, 58), "libheif quality", ".heic",
        encode, _heif_decoder(pillow_heif))


def _heif_decoder(pillow_heif) -> Callable[[bytes], np.ndarray]:
    def decode(data: bytes) -> np.ndarray:
        return np.asarray(pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
                          .to_pillow().convert("RGB"))
    return decode


_AVIF_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80)


def _avif_pillow() -> Codec:
    from PIL import AvifImagePlugin, features
    ver = _pillow_version("avif")
    aom = AvifImagePlugin.get_codec_version("aom")
    if not aom:
        raise RuntimeError(f"{ver}'s libavif has no aom encoder")
    return Codec(
        "avif", "AVIF (AV1 intra)", f"{ver} / libavif {features.version('avif')} / aom {aom}",
        (0, 100), True, _AVIF_QUALITIES, "libavif quality", ".avif",
        _pil_encoder("AVIF", subsampling="4:2:0", speed=6, codec="aom", advanced={"tune": "psnr"}),
        _pil_decoder("AVIF"))


def _avif_imagecodecs() -> Codec:
    import imagecodecs
    if not imagecodecs.AVIF.available:
        raise RuntimeError(f"imagecodecs {imagecodecs.__version__} was built without AVIF")

    def encode(img, quality):  # no tune option here: the library's default tune
        return imagecodecs.avif_encode(img, level=int(quality), speed=6,
                                       pixelformat=imagecodecs.AVIF.PIXEL_FORMAT.YUV420)

    return Codec(
        "avif", "AVIF (AV1 intra)", f"imagecodecs {imagecodecs.__version__} / {imagecodecs.avif_version()}",
        (0, 100), True, _AVIF_QUALITIES, "libavif quality", ".avif", encode, imagecodecs.avif_decode)


def _jpegxl_imagecodecs() -> Codec:
    import imagecodecs
    if not imagecodecs.JPEGXL.available:
        raise RuntimeError(f"imagecodecs {imagecodecs.__version__} was built without JPEG XL")

    def encode(img, quality):
        return imagecodecs.jpegxl_encode(img, level=float(quality), effort=7)

    return Codec(
        "jpegxl", "JPEG XL", f"imagecodecs {imagecodecs.__version__} / {imagecodecs.jpegxl_version()}",
        (0.0, 99.0), False, (0.0, 10.0, 25.0, 40.0, 55.0, 70.0, 80.0, 90.0),
        "cjxl-style quality (90 = distance 1)", ".jxl", encode, imagecodecs.jpegxl_decode)


_BACKENDS: dict[str, list[Callable[[], Codec]]] = {
    "jpeg": [_jpeg_pillow],
    "webp": [_webp_pillow],
    "jpeg2000": [_jpeg2000_pillow, _jpeg2000_imagecodecs],
    "heif": [_heif_pillow_heif],
    "avif": [_avif_pillow, _avif_imagecodecs],
    "jpegxl": [_jpegxl_imagecodecs],
}


# --------------------------------------------------------------------------- probing

def _probe_image() -> np.ndarray:
    """A small deterministic textured image (48 x 64) for round-trip probes."""
    y, x = np.mgrid[0:48, 0:64].astype(np.float64)
    r = 128 + 80 * np.sin(x / 5.0) * np.cos(y / 7.0)
    g = 2.0 * x + 1.5 * y
    b = 200 - 1.8 * y + 30 * np.sin((x + y) / 4.0)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).round().astype(np.uint8)


def _probe(codec: Codec) -> None:
    img = _probe_image()
    q = max(codec.default_qualities)
    data = codec.encode(img, q)
    if not data:
        raise RuntimeError("encoder returned no bytes")
    out = codec.decode(data)
    if out.shape != img.shape:
        raise RuntimeError(f"round trip changed the shape {img.shape} -> {out.shape}")
    p = _psnr(img, out)
    if p < 20.0:
        raise RuntimeError(f"round trip at quality {q} gave only {p:.1f} dB PSNR")


_PROBED: tuple[dict[str, Codec], dict[str, str]] | None = None


def available_codecs(refresh: bool = False) -> tuple[dict[str, Codec], dict[str, str]]:
    """Probe every registered codec with a real tiny encode/decode round trip.

    Returns ``(available, unavailable)``: ``available`` maps name -> the working
    :class:`Codec` (first backend that passed), ``unavailable`` maps name -> the reason(s)
    every backend failed. Results are cached; ``refresh=True`` probes again.
    """
    global _PROBED
    if _PROBED is not None and not refresh:
        return dict(_PROBED[0]), dict(_PROBED[1])
    available: dict[str, Codec] = {}
    unavailable: dict[str, str] = {}
    for name, factories in _BACKENDS.items():
        reasons = []
        for factory in factories:
            where = factory.__name__.lstrip("_")
            try:
                codec = factory()
                _probe(codec)
            except Exception as e:  # noqa: BLE001 - any failure means "not usable here"
                reasons.append(f"{where}: {type(e).__name__}: {e}")
                continue
            available[name] = codec
            break
        else:
            unavailable[name] = "; ".join(reasons) if reasons else "no backend registered"
    _PROBED = (available, unavailable)
    return dict(available), dict(unavailable)


def get_codec(codec: Codec | str) -> Codec:
    """The working :class:`Codec` for a name (or the codec itself); raises
    :class:`CodecUnavailable` with the reason if it cannot run here."""
    if isinstance(codec, Codec):
        return codec
    if codec not in _BACKENDS:
        raise ValueError(f"unknown codec {codec!r}; known: {', '.join(_BACKENDS)}")
    available, unavailable = available_codecs()
    if codec not in available:
        raise CodecUnavailable(f"{codec}: {unavailable.get(codec, 'not available')}")
    return available[codec]


# --------------------------------------------------------------------------- measuring

def measure(codec: Codec | str, img, quality) -> dict:
    """Encode, decode the bytes, and measure: ``{quality, bytes, bpp, psnr, ms_ssim}``.

    ``bytes`` is the file size in bytes; ``ms_ssim`` is NaN for images under 161 px.
    """
    codec = get_codec(codec)
    img = _check_image(img)
    data = codec.encode(img, quality)
    return _row(codec, img, quality, data, codec.decode(data))


def _row(codec: Codec, img: np.ndarray, quality, data: bytes, dec: np.ndarray) -> dict:
    if dec.shape != img.shape:
        raise RuntimeError(f"{codec.name}: decoded shape {dec.shape} != input shape {img.shape}")
    h, w = img.shape[:2]
    return {"quality": codec.check_quality(quality), "bytes": len(data), "bpp": _bpp(len(data), h, w),
            "psnr": _psnr(img, dec), "ms_ssim": _ms_ssim(img, dec)}


def rd_curve(codec: Codec | str, img, qualities: Sequence[float] | None = None) -> list[dict]:
    """One :func:`measure` row per quality (default: the codec's ``default_qualities``)."""
    codec = get_codec(codec)
    qs = codec.default_qualities if qualities is None else qualities
    return [measure(codec, img, q) for q in qs]


def encode_at_bpp(codec: Codec | str, img, target_bpp: float, *, rel_tol: float = 0.005,
                  max_iter: int = 30) -> tuple[bytes, np.ndarray, float | int]:
    """Bisect the quality parameter for the file whose bpp is closest to ``target_bpp``.

    Returns ``(bytes, decoded, quality)``. Integer-quality codecs end on the closest of two
    neighbouring qualities; float-quality ones stop within ``rel_tol`` (relative) of the
    target or after ``max_iter`` encodes. A target outside the codec's reach returns its
    lowest/highest quality. Of all qualities tried, the closest in bpp is returned, so a
    locally non-monotonic rate cannot make the result worse than a tried neighbour.
    """
    codec = get_codec(codec)
    img = _check_image(img)
    if not (target_bpp > 0 and math.isfinite(target_bpp)):
        raise ValueError(f"target_bpp must be a positive number, got {target_bpp}")
    h, w = img.shape[:2]
    tried: dict[float, tuple[bytes, float]] = {}

    def at(q):
        if q not in tried:
            data = codec.encode(img, q)
            tried[q] = (data, _bpp(len(data), h, w))
        return tried[q][1]

    lo, hi = codec.quality_range
    if codec.integer_quality:
        lo, hi = int(lo), int(hi)
    if target_bpp > at(lo) and target_bpp < at(hi):
        for _ in range(max_iter):
            if codec.integer_quality:
                if hi - lo <= 1:
                    break
                mid = (lo + hi) // 2
            else:
                mid = (lo + hi) / 2.0
            r = at(mid)
            if abs(r - target_bpp) <= rel_tol * target_bpp:
                break
            if r < target_bpp:
                lo = mid
            else:
                hi = mid
    best = min(tried, key=lambda q: (abs(tried[q][1] - target_bpp), q))
    data = tried[best][0]
    return data, codec.decode(data), best
