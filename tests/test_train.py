"""Training: single process, resume, and under torchrun (DDP, gloo) as users scale out."""

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from licfpga.model.checkpoint import load_model, read_checkpoint
from licfpga.model.train import main as train_main

from .conftest import SAMPLES, require

TINY = ["--arch", "hyperprior", "--N", "8", "--M", "12", "--batch", "2", "--patch", "64",
        "--val-images", "2", "--val-size", "64", "--threads", "1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    for p in SAMPLES.glob("*.png"):
        Image.open(p).convert("RGB").resize((192, 128)).save(d / (p.stem + ".jpg"))
    return d


def _args(data, out, steps, *extra):
    return [*TINY, "--data", str(data), "--val-data", str(data), "--steps", str(steps),
            "--val-every", "4", "--ckpt-every", "4", "--out", str(out), *extra]


def _log_rows(path):
    return list(csv.DictReader(open(path)))


def test_train_resume_and_checkpoint(tmp_path, data, monkeypatch):
    """A run of 8 steps interrupted right after its step-4 checkpoint and resumed with
    --resume ends exactly where an uninterrupted 8-step run ends (--no-prefetch: the batch
    stream is a function of the seed and the checkpointed RNG states): same weights, same
    optimizer states, step counter, pixels seen, learning rates and log rows."""
    import licfpga.model.train as T

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train_main(_args(data, whole, 8, "--no-prefetch"))

    saved = T.save_checkpoint

    def preempted(path, model, arch, kwargs, meta=None, **extra):
        saved(path, model, arch, kwargs, meta, **extra)
        if meta["step"] == 4:
            raise KeyboardInterrupt("preempted after the step-4 checkpoint")

    monkeypatch.setattr(T, "save_checkpoint", preempted)
    with pytest.raises(KeyboardInterrupt):
        train_main(_args(data, parts, 8, "--no-prefetch"))
    monkeypatch.setattr(T, "save_checkpoint", saved)
    assert read_checkpoint(parts / "last.pt")["meta"]["step"] == 4 and not (parts / "final.pt").exists()
    final = train_main(_args(data, parts, 8, "--no-prefetch", "--resume"))

    a, b = read_checkpoint(whole / "last.pt"), read_checkpoint(parts / "last.pt")
    px = 8 * 2 * 64 * 64                                  # steps * batch * patch**2
    assert a["meta"]["step"] == b["meta"]["step"] == 8
    assert a["meta"]["pixels"] == b["meta"]["pixels"] == px
    assert read_checkpoint(final)["meta"]["pixels"] == px
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), f"{k} differs after resume"
    for name in ("optimizer", "aux_optimizer"):
        sa, sb = a[name], b[name]
        assert sa["param_groups"] == sb["param_groups"]       # LR of the last step, param ids
        steps = {int(v["step"]) for v in sb["state"].values()}
        assert steps == {int(v["step"]) for v in sa["state"].values()} == {8}, (name, steps)
        for i, st in sa["state"].items():
            assert all(torch.equal(t, sb["state"][i][n]) for n, t in st.items()), (name, i)
    assert a["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4 * 0.1)   # decayed at 0.85 * 8
    # the log continues: the same rows (the resumed run appends, it neither repeats nor drops)
    ra, rb = _log_rows(whole / "log.csv"), _log_rows(parts / "log.csv")
    key = ("step", "split", "lr", "pixels")
    assert [tuple(r[k] for k in key) for r in rb] == [tuple(r[k] for k in key) for r in ra]
    assert [(r["step"], r["split"]) for r in ra] == [("0", "train"), ("4", "val"), ("8", "val")]
    assert [r["pixels"] for r in ra] == ["0", str(px // 2), str(px)]
    # ... and holds the same figures: the same computation throughout
    head = ("loss", "bpp", "psnr", "aux")
    assert [[r[k] for k in head] for r in rb] == [[r[k] for k in head] for r in ra]
    model, state = load_model(final)
    assert state["arch"] == "hyperprior" and state["meta"]["lambda"] == 0.013
    # the shipped form is ready for entropy coding
    with torch.no_grad():
        enc = model.compress(torch.rand(1, 3, 64, 64))
    assert len(enc["strings"]) == 2


def test_resume_refuses_other_architecture(tmp_path, data):
    out = tmp_path / "run"
    train_main(_args(data, out, 2))
    with pytest.raises(SystemExit, match="use another --out"):
        train_main([*_args(data, out, 4, "--resume"), "--M", "16"])


def test_training_reduces_rd_loss(tmp_path, data):
    out = tmp_path / "run"
    train_main(_args(data, out, 40, "--lr", "1e-3"))
    rows = [r for r in csv.DictReader(open(out / "log.csv")) if r["split"] == "val"]
    assert float(rows[-1]["loss"]) < 0.8 * float(rows[0]["loss"])


RANK_DIGEST = """
import hashlib, os, sys
from pathlib import Path
import licfpga.model.train as T

out = Path(sys.argv[sys.argv.index("--out") + 1])
check = T._check_ranks_agree


def digest_then_check(net):
    # each rank writes a digest of its final parameters, independently of the check
    h = hashlib.sha256()
    for name, p in sorted(net.named_parameters()):
        h.update(name.encode() + p.detach().contiguous().numpy().tobytes())
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{os.environ['RANK']}.sha256").write_text(h.hexdigest())
    check(net)


T._check_ranks_agree = digest_then_check
T.main(sys.argv[1:])
"""


def _param_digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode() + p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_torchrun_ddp_two_processes(tmp_path, data):
    """Two ranks under torchrun end with bit-identical weights (a digest written by each
    rank), equal to final.pt, and different from a single process with the same seed
    (rank 1's crops did contribute through the all-reduced gradients)."""
    torchrun = Path(sys.executable).parent / "torchrun"
    require(torchrun.exists(), f"{torchrun} missing: torchrun is part of torch (a broken venv)")
    out = tmp_path / "ddp"
    script = tmp_path / "rank_digest.py"
    script.write_text(RANK_DIGEST)
    r = subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port=29517", str(script),
                        *_args(data, out, 4)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    st = read_checkpoint(out / "final.pt")
    assert st["meta"]["world"] == 2 and st["meta"]["step"] == 4
    d0, d1 = ((out / f"rank{k}.sha256").read_text() for k in (0, 1))
    assert d0 == d1, "DDP ranks hold different weights"
    assert _param_digest(load_model(out / "final.pt")[0]) == d0
    single = train_main(_args(data, tmp_path / "single", 4))
    assert _param_digest(load_model(single)[0]) != d0


def _ranks_agree_worker(rank: int, store: str) -> None:
    import torch.distributed as dist

    from licfpga.model.train import _check_ranks_agree

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    results = []
    for diverge in ("", "nudge", "swap"):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 2, 1))
        if rank == 1 and diverge:
            with torch.no_grad():
                w = net[1].weight.view(-1)
                if diverge == "nudge":
                    w[3] += 1e-3
                else:                                  # same sum, different weights
                    w[[0, 1]] = w[[1, 0]].clone()
        try:
            _check_ranks_agree(net)
            results.append("agree")
        except RuntimeError as exc:
            results.append(str(exc))
    Path(store + f".rank{rank}").write_text("\n".join(results))
    dist.destroy_process_group()


def test_check_ranks_agree_detects_divergence(tmp_path):
    """model/train.py's end-of-training check passes on equal ranks and raises on every
    rank when one rank's weights differ: one weight nudged, or two swapped (equal sums)."""
    import torch.multiprocessing as mp

    store = str(tmp_path / "store")
    mp.spawn(_ranks_agree_worker, args=(store,), nprocs=2, join=True)
    for k in (0, 1):
        same, nudged, swapped = Path(store + f".rank{k}").read_text().split("\n")
        assert same == "agree", (k, same)
        assert "DDP ranks diverged" in nudged and "DDP ranks diverged" in swapped, (k, nudged, swapped)


def test_plot_logs(tmp_path, data):
    from licfpga.model.train import plot_logs

    train_main(_args(data, tmp_path / "run", 4))
    png = plot_logs([tmp_path / "run" / "log.csv"], tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "empty.csv").write_text("step,split,loss,bpp,psnr,aux,lr,seconds\n")
    with pytest.raises(ValueError, match="no validation rows"):
        plot_logs([tmp_path / "empty.csv"], tmp_path / "x.png")
