"""The learned image codec: image <-> ``.lic`` bytes with a zoo model and a rANS coder
stream-compatible with CompressAI's (ours, bounds-checked: :mod:`licfpga.host.entropy_coder`).

Images are cut into ``tile`` x ``tile`` tiles (default 1024) coded independently, so the
transform's memory is bounded by one tile whatever the image size; each tile is padded
(edge replication) to the model's stride and cropped back after decoding.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from licfpga.model.checkpoint import load_model, model_id, resolve_checkpoint, shipped_checkpoints, weights_hash

from .container import ContainerError, LicFile, Tile, pack, tile_grid, unpack
from .entropy_coder import CompressAIEntropyCoder
from .images import DEFAULT_MAX_PIXELS, LAYOUTS, load_image, save_image, write_atomic

DEFAULT_TILE = 1024
MAX_TILE = 0xFFFFFFFF      # the container's u32 tile field
# Payload plausibility (checked for every tile before any is decoded): a group is never empty
# (a rANS stream always ends with its flushed state), and never more than this many bytes per
# latent position (a z position covers stride x stride pixels; 8 bytes per pixel is far above
# any real file and far below what a corrupt length could make us allocate).
MAX_PAYLOAD_PER_PIXEL = 8
INTEGER_MODEL_PREFIX = "int-"     # model ids of the integer backend (host/integer_codec.py)
_LAYOUT_NAMES = {v: k for k, v in LAYOUTS.items()}
# Sub-networks whose outputs parametrise the entropy coder: encoder and decoder must compute
# them identically, or the rANS decoder silently produces garbage.
ENTROPY_PARAM_NETS = ("h_s", "h_mean_s", "h_scale_s", "cc_mean", "cc_scale", "lrp")


def _pin_single_thread(module: torch.nn.Module) -> None:
    """Run ``module`` on one thread. oneDNN picks different convolution kernels (different
    float summation orders) for different thread counts; measured here, a file encoded with
    1 thread and decoded with 2 came out as garbage. One thread makes the entropy
    parameters independent of the caller's thread setting (the transforms keep all threads)."""
    saved = []

    def pre(_m, _args):
        saved.append(torch.get_num_threads())
        torch.set_num_threads(1)

    def post(_m, _args, _out):
        torch.set_num_threads(saved.pop())

    module.register_forward_pre_hook(pre)
    module.register_forward_hook(post)


class _IndexCRC:
    """Wraps ``GaussianConditional.build_indexes`` to checksum the scale indexes it returns.
    The encoder stores the checksum per tile; the decoder compares before trusting its
    decode. A mismatch (another CPU type or library version computing slightly different
    scales) becomes a clear error instead of a silently wrong image."""

    def __init__(self, gaussian_conditional):
        self.build = gaussian_conditional.build_indexes
        self.crc = 0

    def __call__(self, scales: torch.Tensor) -> torch.Tensor:
        idx = self.build(scales)
        self.crc = zlib.crc32(idx.to(torch.int32).contiguous().numpy().tobytes(), self.crc)
        return idx


def check_tile(tile, stride: int = 64) -> int:
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


class Codec:
    """A loaded model plus its identity (id string + weights hash) for the container."""

    def __init__(self, model, state: dict, tile: int = DEFAULT_TILE, progress: bool = False):
        stride = getattr(model, "downsampling_factor", 64)
        check_tile(tile, stride)
        self.model, self.state, self.tile, self.stride = model, state, tile, stride
        self.model_id = model_id(state)
        self.weights_hash = weights_hash(model)
        self.progress = progress
        self.timing = Timing()
        for name in ENTROPY_PARAM_NETS:
            if hasattr(model, name):
                _pin_single_thread(getattr(model, name))
        for name in ("entropy_bottleneck", "gaussian_conditional"):
            if hasattr(getattr(model, name, None), "entropy_coder"):   # same streams, bounds-checked decode
                getattr(model, name).entropy_coder = CompressAIEntropyCoder()
        self.index_crc = None
        if hasattr(model, "gaussian_conditional"):
            self.index_crc = _IndexCRC(model.gaussian_conditional)
            model.gaussian_conditional.build_indexes = self.index_crc  # instance attribute shadows the method

    @classmethod
    def load(cls, checkpoint, **kwargs) -> "Codec":
        model, state = load_model(resolve_checkpoint(checkpoint))
        return cls(model, state, **kwargs)

    @property
    def name(self) -> str:
        return self.state.get("meta", {}).get("name") or self.model_id

    # -- encoding -------------------------------------------------------------------------
    def _to_tensor(self, tile: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(tile)).permute(2, 0, 1)[None].float().div_(255)
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x

    @torch.inference_mode()
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

    def _compress_tile(self, crop: np.ndarray) -> Tile:
        out, icrc = self._index_crc_of(lambda: self.model.compress(self._to_tensor(crop)))
        shape = tuple(int(s) for s in out["shape"])
        return Tile(shape, [bytes(s[0]) for s in out["strings"]], icrc)

    def _decompress_tile(self, t: Tile, th: int, tw: int) -> tuple[np.ndarray, int]:
        """-> (uint8 [th, tw, 3] pixels, CRC32 of the scale indexes)."""
        dec, icrc = self._index_crc_of(lambda: self.model.decompress([[p] for p in t.payloads], t.latent_shape))
        px = dec["x_hat"][0, :, :th, :tw].mul(255).round_().clamp_(0, 255).byte().permute(1, 2, 0).numpy()
        return px, icrc

    def _index_crc_of(self, run):
        """Run a compress/decompress call; return (its result, CRC32 of its scale indexes)."""
        if self.index_crc is None:
            return run(), 0
        self.index_crc.crc = 0
        out = run()
        return out, self.index_crc.crc

    # -- decoding -------------------------------------------------------------------------
    def check_identity(self, f: LicFile) -> None:
        if f.model_id != self.model_id or f.weights_hash != self.weights_hash:
            raise ContainerError(
                f"file was coded with model {f.model_id} (weights {f.weights_hash.hex()[:12]}), "
                f"but the decoder has {self.model_id} (weights {self.weights_hash.hex()[:12]}); "
                "decode with the model that encoded it")

    @property
    def expected_groups(self) -> int:
        """Payload groups per tile this model writes (``len(compress()["strings"])``), found
        once by coding one stride x stride gray tile."""
        if getattr(self, "_groups", None) is None:
            with torch.inference_mode():
                out = self.model.compress(torch.full((1, 3, self.stride, self.stride), 0.5))
            self._groups = len(out["strings"])
        return self._groups

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
            lat = (-(-th // self.stride), -(-tw // self.stride))
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

    @torch.inference_mode()
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
        return out, _LAYOUT_NAMES[f.layout]

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


def codec_for_file(data: bytes, candidates=None, **kwargs) -> Codec:
    """Pick, among shipped (or given) checkpoints, the one whose identity the file names."""
    f = unpack(data)
    if f.model_id.startswith(INTEGER_MODEL_PREFIX):
        from .integer_codec import integer_codec_for_file

        return integer_codec_for_file(f, candidates, **kwargs)
    for ckpt in candidates or shipped_checkpoints():
        codec = Codec.load(ckpt, **kwargs)
        if codec.model_id == f.model_id and codec.weights_hash == f.weights_hash:
            return codec
    raise ContainerError(f"no available checkpoint matches the file's model {f.model_id} "
                         f"(weights {f.weights_hash.hex()[:12]}); pass --model")
