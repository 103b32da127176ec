"""Hardening (issue 12): every crafted file and odd input gives exactly one stderr line
``licfpga <cmd>: error: ...`` and exit status 2, and leaves nothing lost or half-written (no
``.part``, no partial output, an existing output untouched).

Everything goes through the real CLI entry point (``licfpga.host.cli.main``; a subprocess
under an address-space cap where an allocation is the point). Crafted ``.lic`` files are
real 64x64 encodes by the shipped models (float ``mean-scale-0.013``, integer
``int-student-0.013``) with header fields altered and re-packed with a valid CRC.
"""

import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from licfpga.host import cli
from licfpga.host.codec import Codec
from licfpga.host.container import pack, unpack
from licfpga.host.integer_codec import IntegerCodec

from .conftest import ROOT, sample_image

BACKENDS = {"float": (Codec, "mean-scale-0.013"), "integer": (IntegerCodec, "int-student-0.013")}


# -- helpers ---------------------------------------------------------------------------------
def _cli(capsys, *args) -> tuple[int, str]:
    rc = cli.main([str(a) for a in args])
    return rc, capsys.readouterr().err


def _assert_error(rc, err, cmd, pattern=None):
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith(f"licfpga {cmd}: error: "), err
    assert "Traceback" not in err
    if pattern:
        assert re.search(pattern, lines[0]), lines[0]


def _assert_clean(folder, *absent):
    assert not list(folder.rglob("*.part")), list(folder.rglob("*.part"))
    for p in absent:
        assert not p.exists(), p


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """backend -> (bytes of a real 64x64 encode, bytes of a 2-tile 128x64 encode with 64-px tiles)."""
    img = sample_image(64, 64)
    tall = sample_image(128, 64)
    out = {}
    for name, (cls, model) in BACKENDS.items():
        out[name] = (cls.load(model).encode(img), cls.load(model, tile=64).encode(tall))
    return out


def _craft(data: bytes, **fields) -> bytes:
    f = unpack(data)
    for k, v in fields.items():
        setattr(f, k, v)
    return pack(f)


@pytest.fixture
def never_decode(monkeypatch):
    """Fail the test if any tile reaches the entropy decoder / synthesis."""
    calls = []

    def spy(self, *a, **k):
        calls.append(a)
        raise AssertionError("a tile was decoded before every header check ran")

    monkeypatch.setattr(Codec, "_decompress_tile", spy)
    monkeypatch.setattr(IntegerCodec, "_decompress_tile", spy)
    return calls


# -- 1. huge declared images: refused before allocating (memory-capped subprocess) ----------
_CAPPED = r"""
import contextlib, io, json, resource, sys
import torch
torch.set_num_threads(1)
torch.ones(8).add_(1)
from licfpga.host import cli
from licfpga.host.codec import Codec
from licfpga.host.integer_codec import IntegerCodec
vsz = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
cap = vsz + (1 << 30)                      # 1 GiB above what the interpreter + torch map now
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(argv)
        except BaseException as exc:       # a traceback would be a failure: report it
            rc = f"{type(exc).__name__}: {exc}"
    out.append([rc, err.getvalue()])
print(json.dumps(out))
"""


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_huge_declared_image_refused_before_allocating(files, tmp_path, backend):
    """60000x60000 (tile 60000) and 2^20 x 2^20 in a ~300-byte file with a valid CRC and
    consistent latent shapes: refused by the pixel limit before the output array (10 GiB /
    3 TiB) exists; with the limit raised by --max-pixels, the allocation fails under the cap
    and is still one line (not a MemoryError traceback)."""
    small, _ = files[backend]
    crafted = []
    for edge in (60000, 1 << 20):
        lat = -(-edge // 64)
        p = tmp_path / f"huge{edge}.lic"
        f = unpack(small)
        f.width = f.height = f.tile = edge
        f.tiles[0].latent_shape = (lat, lat)
        p.write_bytes(pack(f))
        assert p.stat().st_size < 500
        crafted.append(p)
    out = tmp_path / "o.png"
    argvs = [["decompress", str(p), str(out)] for p in crafted]
    argvs.append(["decompress", str(crafted[0]), str(out), "--max-pixels", str(1 << 40)])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", _CAPPED, json.dumps(argvs)], capture_output=True, text=True,
                       timeout=300, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for (rc, err), pattern in zip(res, ["above the limit of 268435456 pixels", "above the limit",
                                        "not enough memory for a 60000x60000 image"]):
        _assert_error(rc, err, "decompress", pattern)
    _assert_clean(tmp_path, out)


def test_max_pixels_flag(files, tmp_path, capsys):
    """--max-pixels lowers the limit on both sides (compress: from the image header)."""
    src = tmp_path / "in.png"
    Image.fromarray(sample_image(64, 64)).save(src)
    lic = tmp_path / "a.lic"
    lic.write_bytes(files["float"][0])
    rc, err = _cli(capsys, "decompress", lic, tmp_path / "o.png", "--max-pixels", 4095)
    _assert_error(rc, err, "decompress", r"64x64 image = 4096 pixels, above the limit of 4095")
    rc, err = _cli(capsys, "compress", src, tmp_path / "b.lic", "--max-pixels", 4095)
    _assert_error(rc, err, "compress", r"above the limit of 4095 pixels.*--max-pixels")
    assert _cli(capsys, "decompress", lic, tmp_path / "o.png", "--max-pixels", 4096)[0] == 0
    _assert_clean(tmp_path, tmp_path / "b.lic")


# -- 2. per-tile latent shapes and payload sizes, all tiles checked before decoding any ------
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("change, pattern", [
    ("latent", r"tile 1 latent \(2, 2\), expected \(1, 1\)"),
    ("empty", r"tile 1 payload group 0 is empty"),
    ("oversized", r"tile 1 has \d+ payload bytes for 1x1 latent positions \(at most 32768\)"),
    ("tiles", r"tile table|tiles, the size"),
])
def test_tile_table_checked_before_any_decoding(files, tmp_path, capsys, never_decode, backend, change, pattern):
    _, two = files[backend]
    f = unpack(two)
    assert len(f.tiles) == 2 and f.tile == (64, 64)
    if change == "latent":
        f.tiles[1].latent_shape = (2, 2)
    elif change == "empty":
        f.tiles[1].payloads[0] = b""
    elif change == "oversized":
        f.tiles[1].payloads[0] = bytes(8 * 64 * 64 + 1)
    else:                       # 128 px high with 128-px tiles: 1 tile, the table has 2
        f.tile = 128
    lic = tmp_path / "bad.lic"
    try:
        lic.write_bytes(pack(f))
    except ValueError:
        pytest.skip("pack refuses this change")
    out = tmp_path / "o.png"
    rc, err = _cli(capsys, "decompress", lic, out)
    _assert_error(rc, err, "decompress", pattern)
    assert not never_decode
    _assert_clean(tmp_path, out)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_error_in_a_later_tile_loses_nothing(files, tmp_path, capsys, backend):
    """A 2-tile file whose second tile fails while decoding (its payload bytes reversed, or
    its scale-index CRC wrong): one line (no progress bar beside it), and the existing output
    is left as it was."""
    _, two = files[backend]
    out = tmp_path / "o.png"
    out.write_bytes(b"previous contents")
    for change in ("payload", "index_crc"):
        f = unpack(two)
        if change == "payload":
            f.tiles[1].payloads[1] = f.tiles[1].payloads[1][::-1]
        else:
            f.tiles[1].index_crc ^= 1
        lic = tmp_path / "bad.lic"
        lic.write_bytes(pack(f))
        rc, err = _cli(capsys, "decompress", lic, out)
        _assert_error(rc, err, "decompress", r"tile 1")
        assert out.read_bytes() == b"previous contents"
    _assert_clean(tmp_path)


# -- 3. payload groups against the model -------------------------------------------------------
@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("groups", [1, 3])
def test_groups_must_match_the_model(files, tmp_path, capsys, never_decode, backend, groups):
    """1 group for a 2-group model used to surface as CompressAI's AssertionError."""
    f = unpack(files[backend][0])
    f.groups = groups
    f.tiles[0].payloads = (f.tiles[0].payloads + [b"x"])[:groups]
    lic = tmp_path / "g.lic"
    lic.write_bytes(pack(f))
    rc, err = _cli(capsys, "decompress", lic, tmp_path / "o.png")
    _assert_error(rc, err, "decompress", rf"{groups} payload groups per tile, but model \S+ writes 2")
    _assert_clean(tmp_path, tmp_path / "o.png")


# -- 4. decompression bombs --------------------------------------------------------------------
def _png_header(w: int, h: int) -> bytes:
    """A PNG declaring w x h RGB with a few bytes of pixel data."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(16))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("w, h, pattern", [
    (100000, 100000, r"10000000000 pixels\) exceeds limit of 268435456 pixels"),   # Pillow's DecompressionBombError
    (20000, 15000, r"300000000 pixels\) exceeds limit of 268435456 pixels"),       # Pillow's old warning range
])
def test_decompression_bomb_is_one_line(tmp_path, capsys, w, h, pattern):
    src = tmp_path / "bomb.png"
    src.write_bytes(_png_header(w, h))
    rc, err = _cli(capsys, "compress", src, tmp_path / "b.lic")
    _assert_error(rc, err, "compress", pattern + r".*--max-pixels")
    _assert_clean(tmp_path, tmp_path / "b.lic")


# -- 5. outputs: directories, unwritable places, failed writes, lossy formats, --tile --------
def test_bad_output_paths(files, tmp_path, capsys, monkeypatch):
    lic = tmp_path / "a.lic"
    lic.write_bytes(files["float"][0])
    src = tmp_path / "in.png"
    Image.fromarray(sample_image(64, 64)).save(src)
    (tmp_path / "d.png").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    for cmd, args, pattern in [
        ("decompress", [lic, tmp_path / "d.png"], "is a directory"),
        ("decompress", [lic, tmp_path / "file" / "o.png"], "is not a directory"),
        ("compress", [src, tmp_path], "is a directory"),       # was IsADirectoryError, exit 1, and /tmp.part
        ("compress", [src, tmp_path / "file" / "o.lic"], "is not a directory"),
    ]:
        rc, err = _cli(capsys, cmd, *args)
        _assert_error(rc, err, cmd, pattern)
    assert not tmp_path.with_name(tmp_path.name + ".part").exists()
    _assert_clean(tmp_path, tmp_path / "file" / "o.png")
    if os.geteuid() != 0:       # root writes into read-only directories
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            rc, err = _cli(capsys, "decompress", lic, ro / "o.png")
            _assert_error(rc, err, "decompress", "not writable")
            assert not list(ro.iterdir())
        finally:
            ro.chmod(0o755)


@pytest.mark.parametrize("cmd", ["compress", "decompress"])
def test_failed_write_leaves_no_part_and_keeps_the_old_output(files, tmp_path, capsys, monkeypatch, cmd):
    """The disk fills up half-way through the write: one line, no .part, old file intact."""
    import licfpga.host.images as images

    lic = tmp_path / "a.lic"
    lic.write_bytes(files["float"][0])
    src = tmp_path / "in.png"
    Image.fromarray(sample_image(64, 64)).save(src)
    out = tmp_path / ("old.lic" if cmd == "compress" else "old.png")
    out.write_bytes(b"previous contents")
    real_open = open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, b):
            self.fh.write(bytes(b)[:10])
            raise OSError(28, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.fh, k)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

    def full_open(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)
        return Full(fh) if str(path).endswith(".part") else fh

    monkeypatch.setattr(images, "open", full_open, raising=False)
    rc, err = _cli(capsys, cmd, src if cmd == "compress" else lic, out)
    _assert_error(rc, err, cmd, "No space left on device")
    assert out.read_bytes() == b"previous contents"
    _assert_clean(tmp_path)


@pytest.mark.parametrize("name", ["o.jpg", "o.jpeg", "o.webp", "o.gif", "o.xyz"])
def test_lossy_or_unknown_output_format_refused_before_decoding(files, tmp_path, capsys, never_decode, name):
    lic = tmp_path / "a.lic"
    lic.write_bytes(files["float"][0])
    rc, err = _cli(capsys, "decompress", lic, tmp_path / name)
    _assert_error(rc, err, "decompress", r"lossless.*\.png.*\.tif.*\.bmp.*\.ppm")
    assert not never_decode
    _assert_clean(tmp_path, tmp_path / name)


@pytest.mark.parametrize("tile", [4294967296, 100, 0, -64])
def test_tile_validated_before_encoding(tmp_path, capsys, monkeypatch, tile):
    """--tile 4294967296 used to fail with struct.error after a full encode."""
    src = tmp_path / "in.png"
    Image.fromarray(sample_image(64, 64)).save(src)

    def no_encode(*a, **k):
        raise AssertionError("encoded before --tile was checked")

    monkeypatch.setattr(Codec, "encode", no_encode)
    rc, err = _cli(capsys, "compress", src, tmp_path / "o.lic", "--tile", tile)
    _assert_error(rc, err, "compress", r"--tile must be a positive multiple of 64 up to 4294967232")
    _assert_clean(tmp_path, tmp_path / "o.lic")


# -- 6. overlay.json ----------------------------------------------------------------------------
@pytest.mark.parametrize("desc, pattern", [
    ({}, r"lacks transform, golden\.digest, io\.input\.shape, io\.input\.datatype, io\.output\.shape, "
         r"io\.output\.datatype"),
    ({"transform": "g_a", "golden": {"digest": "00"}, "io": {"input": {"shape": [1, 64, 64, 3]}}},
     r"lacks io\.input\.datatype, io\.output\.shape, io\.output\.datatype"),
    ({"transform": "g_a", "golden": {"digest": "00"},
      "io": {"input": {"shape": [1, 64, 64], "datatype": "UINT8"}, "output": {"shape": [1, 4, 4, 48],
                                                                                "datatype": "INT8"}}},
     r"io\.input\.shape must be an NHWC list"),
    ("{not json", r"cannot read .*overlay\.json"),
])
def test_overlay_descriptor_validated(files, tmp_path, capsys, desc, pattern):
    """--backend fpga, both directions: a broken overlay.json used to give KeyError."""
    src, lic = tmp_path / "in.png", tmp_path / "x.lic"
    Image.fromarray(sample_image(64, 64)).save(src)
    lic.write_bytes(files["integer"][0])
    (tmp_path / "overlay.json").write_text(desc if isinstance(desc, str) else json.dumps(desc))
    for cmd, a, b in [("compress", src, tmp_path / "o.lic"), ("decompress", lic, tmp_path / "o.png")]:
        rc, err = _cli(capsys, cmd, a, b, "--backend", "fpga", "--overlay", tmp_path / "licfpga.bit")
        _assert_error(rc, err, cmd, pattern)
    _assert_clean(tmp_path, tmp_path / "o.lic", tmp_path / "o.png")


# -- 7. checkpoints are read with weights_only=True ------------------------------------------
class _Touch:
    """Unpickling this creates ``path``: proof that a checkpoint ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("kind", ["qat", "float"])
def test_checkpoint_with_pickled_object_is_refused(tmp_path, capsys, kind):
    marker = tmp_path / "code-ran"
    ck = tmp_path / "evil.pt"
    fmt = "licfpga-qat/1" if kind == "qat" else "licfpga-ckpt/1"
    torch.save({"format": fmt, "arch": "mean-scale", "kwargs": {}, "config": {}, "state_dict": {},
                "meta": {"x": _Touch(marker)}}, ck)
    if kind == "qat":
        rc, err = _cli(capsys, "export-int", ck, "--out", tmp_path / "art")
        _assert_error(rc, err, "export-int", r"cannot read QAT checkpoint .*evil\.pt")
    else:
        src = tmp_path / "in.png"
        Image.fromarray(sample_image(64, 64)).save(src)
        rc, err = _cli(capsys, "compress", src, tmp_path / "o.lic", "--model", ck)
        _assert_error(rc, err, "compress", r"cannot read checkpoint .*evil\.pt")
    assert not marker.exists()
    _assert_clean(tmp_path, tmp_path / "o.lic", tmp_path / "art.json")


# -- 8. image metadata: EXIF orientation and ICC profiles ---------------------------------------
def _s15(v):
    return struct.pack(">i", round(v * 65536))


def icc_profile(space: str = "RGB ", gamma: float = 1.0, name: str = "linear test") -> bytes:
    """A minimal ICC v2 matrix/TRC display profile (sRGB primaries, D50) with a pure gamma
    curve: gamma 1.0 is linear light, far from sRGB (linear 128 is sRGB 188)."""
    d50 = (0.9642, 1.0, 0.8249)

    def xyz(*v):
        return b"XYZ " + bytes(4) + b"".join(map(_s15, v))

    text = name.encode() + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8 + 3 + 67)
    curv = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256))
    tags = [(b"desc", desc), (b"wtpt", xyz(*d50)), (b"cprt", b"text" + bytes(4) + b"none\0")]
    if space == "RGB ":
        tags += [(b"rXYZ", xyz(0.4361, 0.2225, 0.0139)), (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
                 (b"bXYZ", xyz(0.1431, 0.0606, 0.7141))] + [(s, curv) for s in (b"rTRC", b"gTRC", b"bTRC")]
    else:
        tags += [(b"kTRC", curv)]
    off = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += struct.pack(">4sII", sig, off + len(data), len(body))
        data += body
    head = (struct.pack(">I4sI4s4s4s", off + len(data), b"none", 0x02100000, b"mntr", space.encode(), b"XYZ ")
            + bytes(12) + b"acsp" + bytes(24) + struct.pack(">I", 0) + b"".join(map(_s15, d50)) + bytes(48))
    assert len(head) == 128
    return head + struct.pack(">I", len(tags)) + table + data


def test_exif_orientation_applied(tmp_path, capsys):
    """Orientation 6 (rotate 90 clockwise to display): coded upright, decoded 128 wide x 64 high."""
    from licfpga.host.images import load_image

    img = sample_image(128, 64)                        # stored 64 wide x 128 high
    src = tmp_path / "rot.png"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(img).save(src, exif=exif)
    a, _ = load_image(src)
    assert np.array_equal(a, np.rot90(img, k=-1))      # what a viewer displays
    lic, out = tmp_path / "r.lic", tmp_path / "r.png"
    assert _cli(capsys, "compress", src, lic)[0] == 0
    assert _cli(capsys, "decompress", lic, out)[0] == 0
    assert Image.open(out).size == (128, 64)


def test_icc_profile_converted_to_srgb(tmp_path, capsys):
    flat = np.full((64, 64, 3), 128, np.uint8)
    for mode, space, arr in [("RGB", "RGB ", flat), ("L", "GRAY", flat[..., 0])]:
        src = tmp_path / f"icc-{mode}.png"
        Image.fromarray(arr, mode).save(src, icc_profile=icc_profile(space))
        lic, out = tmp_path / f"{mode}.lic", tmp_path / f"{mode}.png"
        assert _cli(capsys, "compress", src, lic)[0] == 0
        assert _cli(capsys, "decompress", lic, out)[0] == 0
        dec = Image.open(out)
        assert dec.mode == mode and "icc_profile" not in dec.info      # gray stays gray; output is sRGB
        assert abs(np.asarray(dec).astype(float).mean() - 188) < 4, np.asarray(dec).mean()   # not 128


@pytest.mark.parametrize("what", ["wrong-space", "garbage"])
def test_icc_profile_that_cannot_be_applied_is_refused(tmp_path, capsys, what):
    src = tmp_path / "bad.png"
    prof = icc_profile("RGB ") if what == "wrong-space" else b"\0" * 200
    Image.fromarray(np.full((64, 64), 100, np.uint8), "L").save(src, icc_profile=prof)
    rc, err = _cli(capsys, "compress", src, tmp_path / "o.lic")
    _assert_error(rc, err, "compress", "ICC colour profile that cannot be applied")
    _assert_clean(tmp_path, tmp_path / "o.lic")


# -- 9. passthrough subcommands: user errors are one line too ------------------------------------
@pytest.mark.parametrize("argv, pattern", [
    (["train", "--data", "/nonexistent/train", "--steps", "1", "--val-images", "0"], "image folder not found"),
    (["distill", "--teacher", "no-such-model"], "no checkpoint 'no-such-model'"),
    (["qat", "--student", "mean-scale-0.013", "--steps", "1"], "--student must be a hyperprior student"),
    (["export-int", "/nonexistent/q.pt", "--out", "x"], "QAT checkpoint not found"),
    (["prune", "--student", "no-such-model"], "no checkpoint 'no-such-model'"),
    (["students", "--data", "/nonexistent/kodak"], "not found"),
    (["plan", "--board", "no-such-board"], "unknown board"),
    (["analyze", "--models", "no-such-arch"], "unknown model"),
])
def test_passthrough_user_errors(tmp_path, capsys, argv, pattern):
    argv = argv + (["--out", str(tmp_path / "out")] if argv[0] in ("train", "distill", "qat", "prune", "students")
                   else [])
    rc, err = _cli(capsys, *argv)
    _assert_error(rc, err, argv[0], pattern)      # plan reports its own errors the same way
    _assert_clean(tmp_path)


def test_argparse_usage_errors_still_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--steps", "many"])
    assert e.value.code == 2 and "licfpga train: error: argument --steps" in capsys.readouterr().err


@pytest.mark.parametrize("latent", ["y", "z"])
def test_impossible_latent_is_refused_at_encode(tmp_path, capsys, monkeypatch, latent):
    """A latent of -128 (one flipped activation bit, results/faults/) would be coded, then refused
    by every decoder (|y| <= 127): the encoder refuses it and writes no file."""
    src = tmp_path / "in.png"
    Image.fromarray(sample_image(64, 64)).save(src)
    analysis = IntegerCodec._analysis

    def faulty(self, rgb):
        y, z = analysis(self, rgb)
        (y if latent == "y" else z)[0, 0, 0] = -128
        return y, z

    monkeypatch.setattr(IntegerCodec, "_analysis", faulty)
    out = tmp_path / "out.lic"
    rc, err = _cli(capsys, "compress", src, out, "--backend", "integer")
    _assert_error(rc, err, "compress", rf"latent {latent} outside -127\.\.127")
    _assert_clean(tmp_path, out)
