"""The bit-exact integer model (model/golden/network.py), its export from the Brevitas QAT
student (model/export_int.py, model/qat.py) and the integer codec backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from licfpga.model.export_int import export_integer, requant_params
from licfpga.model.golden import network as net
from licfpga.model.qat import calibrate, parse_bits, quantize_student
from licfpga.model.zoo import ScaleHyperprior


# ---- layer arithmetic -----------------------------------------------------------------
@pytest.mark.parametrize("stride,pad,k", [(2, 2, 5), (1, 1, 3), (2, 2, 3)])
def test_conv_acc_equals_torch(stride, pad, k):
    rng = np.random.default_rng(k + stride)
    x = rng.integers(-128, 128, size=(6, 13, 11))
    x[:, 0, :] = -128                                # extremes
    w = rng.integers(-127, 128, size=(5, 6, k, k))
    b = rng.integers(-2**20, 2**20, size=5)
    ref = F.conv2d(torch.from_numpy(x).double()[None], torch.from_numpy(w).double(),
                   torch.from_numpy(b).double(), stride=stride, padding=pad)[0].numpy()
    np.testing.assert_array_equal(net.conv2d_acc(x, w, b, stride, pad), ref.astype(np.int64))


@pytest.mark.parametrize("h,w_", [(4, 4), (3, 5), (1, 1)])
def test_deconv_acc_equals_torch(h, w_):
    rng = np.random.default_rng(h * 7 + w_)
    x = rng.integers(-128, 128, size=(4, h, w_))
    w = rng.integers(-127, 128, size=(4, 3, 5, 5))
    b = rng.integers(-1000, 1000, size=3)
    ref = F.conv_transpose2d(torch.from_numpy(x).double()[None], torch.from_numpy(w).double(),
                             torch.from_numpy(b).double(), stride=2, padding=2, output_padding=1)[0].numpy()
    out = net.deconv2d_acc(x, w, b, 2, 2, 1)
    assert out.shape == (3, 2 * h, 2 * w_)
    np.testing.assert_array_equal(out, ref.astype(np.int64))


def test_requantize_rounds_half_up_and_saturates():
    mult, shift = np.array([1 << 30]), np.array([31])          # ratio exactly 1/2
    acc = np.array([-5, -3, -1, 1, 3, 5, 1000, -1000]).reshape(1, 1, -1)
    out = net.requantize(acc, mult, shift, -128, 127)[0, 0]
    # x/2 rounded half up: -2.5->-2, -1.5->-1, -0.5->0, 0.5->1, 1.5->2, 2.5->3, saturation
    np.testing.assert_array_equal(out, [-2, -1, 0, 1, 2, 3, 127, -128])
    assert net.requantize(acc, mult, shift, 0, 255)[0, 0].min() == 0   # ReLU range


def test_requant_params_accuracy():
    m = np.array([1e-6, 3.3e-4, 0.0123, 0.5, 0.999999, 1.7])
    mult, shift = requant_params(m)
    assert np.all((mult >= 2**30) & (mult < 2**31))
    np.testing.assert_allclose(mult / np.exp2(shift.astype(float)), m, rtol=2**-30)
    with pytest.raises(ValueError):
        requant_params(np.array([0.0]))


def test_accumulator_overflow_is_refused():
    with pytest.raises(OverflowError):
        net.requantize(np.array([[[2**31]]]), np.array([1 << 30]), np.array([31]), -128, 127)


# ---- QAT model -> artifact -> golden ----------------------------------------------------
def _small_qat(seed=0, bits=None, po2=False):
    torch.manual_seed(seed)
    s = ScaleHyperprior(8, 12).eval()
    with torch.no_grad():   # an untrained model's latents are ~0; make them span the int8 grid
        s.g_a[-1].weight.mul_(40)
        s.h_a[-1].weight.mul_(20)
    s.update(force=True)          # like a final checkpoint: CDF buffers filled
    q = quantize_student(s, bits, po2)
    g = torch.Generator().manual_seed(seed)
    calibrate(q, [torch.rand(2, 3, 64, 64, generator=g) for _ in range(2)])
    return q.eval()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    q = _small_qat()
    path = export_integer(q, tmp_path_factory.mktemp("art") / "small")
    return q, path


def _image(seed=3, h=128, w=192):
    """A smooth random image with some texture (pure noise gives degenerate latents)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3)).astype(np.float64)
    up = np.kron(base, np.ones((16, 16, 1)))[:h, :w]
    return np.clip(up + rng.normal(0, 12, size=up.shape), 0, 255).astype(np.uint8)


def test_integer_model_matches_qat(artifact):
    q, path = artifact
    im = net.IntegerModel.load(path)
    img = _image()
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        o = q(x)
    y, z = im.analysis(img)
    assert np.abs(y).max() > 5, "degenerate test: latents all near zero"
    yq, zq = o["y_hat"][0].numpy(), o["z_hat"][0].numpy()
    # Brevitas requantises float32 (x*s_in)*(w*s_w)/s_out with round-half-even; the golden
    # uses exact integers with a 31-bit multiplier and round-half-up. They can differ only
    # where the float value lies within float32 rounding of a .5 boundary: rare, and by 1.
    for a, b in ((y, yq), (z, zq)):
        assert (a == b).mean() >= 0.999
        assert np.abs(a - b).max() <= 1
    codes = im.scale_codes(zq.astype(np.int64))
    s_sc = im.schema["entropy"]["y_scale_code_scale"]
    np.testing.assert_array_equal(codes, np.rint(o["scales"][0].numpy() / s_sc))
    x_int = im.synthesis(yq.astype(np.int64)).astype(np.int64)
    x_qat = np.rint(o["x_hat"][0].permute(1, 2, 0).numpy() * 255).astype(np.int64)
    assert (x_int == x_qat).mean() >= 0.999
    assert np.abs(x_int - x_qat).max() <= 1


def test_scale_indexes_equal_compressai(artifact):
    """Integer thresholds reproduce GaussianConditional.build_indexes on q * s_sc."""
    q, path = artifact
    im = net.IntegerModel.load(path)
    from compressai.entropy_models import GaussianConditional
    gc = GaussianConditional(im.schema["entropy"]["scale_table"])
    codes = np.arange(256)
    s_sc = im.schema["entropy"]["y_scale_code_scale"]
    ref = gc.build_indexes(torch.from_numpy(codes).float() * np.float32(s_sc)).numpy()
    np.testing.assert_array_equal(im.scale_indexes(codes), ref)


def test_range_analysis_fails_when_a_width_can_overflow(artifact):
    _, path = artifact
    im = net.IntegerModel.load(path)
    rows = im.range_report()
    assert {r["layer"] for r in rows} >= {"g_a.0", "h_a.0", "h_s.4", "g_s.9"}
    assert all(r["acc_bits_needed"] <= 32 for r in rows)
    arrays = dict(im.arrays)
    w = arrays["g_a.3.weight"].astype(np.int32)
    arrays["g_a.3.weight"] = w * 2**12                      # a 20-bit "weight": must be caught
    with pytest.raises(net.ArtifactError, match="g_a.3: accumulator needs"):
        net.IntegerModel(im.schema, arrays)


def test_artifact_errors(tmp_path, artifact):
    _, path = artifact
    with pytest.raises(net.ArtifactError, match="not found"):
        net.IntegerModel.load(tmp_path / "nothing")
    schema = json.loads(path.read_text())
    arrays = dict(np.load(path.with_suffix(".npz")))
    del arrays["g_s.9.mult"]
    with pytest.raises(net.ArtifactError, match="lacks arrays"):
        net.IntegerModel(schema, arrays)
    with pytest.raises(net.ArtifactError, match="not a licfpga-int"):
        net.IntegerModel({**schema, "format": "other"}, arrays)


def test_mixed_precision_bits(tmp_path):
    assert parse_bits(["g_a.0=6", "h_s.*=4"]) == {"g_a.0": 6, "h_s.*": 4}
    with pytest.raises(ValueError):
        parse_bits(["g_a.0=5"])
    q = _small_qat(bits={"g_a.0": 6, "h_s.*": 4})
    im = net.IntegerModel.load(export_integer(q, tmp_path / "mixed"))
    bits = {r["layer"]: r["w_bits"] for r in im.range_report()}
    assert bits["g_a.0"] == 6 and bits["h_s.0"] == 4 and bits["h_s.4"] == 4 and bits["g_a.3"] == 8
    w = im.arrays["h_s.0.weight"]
    assert w.min() >= -8 and w.max() <= 7


def test_power_of_two_scales(tmp_path):
    q = _small_qat(po2=True)
    im = net.IntegerModel.load(export_integer(q, tmp_path / "po2"))
    for t in net.TRANSFORMS:
        for layer in im.schema["transforms"][t]:
            # the pixel grid stays 1/255 (pixels are exact integers), so the layers reading
            # or writing pixels keep a general multiplier
            if layer["op"] in ("conv", "deconv") and layer["name"] not in ("g_a.0", "g_s.9"):
                assert np.all(im.arrays[layer["mult"]] == 2**30), layer["name"]   # a pure shift


# ---- integer codec: bit-exact across processes and thread counts ------------------------
DECODE_SCRIPT = """
import sys, numpy as np
from licfpga.host.integer_codec import IntegerCodec
c = IntegerCodec(sys.argv[1])
rgb, _ = c.decode(open(sys.argv[2], 'rb').read())
np.save(sys.argv[3], rgb)
"""


def _qat_decode(q, img: np.ndarray, tile: int) -> np.ndarray:
    """What the codec's tiles decode to, computed by the QAT model's eval forward instead:
    each tile edge-padded to a multiple of 64, x_hat rounded to 8 bit, cropped back."""
    out = np.empty_like(img)
    for y0 in range(0, img.shape[0], tile):
        for x0 in range(0, img.shape[1], tile):
            crop = img[y0:y0 + tile, x0:x0 + tile]
            h, w = crop.shape[:2]
            pad = np.pad(crop, ((0, -h % 64), (0, -w % 64), (0, 0)), mode="edge")
            with torch.no_grad():
                x_hat = q(torch.from_numpy(pad.copy()).permute(2, 0, 1)[None].float() / 255)["x_hat"]
            px = np.clip(np.rint(x_hat[0].permute(1, 2, 0).numpy() * 255), 0, 255)
            out[y0:y0 + h, x0:x0 + w] = px[:h, :w]
    return out


def test_integer_codec_bit_exact_across_processes_and_threads(artifact, tmp_path):
    from licfpga.host.integer_codec import IntegerCodec

    q, path = artifact
    img = _image(5, 100, 150)                                # not a multiple of 64: padding
    codec = IntegerCodec(path, tile=64)                       # several tiles
    data = codec.encode(img)
    (tmp_path / "a.lic").write_bytes(data)
    ref, _ = codec.decode(data)
    # an independent reference: the Brevitas QAT model (float32 on the integer grids) run
    # tile by tile on the same edge-padded crops. Same tolerance as
    # test_integer_model_matches_qat (float32 vs exact-integer rounding at .5 boundaries;
    # measured: identical).
    qat = _qat_decode(q, img, 64)
    assert len(np.unique(ref)) > 20, "degenerate test: flat decoded image"
    assert (ref == qat).mean() >= 0.999
    assert np.abs(ref.astype(int) - qat.astype(int)).max() <= 1
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
               "MKL_NUM_THREADS": threads}
        out = tmp_path / f"dec{threads}.npy"
        subprocess.run([sys.executable, "-c", DECODE_SCRIPT, str(path), str(tmp_path / "a.lic"), str(out)],
                       check=True, env=env, capture_output=True)
        np.testing.assert_array_equal(np.load(out), ref)
    # re-encoding in this process gives the same bytes
    assert IntegerCodec(path, tile=64).encode(img) == data


def test_integer_codec_refuses_other_artifact(artifact, tmp_path):
    from licfpga.host.container import ContainerError
    from licfpga.host.integer_codec import IntegerCodec

    _, path = artifact
    data = IntegerCodec(path).encode(_image(1, 64, 64))
    other = export_integer(_small_qat(seed=9), tmp_path / "other")
    with pytest.raises(ContainerError, match="decode with the model that encoded it"):
        IntegerCodec(other).decode(data)


def test_simplified_gdn_student_exports(tmp_path):
    """GDN1/IGDN1 students quantise to the kernel's SIMPLIFIED mode, bit-exact too."""
    torch.manual_seed(1)
    s = ScaleHyperprior(8, 12, gdn="simplified").eval()
    with torch.no_grad():
        s.g_a[-1].weight.mul_(40)
    q = quantize_student(s)
    calibrate(q, [torch.rand(2, 3, 64, 64)])
    q.eval()
    im = net.IntegerModel.load(export_integer(q, tmp_path / "simp"))
    assert {l["variant"] for t in net.TRANSFORMS for l in im.schema["transforms"][t] if l["op"] == "gdn"} == {"simplified"}
    img = _image(7, 64, 128)
    with torch.no_grad():
        o = q(torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255)
    y, _ = im.analysis(img)
    assert (y == o["y_hat"][0].numpy()).mean() >= 0.999


def test_qat_training_rate_sees_where_a_latent_sits_in_its_bin():
    """QAT training measures the rate of z (and y) on the unrounded value + uniform noise, as
    float training does, so a hyper-latent channel parked inside a rounding bin is pulled
    towards its density's mode; measured on the rounded integers (straight-through) the rate
    cannot tell 0.05 from 0.45, and such channels drifted to the bin edge (z cost 4.6x the
    float student's rate; results/students_campaign). Coding (eval) sees the integers only."""
    rates = {}
    for mode in ("train", "eval"):
        for parked in (0.05, 0.45):
            q = _small_qat()
            conv = q.h_a[-2]                         # the last conv; h_a[-1] rounds z to int8
            with torch.no_grad():
                # channel 0 of z: ~constant, rounds to 0 (weights scaled down, not zeroed: the
                # int32 bias is quantised in the channel's weight scale, which must stay > 0)
                conv.weight[0].mul_(1e-4)
                conv.bias[0] = parked
            q.train(mode == "train")
            torch.manual_seed(1)                     # the same noise draw for both
            out = q(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
            assert torch.all(out["z_hat"][:, 0] == 0)
            rates[mode, parked] = -out["likelihoods"]["z"][:, 0].log2().sum().item()
    assert rates["eval", 0.05] == rates["eval", 0.45]
    assert abs(rates["train", 0.05] - rates["train", 0.45]) > 1e-3 * rates["train", 0.05]


def test_qat_checkpoint_round_trip(artifact, tmp_path):
    from licfpga.model.qat import load_qat, save_qat

    q, _ = artifact
    save_qat(tmp_path / "q.pt", q, {"lambda": 0.013})
    q2, state = load_qat(tmp_path / "q.pt")
    x = torch.from_numpy(_image(2, 64, 64).copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        a, b = q(x), q2(x)
    assert torch.equal(a["y_hat"], b["y_hat"]) and torch.equal(a["x_hat"], b["x_hat"])
    assert state["meta"]["lambda"] == 0.013
