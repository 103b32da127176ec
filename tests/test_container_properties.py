"""Property tests of the .lic container (host/container.py): pack/unpack round-trips for
arbitrary valid files of both format versions (2: rectangular tiles, S streams per latent
group; 1: square tiles, one stream), and every single-byte change, truncation or extension is
detected."""

from __future__ import annotations

import struct
import zlib

import pytest

import hypothesis  # noqa: F401  (a test dependency: pyproject [test])
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from licfpga.host.container import (_MAX_DIM, MAX_STREAMS, ContainerError, LicFile, Tile, n_payloads, pack,  # noqa: E402
                                    tile_grid, unpack)

# database=None: no .hypothesis/ folder in the work tree
PROFILE = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def lic_files(draw, max_tiles: int = 9, max_groups: int = 4, max_payload: int = 24) -> LicFile:
    """Any file the format allows: version 2 or 1, model id (any UTF-8), hash, sizes up to
    the 1 Mpx edge, any tile width and height (u32; square in version 1), any stream count
    (version 2), up to ``max_tiles`` tiles, any latent shapes, CRCs and payloads."""
    edge = st.one_of(st.sampled_from([1, 63, 64, 65, 1024, 1088, 1920, _MAX_DIM, 2**32 - 1]),
                     st.integers(1, 2**32 - 1))
    version = draw(st.sampled_from([2, 2, 1]))
    tw = draw(edge)
    th = draw(edge) if version == 2 else tw
    streams = draw(st.one_of(st.integers(1, 4), st.just(MAX_STREAMS))) if version == 2 else 1

    def dim(n_max, tile):
        n = draw(st.integers(1, n_max))
        while (n - 1) * tile + 1 > _MAX_DIM:
            n -= 1
        return draw(st.integers((n - 1) * tile + 1, min(n * tile, _MAX_DIM)))

    width = dim(3, tw)
    height = dim(max(1, max_tiles // tile_grid(width, 1, (tw, th))[0]), th)
    groups = draw(st.integers(1, max_groups))
    tx, ty = tile_grid(width, height, (tw, th))
    tiles = [Tile((draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF))),
                  [draw(st.binary(max_size=max_payload)) for _ in range(n_payloads(groups, streams))],
                  draw(st.integers(0, 2**32 - 1)))
             for _ in range(tx * ty)]
    return LicFile(draw(st.text(max_size=40)), draw(st.binary(min_size=32, max_size=32)), width, height,
                   draw(st.sampled_from([0, 1])), (tw, th), groups, tiles, streams=streams, version=version)


@PROFILE
@given(lic_files())
def test_round_trip(f):
    data = pack(f)
    g = unpack(data)
    assert g == f
    assert pack(g) == data


@PROFILE
@given(st.builds(LicFile, st.text(max_size=8), st.binary(min_size=32, max_size=32), st.just(64), st.just(64),
                 st.just(0), st.just(64), st.integers(1, 255)).flatmap(
    lambda f: st.lists(st.binary(max_size=3), min_size=f.groups, max_size=f.groups).map(
        lambda ps: LicFile(f.model_id, f.weights_hash, 64, 64, 0, 64, f.groups, [Tile((1, 1), ps, 7)]))))
def test_round_trip_many_groups(f):
    assert unpack(pack(f)) == f


@PROFILE
@given(lic_files(max_tiles=4), st.data())
def test_any_single_byte_change_is_detected(f, data):
    b = bytearray(pack(f))
    pos = data.draw(st.integers(0, len(b) - 1), label="position")
    b[pos] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(ContainerError):
        unpack(bytes(b))


def _small_file() -> bytes:
    return pack(LicFile('mean-scale{"M":96}', bytes(range(32)), 100, 70, 0, 64, 2,
                        [Tile((1, 1), [b"\x01\x02\x03", b"\xff"], 0xDEADBEEF),
                         Tile((1, 1), [b"", b"\x00\x00"], 1)]))


def test_every_byte_every_value_of_a_small_file():
    """Exhaustive: each position of a 2-tile file set to each of the 255 other values."""
    data = _small_file()
    assert len(data) < 200
    for pos in range(len(data)):
        for v in range(256):
            if v == data[pos]:
                continue
            b = bytearray(data)
            b[pos] = v
            with pytest.raises(ContainerError):
                unpack(bytes(b))


def test_every_truncation_and_extension_of_a_small_file():
    data = _small_file()
    for n in range(len(data)):
        with pytest.raises(ContainerError):
            unpack(data[:n])
    for tail in (b"\x00", b"\x00" * 4, data[-4:]):
        with pytest.raises(ContainerError):
            unpack(data + tail)


@settings(max_examples=500, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_container_errors(blob):
    """Any bytes, also with a valid CRC32 trailer: a LicFile or ContainerError, nothing else."""
    for d in (blob, blob[:-4] + struct.pack("<I", zlib.crc32(blob[:-4])) if len(blob) >= 4 else blob,
              b"LICF\x01" + blob[5:-4] + struct.pack("<I", zlib.crc32(b"LICF\x01" + blob[5:-4]))):
        try:
            f = unpack(d)
        except ContainerError:
            continue
        assert pack(f) == d


@PROFILE
@given(lic_files(max_tiles=2), st.data())
def test_header_changes_with_a_valid_crc_raise_container_error_or_repack_exactly(f, data):
    """A changed header byte behind a recomputed CRC (a buggy or hostile encoder): either a
    clear ContainerError, or the file is one the format allows and re-packs byte for byte."""
    b = bytearray(pack(f))
    pos = data.draw(st.integers(0, len(b) - 5), label="position")
    b[pos] = data.draw(st.integers(0, 255), label="value")
    body = bytes(b[:-4])
    d = body + struct.pack("<I", zlib.crc32(body))
    try:
        g = unpack(d)
    except ContainerError:
        return
    assert pack(g) == d
