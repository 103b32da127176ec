"""The PYNQ notebooks (notebooks/*.ipynb), executed against the simulated overlay.

Each notebook is run by papermill with ``target="sim"``: its cells run in an ordinary Jupyter
kernel; licfpga.host.board_session starts the simulator (the g_a / g_s overlay's stream path,
tests/hw/pynq_sim_top.sv, built by test_pynq_driver._build and shared with it) in its own
process and forwards the driver's DMA transfers to it (notebooks/README.md). Checked on what
the notebooks wrote and printed, against values computed here independently:

* encode_decode: every tile went through the (simulated) overlays; the .lic file is the
  integer backend's bytes, the decoded PNG its pixels; bpp = file size x 8 / pixels, PSNR of
  the written image; simulated cycle counts reported; a figure drawn; torch never imported.
* rd_sweep: one point per (shipped artifact, image); files = integer backend's bytes (the
  FPGA-encoded quality included), bpp and PSNR recomputed, JPEG sizes recomputed with Pillow.
* overlay_report: the resource table is estimates.json's, labelled as FINN estimates; the fps
  rows say estimate / modeled / simulated.

And, without any tool: the committed notebooks carry no outputs and no execution counts, and
each has a ``parameters`` cell defaulting to the board and a ``summary`` cell;
board_session refuses an unknown target, an incomplete folder and a missing simulator build
with one clear error.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require, sample_image

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("encode_decode", "overlay_report", "rd_sweep")
TILE = 64                     # the simulated overlays' frame (test_pynq_driver.SIZE)


# ==================================================================== committed form
def test_committed_notebooks_are_stripped_and_parametrised():
    """No outputs or execution counts in git; a papermill ``parameters`` cell whose default
    target is the board; a ``summary`` cell; no torch / CompressAI import in any cell."""
    found = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert found == sorted(NAMES), found
    for name in NAMES:
        nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
        assert not dirty, f"{name}.ipynb: code cells {dirty} carry outputs or execution counts (strip them)"
        tagged = {t: [c for c in code if t in c.get("metadata", {}).get("tags", [])] for t in ("parameters", "summary")}
        assert len(tagged["parameters"]) == 1 and len(tagged["summary"]) == 1, f"{name}.ipynb: {tagged.keys()}"
        params = "".join(tagged["parameters"][0]["source"])
        assert re.search(r'^target = "board"', params, re.M), f"{name}.ipynb: default target is not the board"
        text = "\n".join("".join(c["source"]) for c in code)
        assert not re.search(r"^\s*(import|from)\s+(torch|compressai|brevitas)\b", text, re.M), \
            f"{name}.ipynb imports torch / CompressAI / Brevitas (the board install has none)"


# ==================================================================== executed
@pytest.fixture(scope="module")
def sim_overlays(verilator_env, tmp_path_factory):
    """Overlay folders of the simulated g_a and g_s overlays: licfpga.hwh, overlay.json,
    estimates.json, the memory images, sim.json (the Verilator build to run)."""
    for mod in ("papermill", "nbformat", "ipykernel", "matplotlib", "cocotbpynq"):
        require(importlib.util.find_spec(mod) is not None, f"{mod} not installed (pip install -e '.[test,hw]')")
    from test_pynq_driver import TOP, _build, hwh

    from licfpga.overlay.vivado import finn_build, overlay_description

    folders = {}
    for transform in ("g_a", "g_s"):
        runner, st, integer, _, build = _build(transform)
        d = tmp_path_factory.mktemp(transform)
        (d / "licfpga.hwh").write_text(hwh(TOP))
        est = finn_build(build / "finn", "kv260", transform)
        (d / "overlay.json").write_text(json.dumps(overlay_description(est, transform)))
        (d / "estimates.json").write_text(json.dumps(est))
        for m in st["meminit"]:
            shutil.copy(m, d / Path(m).name)
        (d / "sim.json").write_text(json.dumps({"build_dir": str(build / "verilator"), "toplevel": TOP}))
        folders[transform] = d
    return folders


def execute(name: str, tmp: Path, **params):
    """Run notebooks/<name>.ipynb with papermill; (executed notebook, its summary dict)."""
    import nbformat
    import papermill

    out = tmp / f"{name}.out.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=params, kernel_name="python3",
                               cwd=str(tmp), progress_bar=False)
    nb = nbformat.read(str(out), as_version=4)
    cell = next(c for c in nb.cells if "summary" in c.metadata.get("tags", []))
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    summary = json.loads(text.strip().splitlines()[-1])
    assert summary["torch_imported"] is False, f"{name}: torch was imported in the notebook's kernel"
    return nb, summary


def outputs(nb, kind: str) -> list:
    return [o["data"][kind] for c in nb.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})]


@pytest.mark.slow                    # RTL simulation in the notebook: ~15 s after the shared build
def test_encode_decode_notebook(sim_overlays, tmp_path):
    from licfpga.host.images import load_image
    from licfpga.host.integer_codec import IntegerCodec
    from licfpga.host.metrics import psnr

    nb, s = execute("encode_decode", tmp_path, target="sim", encoder_overlay=str(sim_overlays["g_a"]),
                    decoder_overlay=str(sim_overlays["g_s"]), image="kodim23.png", crop_hw=[TILE, 2 * TILE],
                    out_dir=str(tmp_path / "out"))
    img = sample_image(TILE, 2 * TILE, "kodim23.png")
    assert s["shape"] == list(img.shape)
    for side in ("encode", "decode"):         # both tiles on the overlays, cycles reported
        r = s[side]
        assert (r["fpga_tiles"], r["cpu_tiles"]) == (2, 0), (side, r)
        assert len(r["frame_cycles"]) == 2 and min(r["frame_cycles"]) > 0 and len(r["frame_s"]) == 2, (side, r)
    ref = IntegerCodec(s["artifact"], tile=TILE)
    lic = Path(s["lic"]).read_bytes()
    assert lic == ref.encode(img), "the notebook's FPGA-encoded file differs from the integer backend's"
    assert s["bytes"] == len(lic) and s["bpp"] == pytest.approx(len(lic) * 8 / img[..., 0].size)
    decoded, _ = load_image(s["decoded"])
    assert np.array_equal(decoded, ref.decode(lic)[0]), "the notebook's decoded pixels differ from the integer backend's"
    assert s["psnr_db"] == pytest.approx(psnr(img, decoded))
    assert outputs(nb, "image/png"), "no figure (original / reconstruction) in the executed notebook"


@pytest.mark.slow
def test_rd_sweep_notebook(sim_overlays, tmp_path):
    from PIL import Image

    from licfpga.host.integer_codec import IntegerCodec, shipped_artifacts
    from licfpga.host.metrics import psnr

    images, jpeg_q = ["kodim04.png", "kodim23.png"], [5, 30, 80]
    overlay_artifact = json.loads((sim_overlays["g_a"] / "overlay.json").read_text())["golden"]["name"]
    nb, s = execute("rd_sweep", tmp_path, target="sim", overlays={overlay_artifact: str(sim_overlays["g_a"])},
                    images=images, crop_hw=[TILE, TILE], jpeg_qualities=jpeg_q, out_dir=str(tmp_path / "out"))
    names = [a.stem for a in shipped_artifacts() if a.stem.startswith("int-student-")]
    assert len(names) >= 2
    assert sorted((p["artifact"], p["image"]) for p in s["points"]) == sorted((n, i) for n in names for i in images)
    for p in s["points"]:
        img = sample_image(TILE, TILE, p["image"])
        on_fpga = p["artifact"] == overlay_artifact
        assert p["on"] == ("fpga" if on_fpga else "ps"), p
        ref = IntegerCodec(p["artifact"], tile=TILE if on_fpga else 256)
        lic = Path(p["lic"]).read_bytes()
        assert lic == ref.encode(img), f"{p['artifact']} {p['image']}: file differs from the integer backend's"
        assert p["bytes"] == len(lic) and p["bpp"] == pytest.approx(len(lic) * 8 / TILE ** 2)
        assert p["psnr_db"] == pytest.approx(psnr(img, ref.decode(lic)[0]))
    assert sorted((j["quality"], j["image"]) for j in s["jpeg"]) == sorted((q, i) for q in jpeg_q for i in images)
    for j in s["jpeg"]:
        buf = io.BytesIO()
        Image.fromarray(sample_image(TILE, TILE, j["image"])).save(buf, format="JPEG", quality=j["quality"])
        assert j["bytes"] == buf.tell() and j["bpp"] == pytest.approx(buf.tell() * 8 / TILE ** 2), j
    assert outputs(nb, "image/png"), "no RD plot in the executed notebook"


@pytest.mark.slow
def test_overlay_report_notebook(sim_overlays, tmp_path):
    est = json.loads((sim_overlays["g_a"] / "estimates.json").read_text())
    nb, s = execute("overlay_report", tmp_path, target="sim", overlay=str(sim_overlays["g_a"]), frames=2)
    assert s["transform"] == "g_a" and s["clock_mhz"] == pytest.approx(1000 / est["clk_ns"])
    assert s["resources_estimate"] == est["resources_total"] and s["est_fps"] == est["est_fps"]
    assert len(s["frame_cycles"]) == 2 and min(s["frame_cycles"]) > 0 and len(s["frame_s"]) == 2
    md = "\n".join(outputs(nb, "text/markdown"))
    assert "FINN estimates, not synthesis" in md
    for value in est["resources_total"].values():
        assert f"| {value:.0f} |" in md
    assert "estimate (FINN)" in md and "modeled (simulated cycles" in md and "not board speed" in md


def test_open_overlay_refuses_bad_targets_and_folders(tmp_path):
    """One clear error for an unknown target, a folder lacking the overlay files, and a
    simulated overlay whose Verilator build is missing (the simulator never comes up)."""
    from licfpga.host.board_session import SessionError, open_overlay

    with pytest.raises(SessionError, match="target must be one of board, sim"):
        open_overlay(tmp_path, "fpga")
    with pytest.raises(SessionError, match="lacks licfpga.hwh, overlay.json, licfpga.bit"):
        open_overlay(tmp_path, "board")
    desc = {"transform": "g_a", "golden": {"name": "int-student-0.013", "digest": "0" * 64},
            "io": {"input": {"shape": [1, 64, 64, 3], "datatype": "UINT8"},
                   "output": {"shape": [1, 4, 4, 48], "datatype": "INT8"}}, "clk_ns": 5.0}
    (tmp_path / "overlay.json").write_text(json.dumps(desc))
    (tmp_path / "licfpga.hwh").write_text("<EDKSYSTEM/>")
    (tmp_path / "sim.json").write_text(json.dumps({"build_dir": str(tmp_path / "no-build"), "toplevel": "top"}))
    with pytest.raises(SessionError, match="the simulated overlay did not start"):
        open_overlay(tmp_path, "sim")
