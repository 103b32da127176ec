"""Evaluation pipeline end to end on small data: learned curve + classical anchors,
results JSON, BD-rate table and plots, from real files."""

import json
from argparse import Namespace

import numpy as np
import pytest
import torch

from licfpga.host.evaluate import evaluate, main as eval_main, write_outputs
from licfpga.model.checkpoint import save_checkpoint
from licfpga.model.zoo import build_model

from .conftest import sample_image

KW = {"N": 16, "M": 24, "gdn": "gdn"}


@pytest.fixture(scope="module")
def two_points(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck")
    paths = []
    for i, lmbda in enumerate((0.005, 0.02)):
        torch.manual_seed(i)
        m = build_model("hyperprior", **KW).eval()
        m.update(force=True)
        save_checkpoint(d / f"p{i}.pt", m, "hyperprior", KW, {"lambda": lmbda})
        paths.append(str(d / f"p{i}.pt"))
    return paths


def test_evaluate_writes_consistent_results(tmp_path, two_points):
    images = [("a", sample_image(192, 192)), ("b", sample_image(176, 208, "kodim15.png"))]
    res = evaluate(images, two_points, ["jpeg", "webp"], anchors=("jpeg", "heif"), progress=False)
    ours = res["curves"]["hyperprior N16/M24 (ours)"]["results"]
    assert sorted(ours["lambda"]) == [0.005, 0.02] and len(ours["bpp"]) == 2
    per = res["curves"]["hyperprior N16/M24 (ours)"]["per_image"]
    assert {r["image"] for r in per} == {"a", "b"} and all(r["bytes"] > 20 for r in per)
    jpeg = res["curves"]["JPEG (4:2:0)"]["results"]
    assert np.all(np.diff(jpeg["bpp"]) > 0) and len(jpeg["bpp"]) >= 4
    # heif was asked as an anchor but not evaluated: said so, not silently dropped
    assert "heif" in res["unavailable"]
    assert set(res["bd_rate"]) == {"jpeg"} and "WebP" in res["bd_rate"]["jpeg"]
    assert res["bd_rate"]["jpeg"]["WebP"]["psnr"] < 0  # WebP beats JPEG on natural images
    out = write_outputs(res, tmp_path, "test")
    assert (tmp_path / "rd_psnr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["curves"].keys() == res["curves"].keys()
    assert "BD-rate vs jpeg" in out["markdown"]


def test_eval_cli_errors_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        eval_main(Namespace(data=str(tmp_path / "none"), limit=None, models=None, codecs=None,
                            anchor=["jpeg"], out=str(tmp_path)))
    with pytest.raises(ValueError, match="unknown codec"):
        evaluate([("a", sample_image(64, 64))], [], ["bmp"], progress=False)


def test_evaluate_integer_artifacts_as_one_curve_from_real_files():
    """The deployed integer students (what the FPGA computes) are a curve of the same run:
    the integer backend's real files, one point per artifact lambda, decoded again."""
    from licfpga.host.integer_codec import IntegerCodec, shipped_artifacts

    arts = [a.stem for a in shipped_artifacts() if a.stem.startswith("int-student-")][:2]
    assert len(arts) == 2, "two shipped integer students needed"
    img = sample_image(128, 128)
    res = evaluate([("a", img)], arts, ["jpeg"], anchors=("jpeg",), progress=False)
    label = next(k for k in res["curves"] if k.startswith("integer hyperprior"))
    ours = res["curves"][label]["per_image"]
    codec = IntegerCodec(arts[0])
    data = codec.encode(img)
    rec, _ = codec.decode(data)
    mine = next(r for r in ours if r["lambda"] == codec.model.schema["meta"]["lambda"])
    assert mine["bytes"] == len(data)
    assert mine["psnr"] == pytest.approx(10 * np.log10(255**2 / np.mean((img.astype(float) - rec) ** 2)), abs=1e-6)
    assert label in res["bd_rate"]["jpeg"]
