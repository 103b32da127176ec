"""The learned image codec: image <-> ``.lic`` bytes with a zoo model and CompressAI's rANS.

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
from .images import LAYOUTS, load_image, save_image

DEFAULT_TILE = 1024
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


@dataclass
class Timing:
    encode_ms: float = 0.0
    decode_ms: float = 0.0


class Codec:
    """A loaded model plus its identity (id string + weights hash) for the container."""

    def __init__(self, model, state: dict, tile: int = DEFAULT_TILE, progress: bool = False):
        stride = getattr(model, "downsampling_factor", 64)
        if tile <= 0 or tile % stride:
            raise ValueError(f"tile size must be a positive multiple of {stride}, got {tile}")
        self.model, self.state, self.tile, self.stride = model, state, tile, stride
        self.model_id = model_id(state)
        self.weights_hash = weights_hash(model)
        self.progress = progress
        self.timing = Timing()
        for name in ENTROPY_PARAM_NETS:
            if hasattr(model, name):
                _pin_single_thread(getattr(model, name))
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

    @torch.inference_mode()
    def decode(self, data: bytes) -> tuple[np.ndarray, str]:
        f = unpack(data)
        self.check_identity(f)
        t0 = time.perf_counter()
        out = np.empty((f.height, f.width, 3), np.uint8)
        tx, _ = tile_grid(f.width, f.height, f.tile)
        for k, t in enumerate(tqdm(f.tiles, desc="decode tiles", disable=not self.progress or len(f.tiles) == 1,
                                   unit="tile")):
            j, i = divmod(k, tx)
            y0, x0 = j * f.tile, i * f.tile
            th, tw = min(f.tile, f.height - y0), min(f.tile, f.width - x0)
            lat_h, lat_w = -(-th // self.stride), -(-tw // self.stride)
            if t.latent_shape != (lat_h, lat_w):
                raise ContainerError(f"malformed file: tile {k} latent {t.latent_shape}, expected {(lat_h, lat_w)}")
            try:
                px, icrc = self._decompress_tile(t, th, tw)
            except (ValueError, RuntimeError, IndexError) as exc:
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
    def compress_file(self, src, dst) -> tuple[int, tuple[int, int]]:
        """Returns (file size in bytes, (height, width))."""
        rgb, layout = load_image(src)
        data = self.encode(rgb, layout)
        _write_atomic(Path(dst), data)
        return len(data), rgb.shape[:2]

    def decompress_file(self, src, dst) -> tuple[np.ndarray, str]:
        rgb, layout = self.decode(read_lic(src))
        save_image(rgb, dst, layout)
        return rgb, layout


def read_lic(path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise ContainerError(f"compressed file not found: {path}")
    return path.read_bytes()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


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
