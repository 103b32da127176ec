"""Training: single process, resume, and under torchrun (DDP, gloo) as users scale out."""

import csv
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from licfpga.model.checkpoint import load_model, read_checkpoint
from licfpga.model.train import main as train_main

from .conftest import SAMPLES

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


def test_train_resume_and_checkpoint(tmp_path, data):
    out = tmp_path / "run"
    final = train_main(_args(data, out, 4))
    assert read_checkpoint(out / "last.pt")["meta"]["step"] == 4
    w4 = read_checkpoint(out / "last.pt")["state_dict"]["g_a.0.weight"].clone()
    train_main(_args(data, out, 8, "--resume"))
    st = read_checkpoint(out / "last.pt")
    assert st["meta"]["step"] == 8 and not torch.equal(st["state_dict"]["g_a.0.weight"], w4)
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [r["step"] for r in rows if r["split"] == "val"] == ["4", "8"]
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


@pytest.mark.skipif(shutil.which("torchrun", path=str(__import__("pathlib").Path(sys.executable).parent)) is None,
                    reason="torchrun is part of torch; missing means a broken venv")
def test_torchrun_ddp_two_processes(tmp_path, data):
    torchrun = str(__import__("pathlib").Path(sys.executable).parent / "torchrun")
    out = tmp_path / "ddp"
    r = subprocess.run([torchrun, "--nproc_per_node=2", "--master_port=29517", "-m", "licfpga.model.train",
                        *_args(data, out, 4)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    st = read_checkpoint(out / "final.pt")
    assert st["meta"]["world"] == 2 and st["meta"]["step"] == 4


def test_plot_logs(tmp_path, data):
    from licfpga.model.train import plot_logs

    train_main(_args(data, tmp_path / "run", 4))
    png = plot_logs([tmp_path / "run" / "log.csv"], tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "empty.csv").write_text("step,split,loss,bpp,psnr,aux,lr,seconds\n")
    with pytest.raises(ValueError, match="no validation rows"):
        plot_logs([tmp_path / "empty.csv"], tmp_path / "x.png")
