"""What every codec backend shares: the tiling, the ``.lic`` container packing and
unpacking, the identity check, the decode loop with all its validation, and atomic file
I/O. No torch, no CompressAI: the backends are peers deriving from :class:`BaseCodec`:

* :class:`licfpga.host.codec.Codec` -- the float models (PyTorch, CompressAI layers);
* :class:`licfpga.host.integer_codec.IntegerCodec` -- the bit-exact integer model (NumPy +
  our rANS coder, :mod:`licfpga.host.entropy_coder`), and its FPGA variant.

:func:`licfpga.host.backends.codec_for_file` picks the backend from what a file names.

Images are cut into ``tile`` = (width, height) tiles (default 1024 x 1024; ``--tile 1024``
or ``--tile 1920x1088``) coded independently, so the transform's memory is bounded by one
tile whatever the image size; each tile is padded (edge replication,
:func:`licfpga.model.geometry.pad_to_stride`) to the model's stride and cropped back after
decoding. Each latent group of a tile is coded as ``streams`` independent rANS streams
(format version 2, :mod:`licfpga.host.container`; default :func:`default_streams`), which
the backends encode and decode on a thread pool of ``threads`` threads (the C coder
releases the GIL); the bytes do not depend on the thread count.

A backend sets ``model_id``, ``weights_hash``, ``state`` (``{"meta": {"name": ...}}``),
``tile``, ``stride``, ``progress``, ``timing``, ``streams``, ``threads`` and
``expected_groups``, and implements ``_compress_tile(crop, streams) -> Tile`` and
``_decompress_tile(tile, th, tw, streams) -> (pixels, index CRC)`` (``streams``: S of the
file; the pool is ``self._pool``, None for one thread);
and, for :func:`~licfpga.host.backends.codec_for_file`, the classmethod
``for_file(f, candidates=None, **kwargs)``: the codec of its own that the parsed file
names, or None when the file's model id is not one of its kind.
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from licfpga.model.geometry import STRIDE, latent_size

from .container import MAX_STREAMS, ContainerError, LicFile, Tile, n_payloads, pack, tile_grid, unpack
from .images import DEFAULT_MAX_PIXELS, LAYOUTS, load_image, save_image, write_atomic

DEFAULT_TILE = 1024
MAX_TILE = 0xFFFFFFFF      # the container's u32 tile field
# Payload plausibility (checked for every tile before any is decoded): a group is never empty
# (a rANS stream always ends with its flushed state), and never more than this many bytes per
# latent position (a z position covers stride x stride pixels; 8 bytes per pixel is far above
# any real file and far below what a corrupt length could make us allocate).
MAX_PAYLOAD_PER_PIXEL = 8
LAYOUT_NAMES = {v: k for k, v in LAYOUTS.items()}


def check_tile(tile, stride: int = STRIDE) -> tuple[int, int]:
    """(width, height) of a tile the container can hold, from an edge (int, or a digit
    string "1024": square) or "WxH" ("1920x1088"; also a (W, H) pair): each a positive
    multiple of ``stride``, at most the file's u32 field."""
    top = MAX_TILE // stride * stride
    err = ValueError(f"--tile must be a positive multiple of {stride} up to {top} (the file's u32 field), "
                     f"an edge or WxH (e.g. 1024 or 1920x1088), got {tile}")
    if isinstance(tile, str):
        m = re.fullmatch(r"\s*(\d{1,12})\s*(?:[xX]\s*(\d{1,12})\s*)?", tile)
        if m is None:
            raise err
        dims = (int(m[1]), int(m[2] if m[2] is not None else m[1]))
    elif isinstance(tile, (tuple, list)) and len(tile) == 2:
        dims = tuple(tile)
    else:
        dims = (tile, tile)
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 < d <= MAX_TILE or d % stride:
            raise err
    return int(dims[0]), int(dims[1])


DEFAULT_STREAMS = 4        # the quad Cortex-A53 of the boards


def default_streams(th: int, tw: int, stride: int = STRIDE) -> int:
    """S for a tile of th x tw pixels: one stream per 16 hyper-latent positions (256 x 256
    px), at least 1, at most :data:`DEFAULT_STREAMS` (4 from 512 x 512 px: a 1024-px or a
    1920x1088 tile). Each extra stream costs 12 bytes (its flushed state and its length), so
    tiny tiles keep one."""
    return max(1, min(DEFAULT_STREAMS, latent_size(th, stride) * latent_size(tw, stride) // 16))


def check_streams(streams) -> int | None:
    """None (automatic, :func:`default_streams`) or 1..MAX_STREAMS."""
    if streams is None:
        return None
    if isinstance(streams, bool) or not isinstance(streams, (int, np.integer)) or not 0 < streams <= MAX_STREAMS:
        raise ValueError(f"streams must be 1..{MAX_STREAMS} (or None: automatic), got {streams}")
    return int(streams)


def check_threads(threads) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 0 < threads <= 1024:
        raise ValueError(f"threads must be 1..1024 (or None: one per stream up to the CPU count), got {threads}")
    return int(threads)


@dataclass
class Timing:
    encode_ms: float = 0.0
    decode_ms: float = 0.0


class BaseCodec:
    """Container, tiling, checks and files around a backend's per-tile transforms."""

    model_id: str
    weights_hash: bytes
    state: dict
    stride: int = STRIDE
    progress: bool = False
    expected_groups: int       # payload groups per tile this model writes
    streams: int | None = None  # S of the files written (None: default_streams of the tile)
    threads: int | None = None  # entropy-coding threads (None: min(S, CPUs))
    _pool = None                # the thread pool while encoding or decoding (None: one thread)

    @property
    def tile(self) -> tuple[int, int]:
        """(width, height) of the tiles written; set from anything :func:`check_tile` takes."""
        return self._tile

    @tile.setter
    def tile(self, value) -> None:
        self._tile = check_tile(value, self.stride)

    def _set_coding(self, tile, streams, threads) -> None:
        """Shared constructor arguments: tile, streams, threads (each checked)."""
        self.tile = tile
        self.streams, self.threads = check_streams(streams), check_threads(threads)

    def streams_for(self, h: int, w: int) -> int:
        """S of a file for an h x w image: ``streams`` or :func:`default_streams` of its first tile."""
        if self.streams is not None:
            return self.streams
        tw, th = self.tile
        return default_streams(min(th, h), min(tw, w), self.stride)

    @contextmanager
    def _coding_pool(self, streams: int):
        """``self._pool``: a pool of min(threads, S) threads while coding (None for one)."""
        n = min(self.threads or os.cpu_count() or 1, streams)
        if n <= 1:
            yield None
            return
        with ThreadPoolExecutor(n, thread_name_prefix="licfpga-rans") as pool:
            self._pool = pool
            try:
                yield pool
            finally:
                self._pool = None

    @classmethod
    def for_file(cls, f: LicFile, candidates=None, **kwargs):
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.state.get("meta", {}).get("name") or self.model_id

    # -- per tile, in the backend -----------------------------------------------------------
    def _compress_tile(self, crop: np.ndarray, streams: int) -> Tile:
        raise NotImplementedError

    def _decompress_tile(self, t: Tile, th: int, tw: int, streams: int) -> tuple[np.ndarray, int]:
        """-> (uint8 [th, tw, 3] pixels, CRC32 of the scale indexes)."""
        raise NotImplementedError

    # -- encoding -------------------------------------------------------------------------
    def encode(self, rgb: np.ndarray, layout: str = "rgb") -> bytes:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected a uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        (tw, th), streams = self.tile, self.streams_for(h, w)
        tx, ty = tile_grid(w, h, self.tile)
        t0 = time.perf_counter()
        tiles = []
        with self._coding_pool(streams):
            for j, i in tqdm([(j, i) for j in range(ty) for i in range(tx)], desc="encode tiles",
                             disable=not self.progress or tx * ty == 1, unit="tile"):
                crop = rgb[j * th:(j + 1) * th, i * tw:(i + 1) * tw]
                tiles.append(self._compress_tile(crop, streams))
        groups = self.expected_groups
        if len(tiles[0].payloads) != n_payloads(groups, streams):      # the backend's own bug
            raise RuntimeError(f"backend wrote {len(tiles[0].payloads)} payloads per tile, not "
                               f"{n_payloads(groups, streams)} ({groups} groups, {streams} streams)")
        f = LicFile(self.model_id, self.weights_hash, w, h, LAYOUTS[layout], self.tile, groups, tiles,
                    streams=streams)
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
        (tw, th), (j, i) = f.tile, divmod(k, tx)
        y0, x0 = j * th, i * tw
        return y0, x0, min(th, f.height - y0), min(tw, f.width - x0)

    def check_file(self, f: LicFile, max_pixels: int | None = None) -> None:
        """Everything about a parsed file that can be checked before decoding, for all tiles
        before any is decoded, so that a crafted header never makes us allocate or compute:
        model identity, the pixel limit (``max_pixels``, default
        :data:`~licfpga.host.images.DEFAULT_MAX_PIXELS`), payload groups, streams per group,
        and per tile the latent shape, the payload count and plausible payload sizes
        (non-empty, at most :data:`MAX_PAYLOAD_PER_PIXEL` bytes per pixel of its latent
        positions)."""
        self.check_identity(f)
        limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        if f.width * f.height > limit:
            raise ContainerError(f"the file declares a {f.width}x{f.height} image = {f.width * f.height} pixels, "
                                 f"above the limit of {limit} pixels (raise it with --max-pixels if this is intended)")
        if f.groups != self.expected_groups:
            raise ContainerError(f"malformed file: {f.groups} payload groups per tile, but model {self.name} "
                                 f"writes {self.expected_groups}")
        if not 0 < f.streams <= MAX_STREAMS:
            raise ContainerError(f"malformed file: {f.streams} streams per latent group (1..{MAX_STREAMS})")
        npl = n_payloads(f.groups, f.streams)
        tx, ty = tile_grid(f.width, f.height, f.tile)
        if len(f.tiles) != tx * ty:
            raise ContainerError(f"malformed file: {len(f.tiles)} tiles, the size and tile need {tx * ty}")
        for k, t in enumerate(f.tiles):
            _, _, th, tw = self._tile_box(f, k)
            lat = (latent_size(th, self.stride), latent_size(tw, self.stride))
            if tuple(t.latent_shape) != lat:
                raise ContainerError(f"malformed file: tile {k} latent {tuple(t.latent_shape)}, expected {lat}")
            if len(t.payloads) != npl:
                raise ContainerError(f"malformed file: tile {k} has {len(t.payloads)} payloads, not {npl} "
                                     f"({f.groups} groups, {f.streams} streams)")
            for g, ps in enumerate(f.group_payloads(t)):
                for s, p in enumerate(ps):
                    if not p:
                        where = f" stream {s}" if len(ps) > 1 else ""
                        raise ContainerError(f"malformed file: tile {k} payload group {g}{where} is empty "
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
        with self._coding_pool(f.streams):
            self._decode_tiles(f, out)
        self.timing.decode_ms = (time.perf_counter() - t0) * 1e3
        return out, LAYOUT_NAMES[f.layout]

    def _decode_tiles(self, f: LicFile, out: np.ndarray) -> None:
        for k, t in enumerate(tqdm(f.tiles, desc="decode tiles", disable=not self.progress or len(f.tiles) == 1,
                                   unit="tile")):
            y0, x0, th, tw = self._tile_box(f, k)
            try:
                px, icrc = self._decompress_tile(t, th, tw, f.streams)
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
