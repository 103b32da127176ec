"""`licfpga bench` runs and our decoded pixels match CompressAI's with the same weights
within 1 LSB (the benchmark prints times; this test only checks that what it compares is
comparable)."""

from argparse import Namespace

from licfpga.host.bench import main as bench_main


def test_bench_pairs_decode_identically(capsys):
    bench_main(Namespace(size=[128, 192], repeat=1))
    rows = [line for line in capsys.readouterr().out.splitlines() if " vs compressai." in line]
    assert len(rows) == 2
    assert all(" yes (max diff " in line for line in rows), rows
