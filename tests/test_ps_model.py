"""The PS-side model (licfpga.host.ps_model, results/board/ps_model.md): its arithmetic, the
aarch64 harness under qemu (decodes what it encoded, streams byte-identical to the
extension's, slices split as the container splits them), the instruction counter (against
qemu's own single-step count), stable counts, and the committed report's consistency."""

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from licfpga.host import ps_model as P
from licfpga.host.entropy_coder import _sample_symbols, encode_streams
from licfpga.host.integer_codec import IntegerCodec

from .conftest import ROOT, require

RESULTS = ROOT / "results" / "board" / "ps_model.json"


def _tools_present() -> bool:
    return all(shutil.which(t) for t in (P.CROSS_CC, P.QEMU, "gcc"))


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    require(_tools_present(), f"{P.CROSS_CC} and {P.QEMU} (make aarch64-tools)")
    return P.build_tools(tmp_path_factory.mktemp("psm"))


# -- the model's arithmetic --------------------------------------------------------------------
def _toy():
    counts = {"encode": {"y": 4_000_000, "z": 100_000}, "decode": {"y": 8_000_000, "z": 200_000},
              "encode_slices": [900_000, 1_100_000, 1_000_000, 1_000_000],
              "decode_slices": [2_000_000, 2_000_000, 2_400_000, 1_600_000], "slices": 4}
    meas = {"encode": {"rans_y_c": 0.002, "rans_z_c": 0.0001, "h_a": 0.1, "h_s": 0.05, "pack": 0.003},
            "decode": {"rans_y_c": 0.004, "rans_z_c": 0.0002, "h_s": 0.05, "unpack": 0.001, "python_rest": 0.002}}
    board = {"apu_mhz": 1000}
    return counts, meas, board


def test_board_times_by_hand():
    counts, meas, board = _toy()
    # 1 core, hyper on the PS: y 4e6/0.5/1e9 = 8 ms, z 0.2 ms, rest (0.1+0.05+0.003)*3
    t = P.board_times(counts, meas, board, ipc=0.5, factor=3.0, hyper_on_ps=True, cores=1)
    assert t["encode"]["rans_y"] == pytest.approx(0.008)
    assert t["encode"]["rans_z"] == pytest.approx(0.0002)
    assert t["encode"]["rest"] == pytest.approx(0.153 * 3)
    assert t["encode"]["seconds"] == pytest.approx(0.008 + 0.0002 + 0.459)
    # h_a / h_s on the FPGA: only the pack stays; 4 cores: the slowest slice (1.1e6)
    t = P.board_times(counts, meas, board, ipc=0.5, factor=3.0, hyper_on_ps=False, cores=4)
    assert t["encode"]["rest"] == pytest.approx(0.009)
    assert t["encode"]["rans_y"] == pytest.approx(1_100_000 / 0.5 / 1e9)
    assert t["decode"]["rans_y"] == pytest.approx(2_400_000 / 0.5 / 1e9)
    assert t["decode"]["rest"] == pytest.approx((0.001 + 0.002) * 3)
    # the clock scales the C part
    t2 = P.board_times(counts, meas, board, ipc=0.5, factor=3.0, hyper_on_ps=False, cores=4, mhz=2000)
    assert t2["decode"]["rans_y"] == pytest.approx(t["decode"]["rans_y"] / 2)
    with pytest.raises(ValueError, match="4 slices need 4 cores"):
        P.board_times(counts, meas, board, 0.5, 3.0, False, cores=2)


def test_each_path_takes_its_own_python_rest():
    """1 core: the one-stream rest; cores > 1: the 4-stream calling thread's rest (where
    measured; older results without it fall back to the one-stream rest)."""
    counts, meas, board = _toy()
    meas["decode"]["python_rest_streams"] = 0.005
    t1 = P.board_times(counts, meas, board, ipc=0.5, factor=2.0, hyper_on_ps=False, cores=1)
    t4 = P.board_times(counts, meas, board, ipc=0.5, factor=2.0, hyper_on_ps=False, cores=4)
    assert t1["decode"]["rest"] == pytest.approx((0.001 + 0.002) * 2)
    assert t4["decode"]["rest"] == pytest.approx((0.001 + 0.005) * 2)
    assert dict(P.breakdown(counts, meas, board, "decode", 0.5, 2.0, 4))["python_rest_streams"] == pytest.approx(0.01)
    assert "python_rest" not in dict(P.breakdown(counts, meas, board, "decode", 0.5, 2.0, 4))
    del meas["decode"]["python_rest_streams"]
    t4 = P.board_times(counts, meas, board, ipc=0.5, factor=2.0, hyper_on_ps=False, cores=4)
    assert t4["decode"]["rest"] == pytest.approx((0.001 + 0.002) * 2)


def test_numpy_factor_and_model_rows():
    counts, meas, _ = _toy()
    f = P.numpy_factor(counts, meas, 1000)
    a53_e = 4e6 / P.IPC["mid"] / 1e9
    a53_d = 8e6 / P.IPC["mid"] / 1e9
    assert f["mid"] == pytest.approx(((a53_e / 0.002) + (a53_d / 0.004)) / 2)
    assert f["low"] == pytest.approx(f["mid"] / 2) and f["high"] == pytest.approx(f["mid"] * 2)
    res = P.model(counts, meas)
    for bname, b in P.BOARDS.items():
        rows = res[bname]["rows"]
        assert {(r["hyper_on_ps"], r["cores"]) for r in rows} == {(True, 1), (True, 4), (False, 1), (False, 4)}
        for r in rows:
            for op in ("encode", "decode"):
                assert r["fps"]["worst"][op] < r["fps"]["mid"][op] < r["fps"]["best"][op]
                assert r["fps"]["mid"][op] == pytest.approx(1 / r["mid_seconds"][op]["seconds"])
        by = {(r["hyper_on_ps"], r["cores"]): r["fps"]["mid"]["decode"] for r in rows}
        assert by[(False, 4)] > by[(False, 1)] > by[(True, 1)]


def test_committed_report_is_its_own_arithmetic():
    """results/board/ps_model.json: its fps are what the model computes from its own counts
    and measurements, every board figure is labelled modeled, and the md says so."""
    require(RESULTS.is_file(), f"{RESULTS} (python -m licfpga.host.ps_model --out results/board)")
    data = json.loads(RESULTS.read_text())
    assert data["label"] == "modeled, never run on a board"
    again = P.model(data["instructions"], data["measured_x86"])
    for bname in P.BOARDS:
        for r0, r1 in zip(data["model"][bname]["rows"], again[bname]["rows"]):
            for end in ("worst", "mid", "best"):
                for op in ("encode", "decode"):
                    assert r0["fps"][end][op] == pytest.approx(r1["fps"][end][op])
    assert data["streams_identical"] is True
    assert all(v > 0 for op in ("encode", "decode") for v in data["instructions"][op].values())
    md = (RESULTS.parent / "ps_model.md").read_text()
    assert "modeled, never run on a board" in md
    assert P.conclusions(data) == data["conclusions"]


# -- the harness under qemu ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def frame_data(tmp_path_factory):
    """Symbols drawn from the shipped artifact's own y and z tables (escapes included)."""
    codec = IntegerCodec(P.DEFAULT_ARTIFACT)
    syms = {}
    for part, coder, n in (("y", codec.y_coder, 6000), ("z", codec.z_coder, 900)):
        t = {"cdf": coder.cdfs, "cdf_length": coder.cdf_lengths, "offset": coder.offsets}
        s, i = _sample_symbols(t, n, seed=1 if part == "y" else 2)
        syms[part] = {"sym": s, "idx": i, "coder": coder}
    path = tmp_path_factory.mktemp("psd") / "data.bin"
    P.write_bench_data(path, syms)
    return path, syms


def test_harness_round_trip_under_qemu(tools, frame_data, tmp_path):
    data, syms = frame_data
    out = tmp_path / "s1.bin"
    P.qemu_count(tools, ["encode", "all", "1", str(data), str(out)])
    z, y = P.read_streams(out)
    assert y == syms["y"]["coder"].encode(syms["y"]["sym"], syms["y"]["idx"])    # the extension's bytes
    assert z == syms["z"]["coder"].encode(syms["z"]["sym"], syms["z"]["idx"])
    n_dec = P.qemu_count(tools, ["decode", "all", "1", str(data), str(out)])     # exits 0: symbols equal
    assert n_dec > P.qemu_count(tools, ["load", "all", "1", str(data), str(out)])
    # a corrupted stream is refused (exit 2 or 3), not decoded to the same symbols
    raw = bytearray(out.read_bytes())
    raw[-9] ^= 0x5A
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(raw))
    with pytest.raises(RuntimeError, match="exited [23]"):
        P.qemu_count(tools, ["decode", "y", "1", str(data), str(bad)])
    # a stream that decodes to the right symbols but has a trailing word is refused too
    # (strict mode, as the extension: the stream must end where its encoder began)
    trailing = tmp_path / "trailing.bin"
    trailing.write_bytes(_streams_file([z, y + bytes(4)]))
    with pytest.raises(RuntimeError, match="exited 2"):
        P.qemu_count(tools, ["decode", "y", "1", str(data), str(trailing)])


def _streams_file(streams) -> bytes:
    out = b"LPSS" + struct.pack("<I", len(streams))
    for b in streams:
        out += struct.pack("<I", len(b)) + b
    return out


def test_slices_are_the_containers_streams(tools, frame_data, tmp_path):
    data, syms = frame_data
    out = tmp_path / "s4.bin"
    P.qemu_count(tools, ["encode", "all", "4", str(data), str(out)])
    got = P.read_streams(out)[1:]
    assert got == encode_streams(syms["y"]["coder"], syms["y"]["sym"], syms["y"]["idx"], 4)
    P.qemu_count(tools, ["decode", "all", "4", str(data), str(out)])


def test_counts_positive_and_stable(tools, frame_data, tmp_path):
    data, _ = frame_data
    base = P.qemu_count(tools, ["load", "all", "1", str(data)])
    a = P.qemu_count(tools, ["encode", "y", "1", str(data)])
    b = P.qemu_count(tools, ["encode", "y", "1", str(data)])
    assert a == b and a - base > 6000 * 10          # deterministic; > 10 instructions per symbol
    half = P.qemu_count(tools, ["encode", "y0", "2", str(data)])
    assert base < half < a                           # half the symbols: fewer instructions


def test_counter_agrees_with_qemu_single_step(tools, tmp_path):
    """count_insns (translation blocks x executions) against qemu's -singlestep mode, where
    every executed instruction is its own block and the exec lines are the count."""
    src = tmp_path / "loop.c"
    src.write_text("#include <stdio.h>\nint main(void){volatile long s=0;for(long i=0;i<20000;i++)s+=i;"
                   "printf(\"%ld\\n\",(long)s);return 0;}\n")
    exe = tmp_path / "loop"
    subprocess.run([P.CROSS_CC, "-O1", "-static", "-o", str(exe), str(src)], check=True)
    log = tmp_path / "log"
    subprocess.run([P.QEMU, "-d", "in_asm,exec,nochain", "-D", str(log), str(exe)], check=True,
                   capture_output=True)
    counted = subprocess.run([str(tools["counter"])], stdin=open(log), capture_output=True, text=True, check=True)
    n_tb = int(counted.stdout.split()[0])
    slog = tmp_path / "slog"
    subprocess.run([P.QEMU, "-singlestep", "-d", "exec,nochain", "-D", str(slog), str(exe)], check=True,
                   capture_output=True)
    n_ss = sum(1 for line in open(slog) if line.startswith("Trace "))
    assert n_ss > 20000 * 3
    assert abs(n_tb - n_ss) <= 1e-3 * n_ss


# -- the command line --------------------------------------------------------------------------
def test_cli_rejects_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        P.main(["--repeat", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--repeat must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="4 photos"):
        P.load_frame([tmp_path / "a.jpg"])
    with pytest.raises(FileNotFoundError, match="frame photo not found"):
        P.load_frame([tmp_path / f"{k}.jpg" for k in range(4)])


def test_render_rebuilds_the_report(tmp_path):
    """--render: md/json rebuilt from the recorded numbers alone, with the same figures."""
    require(RESULTS.is_file(), f"{RESULTS} (python -m licfpga.host.ps_model --out results/board)")
    shutil.copy(RESULTS, tmp_path / "ps_model.json")
    P.main(["--render", "--out", str(tmp_path)])
    new, old = json.loads((tmp_path / "ps_model.json").read_text()), json.loads(RESULTS.read_text())
    assert new["conclusions"] == old["conclusions"]
    assert (tmp_path / "ps_model.md").read_text() == (RESULTS.parent / "ps_model.md").read_text()
