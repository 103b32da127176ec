"""`licfpga bench` runs and our decoded pixels equal CompressAI's with the same weights
(the benchmark prints times; this test only checks what it compares is comparable)."""

from argparse import Namespace

from licfpga.host.bench import main as bench_main


def test_bench_pairs_decode_identically(capsys):
    bench_main(Namespace(size=[128, 192], repeat=1))
    rows = [line for line in capsys.readouterr().out.splitlines() if " vs compressai." in line]
    assert len(rows) == 2
    assert all(line.rstrip().endswith("yes") for line in rows), rows
