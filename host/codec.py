"""The float backend: a zoo model (PyTorch, CompressAI layers) behind the shared
:class:`~licfpga.host.codec_base.BaseCodec` (tiling, container, checks, files), with a rANS
coder stream-compatible with CompressAI's (ours, bounds-checked:
:mod:`licfpga.host.entropy_coder`). Its peer is :mod:`licfpga.host.integer_codec`;
:func:`licfpga.host.backends.codec_for_file` picks between them from what a file names.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import torch

from licfpga.model.checkpoint import load_model, model_id, resolve_checkpoint, decodable_checkpoints, weights_hash
from licfpga.model.geometry import STRIDE, pad_to_stride
from licfpga.model.zoo import MODELS

from .codec_base import (DEFAULT_TILE, MAX_PAYLOAD_PER_PIXEL, MAX_TILE, BaseCodec, Timing,  # noqa: F401 (re-exported)
                         check_tile, read_lic)
from .container import ContainerError, LicFile, Tile
from .entropy_coder import CompressAIEntropyCoder, Streams

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


class Codec(BaseCodec):
    """A loaded float model plus its identity (id string + weights hash) for the container."""

    def __init__(self, model, state: dict, tile=DEFAULT_TILE, progress: bool = False, streams: int | None = None,
                 threads: int | None = None):
        self.stride = getattr(model, "downsampling_factor", STRIDE)
        self._set_coding(tile, streams, threads)
        self.model, self.state = model, state
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
        # the latent groups (every group but the last, z) are coded by the Gaussian
        # conditional: it writes S streams per group; a model without one (factorized) has one
        # group and writes S = 1
        self._y_coder = getattr(getattr(model, "gaussian_conditional", None), "entropy_coder", None)
        self.index_crc = None
        if hasattr(model, "gaussian_conditional"):
            self.index_crc = _IndexCRC(model.gaussian_conditional)
            model.gaussian_conditional.build_indexes = self.index_crc  # instance attribute shadows the method

    @classmethod
    def load(cls, checkpoint, **kwargs) -> "Codec":
        model, state = load_model(resolve_checkpoint(checkpoint))
        return cls(model, state, **kwargs)

    @staticmethod
    def recognises(file_model_id: str) -> bool:
        """Whether a file's model id is a float zoo model's: ``<zoo arch>{<JSON widths>}``
        (:func:`licfpga.model.checkpoint.model_id`)."""
        arch, brace, widths = file_model_id.partition("{")
        if arch not in MODELS or not brace:
            return False
        try:
            return isinstance(json.loads(brace + widths), dict)
        except ValueError:
            return False

    @classmethod
    def for_file(cls, f: LicFile, candidates=None, **kwargs) -> "Codec | None":
        """Among shipped (or given) checkpoints, the one whose identity (model id + weights
        hash) the file names; None if the file's model id is not a float model's."""
        if not cls.recognises(f.model_id):
            return None
        for ckpt in candidates or decodable_checkpoints():
            codec = cls.load(ckpt, **kwargs)
            if codec.matches(f):
                return codec
        raise ContainerError(f"no available checkpoint matches the file's model {f.model_id} "
                             f"(weights {f.weights_hash.hex()[:12]}); pass --model")

    # -- encoding -------------------------------------------------------------------------
    def _to_tensor(self, tile: np.ndarray) -> torch.Tensor:
        x = np.array(pad_to_stride(tile, self.stride))      # edge replication, as every backend
        return torch.from_numpy(x).permute(2, 0, 1)[None].float().div_(255)

    @torch.inference_mode()
    def encode(self, rgb: np.ndarray, layout: str = "rgb") -> bytes:
        return super().encode(rgb, layout)

    def streams_for(self, h: int, w: int) -> int:
        """S of a file: 1 for a model without a Gaussian conditional (its one group is z-like)."""
        return 1 if self._y_coder is None else super().streams_for(h, w)

    def _y_streams(self, streams: int):
        """Let the Gaussian conditional's coder code ``streams`` streams on the codec's pool."""
        if self._y_coder is not None:
            self._y_coder.streams, self._y_coder.pool = streams, self._pool

    def _compress_tile(self, crop: np.ndarray, streams: int) -> Tile:
        self._y_streams(streams)
        try:
            out, icrc = self._index_crc_of(lambda: self.model.compress(self._to_tensor(crop)))
        finally:
            self._y_streams(1)
        shape = tuple(int(s) for s in out["shape"])
        payloads = []
        for s in out["strings"]:
            payloads.extend(map(bytes, s[0]) if isinstance(s[0], Streams) else [bytes(s[0])])
        return Tile(shape, payloads, icrc)

    def _decompress_tile(self, t: Tile, th: int, tw: int, streams: int) -> tuple[np.ndarray, int]:
        """-> (uint8 [th, tw, 3] pixels, CRC32 of the scale indexes)."""
        groups = (len(t.payloads) - 1) // streams + 1         # check_file made the count consistent
        strings = [[Streams(t.payloads[g * streams:(g + 1) * streams]) if streams > 1 else t.payloads[g]]
                   for g in range(groups - 1)] + [[t.payloads[-1]]]
        self._y_streams(streams)
        try:
            dec, icrc = self._index_crc_of(lambda: self.model.decompress(strings, t.latent_shape))
        finally:
            self._y_streams(1)
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
    @property
    def expected_groups(self) -> int:
        """Payload groups per tile this model writes (``len(compress()["strings"])``), found
        once by coding one stride x stride gray tile."""
        if getattr(self, "_groups", None) is None:
            with torch.inference_mode():
                out = self.model.compress(torch.full((1, 3, self.stride, self.stride), 0.5))
            self._groups = len(out["strings"])
        return self._groups

    @torch.inference_mode()
    def decode(self, data: bytes, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
        return super().decode(data, max_pixels)
