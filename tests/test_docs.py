"""The front door stays true: README.md, docs/ and the results files cannot drift apart.

* the claims ledger (docs/verification.md): every test path it names exists, and every
  ``::name`` is a test function defined in that file;
* every docs/ link in README.md (and every relative link inside docs/) resolves to a file,
  and an ``#anchor`` into a Markdown file to one of its headings;
* README.md is at most 10 KB and still starts with ``make demo`` / ``make test``;
* the headline numbers README.md quotes equal the results files they come from (FINN
  1080p30 totals, the students table, the Kodak BD-rates and JPEG points);
* every results folder records the command and commit that produced it;
* the teacher's parameter count the docs state is the shipped checkpoint's.

Each check is a function returning a list of problems, so ``test_checks_catch_mutations``
can feed it a mutated copy (a wrong number, a missing path) and see it fail.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
LEDGER = DOCS / "verification.md"
MAX_README_BYTES = 10_000
# results folders written by others' tools with their own provenance notes
RESULTS_EXEMPT = {"fuzz", "faults", "training"}

TEST_REF = re.compile(r"`(tests/[\w/.-]+\.py)(?:::(\w+))?`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")   # hex with a letter and a digit


def _norm(text: str) -> str:
    """Unicode minus and thin spaces as ASCII, for number comparisons."""
    return text.replace("−", "-").replace("\u2009", " ").replace("\u202f", " ")


# ---- the claims ledger ---------------------------------------------------------------------
def ledger_rows(text: str) -> list[list[str]]:
    """Rows of the ledger table: cells of every ``| <number> | ...`` line."""
    rows = []
    for line in text.splitlines():
        if re.match(r"^\|\s*\d+\s*\|", line):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def defines(path: Path, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def {re.escape(name)}\s*\(", path.read_text(), re.M) is not None


def check_test_refs(text: str, root: Path = ROOT) -> list[str]:
    """Every `tests/x.py` exists; every `tests/x.py::name` defines ``name``."""
    problems = []
    for path, name in TEST_REF.findall(text):
        f = root / path
        if not f.is_file():
            problems.append(f"{path}: no such file")
        elif name and not defines(f, name):
            problems.append(f"{path}::{name}: no such function in the file")
    return problems


def check_ledger(text: str, root: Path = ROOT) -> list[str]:
    rows = ledger_rows(text)
    problems = [] if rows else ["no ledger rows found"]
    for r in rows:
        if len(r) != 5:
            problems.append(f"row {r[0]}: {len(r)} cells, expected 5 (#, claim, checked by, scope, not covered)")
            continue
        if not r[2] or r[2] == "—":
            problems.append(f"row {r[0]}: nothing checks '{r[1][:60]}'")
    numbers = [int(r[0]) for r in rows]
    if numbers != list(range(1, len(rows) + 1)):
        problems.append(f"rows are not numbered 1..{len(rows)}")
    return problems + check_test_refs(text, root)


def test_ledger_test_paths_exist():
    text = LEDGER.read_text()
    assert len(ledger_rows(text)) >= 30
    assert check_ledger(text) == []


def test_test_paths_named_in_readme_and_docs_exist():
    for f in [README, *sorted(DOCS.glob("*.md"))]:
        assert check_test_refs(f.read_text()) == [], f


# ---- links ---------------------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return s.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.*)$", md.read_text(), re.M)}


def check_links(text: str, base: Path, only_docs: bool = False) -> list[str]:
    problems = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+://", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        if only_docs and not path.startswith("docs/"):
            continue
        f = (base / path).resolve()
        if not f.exists():
            problems.append(f"{target}: {path} does not exist")
        elif anchor and f.suffix == ".md" and anchor not in anchors(f):
            problems.append(f"{target}: no heading #{anchor} in {path}")
    return problems


def test_readme_docs_links_resolve():
    text = README.read_text()
    assert re.findall(r"\]\(docs/", text), "README.md links no docs/ page"
    assert check_links(text, ROOT, only_docs=True) == []
    assert check_links(text, ROOT) == []          # and every other relative link


def test_docs_links_resolve():
    for f in sorted(DOCS.glob("*.md")):
        assert check_links(f.read_text(), f.parent) == [], f


# ---- README size and first commands --------------------------------------------------------
def check_readme_front(text: str) -> list[str]:
    problems = []
    if len(text.encode()) > MAX_README_BYTES:
        problems.append(f"README.md is {len(text.encode())} bytes, above {MAX_README_BYTES}")
    block = re.search(r"```\w*\n(.*?)```", text, re.S)
    cmds = [ln.split("#")[0].strip() for ln in (block.group(1).splitlines() if block else []) if ln.strip()]
    if cmds[:2] != ["make demo", "make test"]:
        problems.append(f"the README's first commands are {cmds[:2]}, not make demo / make test")
    return problems


def test_readme_is_short_and_starts_with_the_two_commands():
    assert check_readme_front(README.read_text()) == []


# ---- headline numbers vs results files -----------------------------------------------------
def table_row(text: str, *labels: str) -> list[str] | None:
    """Cells of the first Markdown table row whose leading cells start with ``labels``."""
    for line in _norm(text).splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= len(labels) and all(c.lower().startswith(lab.lower()) for c, lab in zip(cells, labels)):
            return cells
    return None


def finn_totals(md: str) -> dict[str, dict]:
    """results/finn/<board>_1080p30.md side totals: fps and percentages per side."""
    out = {}
    for side in ("encoder", "decoder"):
        row = next(([c for c in ln.strip().strip("|").split("|")] for ln in md.splitlines()
                    if re.match(rf"^\|\s*\w+\s*\|\s*{side}\b", ln)), None)
        if row is None:
            continue
        cells = [c.strip() for c in row]
        out[side] = {"fps": cells[2], "pct": re.findall(r"\((\d+)%\)", "|".join(cells[3:]))}
    return out


def check_finn_numbers(readme: str, root: Path = ROOT) -> list[str]:
    problems = []
    for board, name in (("kv260", "KV260"), ("zcu102", "ZCU102")):
        res = finn_totals((root / "results" / "finn" / f"{board}_1080p30.md").read_text())
        if set(res) != {"encoder", "decoder"}:
            problems.append(f"results/finn/{board}_1080p30.md: side totals not found")
            continue
        for side, want in res.items():
            row = table_row(readme, name, side)
            if row is None:
                problems.append(f"README: no table row '{name} | {side}'")
                continue
            got_fps = re.findall(r"\d+\.\d+", row[2])
            got_pct = re.findall(r"(\d+)\s*%", " ".join(row[3:]))
            if got_fps[:1] != [want["fps"]]:
                problems.append(f"README {name} {side}: fps {got_fps[:1]} vs results {want['fps']}")
            if got_pct != want["pct"]:
                problems.append(f"README {name} {side}: resources {got_pct} % vs results {want['pct']} %")
    return problems


def test_readme_finn_numbers_match_results():
    assert check_finn_numbers(README.read_text()) == []


STUDENT_CURVE = "integer hyperprior N30/M48 (ours)"      # in results/students_campaign/summary.json
TEACHER_CURVE = "mean-scale N64/M96 (ours)"              # in results/kodak/summary.json


def check_student_numbers(readme: str, root: Path = ROOT) -> list[str]:
    """The deployed integer student's row (results/students_campaign, one licfpga eval run with
    JPEG and HEIF), its BD-rate vs JPEG, its MS-SSIM BD-rate vs the teacher (recomputed here from the
    two runs' curves, same 24 images) and the MACs ratio (results/students, architecture only)."""
    from licfpga.host.rd import bd_rate

    problems = []
    camp = root / "results" / "students_campaign"
    cur = json.loads((camp / "summary.json").read_text())["curves"]
    s = cur[STUDENT_CURVE]["results"]
    t = json.loads((root / "results" / "kodak" / "summary.json").read_text())["curves"][TEACHER_CURVE]["results"]
    for label, r in (("integer student", s), ("teacher", t)):
        row = table_row(readme, label)
        if row is None:
            problems.append(f"README: no table row '{label}'")
            continue
        line = " | ".join(row)
        for what, want in (("bpp", " / ".join(f"{b:.3f}" for b in r["bpp"])),
                           ("PSNR", " / ".join(f"{p:.2f}" for p in r["psnr-rgb"]))):
            if want not in line:
                problems.append(f"README '{label}': {what} should read {want}")
    bd = kodak_bd_vs_jpeg((camp / "summary.md").read_text())[STUDENT_CURVE]
    row = table_row(readme, "integer student")
    if row is not None and bd.replace(" ", "") not in " ".join(row).replace(" ", ""):
        problems.append(f"README 'integer student': BD-rate vs JPEG should read {bd} (results/students_campaign/summary.md)")
    # in MS-SSIM: the PSNR curves do not overlap (the student tops out below the teacher's lowest point)
    vs_teacher = f"{bd_rate(t['bpp'], t['ms-ssim-rgb-db'], s['bpp'], s['ms-ssim-rgb-db']):+.1f} %"
    text = _norm(readme)
    if vs_teacher not in text:
        problems.append(f"README: the integer student's BD-rate (MS-SSIM) vs the teacher should read {vs_teacher}")
    table = {r["label"]: r for r in json.loads((root / "results" / "students" / "summary.json").read_text())["summary"]["table"]}
    integer, teacher = table["integer model (golden, real files)"], table["teacher (float, mean-scale N=64/M=96)"]
    macs = (integer["encoder"] + integer["decoder"]) / (teacher["encoder"] + teacher["decoder"])
    if f"{macs:.3f}×" not in text and f"{macs:.3f}x" not in text:
        problems.append(f"README: the student's MACs ratio should read {macs:.3f}×")
    return problems


def test_readme_student_numbers_match_results():
    assert check_student_numbers(README.read_text()) == []


KODAK_ROWS = {   # README row label -> codec in results/kodak/summary.md
    "teacher": "mean-scale N64/M96 (ours)",
    "WebP": "WebP",
    "HEVC": "HEVC intra (HEIF)",
}


def kodak_bd_vs_jpeg(md: str) -> dict[str, str]:
    sec = _norm(md).split("BD-rate vs jpeg", 1)[1].split("BD-rate vs", 1)[0]
    return {c[0]: c[1] for c in ([x.strip() for x in ln.strip().strip("|").split("|")] for ln in sec.splitlines()
                                 if ln.startswith("| ") and "%" in ln)}


def kodak_points(md: str, codec: str) -> dict[str, tuple[str, str]]:
    """quality -> (bpp, PSNR) of one codec in results/kodak/summary.md."""
    out = {}
    for ln in md.splitlines():
        c = [x.strip() for x in ln.strip().strip("|").split("|")]
        if len(c) >= 4 and c[0] == codec:
            out[c[1]] = (c[2], c[3])
    return out


def check_kodak_numbers(readme: str, root: Path = ROOT) -> list[str]:
    md = (root / "results" / "kodak" / "summary.md").read_text()
    bd = kodak_bd_vs_jpeg(md)
    problems = []
    for ours, theirs in KODAK_ROWS.items():
        row = table_row(readme, ours)
        if row is None:
            problems.append(f"README: no table row '{ours}'")
        elif bd[theirs].replace(" ", "") not in " ".join(row).replace(" ", ""):
            problems.append(f"README '{ours}': BD-rate vs JPEG should read {bd[theirs]} (results/kodak/summary.md)")
    # the JPEG points the README compares the deployed student with
    jpeg = kodak_points(md, "JPEG (4:2:0)")
    row = table_row(readme, "JPEG")
    if row is None:
        problems.append("README: no table row 'JPEG'")
    else:
        line = " | ".join(row)
        for q in ("quality 10", "quality 20"):
            b, p = jpeg[q]
            if b not in line or p not in line:
                problems.append(f"README JPEG row: {q} should read {b} bpp / {p} dB (results/kodak/summary.md)")
    return problems


def test_readme_kodak_numbers_match_results():
    assert check_kodak_numbers(README.read_text()) == []


# ---- provenance of the results folders -----------------------------------------------------
def _commits_exist(text: str, where: str, root: Path) -> list[str]:
    if not (root / ".git").exists():
        return []
    problems = []
    for c in sorted(set(COMMIT.findall(text))):
        r = subprocess.run(["git", "cat-file", "-e", f"{c}^{{commit}}"], cwd=root, capture_output=True)
        if r.returncode:
            problems.append(f"{where}: {c} is not a commit of this repository")
    return problems


def check_provenance(root: Path = ROOT) -> list[str]:
    """results/README.md has a row per results folder naming its command and commit; every
    folder has its own README.md; every commit named exists."""
    index = root / "results" / "README.md"
    if not index.is_file():
        return ["results/README.md (the provenance index) is missing"]
    rows = {}
    for line in index.read_text().splitlines():
        m = re.match(r"^\|\s*`([\w-]+)/`\s*\|", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in line.strip().strip("|").split("|")]
    problems = _commits_exist(index.read_text(), "results/README.md", root)
    for d in sorted(p for p in (root / "results").iterdir() if p.is_dir() and p.name not in RESULTS_EXEMPT):
        row = rows.get(d.name)
        if row is None:
            problems.append(f"results/README.md: no row for {d.name}/")
        elif len(row) < 4 or not re.search(r"`[^`]+`", row[2]) or not COMMIT.search(row[3]):
            problems.append(f"results/README.md, {d.name}/: the row must name a command and a commit")
        note = d / "README.md"
        if not note.is_file():
            problems.append(f"results/{d.name}: no README.md saying how it was made")
        else:
            problems += _commits_exist(note.read_text(), f"results/{d.name}/README.md", root)
    return problems


def test_results_folders_record_command_and_commit():
    assert check_provenance() == []


# ---- the teacher's parameter count ---------------------------------------------------------
def test_teacher_parameter_count():
    """One number in the docs, with what it counts: every nn.Parameter of the shipped teacher
    including the entropy bottleneck's quantiles (buffers such as CDF tables are not
    parameters); the students table counts without the quantiles."""
    from licfpga.model.checkpoint import SHIPPED_DIR, load_model

    model, _ = load_model(SHIPPED_DIR / "mean-scale-0.013.pt", update=False)
    total = sum(p.numel() for p in model.parameters())
    quantiles = sum(p.numel() for n, p in model.named_parameters() if n.endswith("quantiles"))
    assert (total, total - quantiles) == (1_764_499, 1_764_307)
    doc = (DOCS / "models-and-training.md").read_text()
    assert f"**{total:,}**" in doc and f"{total - quantiles:,}" in doc
    students = json.loads((ROOT / "results" / "students" / "summary.json").read_text())
    assert students["info"]["teacher (float, mean-scale N=64/M=96)"]["params"] == total - quantiles


# ---- every check above can fail ------------------------------------------------------------
def _mutate(text: str, old: str, new: str) -> str:
    assert old in text, f"mutation target {old!r} not in the text"
    return text.replace(old, new, 1)


def test_checks_catch_mutations(tmp_path):
    readme, ledger = README.read_text(), LEDGER.read_text()
    # a test path that does not exist, a function that is not defined, an unnumbered row
    assert check_ledger(ledger + "\n| 999 | x | `tests/test_nope.py` | s | n |\n")
    path, name = next(ref for ref in TEST_REF.findall(ledger) if ref[1])
    assert check_ledger(_mutate(ledger, f"`{path}::{name}`", f"`{path}::{name}_gone`"))
    assert check_ledger(_mutate(ledger, "| 2 |", "| 3 |"))
    # a docs link to nowhere, an anchor to nowhere
    assert check_links(readme + "\n[x](docs/nowhere.md)\n", ROOT, only_docs=True)
    assert check_links(readme + "\n[x](docs/format.md#no-such-heading)\n", ROOT)
    # a README over 10 KB; make demo no longer first
    assert check_readme_front(readme + "x" * MAX_README_BYTES)
    assert check_readme_front(readme.replace("make demo", "make demos", 1))
    # a wrong headline number: FINN DSP share, a student PSNR, a Kodak BD-rate, a JPEG point
    assert check_finn_numbers(_mutate(_norm(readme), "(59 %)", "(60 %)"))
    assert check_student_numbers(_mutate(_norm(readme), "/ 28.82 /", "/ 28.83 /"))
    assert check_student_numbers(_mutate(_norm(readme), "+15.7 %", "+14.7 %"))
    assert check_kodak_numbers(_mutate(_norm(readme), "-36.3 %", "-35.3 %"))
    assert check_kodak_numbers(_mutate(_norm(readme), "/ 29.14", "/ 29.41"))
    # ... or a results file that changed under the README
    for sub in ("finn", "students", "kodak"):
        (tmp_path / "results" / sub).mkdir(parents=True)
    finn = (ROOT / "results/finn/kv260_1080p30.md").read_text()
    (tmp_path / "results/finn/kv260_1080p30.md").write_text(_mutate(finn, "739 (59%)", "739 (60%)"))
    (tmp_path / "results/finn/zcu102_1080p30.md").write_text((ROOT / "results/finn/zcu102_1080p30.md").read_text())
    assert check_finn_numbers(readme, tmp_path)
    # a results folder without a provenance note or index row, a commit that does not exist
    assert check_provenance(tmp_path) == ["results/README.md (the provenance index) is missing"]
    index = (ROOT / "results" / "README.md").read_text()
    (tmp_path / "results" / "README.md").write_text(_mutate(index, "a3d15a8", "a3d15ax"))
    problems = check_provenance(tmp_path)
    assert any("no README.md" in p for p in problems) and any("kodak/: the row must name" in p for p in problems)
    assert _commits_exist("made at 0123abc", "x", ROOT)
