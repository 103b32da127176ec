"""Package structure (issue 13): one codec interface with the float and integer backends as
peers, a torch-free runtime, no import cycle, the runtime apart from evaluation code, one
place for the stride / shipped files / padding, package data through importlib.resources,
and a non-editable install that finds its data (docs/structure.md)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"licfpga.host": ROOT / "host", "licfpga.model": ROOT / "model",
           "licfpga.model.golden": ROOT / "model" / "golden", "licfpga.overlay": ROOT / "overlay"}
# the runtime: what compressing / decompressing a file needs (docs/structure.md)
RUNTIME = ["licfpga.host.container", "licfpga.host.codec_base", "licfpga.host.backends", "licfpga.host.codec",
           "licfpga.host.integer_codec", "licfpga.host.entropy_coder", "licfpga.host.pynq_driver",
           "licfpga.host.images", "licfpga.model.geometry", "licfpga.model.package_data",
           "licfpga.model.golden.network", "licfpga.model.golden.gdn"]
TORCH_FREE = [m for m in RUNTIME if m != "licfpga.host.codec"]
EVALUATION = ["licfpga.host.evaluate", "licfpga.host.classical", "licfpga.host.students", "licfpga.host.bench",
              "licfpga.host.demo", "licfpga.host.rd", "licfpga.host.metrics"]


def module_file(name: str) -> Path:
    pkg, _, leaf = name.rpartition(".")
    return FOLDERS[pkg] / f"{leaf}.py"


def imports_of(name: str, top_level_only: bool = False) -> set[str]:
    """licfpga modules and third-party top-level packages ``name`` imports (anywhere in the
    file, or only at module level), relative imports resolved."""
    tree = ast.parse(module_file(name).read_text())
    pkg = name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module
            out.add(mod)
            for a in node.names:        # `from . import gdn`: a module of the package
                if f"{mod}.{a.name}".rpartition(".")[0] in FOLDERS and module_exists(f"{mod}.{a.name}"):
                    out.add(f"{mod}.{a.name}")
    return out


def module_exists(name: str) -> bool:
    pkg, _, _ = name.rpartition(".")
    return pkg in FOLDERS and module_file(name).is_file()


def licfpga_imports(name: str, top_level_only: bool = False) -> set[str]:
    return {m for m in imports_of(name, top_level_only) if module_exists(m)}


def all_modules() -> list[str]:
    return sorted(f"{pkg}.{p.stem}" for pkg, d in FOLDERS.items() for p in d.glob("*.py") if p.stem != "__init__")


def closure(start: list[str], top_level_only: bool = False) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(licfpga_imports(m, top_level_only))
    return seen


# ---- one codec interface, backends as peers, no cycle ------------------------------------------
def test_base_module_imports_neither_backend_nor_torch():
    deps = closure(["licfpga.host.codec_base"])        # lazy imports included
    assert "licfpga.host.codec" not in deps and "licfpga.host.integer_codec" not in deps
    assert "licfpga.host.backends" not in deps
    third = set().union(*(imports_of(m) for m in deps))
    assert not {m for m in third if m.split(".")[0] in ("torch", "compressai", "torchvision")}


def test_backends_are_peers():
    assert "licfpga.host.integer_codec" not in imports_of("licfpga.host.codec")
    assert "licfpga.host.codec" not in imports_of("licfpga.host.integer_codec")
    from licfpga.host.codec import Codec
    from licfpga.host.codec_base import BaseCodec
    from licfpga.host.integer_codec import FpgaIntegerCodec, IntegerCodec

    assert Codec.__bases__ == (BaseCodec,) and IntegerCodec.__bases__ == (BaseCodec,)
    assert issubclass(FpgaIntegerCodec, IntegerCodec)


def test_no_import_cycle_among_licfpga_modules():
    """Module-level imports between licfpga modules form no cycle (the peers and the base
    module are checked with lazy imports too, above)."""
    graph = {m: licfpga_imports(m, top_level_only=True) - {m} for m in all_modules()}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in graph.get(m, ()):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_backend_chosen_by_what_the_file_names_not_a_prefix():
    src = "\n".join(p.read_text() for p in (ROOT / "host").glob("*.py"))
    assert not re.search(r"startswith\(\s*[\"']int-", src)
    assert "INTEGER_MODEL_PREFIX" not in src
    from licfpga.host.codec import Codec
    from licfpga.host.integer_codec import IntegerCodec, parse_model_id

    iid = 'int-hyperprior{"M":48,"N":30,"Nh":30}'
    assert parse_model_id(iid) == ("hyperprior", {"M": 48, "N": 30, "Nh": 30})
    assert IntegerCodec.recognises(iid) and not Codec.recognises(iid)
    fid = 'mean-scale{"M":96,"N":64}'
    assert Codec.recognises(fid) and not IntegerCodec.recognises(fid)
    for bad in ('int-hyperprior{"M":48}', 'int-hyperprior{"M":48,"N":30,"Nh":-1}', 'int-mean-scale{"M":1,"N":1,"Nh":1}',
                'int-hyperprior{"N":30,"M":48,"Nh":30}', "int-", "int-student-0.013", 'nope{"N":1}', "mean-scale"):
        assert not IntegerCodec.recognises(bad) and not Codec.recognises(bad), bad


def _run_isolated(code: str, **kw) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter with torch, torchvision and CompressAI unimportable."""
    shim = ("import sys\nfor m in ('torch', 'torchvision', 'compressai', 'brevitas'):\n    sys.modules[m] = None\n")
    return subprocess.run([sys.executable, "-c", shim + code], capture_output=True, text=True, timeout=300, **kw)


def test_runtime_imports_and_round_trips_without_torch():
    """The board runtime: container, base codec, selector, integer codec, entropy coder, PYNQ
    driver import with torch and CompressAI unimportable, and an integer file round-trips
    (and is picked by the selector) without them."""
    code = f"""
import importlib, numpy as np
for m in {TORCH_FREE!r}:
    importlib.import_module(m)
from licfpga.host.backends import codec_for_file
from licfpga.host.integer_codec import IntegerCodec
c = IntegerCodec('int-student-0.013')
rgb = (np.arange(70 * 90 * 3) % 251).astype(np.uint8).reshape(70, 90, 3)
data = c.encode(rgb)
d = codec_for_file(data)
px, layout = d.decode(data)
assert type(d) is IntegerCodec and px.shape == rgb.shape and layout == 'rgb'
assert sys.modules['torch'] is None and 'licfpga.host.codec' not in sys.modules
print('ok', len(data))
"""
    r = _run_isolated(code, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-3000:]


def test_float_backend_does_need_torch():
    """The shim works: the float backend fails to import without torch (so the test above
    proves something)."""
    r = _run_isolated("import licfpga.host.codec", cwd=ROOT)
    assert r.returncode != 0 and "torch" in r.stderr


# ---- the runtime apart from evaluation -------------------------------------------------------
def test_runtime_imports_no_evaluation_module():
    deps = closure(RUNTIME)               # lazy imports included
    assert not deps & set(EVALUATION), sorted(deps & set(EVALUATION))


# ---- one place for the stride, the shipped files, the padding ---------------------------------
def test_stride_and_padding_in_one_place():
    from licfpga.host.codec_base import check_tile
    from licfpga.host.integer_codec import IntegerCodec
    from licfpga.model import geometry
    from licfpga.overlay import plan

    assert plan.SIZE_MULTIPLE == geometry.STRIDE and plan.pad(1080) == geometry.padded(1080) == 1088
    assert IntegerCodec("int-student-0.013").stride == geometry.STRIDE
    assert check_tile(128) == (128, 128)
    with pytest.raises(ValueError):
        check_tile(96)
    x = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    p = geometry.pad_to_stride(x, 4)
    assert p.shape == (8, 8, 3) and (p[5:, :7] == x[4]).all() and (p[:5, 7] == x[:, 6]).all()
    assert geometry.pad_to_stride(p, 4) is p
    # no other module pads to the stride itself or spells the stride as a literal (layers.py
    # pads attention features to its window, not images to the stride)
    offenders = []
    for m in all_modules():
        if m in ("licfpga.model.geometry", "licfpga.model.layers", "licfpga.host.faults", "licfpga.host.fuzz"):
            continue
        src = module_file(m).read_text()
        if re.search(r"mode=[\"'](edge|replicate)[\"']", src) or re.search(r"(%|//) ?64\b", src):
            offenders.append(m)
    assert not offenders, offenders


def test_shipped_files_in_one_place_and_read_as_package_data():
    from licfpga.host import demo, integer_codec
    from licfpga.model import checkpoint, package_data, train

    assert checkpoint.SHIPPED_DIR is package_data.SHIPPED_DIR is integer_codec.ARTIFACT_DIR
    assert train.VAL_SPLIT is package_data.VAL_SPLIT and demo.SAMPLES is package_data.SAMPLES_DIR
    # no runtime or model module finds files relative to its own source (overlay/ reads the
    # repository's vivado/ and hls/ folders, which are not installed; fuzz/faults/ps_model are dev tools)
    allowed = {"licfpga.host.fuzz", "licfpga.host.faults", "licfpga.host.ps_model"}
    users = [m for m in all_modules() if not m.startswith("licfpga.overlay") and m not in allowed
             and "__file__" in module_file(m).read_text()]
    assert not users, users


def test_package_data_globs_cover_shipped_files():
    """Every file the runtime reads from the package folders is matched by pyproject.toml's
    [tool.setuptools.package-data] globs."""
    import fnmatch
    import tomllib

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    tracked = subprocess.run(["git", "ls-files", "model/checkpoints", "model/data", "host/samples"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    assert any(t.endswith("val_split.txt") for t in tracked) and any(t.endswith(".npz") for t in tracked)
    for t in tracked:
        pkg, rel = ("licfpga.host", t[len("host/"):]) if t.startswith("host/") else ("licfpga.model", t[len("model/"):])
        assert any(fnmatch.fnmatch(rel, g) for g in globs[pkg]), f"{t} is read at run time but not package data"


# ---- a non-editable install -------------------------------------------------------------------
@pytest.mark.slow
def test_non_editable_install_finds_its_data(tmp_path):
    """``pip install --no-deps --target`` (the C extension built by setuptools), then from an
    unrelated folder, with the source tree off the path: the shipped artifacts, checkpoints,
    validation split and samples are found and an integer file round-trips."""
    target, build = tmp_path / "site", tmp_path / "src"
    # copy the source tree (tracked + new files, no build outputs, no .venv): the build must not touch the checkout
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("tests/", "results/", "docs/")):
            dst = build / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                        "--quiet", "--target", str(target), str(build)],
                       capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert list((target / "licfpga" / "host").glob("_rans*.so"))
    code = """
import sys, numpy as np
import licfpga.host.integer_codec as ic
from licfpga.model import package_data as pd, checkpoint, train
from licfpga.host.backends import codec_for_file
from licfpga.host.images import load_image
target = sys.argv[1]
for p in (ic.__file__, pd.SHIPPED_DIR, pd.VAL_SPLIT, pd.SAMPLES_DIR):
    assert str(p).startswith(target), p
assert {a.stem for a in ic.shipped_artifacts()} >= {'int-student-0.013'}
assert {c.stem for c in checkpoint.shipped_checkpoints()} >= {'mean-scale-0.013', 'student-0.013'}
assert (pd.QAT_DIR / 'qat-student-0.013.pt').is_file()
assert len(train.validation_names()) > 0
rgb, _ = load_image(sorted(pd.SAMPLES_DIR.glob('*.png'))[0])
rgb = np.ascontiguousarray(rgb[:96, :128])
data = ic.IntegerCodec('int-student-0.013').encode(rgb)
px, _ = codec_for_file(data).decode(data)
assert px.shape == rgb.shape
print('ok')
"""
    site = sysconfig.get_paths()["purelib"]          # the dependencies (numpy, Pillow ...)
    env["PYTHONPATH"] = os.pathsep.join([str(target), site])
    # -S: no .pth files, so the editable install's finder (which maps licfpga to this
    # checkout) is not active; the dependencies come from site-packages on PYTHONPATH
    r = subprocess.run([sys.executable, "-S", "-c", code, str(target)], capture_output=True, text=True,
                       timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
