"""The ``.lic`` file container (format version 1).

Layout, little-endian::

    magic       4 B   b"LICF"
    version     u8    FORMAT_VERSION
    header_len  u32   bytes of the header that follows
    header:
      model_id    u16 length + UTF-8  (architecture and widths, e.g. mean-scale{"M":96,"N":64,...})
      weights     32 B  SHA-256 of the model's weights and entropy-coder tables
      width       u32, height u32     image size in pixels
      layout      u8    0 = RGB, 1 = gray (coded as three equal planes)
      tile        u32   tile edge in pixels (tiles are coded independently)
      groups      u8    payload groups per tile (model dependent)
      per tile, row-major: latent_h u16, latent_w u16, index_crc u32 (CRC32 of the entropy
                  coder's scale indexes as the encoder computed them), then per group:
                  payload length u32
    payloads    the tiles' payload groups, in the header's order
    crc32       u32   zlib.crc32 over everything before it

Every reader check raises :class:`ContainerError` with one clear sentence.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

MAGIC = b"LICF"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<4sBI")
_MAX_DIM = 1 << 20  # 1 Mpx edge: far above any real image, far below what would overflow


class ContainerError(ValueError):
    """A .lic file is truncated, corrupt, of an unknown version, or for another model."""


@dataclass
class Tile:
    latent_shape: tuple[int, int]
    payloads: list[bytes]
    index_crc: int = 0


@dataclass
class LicFile:
    model_id: str
    weights_hash: bytes
    width: int
    height: int
    layout: int
    tile: int
    groups: int
    tiles: list[Tile] = field(default_factory=list)


def pack(f: LicFile) -> bytes:
    if len(f.weights_hash) != 32:
        raise ValueError("weights hash must be 32 bytes (SHA-256)")
    mid = f.model_id.encode()
    head = [struct.pack("<H", len(mid)), mid, f.weights_hash,
            struct.pack("<IIBIB", f.width, f.height, f.layout, f.tile, f.groups)]
    for t in f.tiles:
        if len(t.payloads) != f.groups:
            raise ValueError(f"tile has {len(t.payloads)} payload groups, header says {f.groups}")
        head.append(struct.pack("<HHI", *t.latent_shape, t.index_crc))
        head.append(struct.pack(f"<{f.groups}I", *(len(p) for p in t.payloads)))
    header = b"".join(head)
    body = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header)) + header + b"".join(
        p for t in f.tiles for p in t.payloads)
    return body + struct.pack("<I", zlib.crc32(body))


def tile_grid(width: int, height: int, tile: int) -> tuple[int, int]:
    return -(-width // tile), -(-height // tile)


def unpack(data: bytes) -> LicFile:
    n = len(data)
    if n == 0:
        raise ContainerError("file is empty (0 bytes): not a .lic file")
    if data[: min(4, n)] != MAGIC[: min(4, n)]:
        raise ContainerError("not a .lic file (bad magic number)")
    if n < _PREAMBLE.size + 4:
        raise ContainerError(f"file is truncated ({n} bytes)")
    _, version, header_len = _PREAMBLE.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ContainerError(f"unsupported .lic format version {version} (this build reads version {FORMAT_VERSION})")
    (crc,) = struct.unpack_from("<I", data, n - 4)
    if zlib.crc32(data[: n - 4]) != crc:
        # distinguish the two common causes for a more useful message
        if _PREAMBLE.size + header_len + 4 > n:
            raise ContainerError(f"file is truncated ({n} bytes; header alone needs {_PREAMBLE.size + header_len + 4})")
        raise ContainerError("file is corrupt or truncated (CRC32 mismatch)")
    # CRC is good: the remaining checks guard against files written by a buggy or hostile encoder
    try:
        return _parse(data, header_len, n)
    except struct.error as exc:
        raise ContainerError(f"malformed header: {exc}") from None


def _parse(data: bytes, header_len: int, n: int) -> LicFile:
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
    width, height, layout, tile, groups = struct.unpack_from("<IIBIB", data, off)
    off += struct.calcsize("<IIBIB")
    if not (0 < width <= _MAX_DIM and 0 < height <= _MAX_DIM) or tile <= 0 or groups == 0 or layout > 1:
        raise ContainerError(f"malformed header: size {width}x{height}, tile {tile}, groups {groups}, layout {layout}")
    tx, ty = tile_grid(width, height, tile)
    f = LicFile(model_id, whash, width, height, layout, tile, groups)
    lengths = []
    for _ in range(tx * ty):
        lh, lw, icrc = struct.unpack_from("<HHI", data, off)
        off += 8
        lens = struct.unpack_from(f"<{groups}I", data, off)
        off += 4 * groups
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
