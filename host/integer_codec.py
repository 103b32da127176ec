"""``--backend integer``: the codec on the bit-exact integer model (no float anywhere).

The transforms are :class:`licfpga.model.golden.network.IntegerModel` (NumPy integer
arithmetic, exact for any thread count), the entropy coder is our CompressAI-compatible rANS
(:mod:`licfpga.host.entropy_coder`) fed with the CDF tables stored *in the artifact*, and the CDF index
of each latent comes from the integer scale thresholds. So the decoder reproduces the
encoder's indexes on any machine, and the decoded pixels are what the FPGA computes.
Files use the same ``.lic`` container (model id ``int-hyperprior{...}``, weights hash =
SHA-256 of the artifact); every tile still carries the CRC of its scale indexes.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np

from licfpga.model.geometry import STRIDE, pad_to_stride
from licfpga.model.golden.network import ArtifactError, IntegerModel, artifact_paths
from licfpga.model.package_data import PREVIOUS_DIR, SHIPPED_DIR

from .codec_base import DEFAULT_TILE, BaseCodec, Timing
from .container import ContainerError, LicFile, Tile
from .entropy_coder import RansCoder, decode_streams, encode_streams

ARTIFACT_DIR = SHIPPED_DIR          # the integer artifacts ship beside the float checkpoints
ARCH = "hyperprior"                 # the one architecture the integer model implements
# the model id the integer backend writes: "int-" + ARCH + its widths as sorted compact JSON
_ID = re.compile(r"int-(?P<arch>[a-z][a-z0-9-]*)(?P<widths>\{.*\})", re.S)
WIDTHS = ("M", "N", "Nh")


def integer_model_id(N: int, M: int, Nh: int) -> str:
    """The id stored in the files of an integer artifact with these widths."""
    return "int-" + ARCH + json.dumps({"N": N, "M": M, "Nh": Nh}, sort_keys=True, separators=(",", ":"))


def parse_model_id(file_model_id: str) -> tuple[str, dict] | None:
    """(arch, widths) of an integer-backend model id, or None if it is not one: the id must
    be exactly what :func:`integer_model_id` writes for positive integer widths."""
    m = _ID.fullmatch(file_model_id)
    if m is None or m["arch"] != ARCH:
        return None
    try:
        widths = json.loads(m["widths"])
    except ValueError:
        return None
    if not isinstance(widths, dict) or sorted(widths) != sorted(WIDTHS) \
            or not all(type(v) is int and v > 0 for v in widths.values()) \
            or integer_model_id(widths["N"], widths["M"], widths["Nh"]) != file_model_id:
        return None
    return m["arch"], widths


def shipped_artifacts() -> list[Path]:
    return sorted(ARTIFACT_DIR.glob("int-*.json"))


def decodable_artifacts() -> list[Path]:
    """The shipped artifacts, then those of earlier releases (``previous/``), so that files
    they wrote still decode."""
    return shipped_artifacts() + sorted(PREVIOUS_DIR.glob("int-*.json"))


def resolve_artifact(name_or_path) -> Path:
    """A path to ``x.json`` (or ``x``), or the stem of a shipped artifact (``int-student-0.013``)."""
    js, _ = artifact_paths(name_or_path)
    for cand in (js, ARTIFACT_DIR / f"{name_or_path}.json"):
        if cand.is_file():
            return cand
    names = ", ".join(a.stem for a in shipped_artifacts()) or "none"
    raise ArtifactError(f"integer artifact not found: {name_or_path} (shipped: {names})")


def _refuse_impossible_latents(y: np.ndarray, z: np.ndarray) -> None:
    """A fault-free transform keeps latents narrow int8; -128 (a flipped activation bit,
    results/faults/) would be coded and then refused by every decoder: refuse it here."""
    for name, lat in (("y", y), ("z", z)):
        if not _narrow(lat):
            raise ValueError(f"latent {name} outside -127..127: the analysis transform computed an "
                             "impossible value (hardware fault?); no file written")


class IntegerCodec(BaseCodec):
    """Same container, tiling and API as the float :class:`~licfpga.host.codec.Codec` (its
    peer); transforms in exact integers."""

    expected_groups = 2        # payloads per tile: y, z (checked for every tile before decoding)

    def __init__(self, artifact, tile=DEFAULT_TILE, progress: bool = False, streams: int | None = None,
                 threads: int | None = None):
        self.stride = STRIDE
        self._set_coding(tile, streams, threads)    # checked before loading anything
        self.path = resolve_artifact(artifact)
        self.model = IntegerModel.load(self.path)
        self.state = {"meta": {"name": self.path.stem, "lambda": self.model.schema.get("meta", {}).get("lambda")}}
        self.progress = progress
        cfg = self.model.schema["model"]
        self.model_id = integer_model_id(cfg["N"], cfg["M"], cfg.get("Nh", cfg["N"]))
        self.weights_hash = self.model.digest()
        self.timing = Timing()
        self.index_crc = None
        z, y = self.model.entropy_tables("z"), self.model.entropy_tables("y")
        self.z_coder = RansCoder(z["cdf"], z["cdf_length"], z["offset"])
        self.y_coder = RansCoder(y["cdf"], y["cdf_length"], y["offset"])
        self._z_median = z["median"].astype(np.int64)

    @property
    def _y(self) -> tuple:
        """y tables as CompressAI's RansEncoder takes them (lists; for callers driving it)."""
        c = self.y_coder
        return c.cdfs.tolist(), c.cdf_lengths.tolist(), c.offsets.tolist()

    @property
    def _z(self) -> tuple:
        c = self.z_coder
        return c.cdfs.tolist(), c.cdf_lengths.tolist(), c.offsets.tolist()

    @classmethod
    def load(cls, artifact, **kwargs) -> "IntegerCodec":
        return cls(artifact, **kwargs)

    @staticmethod
    def recognises(file_model_id: str) -> bool:
        """Whether a file's model id is an integer artifact's (:func:`parse_model_id`)."""
        return parse_model_id(file_model_id) is not None

    @classmethod
    def for_file(cls, f: LicFile, candidates=None, **kwargs) -> "IntegerCodec | None":
        """Among shipped (or given) integer artifacts, the one whose identity (model id +
        SHA-256 of the artifact) the file names; None if the file's model id is not an
        integer artifact's."""
        if not cls.recognises(f.model_id):
            return None
        for art in candidates or decodable_artifacts():
            try:
                codec = IntegerCodec(art, **kwargs)
            except ArtifactError:
                continue
            if codec.matches(f):
                return codec
        raise ContainerError(f"no available integer artifact matches the file's model {f.model_id} "
                             f"(weights {f.weights_hash.hex()[:12]}); pass --model")

    def _pad(self, crop: np.ndarray) -> np.ndarray:
        return pad_to_stride(crop, self.stride)

    def _z_indexes(self, shape) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[0], dtype=np.int32)[:, None, None], shape)

    def _analysis(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(y, z) of a padded tile; the FPGA backend runs g_a on the overlay instead."""
        return self.model.analysis(rgb)

    def _encoder_transforms(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(y, z, scale codes) of a padded tile; an FPGA encoder design computes all three."""
        y, z = self._analysis(rgb)
        _refuse_impossible_latents(y, z)      # before h_s, which would refuse z less tellingly
        return y, z, self.model.scale_codes(z)

    def _scale_codes(self, z: np.ndarray) -> np.ndarray:
        """h_s of a decoded z; a decoder design runs it on the FPGA instead."""
        return self.model.scale_codes(z)

    def _compress_tile(self, crop: np.ndarray, streams: int) -> Tile:
        y, z, codes = self._encoder_transforms(self._pad(np.ascontiguousarray(crop)))   # latents checked there
        idx = self.model.scale_indexes(codes)
        y_str = encode_streams(self.y_coder, y, idx, streams, self._pool)      # S streams of y
        z_str = self.z_coder.encode(z - self._z_median[:, None, None], self._z_indexes(z.shape))
        return Tile(tuple(int(s) for s in z.shape[1:]), [*map(bytes, y_str), bytes(z_str)], _index_crc(idx))

    def _decompress_tile(self, t: Tile, th: int, tw: int, streams: int) -> tuple[np.ndarray, int]:
        if len(t.payloads) != streams + 1:
            raise ContainerError(f"integer backend expects {streams + 1} payloads per tile ({streams} streams "
                                 f"of y, z), got {len(t.payloads)}")
        zh, zw = t.latent_shape
        zshape = (self.model.z_channels, zh, zw)
        z_sym = self.z_coder.decode(t.payloads[streams], self._z_indexes(zshape))    # ValueError if malformed
        z = z_sym.astype(np.int64).reshape(zshape) + self._z_median[:, None, None]
        idx = self.model.scale_indexes(self._scale_codes(z))
        # int32 as decoded (the transforms widen to int64 themselves; the DMA packs int32)
        y = decode_streams(self.y_coder, t.payloads[:streams], idx, self._pool).reshape(self.model.M, 4 * zh, 4 * zw)
        if not _narrow(y):
            raise ContainerError("decoded latent outside int8: corrupt payload")
        return self._synthesis(y)[:th, :tw], _index_crc(idx)

    def _synthesis(self, y: np.ndarray) -> np.ndarray:
        """RGB of a tile's latents; the FPGA backend runs g_s on the overlay instead (and may
        return a view of its receive buffer: the caller copies it out before the next tile)."""
        return self.model.synthesis(y)


# the stream names of a format-2 overlay the fpga backend runs (overlay/vivado.py writes them)
V2_ENCODER_IN, V2_ENCODER_OUT = "x", ("y", "z", "scale_codes")


class FpgaIntegerCodec(IntegerCodec):
    """``--backend fpga``: the integer codec with the transforms of an FPGA overlay run on it,
    through the PYNQ driver (:mod:`licfpga.host.pynq_driver`). The overlay is either

    * one transform (``overlay.json`` format 1, :class:`~licfpga.host.pynq_driver.StreamAccelerator`):
      g_a (an encoder overlay: ``compress``) or g_s (a decoder overlay: ``decompress``); or
    * a whole side (format 2, :class:`~licfpga.host.pynq_driver.MultiStreamAccelerator`): the
      encoder design (g_a, h_a, h_s: ``compress`` gets y, z and the scale codes from the FPGA,
      the PS only entropy-codes) or the decoder design (``decompress`` runs h_s on the decoded z,
      then g_s on the decoded y hat).

    ``overlay``: the bitstream (``licfpga.bit``; ``licfpga.hwh`` and ``overlay.json`` --
    written by ``licfpga.overlay.vivado`` -- beside it). The overlay must compute this very
    artifact (``overlay.json``'s golden digest), since its thresholds were proven equal to
    it: files and pixels are then byte-identical to ``--backend integer``. A tile whose size
    is not the overlay's frame (it is compiled for one frame size) runs the transform on the
    CPU instead, with the same result; ``fpga_tiles`` / ``cpu_tiles`` count them (per tile).
    ``pynq``: the module with PYNQ's API (default ``import pynq``; tests pass cocotbpynq).
    """

    def __init__(self, artifact, overlay="licfpga.bit", tile=DEFAULT_TILE, progress: bool = False,
                 pynq=None, streams: int | None = None, threads: int | None = None):
        from .pynq_driver import FORMAT_V2, MultiStreamAccelerator, Stream, StreamAccelerator, read_overlay_description

        super().__init__(artifact, tile=tile, progress=progress, streams=streams, threads=threads)
        desc_path = Path(overlay).with_name("overlay.json")
        if not desc_path.is_file():
            raise ArtifactError(f"{desc_path} missing: copy the overlay.json written by "
                                "`python -m licfpga.overlay.vivado` beside the bitstream")
        desc = read_overlay_description(desc_path)        # every key checked: one clear error
        self.v2 = desc.get("format") == FORMAT_V2
        self.transforms = tuple(desc["transforms"]) if self.v2 else (desc.get("transform"),)
        self.transform = "+".join(self.transforms)       # for messages and the CLI
        golden = desc.get("golden") or {}
        if golden.get("digest") != self.weights_hash.hex():
            raise ArtifactError(f"{overlay} was built from {golden.get('name', 'an unknown artifact')}, not "
                                f"{self.path.stem}: its numbers would differ (pass that artifact with --model)")
        self.fpga_tiles = self.cpu_tiles = 0
        if not self.v2:
            if self.transform not in ("g_a", "g_s"):
                raise ArtifactError(f"{overlay} runs {self.transform!r}; the fpga backend takes g_a or g_s overlays")
            fin, fout = desc["io"]["input"], desc["io"]["output"]
            self.frame = tuple(fin["shape"][1:3])           # NHWC input rows, columns
            self.accelerator = StreamAccelerator(overlay, fin["shape"][1:], _np_dtype(fin["datatype"]),
                                                 fout["shape"][1:], _np_dtype(fout["datatype"]), pynq=pynq,
                                                 fps=desc.get("est_fps"))     # the DMA deadline
            return
        by_name = {s["name"]: s for d in ("in", "out") for s in desc["streams"][d]}
        stream = lambda n: Stream(n, tuple(by_name[n]["shape"][1:]), _np_dtype(by_name[n]["datatype"]),  # noqa: E731
                                  by_name[n]["dma"])
        pipes = [(p["transforms"], [stream(n) for n in p["in"]], [stream(n) for n in p["out"]]) for p in desc["pipelines"]]
        # the pipelines this codec uses, by their transforms; each needs its streams' roles
        roles = {("g_a", "h_a", "h_s"): ((V2_ENCODER_IN,), V2_ENCODER_OUT), ("h_s",): (("z",), ("scale_codes",)),
                 ("g_s",): (("y_hat",), ("x_hat",))}
        self.pipes = {}
        for tr, ins, outs in pipes:
            want = roles.get(tuple(tr))
            if want is None or tuple(s.name for s in ins) != want[0] or tuple(s.name for s in outs) != want[1]:
                raise ArtifactError(f"{overlay}: a pipeline of {tr} from {[s.name for s in ins]} to "
                                    f"{[s.name for s in outs]}; the fpga backend runs g_a+h_a+h_s (x -> y, z, "
                                    "scale_codes), h_s (z -> scale_codes) and g_s (y_hat -> x_hat)")
            self.pipes[tr[0] if len(tr) == 1 else "encoder"] = (ins, outs)
        self.accelerator = MultiStreamAccelerator(overlay, [(ins, outs) for _, ins, outs in pipes], pynq=pynq,
                                                  fps=desc.get("est_fps"))
        # the frame (rows, columns) each pipeline's first input is compiled for
        self.pipe_frames = {k: tuple(ins[0].shape[:2]) for k, (ins, _) in self.pipes.items()}
        # the tile size in pixels that runs on the FPGA: the encoder's RGB in, the decoder's RGB out
        px = self.pipes["encoder"][0][0] if "encoder" in self.pipes else self.pipes.get("g_s", (None, [None]))[1][0]
        self.frame = tuple(px.shape[:2]) if px is not None else None

    def _count(self, ok: bool) -> bool:
        if ok:
            self.fpga_tiles += 1
        else:
            self.cpu_tiles += 1
        return ok

    def _on_fpga(self, transform: str, hw: tuple) -> bool:
        if self.transform != transform:
            raise ArtifactError(f"this overlay runs {self.transform}: use it to "
                                f"{'compress' if self.transform == 'g_a' else 'decompress'}")
        return self._count(tuple(hw) == self.frame)

    def _pipe(self, key: str, hw: tuple) -> bool:
        """Whether pipeline ``key`` of a format-2 overlay takes a frame of ``hw`` (rows, columns)."""
        if key not in self.pipes:
            raise ArtifactError(f"this overlay runs {self.transform}: use it to "
                                f"{'decompress' if key == 'encoder' else 'compress'}")
        return tuple(hw) == self.pipe_frames[key]

    def _pad(self, crop: np.ndarray) -> np.ndarray:
        """A tile of the encoder overlay's frame size is padded straight into the DMA send
        buffer (:func:`_pad_into`, the same pixels as :func:`pad_to_stride`): the frame is
        copied once, not padded into a new array and then copied into the buffer."""
        h, w = crop.shape[:2]
        if self.v2:
            buf = self.accelerator.input_frame(V2_ENCODER_IN) if "encoder" in self.pipes else None
        else:
            buf = self.accelerator.input_frame if self.transform == "g_a" else None
        if (buf is None or (h + (-h) % self.stride, w + (-w) % self.stride) != buf.shape[:2]
                or crop.dtype != buf.dtype or buf.shape[2:] != crop.shape[2:]):
            return super()._pad(crop)
        return _pad_into(buf, crop)

    def _analysis(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.v2:                      # a whole-side overlay: _encoder_transforms chose the CPU
            return self.model.analysis(rgb)
        if not self._on_fpga("g_a", rgb.shape[:2]):
            return self.model.analysis(rgb)
        # NHWC (a view of the receive buffer) -> [M, h, w] int32, in the one copy out of it
        y = np.ascontiguousarray(np.moveaxis(self.accelerator.run(rgb, copy=False), -1, 0), dtype=np.int32)
        return y, self.model.run_transform("h_a", y)

    def _encoder_transforms(self, rgb: np.ndarray):
        if not self.v2:
            return super()._encoder_transforms(rgb)
        if not self._count(self._pipe("encoder", rgb.shape[:2])):
            return super()._encoder_transforms(rgb)
        out = self.accelerator.run({V2_ENCODER_IN: rgb}, copy=False)
        # NHWC views of the receive buffers -> [C, h, w], each in the one copy out of them
        y, z, codes = (np.ascontiguousarray(np.moveaxis(out[n], -1, 0), dtype=np.int32) for n in V2_ENCODER_OUT)
        _refuse_impossible_latents(y, z)      # as on the CPU path: a faulty design is not coded
        return y, z, codes

    def _scale_codes(self, z: np.ndarray) -> np.ndarray:
        if not self.v2:
            return super()._scale_codes(z)
        if not self._pipe("h_s", z.shape[1:]):
            return super()._scale_codes(z)
        out = self.accelerator.run({"z": np.moveaxis(z, 0, -1)}, copy=False)
        return np.ascontiguousarray(np.moveaxis(out["scale_codes"], -1, 0), dtype=np.int64)

    def _synthesis(self, y: np.ndarray) -> np.ndarray:
        if self.v2:
            if not self._count(self._pipe("g_s", y.shape[1:])):
                return self.model.synthesis(y)
            # the RGB out is a view of the receive buffer, which _decode_tiles copies out before the next tile
            return self.accelerator.run({"y_hat": np.moveaxis(y, 0, -1)}, copy=False)["x_hat"].astype(np.uint8, copy=False)
        if not self._on_fpga("g_s", y.shape[1:]):
            return self.model.synthesis(y)
        # [M, h, w] -> NHWC in the one copy into the send buffer; the RGB out is a view of the
        # receive buffer, which _decode_tiles copies into the image before the next tile
        return self.accelerator.run(np.moveaxis(y, 0, -1), copy=False).astype(np.uint8, copy=False)



def _narrow(lat: np.ndarray) -> bool:
    """Whether every latent is within -127..127 (the narrow int8 range); two reductions, no
    temporary (what ``np.abs(lat).max() <= 127`` says)."""
    return lat.size == 0 or (lat.min() >= -127 and lat.max() <= 127)


def _index_crc(idx: np.ndarray) -> int:
    """CRC-32 of the scale indexes as int32 bytes (the file's index CRC), read from the array
    itself, without a copy when it already is C-contiguous int32."""
    return zlib.crc32(np.ascontiguousarray(idx, dtype=np.int32))


def _pad_into(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """``src`` [h, w, ...] written into ``dst`` [H, W, ...] (H >= h, W >= w) padded at the bottom
    and right by replicating its last row and column: ``pad_to_stride``'s edge mode."""
    h, w = src.shape[:2]
    dst[:h, :w] = src
    dst[h:, :w] = src[h - 1:h]
    dst[:, w:] = dst[:, w - 1:w]
    return dst


def _np_dtype(finn_datatype: str) -> np.dtype:
    """numpy dtype of a FINN integer datatype name (UINT8, INT8, ...): the overlay's frames."""
    kinds = {"UINT8": np.uint8, "INT8": np.int8, "UINT16": np.uint16, "INT16": np.int16}
    if finn_datatype not in kinds:
        raise ArtifactError(f"overlay stream datatype {finn_datatype} has no byte-aligned numpy type")
    return np.dtype(kinds[finn_datatype])


def integer_codec_for_file(f: LicFile, candidates=None, **kwargs) -> IntegerCodec:
    """Among shipped (or given) integer artifacts, the one whose identity the file names."""
    codec = IntegerCodec.for_file(f, candidates, **kwargs)
    if codec is None:
        raise ContainerError(f"the file's model {f.model_id} is not an integer artifact's")
    return codec
