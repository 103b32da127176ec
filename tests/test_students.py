"""Distillation (model/distill.py) and structured pruning (model/prune.py)."""

from __future__ import annotations

import csv

import pytest
import torch

from licfpga.model import distill, prune
from licfpga.model.checkpoint import load_model, resolve_checkpoint
from licfpga.model.zoo import ScaleHyperprior


def test_channel_weights_follow_teacher_rate():
    lik = torch.full((2, 3, 4, 4), 0.5)
    lik[:, 1] = 0.01                                   # channel 1 carries most of the bits
    w = distill.channel_weights(lik)
    assert torch.isclose(w.mean(), torch.tensor(1.0))
    assert w.argmax() == 1 and w[1] > 3 * w[0]


def test_entropy_weighted_loss_emphasises_informative_channels():
    y_t = torch.randn(2, 3, 4, 4)
    err = torch.zeros_like(y_t)
    err[:, 1] = 1.0
    w_hi = torch.tensor([0.5, 2.0, 0.5])
    w_lo = torch.tensor([2.0, 0.5, 0.5])
    hi = distill.entropy_weighted_channel_loss(y_t + err, y_t, w_hi)
    lo = distill.entropy_weighted_channel_loss(y_t + err, y_t, w_lo)
    assert hi > 3 * lo > 0


def test_stage_schedule():
    assert [distill.stage_of(s, 10, (0.3, 0.7)) for s in range(10)] == [1] * 3 + [2] * 4 + [3] * 3


def test_distill_runs_all_stages(tmp_path, sample_image_dir):
    out = tmp_path / "d"
    final = distill.main(["--teacher", "mean-scale-0.013", "--width", "8", "--steps", "6", "--batch", "2",
                          "--patch", "64", "--data", str(sample_image_dir), "--val-data", str(sample_image_dir),
                          "--val-images", "1", "--val-size", "64", "--out", str(out), "--stages", "0.34", "0.67",
                          "--threads", "1"])
    rows = [r for r in csv.DictReader(open(out / "log.csv")) if r["split"] == "train"]
    assert rows and rows[0]["stage"] == "1" and float(rows[0]["feat"]) > 0
    model, state = load_model(final)
    assert state["arch"] == "hyperprior" and state["kwargs"] == {"N": 8, "M": 12, "gdn": "gdn"}
    assert state["meta"]["distill"] and state["meta"]["teacher_kwargs"]["N"] == 64
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64))["x_hat"].shape == (1, 3, 64, 64)


def test_distill_loss_terms_by_stage():
    teacher, _ = load_model(resolve_checkpoint("mean-scale-0.013"), update=False)
    student = ScaleHyperprior(8, 12)
    taps_s, taps_t = distill.FeatureTaps(student), distill.FeatureTaps(teacher)
    adapters = distill.Adapters(student, teacher)
    x = torch.rand(2, 3, 64, 64)
    weights = {"feat": 1.0, "chan": 1.0, "out": 1.0}
    with torch.no_grad():
        t_out = teacher(x)
    s_out = student(x)
    r1 = distill.distill_loss(s_out, t_out, taps_s, taps_t, adapters, x, 0.013, 1, weights)
    r2 = distill.distill_loss(s_out, t_out, taps_s, taps_t, adapters, x, 0.013, 2, weights)
    assert r1["feat"] > 0 and r1["chan"] == 0 and r1["out"] == 0
    assert r2["feat"] == 0 and r2["chan"] > 0 and r2["out"] > 0
    r1["loss"].backward()                               # adapters receive gradients in stage 1
    assert adapters["g_a_1"].weight.grad is not None


@pytest.fixture
def student():
    torch.manual_seed(0)
    model = ScaleHyperprior(8, 12).eval()
    model.update(force=True)       # like a final checkpoint: sized CDF buffers
    return model


def test_prune_to_full_width_is_identity(student):
    x = torch.rand(2, 3, 64, 64)
    same = prune.prune(student, 8, x).eval()
    with torch.no_grad():
        assert torch.allclose(same(x)["x_hat"], student(x)["x_hat"], atol=1e-6)


def test_prune_drops_the_dead_channel(student):
    """A channel whose producing conv is zero is 0 after GDN (and adds 0 to the other
    channels' normalisation): its saliency is 0, pruning removes it, the function is unchanged."""
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for t in ("g_a", "g_s"):
            for ci in (0, 2, 4):
                layer = getattr(student, t)[ci]
                if isinstance(layer, torch.nn.ConvTranspose2d):
                    layer.weight[:, 3] = 0                # [Ci, Co, k, k]: output channel 3
                else:
                    layer.weight[3] = 0
                layer.bias[3] = 0
        ref = student(x)["x_hat"]
    small = prune.prune(student, 7, x).eval()
    assert small.g_a[0].out_channels == 7 and small.g_s[4].out_channels == 7
    assert small.h_a[-1].out_channels == 8              # hyper width kept
    with torch.no_grad():
        out = small(x)["x_hat"]
    assert ref.std() > 0
    assert torch.allclose(out, ref, atol=1e-5)
    # and pruning a *live* channel instead does change the output (the test can fail)
    six = prune.prune(student, 6, x).eval()
    with torch.no_grad():
        assert not torch.allclose(six(x)["x_hat"], ref, atol=1e-5)


def test_prune_shrinks_macs(student):
    x = torch.rand(2, 3, 64, 64)
    m_full = prune.macs_per_px(student)
    m_small = prune.macs_per_px(prune.prune(student, 4, x))
    assert m_small["encoder"] < 0.45 * m_full["encoder"]
    with pytest.raises(ValueError):
        prune.prune(student, 9, x)


def test_qat_and_prune_commands(tmp_path, sample_image_dir):
    """`licfpga qat` and `licfpga prune` end to end on the shipped student (a few steps)."""
    from licfpga.model import qat
    from licfpga.model.golden.network import IntegerModel
    from licfpga.model.export_int import export_integer

    common = ["--data", str(sample_image_dir), "--val-data", str(sample_image_dir), "--val-images", "1",
              "--batch", "2", "--threads", "1"]
    final = qat.main(["--student", "student-0.013", "--steps", "2", "--calib-batches", "1", "--patch", "64",
                      "--bits", "h_s.*=6", "--out", str(tmp_path / "q"), *common])
    model, state = qat.load_qat(final)
    assert state["config"]["bits"] == {"h_s.*": 6} and state["meta"]["lambda"] == 0.013
    im = IntegerModel.load(export_integer(model, tmp_path / "q-int"))
    assert {r["layer"]: r["w_bits"] for r in im.range_report()}["h_s.0"] == 6
    csv_path = prune.main(["--student", "student-0.013", "--keep", "24", "--steps", "2",
                           "--out", str(tmp_path / "p"), *common])
    rows = list(csv.DictReader(open(csv_path)))
    assert [int(r["keep"]) for r in rows] == [30, 24]
    assert float(rows[1]["encoder"]) < 0.75 * float(rows[0]["encoder"])
    pruned, pstate = load_model(tmp_path / "p" / "keep24.pt")
    assert pstate["kwargs"]["N"] == 24 and pstate["kwargs"]["Nh"] == 30
