"""`licfpga bench`: what it compares is two different implementations, and what it prints is
what it measured. Timings themselves are not checked (a shared 2-core machine); the
structure and the sanity of every figure are."""

import re
from argparse import Namespace

import numpy as np
import pytest

from licfpga.host.bench import main as bench_main


def test_bench_compares_different_implementations(capsys):
    rows = bench_main(Namespace(size=[128, 192], repeat=1))
    out = capsys.readouterr().out
    assert [r["pair"] for r in rows] == ["integer vs float student", "codec vs bare model"]
    for r in rows:
        assert r["a"] != r["b"]
        assert all(t > 0 for t in (*r["enc_ms"], *r["dec_ms"]))
        assert r["enc_ratio"] == pytest.approx(r["enc_ms"][0] / r["enc_ms"][1])
        assert r["dec_ratio"] == pytest.approx(r["dec_ms"][0] / r["dec_ms"][1])
        assert all(b > 0 for b in r["bytes"])
        assert all(25.0 < p < 45.0 for p in r["psnr"]), r        # trained models on a photo crop
        # the printed row carries exactly these figures
        line = next(ln for ln in out.splitlines() if ln.startswith(r["pair"]))
        nums = [float(v) for v in re.findall(r"-?\d+\.?\d*", line[len(r["pair"]):])]
        want = [*r["enc_ms"], r["enc_ratio"], *r["dec_ms"], r["dec_ratio"], *r["bytes"], *r["psnr"], r["max_diff"]]
        np.testing.assert_allclose(nums, want, rtol=0, atol=0.051)
    integer, bare = rows
    # integer arithmetic vs float: different pixels, close rate and quality (the integer
    # model is the QAT student: a small loss, not a different codec)
    assert integer["max_diff"] > 0
    assert abs(integer["psnr"][0] - integer["psnr"][1]) < 1.0
    assert abs(integer["bytes"][0] / integer["bytes"][1] - 1) < 0.15
    # the same model with and without our file path: pixels within 1 LSB, and the file is
    # the entropy streams plus a small header
    assert bare["max_diff"] <= 1
    assert 0 < bare["bytes"][0] - bare["bytes"][1] < 200
