"""The ``.lic`` file container (format version 2; version 1 files still read).

Layout of version 2, little-endian (docs/format.md has it byte by byte)::

    magic       4 B   b"LICF"
    version     u8    FORMAT_VERSION (2)
    header_len  u32   bytes of the header that follows
    header:
      model_id    u16 length + UTF-8  (architecture and widths, e.g. mean-scale{"M":96,"N":64,...})
      weights     32 B  SHA-256 of the model's weights and entropy-coder tables
      width       u32, height u32     image size in pixels
      layout      u8    0 = RGB, 1 = gray (coded as three equal planes)
      tile_w      u32, tile_h u32     tile size in pixels (tiles are coded independently)
      groups      u8    payload groups per tile (model dependent; the last is the hyper-latent z)
      streams     u8    S: independent rANS streams of every group but the last (1..MAX_STREAMS)
      per tile, row-major: latent_h u16, latent_w u16, index_crc u32 (CRC32 of the entropy
                  coder's scale indexes as the encoder computed them), then
                  (groups - 1) * S + 1 payload lengths u32: S per latent group, 1 for z
    payloads    the tiles' payloads, in the header's order
    crc32       u32   zlib.crc32 over everything before it

Version 1 differs only in the header: one ``tile`` u32 (square tiles) instead of
``tile_w, tile_h``, and no ``streams`` byte (S = 1: one payload per group). Both parse to a
:class:`LicFile`; ``pack`` writes a file in its ``version`` (parsed files re-pack byte for
byte), and every encoder writes version 2 only.

Every reader check raises :class:`ContainerError` with one clear sentence.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

MAGIC = b"LICF"
FORMAT_VERSION = 2                      # what the encoders write
READ_VERSIONS = (1, 2)                  # what this build reads
MAX_STREAMS = 64                        # S per latent group: far above any thread count
_PREAMBLE = struct.Struct("<4sBI")
_FIXED = {1: struct.Struct("<IIBIB"),   # width, height, layout, tile, groups
          2: struct.Struct("<IIBIIBB")}  # width, height, layout, tile_w, tile_h, groups, streams
_ENTRY = struct.Struct("<HHI")          # latent_h, latent_w, index_crc
_MAX_DIM = 1 << 20  # 1 Mpx edge: far above any real image, far below what would overflow


class ContainerError(ValueError):
    """A .lic file is truncated, corrupt, of an unknown version, or for another model."""


def tile_wh(tile) -> tuple[int, int]:
    """(width, height) of a tile given as an edge (square) or a (width, height) pair."""
    if isinstance(tile, (tuple, list)):
        w, h = tile
        return int(w), int(h)
    return int(tile), int(tile)


def n_payloads(groups: int, streams: int) -> int:
    """Payloads per tile: ``streams`` for each latent group, one for the last group (z)."""
    return (groups - 1) * streams + 1 if groups > 0 else 0


@dataclass
class Tile:
    latent_shape: tuple[int, int]
    payloads: list[bytes]        # (groups - 1) * streams + 1: group 0's streams, group 1's, ..., z
    index_crc: int = 0


@dataclass
class LicFile:
    model_id: str
    weights_hash: bytes
    width: int
    height: int
    layout: int
    tile: tuple[int, int]        # (width, height); an int means a square tile
    groups: int
    tiles: list[Tile] = field(default_factory=list)
    streams: int = 1
    version: int = FORMAT_VERSION

    def __post_init__(self):
        self.tile = tile_wh(self.tile)

    def group_payloads(self, t: Tile) -> list[list[bytes]]:
        """A tile's payloads per group: ``streams`` lists for the latent groups, then [z]."""
        s, p = self.streams, t.payloads
        return [p[g * s:(g + 1) * s] for g in range(self.groups - 1)] + [p[(self.groups - 1) * s:]]


def pack(f: LicFile) -> bytes:
    """The bytes of ``f`` in its ``version`` (2 for everything an encoder makes)."""
    if len(f.weights_hash) != 32:
        raise ValueError("weights hash must be 32 bytes (SHA-256)")
    tw, th = tile_wh(f.tile)
    if f.version == 1:
        if tw != th or f.streams != 1:
            raise ValueError(f"version 1 holds square tiles and one stream per group, not {tw}x{th} tiles, "
                             f"{f.streams} streams")
        fixed = _FIXED[1].pack(f.width, f.height, f.layout, tw, f.groups)
    elif f.version == 2:
        if not 0 < f.streams <= MAX_STREAMS:
            raise ValueError(f"streams must be 1..{MAX_STREAMS}, got {f.streams}")
        fixed = _FIXED[2].pack(f.width, f.height, f.layout, tw, th, f.groups, f.streams)
    else:
        raise ValueError(f"cannot write .lic format version {f.version}")
    mid = f.model_id.encode()
    head = [struct.pack("<H", len(mid)), mid, f.weights_hash, fixed]
    npl = n_payloads(f.groups, f.streams)
    for t in f.tiles:
        if len(t.payloads) != npl:
            raise ValueError(f"tile has {len(t.payloads)} payloads, header says {npl} "
                             f"({f.groups} groups, {f.streams} streams)")
        head.append(_ENTRY.pack(*t.latent_shape, t.index_crc))
        head.append(struct.pack(f"<{npl}I", *(len(p) for p in t.payloads)))
    header = b"".join(head)
    body = _PREAMBLE.pack(MAGIC, f.version, len(header)) + header + b"".join(
        p for t in f.tiles for p in t.payloads)
    return body + struct.pack("<I", zlib.crc32(body))


def tile_grid(width: int, height: int, tile) -> tuple[int, int]:
    """(columns, rows) of tiles covering the image; ``tile`` an edge or (width, height)."""
    tw, th = tile_wh(tile)
    return -(-width // tw), -(-height // th)


def unpack(data: bytes) -> LicFile:
    n = len(data)
    if n == 0:
        raise ContainerError("file is empty (0 bytes): not a .lic file")
    if data[: min(4, n)] != MAGIC[: min(4, n)]:
        raise ContainerError("not a .lic file (bad magic number)")
    if n < _PREAMBLE.size + 4:
        raise ContainerError(f"file is truncated ({n} bytes)")
    _, version, header_len = _PREAMBLE.unpack_from(data)
    if version not in READ_VERSIONS:
        raise ContainerError(f"unsupported .lic format version {version} (this build reads versions "
                             f"{', '.join(map(str, READ_VERSIONS))})")
    (crc,) = struct.unpack_from("<I", data, n - 4)
    if zlib.crc32(data[: n - 4]) != crc:
        # distinguish the two common causes for a more useful message
        if _PREAMBLE.size + header_len + 4 > n:
            raise ContainerError(f"file is truncated ({n} bytes; header alone needs {_PREAMBLE.size + header_len + 4})")
        raise ContainerError("file is corrupt or truncated (CRC32 mismatch)")
    # CRC is good: the remaining checks guard against files written by a buggy or hostile encoder
    try:
        return _parse(data, version, header_len, n)
    except struct.error as exc:
        raise ContainerError(f"malformed header: {exc}") from None


def _parse(data: bytes, version: int, header_len: int, n: int) -> LicFile:
    off = _PREAMBLE.size
    end = off + header_len
    if end > n - 4:
        raise ContainerError("malformed header: longer than the file")
    (mlen,) = struct.unpack_from("<H", data, off)
    off += 2
    try:        # strict: a replaced character would make a file that re-packs differently
        model_id = data[off: off + mlen].decode("utf-8")
    except UnicodeDecodeError:
        raise ContainerError("malformed header: the model id is not UTF-8") from None
    off += mlen
    whash = data[off: off + 32]
    off += 32
    if version == 1:
        width, height, layout, tw, groups = _FIXED[1].unpack_from(data, off)
        th, streams = tw, 1
    else:
        width, height, layout, tw, th, groups, streams = _FIXED[2].unpack_from(data, off)
    off += _FIXED[version].size
    tile = f"{tw}" if version == 1 else f"{tw}x{th}"
    if not (0 < width <= _MAX_DIM and 0 < height <= _MAX_DIM) or tw <= 0 or th <= 0 or groups == 0 or layout > 1:
        raise ContainerError(f"malformed header: size {width}x{height}, tile {tile}, groups {groups}, layout {layout}")
    if not 0 < streams <= MAX_STREAMS:
        raise ContainerError(f"malformed header: {streams} streams per latent group (1..{MAX_STREAMS})")
    tx, ty = tile_grid(width, height, (tw, th))
    npl = n_payloads(groups, streams)
    if version >= 2 and tx * ty * (_ENTRY.size + 4 * npl) != end - off:
        raise ContainerError(f"malformed header: the tile table ({tx * ty} tiles of {npl} payloads) does not "
                             "match the header length")
    f = LicFile(model_id, whash, width, height, layout, (tw, th), groups, streams=streams, version=version)
    lengths = []
    for _ in range(tx * ty):
        lh, lw, icrc = _ENTRY.unpack_from(data, off)
        off += _ENTRY.size
        lens = struct.unpack_from(f"<{npl}I", data, off)
        off += 4 * npl
        f.tiles.append(Tile((lh, lw), [], icrc))
        lengths.append(lens)
    if off != end:
        raise ContainerError("malformed header: tile table does not match the header length")
    for t, lens in zip(f.tiles, lengths):
        for ln in lens:
            if off + ln > n - 4:
                raise ContainerError("malformed file: payload lengths exceed the file")
            t.payloads.append(data[off: off + ln])
            off += ln
    if off != n - 4:
        raise ContainerError(f"malformed file: {n - 4 - off} unexpected bytes after the payloads")
    return f
