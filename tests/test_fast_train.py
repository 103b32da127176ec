"""The training campaign's pieces: the held-out validation split, bf16 with fp32 islands,
batches drawn on a background thread, and the warm-up after --init."""

import pytest
import torch
from PIL import Image

from licfpga.model.fast_train import Prefetcher, autocast, keep_fp32, prepare
from licfpga.model.train import VAL_SPLIT, RandomCrops, lr_at, split_images, validation_names
from licfpga.model.zoo import build_model

from .conftest import SAMPLES, SHARED, require


def test_shipped_split_is_held_out_of_the_training_photos():
    require((SHARED / "train").is_dir(), "../shared/data/train not present")
    names = validation_names(VAL_SPLIT)
    assert len(names) == len(set(names)) == 40
    train, val = split_images(SHARED / "train")
    assert len(val) == 40 and len(train) + len(val) == 480
    assert not set(train) & set(val)
    assert all("kodak" not in str(p) for p in train + val)


def test_split_refuses_a_folder_that_lacks_listed_images(tmp_path):
    for p in SAMPLES.glob("*.png"):
        Image.open(p).save(tmp_path / p.name)
    listed = tmp_path / "split.txt"
    listed.write_text("# comment\nkodim04.png\n")
    train, val = split_images(tmp_path, listed)
    assert [p.name for p in val] == ["kodim04.png"] and "kodim04.png" not in {p.name for p in train}
    listed.write_text("kodim04.png\nmissing.png\n")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        split_images(tmp_path, listed)


def _dtypes_seen(net, precision):
    """dtype of the latent entering the Gaussian conditional's noisy quantisation, of a GDN's
    output and of a conv's output, in one forward under ``precision``."""
    seen = {}
    gc = net.gaussian_conditional
    quantize = gc.quantize

    def spy(inputs, *args, **kwargs):
        seen.setdefault("y_quantize", inputs.dtype)
        return quantize(inputs, *args, **kwargs)

    gc.quantize = spy
    for name, layer in (("gdn", net.g_a[1]), ("conv", net.g_a[0])):
        layer.register_forward_hook(lambda m, i, o, name=name: seen.update({name: o.dtype}) and None)
    with autocast(precision):
        out = net(torch.rand(1, 3, 64, 64))
    seen["likelihoods"] = {k: v.dtype for k, v in out["likelihoods"].items()}
    return seen


def test_fp32_islands_keep_rate_and_gdn_in_fp32():
    """Plain bf16 autocast adds the quantisation noise to a bf16 latent (spacing 1/16 at
    |y| ~ 10) and runs GDN's sum of squares in bf16; with islands both are fp32 while the
    convolutions stay bf16."""
    torch.manual_seed(0)
    plain = _dtypes_seen(build_model("mean-scale", N=8, M=12).train(), "bf16")
    assert plain["y_quantize"] == plain["gdn"] == plain["conv"] == torch.bfloat16

    net = build_model("mean-scale", N=8, M=12).train()
    assert keep_fp32(net) == 2 + 6            # entropy bottleneck + Gaussian conditional + 3 GDN + 3 IGDN
    assert keep_fp32(net) == 0                # idempotent
    fast = _dtypes_seen(net, "bf16-islands")
    assert fast["y_quantize"] == fast["gdn"] == torch.float32
    assert fast["conv"] == torch.bfloat16
    assert set(fast["likelihoods"].values()) == {torch.float32}


def test_islands_train_step_close_to_fp32():
    """One forward of the same weights: the bf16-islands rate is within 2 % of fp32's
    (plain bf16 has no such guarantee); the loss backpropagates to every conv weight."""
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64)
    ref = build_model("mean-scale", N=16, M=24).eval()
    fast = build_model("mean-scale", N=16, M=24).eval()
    fast.load_state_dict(ref.state_dict())
    prepare(fast, "bf16-islands", channels_last=True)
    torch.manual_seed(2)
    bpp_ref = sum(torch.log2(l).sum() for l in ref(x)["likelihoods"].values())
    with autocast("bf16-islands"):
        out = fast(x.contiguous(memory_format=torch.channels_last))
    bpp_fast = sum(torch.log2(l).sum() for l in out["likelihoods"].values())
    assert abs(bpp_fast.item() / bpp_ref.item() - 1) < 0.02
    bpp_fast.backward()
    assert all(p.grad is not None for n, p in fast.named_parameters() if n.endswith("weight") and "g_a" in n)


def test_prefetcher_yields_the_same_batches_in_order():
    a = RandomCrops(SAMPLES, patch=64, seed=3)
    b = RandomCrops(SAMPLES, patch=64, seed=3)
    pre = Prefetcher(lambda: b.batch(2), depth=2)
    try:
        for _ in range(4):
            assert torch.equal(pre.next(), a.batch(2))
    finally:
        pre.close()


def test_prefetcher_surfaces_errors():
    def broken():
        raise OSError("disk gone")

    pre = Prefetcher(broken)
    try:
        with pytest.raises(OSError, match="disk gone"):
            pre.next()
    finally:
        pre.close()


def test_warmup_then_constant_then_decay():
    lr = [lr_at(s, 100, 1e-3, 0.9, warmup=10, warmup_from=20) for s in range(100)]
    assert lr[0] == lr[19] == 1e-3                     # before the warm-up window: the base LR
    assert lr[20] == pytest.approx(1e-4) and lr[29] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lr[20:29], lr[21:30]))
    assert lr[89] == 1e-3 and lr[90] == pytest.approx(1e-4)
