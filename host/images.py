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
=================  ===========================================================  =========

Refusals raise :class:`ImagePolicyError` with the reason and what to do instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

LAYOUTS = {"rgb": 0, "gray": 1}


class ImagePolicyError(ValueError):
    """The input image cannot be coded without silently losing information."""


def _alpha_is_opaque(alpha: np.ndarray, max_value: int) -> bool:
    return bool(np.all(alpha == max_value))


def load_image(path) -> tuple[np.ndarray, str]:
    """Return ``(uint8 HxWx3 array, layout)`` where layout is ``"rgb"`` or ``"gray"``."""
    path = Path(path)
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise ImagePolicyError(f"input image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImagePolicyError(f"cannot read {path} as an image: {exc}") from None
    return image_to_array(img, str(path))


def image_to_array(img: Image.Image, name: str = "image") -> tuple[np.ndarray, str]:
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


def save_image(rgb: np.ndarray, path, layout: str = "rgb") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(rgb, layout).save(path)
