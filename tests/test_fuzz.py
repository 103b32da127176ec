"""Fuzzing (host/fuzz.py): the harness' mutator, the inputs the fuzzer found (regressions),
and a CI smoke run of the coverage-guided fuzzer over the parser and both decoders."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from licfpga.host.container import ContainerError, LicFile, Tile, pack, unpack
from licfpga.host.fuzz import LicMutator, LicStruct, fix_crc

ROOT = Path(__file__).resolve().parents[1]
REGRESSIONS = ROOT / "tests" / "data" / "fuzz_regressions"


def _file(tiles: int = 2) -> bytes:
    return pack(LicFile('mean-scale{"M":96}', bytes(range(32)), 64 * tiles, 40, 0, 64, 2,
                        [Tile((1, 1), [bytes([k]) * 5, b"\x07\x08"], k) for k in range(tiles)]))


def test_lic_struct_parses_and_rewrites_files_byte_for_byte():
    for n in (1, 2, 6):
        data = _file(n)
        s = LicStruct.parse(data)
        assert s is not None and len(s.tiles) == n
        assert s.serialize() == data
    assert LicStruct.parse(b"LICF") is None


def test_mutator_gets_past_the_crc_and_reaches_header_and_payloads():
    """The custom mutator changes both the header and the payloads and (mostly) re-packs
    with a valid CRC32, so the decoders are fuzzed behind the checksum."""
    seed = _file(2)
    mut = LicMutator(target="float")
    ref = LicStruct.parse(seed)
    valid_crc = header = payload = 0
    rng = random.Random(1)
    for _ in range(2000):
        out = mut.mutate(seed, 4096, rng.getrandbits(32))
        valid_crc += len(out) >= 4 and zlib.crc32(out[:-4]) == int.from_bytes(out[-4:], "little")
        s = LicStruct.parse(out)
        if s is None:
            continue
        payload += [p for t in s.tiles for p in t.payloads] != [p for t in ref.tiles for p in t.payloads]
        header += (s.width, s.height, s.tile, s.groups, s.mid, [(t.lh, t.lw, t.icrc) for t in s.tiles]) != (
            ref.width, ref.height, ref.tile, ref.groups, ref.mid, [(t.lh, t.lw, t.icrc) for t in ref.tiles])
    assert valid_crc > 1700 and header > 300 and payload > 600, (valid_crc, header, payload)
    # the crossover keeps files parseable too
    out = mut.crossover(_file(2), _file(6), 4096, 5)
    assert LicStruct.parse(out) is not None


# ---- regressions: inputs the fuzzer found (tests/data/fuzz_regressions/README.md) -------------
@pytest.fixture(scope="module")
def codecs():
    from licfpga.host.fuzz import load_codec

    return {"float": load_codec("float"), "integer": load_codec("integer")}


def _regressions():
    return sorted(REGRESSIONS.glob("*.lic"))


@pytest.mark.parametrize("path", _regressions(), ids=lambda p: p.stem)
def test_fuzz_regression_is_a_clear_error(path, codecs):
    """Each reproducer (a crash, hang, unexpected exception or wrong output when it was
    found): the parser rejects it with ContainerError or accepts a canonical file, and both
    decoders reject it with ContainerError, promptly."""
    data = path.read_bytes()
    assert zlib.crc32(data[:-4]) == int.from_bytes(data[-4:], "little"), "reproducers carry a valid CRC"
    try:
        f = unpack(data)
    except ContainerError:
        pass
    else:
        assert pack(f) == data
    for name, codec in codecs.items():
        t0 = time.perf_counter()
        with pytest.raises(ContainerError):
            codec.decode(data)
        assert time.perf_counter() - t0 < 10, f"{name} took {time.perf_counter() - t0:.1f} s"


def test_regression_folder_is_not_empty():
    assert _regressions(), REGRESSIONS


# ---- the fuzzer itself ------------------------------------------------------------------------
def _need_atheris():
    if importlib.util.find_spec("atheris") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("required in CI: atheris (pip install -e '.[test]')", pytrace=False)
        pytest.skip("atheris not installed (pip install -e '.[test]')")


def run_fuzzer(out: Path, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, dict]:
    cmd = [sys.executable, "-m", "licfpga.host.fuzz", "--out", str(out), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    rep = out / "fuzz.json"
    assert rep.exists(), f"fuzzer wrote no report:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    return p, json.loads(rep.read_text())


def _describe(rep: dict) -> str:
    lines = []
    for t in rep["targets"]:
        lines.append(f"{t['target']}: " + ", ".join(f"{k} {t[k]}" for k in (
            "executed", "crashes", "hangs", "unexpected", "bad_output", "ooms")))
        lines += [f"  {k}: {v}" for k, v in t["findings"].items()]
        lines += [f"  saved {f}" for f in t["finding_files"] + t["artifacts"]]
    return "\n".join(lines)


@pytest.mark.slow
def test_fuzz_smoke(tmp_path):
    """About two minutes of coverage-guided fuzzing of the container parser and both
    decoders (CI has 2 cores): no crash, hang, unexpected exception or wrong output."""
    _need_atheris()
    p, rep = run_fuzzer(tmp_path, "--target", "all", "--max-time", "75", "--split", "container=1,float=2,integer=2",
                        "--timeout-ms", "5000", "--rss-mb", "3072", "--no-coverage")
    tot = rep["total"]
    findings = {k: tot[k] for k in ("crashes", "hangs", "unexpected", "bad_output", "ooms")}
    assert findings == dict.fromkeys(findings, 0), _describe(rep)
    ran = {t["target"]: t["executed"] for t in rep["targets"]}
    assert set(ran) == {"container", "float", "integer"}
    assert ran["container"] >= 2000 and ran["float"] >= 200 and ran["integer"] >= 200, ran
    assert p.returncode == 0, p.stdout[-2000:]
