"""What every codec backend shares: the tiling, the ``.lic`` container packing and
unpacking, the identity check, the decode loop with all its validation, and atomic file
I/O. No torch, no CompressAI: the backends are peers deriving from :class:`BaseCodec`:

* :class:`licfpga.host.codec.Codec` -- the float models (PyTorch, CompressAI layers);
* :class:`licfpga.host.integer_codec.IntegerCodec` -- the bit-exact integer model (NumPy +
  our rANS coder, :mod:`licfpga.host.entropy_coder`), and its FPGA variant.

:func:`licfpga.host.backends.codec_for_file` picks the backend from what a file names.

Images are cut into ``tile`` x ``tile`` tiles (default 1024) coded independently, so the
transform's memory is bounded by one tile whatever the image size; each tile is padded
(edge replication, :func:`licfpga.model.geometry.pad_to_stride`) to the model's stride and
cropped back after decoding.

A backend sets ``model_id``, ``weights_hash``, ``state`` (``{"meta": {"name": ...}}``),
``tile``, ``stride``, ``progress``, ``timing`` and ``expected_groups``, and implements
``_compress_tile(crop) -> Tile`` and ``_decompress_tile(tile, th, tw) -> (pixels, index CRC)``;
and, for :func:`~licfpga.host.backends.codec_for_file`, the classmethod
``for_file(f, candidates=None, **kwargs)``: the codec of its own that the parsed file
names, or None when the file's model id is not one of its kind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from licfpga.model.geometry import STRIDE, latent_size

from .container import ContainerError, LicFile, Tile, pack, tile_grid, unpack
from .images import DEFAULT_MAX_PIXELS, LAYOUTS, load_image, save_image, write_atomic

DEFAULT_TILE = 1024
MAX_TILE = 0xFFFFFFFF      # the container's u32 tile field
# Payload plausibility (checked for every tile before any is decoded): a group is never empty
# (a rANS stream always ends with its flushed state), and never more than this many bytes per
# latent position (a z position covers stride x stride pixels; 8 bytes per pixel is far above
# any real file and far below what a corrupt length could make us allocate).
MAX_PAYLOAD_PER_PIXEL = 8
LAYOUT_NAMES = {v: k for k, v in LAYOUTS.items()}


def check_tile(tile, stride: int = STRIDE) -> int:
    """A tile edge the container can hold: a positive multiple of ``stride``, at most u32."""
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or not 0 < tile <= MAX_TILE \
            or tile % stride:
        raise ValueError(f"--tile must be a positive multiple of {stride} up to {MAX_TILE // stride * stride} "
                         f"(the file's u32 field), got {tile}")
    return int(tile)


@dataclass
class Timing:
    encode_ms: float = 0.0
    decode_ms: float = 0.0


class BaseCodec:
    """Container, tiling, checks and files around a backend's per-tile transforms."""

    model_id: str
    weights_hash: bytes
    state: dict
    tile: int
    stride: int = STRIDE
    progress: bool = False
    expected_groups: int       # payload groups per tile this model writes

    @classmethod
    def for_file(cls, f: LicFile, candidates=None, **kwargs):
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.state.get("meta", {}).get("name") or self.model_id

    # -- per tile, in the backend -----------------------------------------------------------
    def _compress_tile(self, crop: np.ndarray) -> Tile:
        raise NotImplementedError

    def _decompress_tile(self, t: Tile, th: int, tw: int) -> tuple[np.ndarray, int]:
        """-> (uint8 [th, tw, 3] pixels, CRC32 of the scale indexes)."""
        raise NotImplementedError

    # -- encoding -------------------------------------------------------------------------
    def encode(self, rgb: np.ndarray, layout: str = "rgb") -> bytes:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected a uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        tx, ty = tile_grid(w, h, self.tile)
        t0 = time.perf_counter()
        tiles = []
        for j, i in tqdm([(j, i) for j in range(ty) for i in range(tx)], desc="encode tiles",
                         disable=not self.progress or tx * ty == 1, unit="tile"):
            crop = rgb[j * self.tile:(j + 1) * self.tile, i * self.tile:(i + 1) * self.tile]
            tiles.append(self._compress_tile(crop))
        f = LicFile(self.model_id, self.weights_hash, w, h, LAYOUTS[layout], self.tile,
                    len(tiles[0].payloads), tiles)
        data = pack(f)
        self.timing.encode_ms = (time.perf_counter() - t0) * 1e3
        return data

    # -- decoding -------------------------------------------------------------------------
    def matches(self, f: LicFile) -> bool:
        """Whether ``f`` names this codec's model (id and weights hash)."""
        return f.model_id == self.model_id and f.weights_hash == self.weights_hash

    def check_identity(self, f: LicFile) -> None:
        if not self.matches(f):
            raise ContainerError(
                f"file was coded with model {f.model_id} (weights {f.weights_hash.hex()[:12]}), "
                f"but the decoder has {self.model_id} (weights {self.weights_hash.hex()[:12]}); "
                "decode with the model that encoded it")

    @staticmethod
    def _tile_box(f: LicFile, k: int) -> tuple[int, int, int, int]:
        """(y0, x0, th, tw) of tile ``k`` (row-major) of ``f``."""
        tx, _ = tile_grid(f.width, f.height, f.tile)
        j, i = divmod(k, tx)
        y0, x0 = j * f.tile, i * f.tile
        return y0, x0, min(f.tile, f.height - y0), min(f.tile, f.width - x0)

    def check_file(self, f: LicFile, max_pixels: int | None = None) -> None:
        """Everything about a parsed file that can be checked before decoding, for all tiles
        before any is decoded, so that a crafted header never makes us allocate or compute:
        model identity, the pixel limit (``max_pixels``, default
        :data:`~licfpga.host.images.DEFAULT_MAX_PIXELS`), payload groups, and per tile the
        latent shape and plausible payload sizes (non-empty, at most
        :data:`MAX_PAYLOAD_PER_PIXEL` bytes per pixel of its latent positions)."""
        self.check_identity(f)
        limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        if f.width * f.height > limit:
            raise ContainerError(f"the file declares a {f.width}x{f.height} image = {f.width * f.height} pixels, "
                                 f"above the limit of {limit} pixels (raise it with --max-pixels if this is intended)")
        if f.groups != self.expected_groups:
            raise ContainerError(f"malformed file: {f.groups} payload groups per tile, but model {self.name} "
                                 f"writes {self.expected_groups}")
        tx, ty = tile_grid(f.width, f.height, f.tile)
        if len(f.tiles) != tx * ty:
            raise ContainerError(f"malformed file: {len(f.tiles)} tiles, the size and tile need {tx * ty}")
        for k, t in enumerate(f.tiles):
            _, _, th, tw = self._tile_box(f, k)
            lat = (latent_size(th, self.stride), latent_size(tw, self.stride))
            if tuple(t.latent_shape) != lat:
                raise ContainerError(f"malformed file: tile {k} latent {tuple(t.latent_shape)}, expected {lat}")
            if len(t.payloads) != f.groups:
                raise ContainerError(f"malformed file: tile {k} has {len(t.payloads)} payload groups, not {f.groups}")
            for g, p in enumerate(t.payloads):
                if not p:
                    raise ContainerError(f"malformed file: tile {k} payload group {g} is empty "
                                         "(the encoder always writes bytes)")
            size, cap = sum(map(len, t.payloads)), MAX_PAYLOAD_PER_PIXEL * lat[0] * lat[1] * self.stride ** 2
            if size > cap:
                raise ContainerError(f"malformed file: tile {k} has {size} payload bytes for {lat[0]}x{lat[1]} "
                                     f"latent positions (at most {cap})")

    def decode(self, data: bytes, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
        """``.lic`` bytes -> (uint8 HxWx3, layout). Every header check (:meth:`check_file`,
        the pixel limit ``max_pixels`` included) runs before anything is allocated."""
        f = unpack(data)
        self.check_file(f, max_pixels)
        t0 = time.perf_counter()
        try:
            out = np.empty((f.height, f.width, 3), np.uint8)
        except MemoryError:
            raise ContainerError(f"not enough memory for a {f.width}x{f.height} image") from None
        for k, t in enumerate(tqdm(f.tiles, desc="decode tiles", disable=not self.progress or len(f.tiles) == 1,
                                   unit="tile")):
            y0, x0, th, tw = self._tile_box(f, k)
            try:
                px, icrc = self._decompress_tile(t, th, tw)
            except MemoryError:
                raise ContainerError(f"not enough memory to decode tile {k} ({tw}x{th} px)") from None
            except (ValueError, RuntimeError, IndexError, OverflowError) as exc:
                if "allocate" in str(exc) or "memory" in str(exc).lower():
                    raise ContainerError(f"not enough memory to decode tile {k} ({tw}x{th} px): {exc}") from None
                raise ContainerError(f"cannot decode tile {k}: {exc}") from None
            if icrc != t.index_crc:
                raise ContainerError(
                    f"tile {k}: the entropy parameters computed here differ from the encoder's "
                    "(floating-point differences between machines or library versions); this "
                    "file cannot be decoded correctly here")
            out[y0:y0 + th, x0:x0 + tw] = px
        self.timing.decode_ms = (time.perf_counter() - t0) * 1e3
        return out, LAYOUT_NAMES[f.layout]

    # -- files ----------------------------------------------------------------------------
    def compress_file(self, src, dst, max_pixels: int | None = None) -> tuple[int, tuple[int, int]]:
        """Returns (file size in bytes, (height, width)). ``dst`` is written atomically."""
        rgb, layout = load_image(src, max_pixels)
        data = self.encode(rgb, layout)
        _write_atomic(Path(dst), data)
        return len(data), rgb.shape[:2]

    def decompress_file(self, src, dst, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
        rgb, layout = self.decode(read_lic(src), max_pixels)
        save_image(rgb, dst, layout)
        return rgb, layout


def read_lic(path) -> bytes:
    path = Path(path)
    if path.is_dir():
        raise ContainerError(f"{path} is a directory, not a compressed file")
    if not path.is_file():
        raise ContainerError(f"compressed file not found: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ContainerError(f"cannot read {path}: {exc.strerror or exc}") from None


def _write_atomic(path: Path, data: bytes) -> None:
    """``PATH.part`` then rename; on failure no ``.part`` is left (OutputError, one line)."""
    write_atomic(path, lambda fh: fh.write(data))
