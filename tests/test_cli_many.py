"""Many inputs per CLI call (issue 11): ``licfpga compress IN... --out-dir D`` and
``licfpga decompress IN.lic... --out-dir D`` load the model once and write exactly what one
call per file writes; the clear errors (same stem, ``--out`` with several inputs, a missing
input, a second input taken for an output) come before anything is loaded or written; a bad
file among many is reported by name, the others are still coded, the call exits 2 and no
``.part`` is left. And the start-up side: with torch unimportable (the board install),
``--help`` / the integer backend / ``info`` run, and every command that needs torch says so
in one line (tests/test_board_install.py repeats the round trip in a real torch-free venv).
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from licfpga.host import cli
from licfpga.host.integer_codec import IntegerCodec

from .conftest import ROOT, sample_image

MODEL = "int-student-0.013"
FULL = r'needs the full install: pip install "licfpga\[full\]"'


def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _assert_error(rc, err, cmd, pattern):
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith(f"licfpga {cmd}: error: "), err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three different 64x64 natural crops as PNGs (a.png, b.png, c.png)."""
    d = tmp_path_factory.mktemp("imgs")
    paths = []
    for name, h, w, src in [("a", 64, 64, "kodim23.png"), ("b", 80, 64, "kodim15.png"), ("c", 64, 96, "kodim04.png")]:
        rgb = sample_image(h, w, src)
        p = d / f"{name}.png"
        Image.fromarray(rgb).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def reference(images):
    """What one encode per image writes (the integer codec directly), and its decode."""
    from licfpga.host.images import load_image

    codec = IntegerCodec.load(MODEL)
    out = {}
    for p in images:
        data = codec.encode(load_image(p)[0])
        out[p.stem] = (data, codec.decode(data)[0])
    return out


@pytest.fixture
def count_loads(monkeypatch):
    """How many integer codecs were constructed (the model is loaded once per call)."""
    made = []
    init = IntegerCodec.__init__

    def counting(self, *a, **k):
        made.append(a[0] if a else k.get("artifact"))
        init(self, *a, **k)

    monkeypatch.setattr(IntegerCodec, "__init__", counting)
    return made


def test_many_inputs_one_call_equals_one_call_each(images, reference, tmp_path, capsys, count_loads):
    d = tmp_path / "out"                                    # created by the call
    rc, out, err = _cli(capsys, "compress", *images, "--out-dir", d, "--backend", "integer")
    assert rc == 0 and err == "", err
    assert len(count_loads) == 1, count_loads              # one model load for three files
    assert len(out.strip().splitlines()) == 3
    for p in images:
        assert (d / f"{p.stem}.lic").read_bytes() == reference[p.stem][0], p
    count_loads.clear()
    rc, out, err = _cli(capsys, "decompress", d / "a.lic", tmp_path / "one.png")
    assert rc == 0 and err == "", err
    one = len(count_loads)          # the selector may try several shipped artifacts for one file
    count_loads.clear()
    rc, out, err = _cli(capsys, "decompress", *sorted(d.glob("*.lic")), "--out-dir", tmp_path / "png")
    assert rc == 0 and err == "", err
    assert len(count_loads) == one, count_loads     # ... but not again for each file
    for p in images:
        px = np.asarray(Image.open(tmp_path / "png" / f"{p.stem}.png").convert("RGB"))
        assert np.array_equal(px, reference[p.stem][1]), p
    assert not list(tmp_path.rglob("*.part"))


def test_single_input_forms_keep_working(images, reference, tmp_path, capsys):
    a = images[0]
    for args in ([a, tmp_path / "pos.lic"], [a, "-o", tmp_path / "opt.lic"], [a, "--out", tmp_path / "long.lic"],
                 [a, "--out-dir", tmp_path]):
        rc, _, err = _cli(capsys, "compress", *args, "--backend", "integer")
        assert rc == 0, err
    for name in ("pos", "opt", "long", "a"):
        assert (tmp_path / f"{name}.lic").read_bytes() == reference["a"][0], name
    rc, _, err = _cli(capsys, "decompress", tmp_path / "pos.lic", "-o", tmp_path / "pos.png")
    assert rc == 0, err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "pos.png")), reference["a"][1])


@pytest.mark.parametrize("cmd, build, pattern", [
    # two inputs with the same stem: one output would overwrite the other
    ("compress", lambda im, t: [im[0], t / "sub" / "a.png", "--out-dir", t / "o"], r"same stem.*a\.lic"),
    ("compress", lambda im, t: [*im, "-o", t / "x.lic"], r"-o/--out names one output, but 3 inputs.*--out-dir"),
    ("compress", lambda im, t: [*im], r"3 inputs need --out-dir"),
    ("compress", lambda im, t: [im[0]], r"no output for .*a\.png"),
    ("compress", lambda im, t: [im[0], "-o", t / "x.lic", "--out-dir", t / "o"], r"not both"),
    # `compress a.png b.png`: b.png would have been overwritten by a .lic
    ("compress", lambda im, t: [im[0], im[1]], r"b\.png looks like a second input.*--out-dir"),
    ("compress", lambda im, t: [im[0], t / "nope.png", im[2], "--out-dir", t / "o"],
     r"input images not found \(nothing was coded; 2 others exist\): .*nope\.png"),
    ("compress", lambda im, t: [t / "nope.png", t / "o.lic"], r"input image not found: .*nope\.png"),
    ("decompress", lambda im, t: [t / "x.lic", t / "y.lic"], r"y\.lic looks like a second input"),
    ("decompress", lambda im, t: [t / "x.lic", t / "nope.lic", "--out-dir", t / "o"],
     r"compressed files not found \(nothing was coded; 1 others exist\): .*nope\.lic"),
    ("decompress", lambda im, t: [t / "x.lic", t / "sub" / "x.lic", "--out-dir", t / "o"], r"same stem"),
])
def test_clear_errors_before_anything_is_loaded(images, reference, tmp_path, capsys, monkeypatch, cmd, build,
                                                pattern):
    (tmp_path / "x.lic").write_bytes(reference["a"][0])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(images[0].read_bytes())
    (tmp_path / "sub" / "x.lic").write_bytes(reference["b"][0])
    before = {p: p.read_bytes() for p in [*images, *tmp_path.rglob("*.*")]}

    def no_load(*a, **k):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(IntegerCodec, "__init__", no_load)
    rc, out, err = _cli(capsys, cmd, *build(images, tmp_path), "--backend", "integer")
    _assert_error(rc, err, cmd, pattern)
    assert not (tmp_path / "o").exists() and out == ""
    assert {p: p.read_bytes() for p in before} == before        # nothing overwritten
    assert sorted(tmp_path.rglob("*")) == sorted({*tmp_path.rglob("*")} & {*before, tmp_path / "sub"})


@pytest.mark.parametrize("cmd", ["compress", "decompress"])
def test_a_bad_file_among_many_is_named_and_the_rest_is_coded(images, reference, tmp_path, capsys, cmd):
    if cmd == "compress":
        bad = tmp_path / "broken.png"
        bad.write_bytes(images[1].read_bytes()[:200])          # a truncated PNG
        inputs = [images[0], bad, images[2]]
    else:
        for p in images:
            (tmp_path / f"{p.stem}.lic").write_bytes(reference[p.stem][0])
        bad = tmp_path / "broken.lic"
        bad.write_bytes(reference["b"][0][:-9])                  # truncated
        inputs = [tmp_path / "a.lic", bad, tmp_path / "c.lic"]
    d = tmp_path / "o"
    rc, out, err = _cli(capsys, cmd, *inputs, "--out-dir", d, "--backend", "integer")
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 2 and all(ln.startswith(f"licfpga {cmd}: error: ") for ln in lines), err
    assert str(bad) in lines[0]
    assert re.search(rf"1 of 3 inputs failed \({re.escape(str(bad))}\); the other 2 were written", lines[1]), lines[1]
    assert len(out.strip().splitlines()) == 2
    suffix = ".lic" if cmd == "compress" else ".png"
    assert sorted(p.name for p in d.iterdir()) == [f"a{suffix}", f"c{suffix}"]      # no .part, no broken output
    if cmd == "compress":
        assert (d / "c.lic").read_bytes() == reference["c"][0]
    else:
        assert np.array_equal(np.asarray(Image.open(d / "c.png")), reference["c"][1])


def test_tile_string_passes_to_check_tile(images, tmp_path, capsys):
    """--tile is parsed by codec_base.check_tile (a string on the command line)."""
    rc, _, err = _cli(capsys, "compress", images[0], tmp_path / "t.lic", "--backend", "integer", "--tile", "64")
    assert rc == 0, err
    assert IntegerCodec.load(MODEL).matches(__import__("licfpga.host.container", fromlist=["unpack"]).unpack(
        (tmp_path / "t.lic").read_bytes()))
    rc, _, err = _cli(capsys, "compress", images[0], tmp_path / "u.lic", "--backend", "integer", "--tile", "6x")
    _assert_error(rc, err, "compress", r"--tile")
    assert not (tmp_path / "u.lic").exists()


def test_rectangular_tile_and_info(images, tmp_path, capsys):
    """--tile WxH writes rectangular tiles (format version 2); `info` names the version, the
    tile as WxH and the rANS streams per group, as the file records them."""
    from licfpga.host.container import unpack

    rc, _, err = _cli(capsys, "compress", images[2], tmp_path / "r.lic", "--backend", "integer", "--tile", "64x128")
    assert rc == 0, err
    f = unpack((tmp_path / "r.lic").read_bytes())
    assert tuple(f.tile) == (64, 128) and len(f.tiles) == 2          # a 96x64 image: 2 tiles of 64x128
    rc, out, err = _cli(capsys, "info", tmp_path / "r.lic")
    assert rc == 0, err
    assert f"format   version {f.version}\n" in out and f.version == 2
    assert f"tiles    2 of 64x128 px, {f.groups} payload groups, {f.streams} rANS stream" in out, out


# ---- torch-free: the board install's CLI ----------------------------------------------------
_SHIM = ("import sys\nfor m in ('torch', 'torchvision', 'compressai', 'brevitas'):\n    sys.modules[m] = None\n"
         "from licfpga.host import cli\n")


def _no_torch(code: str, *args) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter where torch, torchvision, CompressAI and Brevitas
    cannot be imported (as in the board venv)."""
    return subprocess.run([sys.executable, "-c", _SHIM + code, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_help_imports_neither_torch_nor_numpy():
    """Start-up: ``licfpga --help`` (and a subcommand's --help) loads argparse and nothing heavy."""
    r = _no_torch("import contextlib, io\n"
                  "for argv in (['--help'], ['compress', '--help'], ['decompress', '--help']):\n"
                  "    with contextlib.redirect_stdout(io.StringIO()):\n"
                  "        try:\n            cli.main(argv)\n        except SystemExit as e:\n"
                  "            assert e.code == 0, e.code\n"
                  "print(sorted(m for m in ('numpy', 'PIL', 'tqdm', 'torch', 'licfpga.host.images') "
                  "if sys.modules.get(m) is not None))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


def test_integer_backend_and_info_run_without_torch(images, reference, tmp_path):
    lics = tmp_path / "lic"
    code = ("rc = cli.main(['compress', *sys.argv[1:4], '--out-dir', sys.argv[4], '--backend', 'integer'])\n"
            "rc |= cli.main(['decompress', *sorted(__import__('glob').glob(sys.argv[4] + '/*.lic')), "
            "'--out-dir', sys.argv[5]])\n"
            "rc |= cli.main(['info', sys.argv[4] + '/a.lic'])\n"
            "assert sys.modules.get('torch') is None and 'licfpga.host.codec' not in sys.modules\n"
            "sys.exit(rc)")
    r = _no_torch(code, *images, lics, tmp_path / "png")
    assert r.returncode == 0, r.stderr
    assert "int-hyperprior" in r.stdout
    for p in images:
        assert (lics / f"{p.stem}.lic").read_bytes() == reference[p.stem][0]
        assert np.array_equal(np.asarray(Image.open(tmp_path / "png" / f"{p.stem}.png")), reference[p.stem][1])


@pytest.mark.parametrize("argv, pattern", [
    (["compress", "{a}", "{t}/f.lic"], r"--backend float \(the default; --backend integer or fpga runs on this "
                                       r"install\) " + FULL + r" \(torch is not installed here\)"),
    (["compress", "{a}", "{b}", "{c}", "--out-dir", "{t}/o", "--model", "mean-scale-0.013"], r"--backend float"),
    (["decompress", "{t}/float.lic", "{t}/f.png"], r"float.lic was coded by the float model mean-scale.*" + FULL),
    (["train", "--steps", "1"], r"^licfpga train: error: train " + FULL),
    (["eval", "--limit", "1"], r"eval " + FULL),
    (["qat", "--student", "x"], r"qat " + FULL + r" \((torch|brevitas) is not installed here\)"),
    (["demo"], r"demo " + FULL),
    (["students"], r"students " + FULL),
])
def test_commands_that_need_torch_say_so_in_one_line(images, tmp_path, argv, pattern):
    from licfpga.host.codec import Codec
    from licfpga.host.images import load_image

    (tmp_path / "float.lic").write_bytes(Codec.load("mean-scale-0.013").encode(load_image(images[0])[0]))
    argv = [a.format(a=images[0], b=images[1], c=images[2], t=tmp_path) for a in argv]
    r = _no_torch("sys.exit(cli.main(sys.argv[1:]))", *argv)
    cmd = argv[0]
    _assert_error(r.returncode, r.stderr, cmd, pattern)
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists() and not list(tmp_path.rglob("*.part")) and not (tmp_path / "f.png").exists()
