"""Fault injection (licfpga.host.faults): the injector does exactly what it says.

Mutations that were tried (each turned the named test red, then was reverted; see
results/faults/README.md, "Tests"):
* ``flip_bits`` XORs bit ``b+1`` instead of ``b``            -> test_weight_sign_flip_changes_one_channel_by_predicted_delta
* ``sample_flips`` draws ``binomial(n, 2*rate)``              -> test_sampler_counts_within_binomial_bounds
* ``FaultyModel`` ignores ``act_rng`` draws (rate treated as 0) -> test_activation_faults_at_the_stated_rate
* ``requantize_hw`` drops the rounding term                   -> test_rate_zero_is_the_golden_model_bit_exactly
* ``run_trials`` hands the decoder the clean model for h_s     -> test_end_to_end_decoder_side_faults
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from licfpga.host import faults as F
from licfpga.model.golden import gdn as G
from licfpga.model.golden.network import IntegerModel, conv2d_acc, requantize

from .conftest import ROOT, sample_image

ART = ROOT / "model" / "checkpoints" / "int-student-0.013"


@pytest.fixture(scope="module")
def im() -> IntegerModel:
    return IntegerModel.load(ART)


@pytest.fixture(scope="module")
def rgb64() -> np.ndarray:
    return sample_image(64, 64)


def _all_transforms(m, rgb):
    tr: dict = {}
    y = m.run_transform("g_a", rgb.transpose(2, 0, 1), trace=tr)
    z = m.run_transform("h_a", y, trace=tr)
    m.run_transform("h_s", z, trace=tr)
    m.run_transform("g_s", y, trace=tr)
    return tr


def test_rate_zero_is_the_golden_model_bit_exactly(im, rgb64):
    """Rate 0 (no flip drawn) and an empty activation-fault rate: every layer output equals
    the IntegerModel's; the hardware-faithful GDN equals gdn_int on extreme inputs too."""
    rng = np.random.default_rng(1)
    sites = F.param_sites(im, view="all")
    flips = F.sample_param_flips(rng, sites, rate=0.0)
    assert flips == []
    fm = F.FaultyModel(im, flips, acts={n: (0.0, "out") for n in ("g_a.0", "g_s.3")}, act_rng=rng)
    ref, got = _all_transforms(im, rgb64), _all_transforms(fm, rgb64)
    assert ref.keys() == got.keys()
    for k in ref:
        assert np.array_equal(ref[k], got[k]), k
    x = np.concatenate([rng.integers(-128, 128, (200, 30)), np.full((1, 30), -128), np.zeros((1, 30), int),
                        np.full((1, 30), 127)]).astype(np.int8)
    for name, p in im._gdn.items():
        assert np.array_equal(F.gdn_hw(x.T[:, :, None], p)[:, :, 0].T, G.gdn_int(x, p)), name


def test_threshold_tree_is_the_requantisation_and_a_binary_search(im):
    """The FINN view (threshold tree searched like thresholding.sv) equals the golden
    requantisation over the whole accumulator domain; a corrupted (unsorted) tree gives the
    binary search's answer, which is not the count of thresholds <= x."""
    for _, ly in F.layers(im):
        if ly["op"] not in ("conv", "deconv"):
            continue
        th = F.threshold_layer(ly, im.arrays)
        dmin, dmax = F.accumulator_domain(ly, im.arrays)
        c = len(dmin)
        acc = np.linspace(dmin, dmax, 4096).T.round().astype(np.int64).reshape(c, 64, 64)
        ref = F.requantize_hw(acc, im.arrays[ly["mult"]], im.arrays[ly["shift"]], *ly["out_range"])
        assert np.array_equal(th.apply(acc), ref), ly["name"]
    t = np.arange(1, 256, dtype=np.int64)[None, :] * 10          # sorted: y = #{t <= x}
    x = np.arange(-5, 2600, dtype=np.int64)[None, :]
    assert np.array_equal(F.tree_search(x, t, 255), (t[:, :, None] <= x[:, None, :]).sum(1))
    bad = t.copy()
    bad[0, 127] = -10**6                  # the root: every x >= -10**6 goes to the upper half
    y = F.tree_search(x, bad, 255)
    assert y[0, 0] == 128 and not np.array_equal(y, (bad[:, :, None] <= x[:, None, :]).sum(1))


def test_weight_sign_flip_changes_one_channel_by_predicted_delta(im, rgb64):
    """Flip the sign bit (bit 7) of one int8 weight of g_a.3: its s8 value changes by -128
    (w >= 0) or +128 (w < 0); the layer's accumulators change only in that output channel,
    by delta * (the input window it multiplies), and the layer output is the requantisation
    of exactly those accumulators."""
    layer = next(ly for ly in im.schema["transforms"]["g_a"] if ly["name"] == "g_a.3")
    w = im.arrays[layer["weight"]]
    co, ci, ky, kx = 7, 11, 2, 3
    site = next(s for s in F.param_sites(im, layer_names={"g_a.3"}, kinds={"weight"}))
    word = np.ravel_multi_index((co, ci, ky, kx), w.shape)
    fm = F.FaultyModel(im, [F.Flips(site, np.array([word]), np.array([7]))])
    w0 = int(w[co, ci, ky, kx])
    w1 = int(fm.arrays[layer["weight"]][co, ci, ky, kx])
    assert w1 == (w0 - 128 if w0 >= 0 else w0 + 128)
    changed = np.argwhere(fm.arrays[layer["weight"]] != w)
    assert changed.tolist() == [[co, ci, ky, kx]]
    tr: dict = {}
    im.run_transform("g_a", rgb64.transpose(2, 0, 1), trace=tr)
    x = tr["g_a.2"]                                   # g_a.3's input
    acc0 = conv2d_acc(x, w, im.arrays[layer["bias"]], 2, 2)
    acc1 = conv2d_acc(x, fm.arrays[layer["weight"]], im.arrays[layer["bias"]], 2, 2)
    xp = np.pad(x[ci], 2)
    window = xp[ky:ky + 2 * (acc0.shape[1] - 1) + 1:2, kx:kx + 2 * (acc0.shape[2] - 1) + 1:2]
    expect = acc0.copy()
    expect[co] += (w1 - w0) * window
    assert np.array_equal(acc1, expect)
    assert (acc1 != acc0).any(axis=(1, 2)).tolist() == [c == co for c in range(acc0.shape[0])]
    i = [ly["name"] for ly in im.schema["transforms"]["g_a"]].index("g_a.3")
    out = fm.layer_forward("g_a", i, x)
    assert np.array_equal(out, requantize(expect, im.arrays[layer["mult"]], im.arrays[layer["shift"]],
                                          *layer["out_range"]))
    assert not np.array_equal(out, tr["g_a.3"])


def test_flip_bits_widths_and_signs():
    v = np.array([0, -1, 127, -128, 5])
    assert F.flip_bits(v, [0, 1, 2, 3, 4], [7, 0, 7, 7, 1], 8, True).tolist() == [-128, -2, -1, 0, 7]
    assert F.flip_bits(np.array([2**31 - 1]), [0], [31], 32, True).tolist() == [-1]
    assert F.flip_bits(np.array([40]), [0], [5], 6, False).tolist() == [8]           # shift word u6
    assert F.flip_bits(np.array([3, 3]), [0, 0], [0, 1], 8, False).tolist() == [0, 3]  # two flips, one word
    with pytest.raises(ValueError):
        F.flip_bits(np.array([300]), [0], [0], 8, True)


def test_sampler_counts_within_binomial_bounds():
    """Per-bit Bernoulli flips: the count is Binomial(n, p) -- every draw within 5 sigma,
    the mean of 400 draws within 5 standard errors; positions distinct, bits uniform;
    ``count`` gives exactly that many."""
    rng = np.random.default_rng(7)
    n_words, bits = 50_000, 8
    n = n_words * bits
    for p in (1e-5, 1e-4, 1e-3):
        mu, sd = n * p, math.sqrt(n * p * (1 - p))
        ks = []
        for _ in range(400):
            w, b = F.sample_flips(rng, n_words, bits, rate=p)
            pos = w * bits + b
            assert np.unique(pos).size == pos.size and (b >= 0).all() and (b < bits).all()
            assert abs(w.size - mu) <= 5 * sd + 1
            ks.append(w.size)
        assert abs(np.mean(ks) - mu) <= 5 * sd / math.sqrt(len(ks)), (p, np.mean(ks), mu)
    w, b = F.sample_flips(rng, n_words, bits, rate=1e-2)
    hist = np.bincount(b, minlength=bits)
    exp = w.size / bits
    assert ((hist - exp) ** 2 / exp).sum() < 40          # chi-square, 7 dof: p < 1e-5 when wrong
    assert F.sample_flips(rng, 10, 8, count=80)[0].size == 80
    assert F.sample_flips(rng, 10, 8, rate=0.0)[0].size == 0


def test_sampler_over_sites_matches_their_bits(im):
    """sample_param_flips over several memories: the total count is Binomial(sum bits, p)
    and each memory gets its share."""
    sites = F.param_sites(im, layer_names={"g_s.3", "g_s.5"}, view="all")
    nbits = sum(s.n_bits for s in sites)
    rng = np.random.default_rng(3)
    p = 2e-4
    tot = [sum(f.words.size for f in F.sample_param_flips(rng, sites, rate=p)) for _ in range(200)]
    mu, sd = nbits * p, math.sqrt(nbits * p)
    assert abs(np.mean(tot) - mu) <= 5 * sd / math.sqrt(200)
    one = F.sample_param_flips(rng, sites, count=1)
    assert len(one) == 1 and one[0].words.size == 1 and one[0].bits[0] < one[0].site.bits


def test_activation_faults_at_the_stated_rate(im, rgb64):
    """Activation flips on g_a.0's output: the number of flipped values follows the rate
    (a single 8-bit word may take two flips, so values <= flips)."""
    p = 1e-3
    fm = F.FaultyModel(im, acts={"g_a.0": (p, "out")}, act_rng=np.random.default_rng(5))
    tr: dict = {}
    fm.run_transform("g_a", rgb64.transpose(2, 0, 1), trace=tr)
    ref: dict = {}
    im.run_transform("g_a", rgb64.transpose(2, 0, 1), trace=ref)
    n = ref["g_a.0"].size * 8
    k = fm.act_flip_count
    assert abs(k - n * p) <= 5 * math.sqrt(n * p)
    diff = int((tr["g_a.0"] != ref["g_a.0"]).sum())
    assert 0.9 * k <= diff <= k


def test_end_to_end_decoder_side_faults(im, rgb64):
    """Through the codec: bit 18 of an h_s.4 bias (the decoder's copy) makes the decoder
    compute other scale indexes than the encoder -> the file does not decode; bit 6 of the
    largest g_s.9 weight only costs PSNR (same bytes); the same in g_a.9 (encoder) changes
    the file and it still decodes; an empty trial reproduces the clean result exactly."""
    def bias_flip(name):
        site = next(s for s in F.param_sites(im, layer_names={name}, kinds={"bias"}))
        return [F.Flips(site, np.array([0]), np.array([18]))]

    def big_weight_flip(name):
        site = next(s for s in F.param_sites(im, layer_names={name}, kinds={"weight"}))
        w = im.arrays[site.key]
        return [F.Flips(site, np.array([int(np.argmax(np.abs(w)))]), np.array([6]))]

    trials = [F.Trial("hs", {}, bias_flip("h_s.4")), F.Trial("gs", {}, big_weight_flip("g_s.9")),
              F.Trial("ga", {}, big_weight_flip("g_a.9")), F.Trial("none", {}, [])]
    res = F.run_trials(trials, [("x", rgb64)])
    clean = res["clean"]["x"]
    hs, gs, ga, none = (t["images"]["x"] for t in res["trials"])
    assert hs["failed"] and "ContainerError" in hs["error"]
    assert not gs["failed"] and gs["bytes"] == clean["bytes"] and gs["psnr"] < clean["psnr"]
    assert not ga["failed"] and ga["psnr"] != clean["psnr"]
    assert none == dict(clean, failed=False, act_flips=0, same_as_clean=True)


def test_cli_end_to_end(tmp_path, rgb64):
    """`licfpga faults run` + `report` on one 64x64 image, one layer, two rates: JSON, table, plot."""
    from PIL import Image

    img = tmp_path / "tiny.png"
    Image.fromarray(rgb64).save(img)
    out = tmp_path / "layer-params.json"
    cmd = [sys.executable, "-m", "licfpga.host.faults", "run", "layer-params", "--data", str(img), "--crop", "64",
           "--layers", "g_s.9", "--rates", "1e-3", "1e-2", "--seeds", "2", "--out", str(out), "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["experiment"] == "layer-params" and res["images"] == ["tiny"] and len(res["trials"]) == 4
    assert all(t["info"]["layer"] == "g_s.9" and t["info"]["bits"] == 3 * 30 * 25 * 8 + 3 * (32 + 31 + 6)
               for t in res["trials"])
    hi = [t for t in res["trials"] if t["info"]["rate"] == 1e-2]
    assert all(t["param_flips"] > 0 and t["images"]["tiny"]["psnr"] < res["clean"]["tiny"]["psnr"] for t in hi)
    r = subprocess.run([sys.executable, "-m", "licfpga.host.faults", "report", str(out), "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "g_s.9" in (tmp_path / "ranked.md").read_text() and (tmp_path / "layer-params.png").stat().st_size > 1000
