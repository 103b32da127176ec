"""Start-up and many-files benchmark of the ``licfpga`` CLI per install (issue 11;
results/board/startup.md). Not a test: it times, it asserts only that the runs succeeded and
that one call and one call per image wrote the same files.

    python -m licfpga.host.bench_startup [--install board=.venv-board --install main=.venv]
        [--kodak ../shared/data/kodak] [--repeat 5] [--json results/board/startup.json]
        [--venv-install]      # also time a fresh `pip install '.[board]'` venv and its size

Per install (a venv's ``bin/`` with ``licfpga``):

* ``licfpga --help``: wall time (median of ``--repeat`` runs);
* a 1-Mpx (1024x1024) ``licfpga compress --backend integer``: wall time, the codec's own
  encode time (what the CLI prints), start-up = wall - encode; and ``python -X importtime``
  of the same command: total import time and the slowest top-level imports;
* the 24 Kodak images with the integer backend, encode and decode: one call for all
  (``--out-dir``) against one call per image (start-up paid 24 times); the files of the
  two ways, and of every install, are checked equal.

Every figure is wall time and CPU time (user + sys of the child processes: on a shared,
loaded machine the CPU time says more about the work than the wall time); the installs are
measured in turn for each step, so that a change of load hits them alike.

The 1-Mpx image is a mirror-padded shipped sample (host/samples/kodim23.png), made here.
Kodak is the test set: only timed here, nothing tuned on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# a dev tool run from the checkout (it times the checkout's venvs and copies its sources)
ROOT = Path.cwd()


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(cmd, cwd) -> tuple[float, subprocess.CompletedProcess, float]:
    """(wall s, the finished process, its CPU s = user + sys of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=_env(), cwd=cwd)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return dt, r, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def importtime(stderr: str, top: int = 6) -> dict:
    """Parse ``-X importtime`` lines: total (sum of the top-level cumulative times) and the
    slowest top-level imports."""
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)), m.group(4)))
    first = [(us, name) for us, depth, name in rows if depth == 1]
    return {"total_s": sum(us for us, _ in first) / 1e6,
            "slowest": [[name, us / 1e6] for us, name in sorted(first, reverse=True)[:top]]}


def one_mpx_image(path: Path) -> Path:
    import numpy as np
    from PIL import Image

    from licfpga.model.package_data import SAMPLES_DIR

    rgb = np.asarray(Image.open(SAMPLES_DIR / "kodim23.png").convert("RGB"))
    h, w = rgb.shape[:2]
    big = np.pad(rgb, ((0, 1024 - h), (0, 1024 - w), (0, 0)), mode="reflect")
    Image.fromarray(big).save(path)
    return path


def bench_installs(installs: dict, work: Path, kodak: list[Path], repeat: int) -> dict:
    """Every measurement runs for each install in turn (interleaved, so that a change of the
    machine's load hits both alike); wall and CPU (user + sys) seconds are recorded."""
    res = {name: {"bin": str(b)} for name, b in installs.items()}
    img = one_mpx_image(work / "onempx.png")
    for name in installs:
        res[name].update(help_s=[], help_cpu_s=[], compress_1mpx={"wall_s": [], "cpu_s": [], "encode_s": [],
                                                                   "startup_s": []})
    for _ in range(repeat):
        for name, b in installs.items():
            dt, _, cpu = _run([b / "licfpga", "--help"], work)
            res[name]["help_s"].append(dt)
            res[name]["help_cpu_s"].append(cpu)
        for name, b in installs.items():
            dt, r, cpu = _run([b / "licfpga", "compress", img, work / f"{name}-1mpx.lic", "--backend", "integer"], work)
            enc = float(re.search(r"(\d+) ms \(", r.stdout).group(1)) / 1e3
            c = res[name]["compress_1mpx"]
            c["wall_s"].append(dt)
            c["cpu_s"].append(cpu)
            c["encode_s"].append(enc)
            c["startup_s"].append(dt - enc)
    for name, b in installs.items():
        _, r, _ = _run([b / "python", "-X", "importtime", b / "licfpga", "--help"], work)
        res[name]["importtime_help"] = importtime(r.stderr)
        _, r, _ = _run([b / "python", "-X", "importtime", b / "licfpga", "compress", img, work / f"{name}-it.lic",
                        "--backend", "integer"], work)
        res[name]["importtime_compress"] = importtime(r.stderr)
    if not kodak:
        return res

    def one_call(name, b, sub):
        d = work / name / "one"
        if sub == "lic":
            cmd = [b / "licfpga", "compress", *kodak, "--out-dir", d / "lic", "--backend", "integer"]
        else:
            cmd = [b / "licfpga", "decompress", *sorted((d / "lic").glob("*.lic")), "--out-dir", d / "png"]
        dt, _, cpu = _run(cmd, work)
        return dt, cpu

    def per_image(name, b, sub):
        d = work / name / "each"
        (d / sub).mkdir(parents=True)
        wall = cpu = 0.0
        srcs = kodak if sub == "lic" else sorted((d / "lic").glob("*.lic"))
        for p in srcs:
            verb = "compress" if sub == "lic" else "decompress"
            extra = ["--backend", "integer"] if sub == "lic" else []
            dt, _, c = _run([b / "licfpga", verb, p, d / sub / f"{p.stem}.{'lic' if sub == 'lic' else 'png'}", *extra],
                            work)
            wall, cpu = wall + dt, cpu + c
        return wall, cpu

    for name in installs:
        res[name]["kodak"] = {"images": len(kodak)}
    for key, fn, sub in [("encode_one_call", one_call, "lic"), ("encode_per_image", per_image, "lic"),
                         ("decode_one_call", one_call, "png"), ("decode_per_image", per_image, "png")]:
        for name, b in installs.items():
            wall, cpu = fn(name, b, sub)
            res[name]["kodak"][f"{key}_s"] = wall
            res[name]["kodak"][f"{key}_cpu_s"] = cpu
    for name in installs:
        one, each = work / name / "one", work / name / "each"
        for sub in ("lic", "png"):
            for p in sorted((one / sub).iterdir()):
                if p.read_bytes() != (each / sub / p.name).read_bytes():
                    raise SystemExit(f"{name}: one call and one call per image wrote different {p.name}")
        res[name]["kodak"]["bytes"] = sum(p.stat().st_size for p in (one / "lic").iterdir())
    names = list(installs)
    for sub in ("lic", "png"):          # every install wrote the same files
        for p in sorted((work / names[0] / "one" / sub).iterdir()):
            for other in names[1:]:
                if p.read_bytes() != (work / other / "one" / sub / p.name).read_bytes():
                    raise SystemExit(f"{names[0]} and {other} wrote different {p.name}")
    return res


def venv_install(work: Path, python: str) -> dict:
    """A fresh venv with `pip install '.[board]'` from a copy of the sources: time and size."""
    src, venv = work / "src", work / "venv-board-only"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                            "pyproject.toml", "README.md", "host", "model", "overlay"], cwd=ROOT,
                           capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    t0 = time.perf_counter()
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                        f"{src}[board]"], capture_output=True, text=True, env=_env())
    dt = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"pip install '.[board]' failed: {r.stderr[-2000:]}")
    size = int(subprocess.run(["du", "-sk", str(venv)], capture_output=True, text=True).stdout.split()[0]) * 1024
    torch = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True).returncode == 0
    pkgs = json.loads(subprocess.run([str(venv / "bin" / "pip"), "list", "--format", "json",
                                      "--disable-pip-version-check"], capture_output=True, text=True).stdout)
    return {"install_s": dt, "size_bytes": size, "torch_importable": torch, "packages": len(pkgs)}


def du(path: Path) -> int | None:
    if not path.exists():
        return None
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True).stdout.split()[0]) * 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m licfpga.host.bench_startup", description=__doc__.split("\n\n")[0])
    ap.add_argument("--install", action="append", default=None, metavar="NAME=VENV",
                    help="an install to time (default: board=.venv-board main=.venv)")
    ap.add_argument("--kodak", default=str(ROOT.parent / "shared" / "data" / "kodak"),
                    help="folder of the 24 Kodak PNGs ('' skips the Kodak timing)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--venv-install", action="store_true", help="also time a fresh `pip install '.[board]'` venv")
    ap.add_argument("--json", default=None, help="write the figures here")
    a = ap.parse_args(argv)
    if not (ROOT / "pyproject.toml").is_file() or not (ROOT / "host").is_dir():
        raise SystemExit("run it from the licfpga checkout (the folder with pyproject.toml)")
    installs = dict(s.split("=", 1) for s in (a.install or ["board=.venv-board", "main=.venv"]))
    kodak = sorted(Path(a.kodak).glob("*.png")) if a.kodak else []
    if a.kodak and len(kodak) != 24:
        raise SystemExit(f"expected the 24 Kodak PNGs in {a.kodak}, found {len(kodak)}")
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    res = {"commit": commit, "load_before": os.getloadavg(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
           "installs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bins = {name: (ROOT / venv / "bin").resolve() for name, venv in installs.items()}
        print(f"== {', '.join(f'{n}: {b}' for n, b in bins.items())}", file=sys.stderr)
        res["installs"] = bench_installs(bins, work, kodak, a.repeat)
        for name, venv in installs.items():
            res["installs"][name]["size_bytes"] = du((ROOT / venv).resolve())
        if a.venv_install:
            print("== fresh pip install '.[board]'", file=sys.stderr)
            res["board_only_venv"] = venv_install(work, sys.executable if "board" not in installs else
                                                  str((ROOT / installs["board"]).resolve() / "bin" / "python"))
    res["load_after"] = os.getloadavg()
    text = json.dumps(res, indent=1)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text + "\n")
    print(summary(res))
    return 0


def summary(res: dict) -> str:
    med = statistics.median
    lines = ["| install | `--help` wall (CPU) | import time (`--help`) | 1-Mpx compress wall (CPU) | of which encode | "
             "start-up = wall - encode | import time (compress) |", "|---|---|---|---|---|---|---|"]
    for name, r in res["installs"].items():
        c = r["compress_1mpx"]
        lines.append(f"| {name} | {med(r['help_s']):.3f} s ({med(r['help_cpu_s']):.3f} s) | "
                     f"{r['importtime_help']['total_s']:.3f} s | {med(c['wall_s']):.2f} s ({med(c['cpu_s']):.2f} s) | "
                     f"{med(c['encode_s']):.2f} s | {med(c['startup_s']):.2f} s (max {max(c['startup_s']):.2f} s) | "
                     f"{r['importtime_compress']['total_s']:.3f} s |")
    if any("kodak" in r for r in res["installs"].values()):
        lines += ["", "| install | encode, one call | encode, 24 calls | decode, one call | decode, 24 calls |",
                  "|---|---|---|---|---|"]
        for name, r in res["installs"].items():
            k = r.get("kodak")
            if k:
                cells = [f"{k[f'{m}_s']:.1f} s wall, {k[f'{m}_cpu_s']:.1f} s CPU"
                         for m in ("encode_one_call", "encode_per_image", "decode_one_call", "decode_per_image")]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
