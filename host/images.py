"""Reading and writing images under one stated policy.

The learned codec works on 8-bit RGB. What we accept and how it is mapped:

=================  ===========================================================  =========
input              coded as                                                      decoded
=================  ===========================================================  =========
RGB 8-bit          as is                                                         RGB
gray (L, 1-bit)    R=G=B (layout "gray" in the file)                             gray
palette (P)        expanded to RGB (refused if the palette has transparency)     RGB
RGBA / LA          alpha dropped only if fully opaque; transparency is refused   RGB/gray
16-bit (I;16, ...) scaled to 8 bit (>> 8, rounded); the codec is 8-bit           8-bit
CMYK, YCbCr, LAB   converted to RGB by Pillow                                    RGB
EXIF orientation   applied (ImageOps.exif_transpose): pixels coded as displayed  upright
ICC profile        colour-managed to sRGB (ImageCms); a gray image stays gray    sRGB, no
                   if the result is neutral; a profile that cannot be applied    profile
                   (corrupt, wrong colour space) is refused
> max_pixels       refused before decoding the pixels (default 2**28 = 268 Mpx,  --
                   ``--max-pixels``); also Pillow's decompression-bomb limit
=================  ===========================================================  =========

Decoded images are written only in lossless formats (:data:`LOSSLESS_FORMATS`: PNG, TIFF,
BMP, PPM/PGM); a lossy one (JPEG, WebP, GIF's palette ...) is refused before decoding --
convert the PNG afterwards. Every output file is written atomically (``NAME.part``, then
renamed): a failure leaves neither a partial output nor the ``.part`` behind.

Refusals raise :class:`ImagePolicyError` with the reason and what to do instead.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

LAYOUTS = {"rgb": 0, "gray": 1}
DEFAULT_MAX_PIXELS = 1 << 28     # 268 Mpx (16384 x 16384): images and .lic files above are refused
# extension -> Pillow format of the lossless outputs decompress writes
LOSSLESS_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".ppm": "PPM",
                    ".pgm": "PPM", ".pnm": "PPM"}


class ImagePolicyError(ValueError):
    """The input image cannot be coded without silently losing information."""


class OutputError(ValueError):
    """An output file cannot be written (a directory, a read-only place, a lossy format)."""


def check_pixels(width: int, height: int, max_pixels: int | None, what: str) -> None:
    """Refuse ``width x height`` above ``max_pixels`` (None: :data:`DEFAULT_MAX_PIXELS`)."""
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if width * height > limit:
        raise ImagePolicyError(f"{what} is {width}x{height} = {width * height} pixels, above the limit of "
                               f"{limit} pixels (raise it with --max-pixels if this is intended)")


def _alpha_is_opaque(alpha: np.ndarray, max_value: int) -> bool:
    return bool(np.all(alpha == max_value))


def load_image(path, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
    """Return ``(uint8 HxWx3 array, layout)`` where layout is ``"rgb"`` or ``"gray"``.
    An image above ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS`) is refused from its
    header, before its pixels are decoded."""
    path = Path(path)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if path.is_dir():
        raise ImagePolicyError(f"input {path} is a directory, not an image")
    saved = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = (limit + 1) // 2      # Pillow refuses above 2x this itself
            img = Image.open(path)
            check_pixels(img.width, img.height, limit, str(path))
            img.load()
            ImageOps.exif_transpose(img, in_place=True)      # code the pixels as they are displayed
    except FileNotFoundError:
        raise ImagePolicyError(f"input image not found: {path}") from None
    except Image.DecompressionBombError as exc:
        raise ImagePolicyError(f"{path} exceeds the pixel limit: {str(exc).rstrip('.')}; raise it with "
                               "--max-pixels if this is intended") from None
    except MemoryError:
        raise ImagePolicyError(f"not enough memory to read {path}") from None
    except ImagePolicyError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on broken files
        raise ImagePolicyError(f"cannot read {path} as an image: {type(exc).__name__}: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    return image_to_array(img, str(path))


def image_to_array(img: Image.Image, name: str = "image") -> tuple[np.ndarray, str]:
    """8-bit RGB array + layout under the policy table above (ICC profile -> sRGB included)."""
    icc = img.info.get("icc_profile")
    if icc and img.mode == "CMYK":      # the profile describes the ink values: apply it to them
        return _icc_to_srgb(img, icc, name), "rgb"
    a, layout = _to_array(img, name)
    if not icc:
        return a, layout
    rgb = _icc_to_srgb(Image.fromarray(a[..., 0] if layout == "gray" else a, "L" if layout == "gray" else "RGB"),
                       icc, name)
    if layout == "gray" and np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return rgb, "gray"
    return rgb, "rgb"


def _icc_to_srgb(img: Image.Image, icc: bytes, name: str) -> np.ndarray:
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        raise ImagePolicyError(f"{name} has an ICC colour profile that cannot be applied ({exc}); the codec "
                               "codes sRGB: convert the image to sRGB or strip the profile first") from None
    return np.asarray(out)


def _to_array(img: Image.Image, name: str = "image") -> tuple[np.ndarray, str]:
    if img.width < 1 or img.height < 1:
        raise ImagePolicyError(f"{name} is empty ({img.width}x{img.height})")
    mode = img.mode
    if mode == "P":
        if "transparency" in img.info:
            img = img.convert("RGBA")
            mode = "RGBA"
        else:
            return np.asarray(img.convert("RGB")), "rgb"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        a = np.asarray(img.getchannel("A"))
        if not _alpha_is_opaque(a, 255):
            raise ImagePolicyError(
                f"{name} has transparency (mode {mode}); the codec has no alpha channel. "
                "Flatten it onto a background first (e.g. Pillow's Image.alpha_composite)."
            )
        return (np.asarray(img.convert("RGB")), "rgb") if mode.startswith(("RGB", "P")) else (
            _gray3(np.asarray(img.getchannel(0))), "gray")
    if mode in ("1", "L"):
        return _gray3(np.asarray(img.convert("L"))), "gray"
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(img).astype(np.float64)
        hi = 65535.0 if mode.startswith("I") else 1.0
        a8 = np.clip(np.rint(a / hi * 255.0), 0, 255).astype(np.uint8)
        return _gray3(a8), "gray"
    if mode == "RGB":
        return np.asarray(img), "rgb"
    try:
        return np.asarray(img.convert("RGB")), "rgb"
    except (ValueError, OSError) as exc:
        raise ImagePolicyError(f"{name}: unsupported image mode {mode}: {exc}") from None


def _gray3(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[..., None], 3, axis=2)


def to_pil(rgb: np.ndarray, layout: str = "rgb") -> Image.Image:
    if layout == "gray":
        # the model decodes three planes; a gray source is their mean, rounded
        g = np.rint(rgb.astype(np.float32).mean(axis=2)).astype(np.uint8)
        return Image.fromarray(g, "L")
    return Image.fromarray(rgb, "RGB")


def output_format(path) -> str:
    """Pillow format for a decoded image at ``path``; lossy or unknown formats are refused."""
    path = Path(path)
    fmt = LOSSLESS_FORMATS.get(path.suffix.lower())
    if fmt is None:
        other = Image.registered_extensions().get(path.suffix.lower())
        what = (f"{other} is not one of the lossless output formats" if other
                else f"unknown image extension {path.suffix!r}")
        raise OutputError(f"cannot write {path}: {what}; decoded images are written losslessly as "
                          ".png, .tif/.tiff, .bmp or .ppm/.pgm (convert the PNG afterwards if needed)")
    return fmt


def check_output(path) -> Path:
    """Refuse, before any work, an output that cannot be written: a directory, below a
    file, or in a directory we may not write."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a directory; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: directory {parent} is not writable")
    return path


def write_atomic(path, write) -> None:
    """``write(file object)`` into ``PATH.part``, then rename it to ``path``. On any failure
    the ``.part`` is removed and an existing ``path`` is left as it was; OS errors become
    :class:`OutputError`."""
    path = check_output(path)
    tmp = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp.is_file() or tmp.is_symlink():
            tmp.unlink()
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def save_image(rgb: np.ndarray, path, layout: str = "rgb") -> None:
    """Write a decoded image, atomically and losslessly (format from the extension)."""
    fmt = output_format(path)
    write_atomic(path, lambda fh: to_pil(rgb, layout).save(fh, format=fmt))
