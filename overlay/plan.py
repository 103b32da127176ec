"""Dataflow planner: which model width fits a board at a resolution and frame rate.

    python -m licfpga.overlay.plan --board kv260 --resolution 1920x1080 --fps 30 \\
        [--side encoder|decoder|both] [--budget 0.9] [--clock-mhz MHz] [--json out.json] [--md out.md]
    python -m licfpga.overlay.plan --all [--out results/plan]      # the committed tables

For every candidate width N (M = ceil(1.5 N / 4) * 4) of the student architecture
(``hyperprior``, CompressAI ScaleHyperprior) it folds the encoder (g_a + h_a + h_s) or
decoder (h_s + g_s) FINN-style until every stage meets ``clock / fps`` cycles per frame
or the budget runs out, and picks the widest width that meets the target. All figures are
model estimates (see ``overlay/costmodel.py`` and the "Planner" section of
overlay/README.md), never synthesis results.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from licfpga.model.geometry import STRIDE, padded

from .boards import BoardError, list_boards, load_board
from .costmodel import MVU_LANES, Folding, budget_of, fold, side_layers

DEFAULT_WIDTHS = (16, 24, 30, 32, 48, 64)
SIZE_MULTIPLE = STRIDE      # hyperprior models pad frames to a multiple of 64 (g_a x16, h_a x4)
ALL_RESOLUTIONS = ("1280x720", "1920x1080", "3840x2160")
REPO = Path(__file__).resolve().parent.parent


def latent_width(N: int) -> int:
    """M = ceil(1.5 N / 4) * 4: the zoo's width rule (30 -> 48, 64 -> 96)."""
    return math.ceil(1.5 * N / 4) * 4


def parse_resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must be WIDTHxHEIGHT, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return w, h


def pad(n: int) -> int:
    return padded(n, SIZE_MULTIPLE)


_CKPT_CACHE: dict | None = None


def shipped_checkpoints() -> dict:
    """{(arch, N, M): [file names]} of model/checkpoints/*.pt (reads only arch and widths).

    Needs torch to unpickle; without it (or on an unreadable file) the entry is skipped,
    so the planner itself never depends on torch.
    """
    global _CKPT_CACHE
    if _CKPT_CACHE is None:
        _CKPT_CACHE = {}
        files = sorted((REPO / "model" / "checkpoints").glob("*.pt"))
        try:
            import torch
        except ImportError:
            files = []
        for f in files:
            try:
                state = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
                kw = state["kwargs"]
                key = (state["arch"], int(kw["N"]), int(kw["M"]))
            except Exception:  # not one of ours, or unreadable: not a candidate
                continue
            _CKPT_CACHE.setdefault(key, []).append(f.name)
    return _CKPT_CACHE


def plan_width(side: str, N: int, width: int, height: int, fps: float,
               clock_mhz: float, budget: dict, arch: str, macs_per_dsp: int,
               uram_weights: bool) -> dict:
    M = latent_width(N)
    H, W = pad(height), pad(width)
    layers = side_layers(side, N, M, H, W, arch)
    target = int(clock_mhz * 1e6 / fps)
    f: Folding = fold(layers, target, budget, macs_per_dsp, uram_weights)
    clock = clock_mhz * 1e6
    rows = []
    for layer, r in zip(f.layers, f.usage.per_layer):
        rows.append({
            "layer": layer.name, "kind": layer.kind,
            "in": f"{layer.h_in}x{layer.w_in}x{layer.cin}",
            "out": f"{layer.h_out}x{layer.w_out}x{layer.cout}",
            "MW": layer.mw, "MH": layer.mh, "PE": layer.pe, "SIMD": layer.simd,
            "replicas": layer.replicas, "cycles": layer.cycles, "MACs": layer.macs,
            "DSP": r["DSP"], "LUT": r["LUT"], "BRAM36": r["BRAM36"] + r["LB_BRAM36"],
            "URAM": r["URAM"], "line_buffer_kbit": round(r["LB_bits"] / 1024, 1),
        })
    return {
        "arch": arch, "N": N, "M": M, "side": side, "padded": f"{W}x{H}",
        "meets": f.meets, "limit": f.limit, "blocked_by": f.blocked,
        "fps": 0.0 if f.limit == "no-fit" else round(clock / f.max_cycles, 2),
        "target_cycles": target,
        "max_cycles": f.max_cycles,
        "frame_ms": round(f.max_cycles / clock * 1e3, 3),
        "latency_upper_ms": round(sum(layer.cycles for layer in f.layers) / clock * 1e3, 3),
        "total": f.usage.total, "budget": budget,
        "in_uram": f.usage.in_uram,
        "checkpoints": shipped_checkpoints().get((arch, N, M), []),
        "layers": rows,
    }


def plan(board_name: str, width: int, height: int, fps: float, side: str = "encoder",
         budget_fraction: float = 0.9, clock_mhz: float | None = None,
         widths=DEFAULT_WIDTHS, arch: str = "hyperprior", macs_per_dsp: int = MVU_LANES,
         uram_weights: bool = True) -> dict:
    """Plan one side on one board: every width's folding, the chosen width and a verdict."""
    board = load_board(board_name)
    clock_mhz = float(clock_mhz or board["clock_mhz"])
    budget = budget_of(board["resources"], budget_fraction)
    results = [plan_width(side, N, width, height, fps, clock_mhz, budget, arch,
                          macs_per_dsp, uram_weights) for N in sorted(widths)]
    ok = [r for r in results if r["meets"]]
    chosen = ok[-1] if ok else None
    if chosen:
        verdict = f"meets {fps:g} fps at width N={chosen['N']}/M={chosen['M']}"
    else:
        best = max(results, key=lambda r: r["fps"])
        verdict = (f"infeasible: best achievable {best['fps']:g} fps at width N={best['N']}"
                   f" (limit: {best['limit']}{', ' + '/'.join(best['blocked_by']) if best['blocked_by'] else ''})")
    return {
        "board": board_name, "part": board["part"], "resolution": f"{width}x{height}",
        "fps_target": fps, "side": side, "clock_mhz": clock_mhz,
        "budget_fraction": budget_fraction, "macs_per_dsp": macs_per_dsp,
        "resources": {k: board["resources"][k] for k in budget},
        "chosen_N": chosen["N"] if chosen else None, "verdict": verdict,
        "widths": results,
        "note": "model estimates (overlay/costmodel.py), not synthesis or hardware results",
    }


def shipped_width() -> int:
    """N of the deployed student (the integer artifact the FPGA computes), from its json."""
    meta = json.loads((REPO / "model" / "checkpoints" / "int-student-0.013.json").read_text())["meta"]
    return int(meta["student_kwargs"]["N"])


def fastest_at_width(board_name: str, N: int, width: int, height: int, side: str,
                     budget_fraction: float = 0.9, macs_per_dsp: int = MVU_LANES,
                     uram_weights: bool = True) -> dict:
    """One width folded as far as the budget allows (a target of one cycle per frame: the
    greedy folding stops at the first step that would exceed the budget, or when the
    bottleneck is fully unfolded): the fastest this board runs width ``N`` at this size."""
    board = load_board(board_name)
    clock_mhz = float(board["clock_mhz"])
    budget = budget_of(board["resources"], budget_fraction)
    return plan_width(side, N, width, height, clock_mhz * 1e6, clock_mhz, budget, "hyperprior",
                      macs_per_dsp, uram_weights)


def shipped_width_table(N: int, budget_fraction: float = 0.9, macs_per_dsp: int = MVU_LANES,
                        uram_weights: bool = True) -> tuple[str, list[dict]]:
    """Per board: encoder and decoder fps of width ``N`` at 720p, 1080p and 4K, each folded
    as far as the budget allows, with the resources of that folding (Markdown, rows)."""
    rows, lines = [], []
    for board in list_boards():
        lines += [f"### {board}: width N={N} (the deployed student), fastest folding within "
                  f"{budget_fraction:.0%} of every resource", "",
                  "| resolution | side | fps | limit | DSP | LUT | BRAM36 | URAM |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for res in ALL_RESOLUTIONS:
            w, h = parse_resolution(res)
            for side in ("encoder", "decoder"):
                r = fastest_at_width(board, N, w, h, side, budget_fraction, macs_per_dsp, uram_weights)
                rows.append({"board": board, "resolution": res, **r})
                t, b = r["total"], r["budget"]
                limit = r["limit"] + (f" ({'/'.join(r['blocked_by'])})" if r["blocked_by"] else "")
                lines.append(f"| {res} (padded {r['padded']}) | {side} | {r['fps']:g} | {limit} | "
                             + " | ".join(f"{t[k]:,} ({t[k] / (b[k] / budget_fraction):.0%})"
                                          if b[k] else f"{t[k]:,}" for k in ("DSP", "LUT", "BRAM36", "URAM")) + " |")
        lines.append("")
    return "\n".join(lines), rows


def planner_vs_full_count(N: int, budget_fraction: float = 0.9, macs_per_dsp: int = MVU_LANES,
                          uram_weights: bool = True) -> list[str]:
    """The planner's 1080p30 KV260 encoder beside the full count of the compiled build
    (results/resources/resources.json: FINN's estimators, FIFOs, DMA, our kernels)."""
    full = json.loads((REPO / "results" / "resources" / "resources.json").read_text())
    kv = next(r for r in full["reports"] if r["board"] == "kv260")
    enc = next(d for name, d in kv["designs"].items() if name.startswith("whole encoder"))
    p = plan("kv260", 1920, 1080, 30, "encoder", budget_fraction, None, (N,), "hyperprior",
             macs_per_dsp, uram_weights)["widths"][0]
    lo, hi, lut = enc["total_mvau_structural"]["LUT"], enc["total"]["LUT"], kv["resources"]["LUT"]
    fits_lo, fits_hi = enc["fits_90_mvau_structural"], enc["fits_90"]
    verdict = lambda f: "fits" if f else "does not fit"        # noqa: E731
    # compared where both make the same assumption: MVAU logic at FINN's HLS estimate
    same = (f"Both say the 1080p30 whole encoder {verdict(fits_hi)} the KV260 at the deployed width"
            if p["meets"] == fits_hi else
            f"They disagree: the planner says it {verdict(p['meets'])}, the full count that it {verdict(fits_hi)}")
    if fits_lo == fits_hi:
        last = same + "."
    else:
        last = (f"{same} with MVAU logic at FINN's HLS estimate; with it counted from mvu.sv's structure the full "
                f"count says it {verdict(fits_lo)}: undecided until synthesis.")
    return [f"**Planner beside the compiled build** (KV260, 1080p, encoder at N={N}): the planner stops at",
            f"{p['fps']:g} fps ({p['limit']}) with {p['total']['LUT']:,} LUT / {p['total']['DSP']:,} DSP; the compiled",
            f"1080p30 build (FINN's SetFolding, 30.3 fps estimated) counts {lo:,.0f}–{hi:,.0f} LUT",
            f"({lo / lut:.0%}–{hi / lut:.0%} of the board) / {enc['total']['DSP']:,.0f} DSP in full (results/resources/). The planner",
            "models no FIFOs or interconnect; its MVAU LUTs are FINN's HLS estimate (the full count's upper",
            "end), its requantisers FINN's threshold layers (conservative: 1.3× FINN's own estimate).",
            last]


# ----------------------------------------------------------------------------- report

def _fmt_total(r: dict) -> str:
    t, b = r["total"], r["budget"]
    return " / ".join(f"{t[k]}/{b[k]}" for k in ("DSP", "LUT", "BRAM36", "URAM"))


def to_markdown(p: dict, detail: bool = True) -> str:
    lines = [f"### {p['board']} ({p['part']}) {p['side']}, {p['resolution']} @ {p['fps_target']:g} fps, "
             f"{p['clock_mhz']:g} MHz, budget {p['budget_fraction']:.0%}",
             "", f"**Verdict: {p['verdict']}.** " + _ckpt_sentence(p), "",
             "| N | M | fps | limit | DSP / LUT / BRAM36 / URAM (used/budget) | shipped checkpoints |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in p["widths"]:
        limit = r["limit"] + (f" ({'/'.join(r['blocked_by'])})" if r["blocked_by"] else "")
        lines.append(f"| {r['N']} | {r['M']} | {r['fps']:g} | {limit} | {_fmt_total(r)} | "
                     f"{', '.join(r['checkpoints']) or '—'} |")
    if detail:
        shown = next((r for r in p["widths"] if r["N"] == p["chosen_N"]), None)
        shown = shown or max(p["widths"], key=lambda r: r["fps"])
        lines += ["", f"Per layer at N={shown['N']}/M={shown['M']} (frame padded to "
                  f"{shown['padded']}; frame interval {shown['frame_ms']} ms, latency ≤ "
                  f"{shown['latency_upper_ms']} ms as the sum of all stages"
                  + (f"; in URAM: {', '.join(shown['in_uram'])}" if shown["in_uram"] else "") + "):",
                  "", "| layer | kind | in | out | MW | MH | PE | SIMD | ×rep | cycles | DSP | LUT | BRAM36 | URAM |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for x in shown["layers"]:
            lines.append(f"| {x['layer']} | {x['kind']} | {x['in']} | {x['out']} | {x['MW']} | {x['MH']} | "
                         f"{x['PE']} | {x['SIMD']} | {x['replicas']} | {x['cycles']:,} | {x['DSP']} | "
                         f"{x['LUT']} | {x['BRAM36']} | {x['URAM']} |")
    return "\n".join(lines) + "\n"


def _ckpt_sentence(p: dict) -> str:
    shipped = "; ".join(f"{a} N={n}/M={m}: {', '.join(f)}"
                        for (a, n, m), f in sorted(shipped_checkpoints().items()))
    shipped = f" (All shipped checkpoints: {shipped or 'none readable'}.)"
    if p["chosen_N"] is None:
        return shipped.strip()
    r = next(r for r in p["widths"] if r["N"] == p["chosen_N"])
    if r["checkpoints"]:
        return f"Shipped checkpoints at this width: {', '.join(r['checkpoints'])}."
    return (f"No shipped `{r['arch']}` checkpoint at N={r['N']}/M={r['M']}: train one "
            f"(`python -m licfpga.model.distill --width {r['N']}`, as runs/student_recipe.sh "
            f"does for 30).{shipped}")


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="licfpga plan",
        description="Plan the FINN dataflow folding of the codec for a board (model estimates, "
                    "no synthesis).")
    ap.add_argument("--board", default="kv260", help=f"one of: {', '.join(list_boards())}")
    ap.add_argument("--resolution", type=parse_resolution, default=(1920, 1080),
                    metavar="WxH", help="frame size (default 1920x1080)")
    ap.add_argument("--fps", type=float, default=30.0, help="target frame rate (default 30)")
    ap.add_argument("--side", choices=("encoder", "decoder", "both"), default="encoder")
    ap.add_argument("--budget", type=float, default=0.9,
                    help="usable fraction of DSP/LUT/BRAM/URAM (default 0.9)")
    ap.add_argument("--clock-mhz", type=float, default=None,
                    help="accelerator clock (default: the board file's, 200 MHz)")
    ap.add_argument("--widths", default=",".join(map(str, DEFAULT_WIDTHS)),
                    help="candidate N values, comma separated")
    ap.add_argument("--arch", choices=("hyperprior", "mean-scale"), default="hyperprior")
    ap.add_argument("--macs-per-dsp", type=int, choices=(1, 2), default=MVU_LANES,
                    help="int8 MVU lanes per DSP48E2 (default 2: finn-rtllib mvu.sv's packing, what "
                         "the FINN flow builds; 1: FINN's HLS rule, conservative)")
    ap.add_argument("--no-uram-weights", dest="uram_weights", action="store_false",
                    help="keep weights out of URAM (URAM weights need loading at run time)")
    ap.add_argument("--json", type=Path, help="write the full plan as JSON")
    ap.add_argument("--md", type=Path, help="write the Markdown report")
    ap.add_argument("--all", action="store_true",
                    help=f"every board x {', '.join(ALL_RESOLUTIONS)} x both sides at --fps "
                         "into --out")
    ap.add_argument("--out", type=Path, default=Path("results/plan"), help="directory for --all")
    return ap


def _run_all(args, widths) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    summary = ["# Planner results (model estimates, not synthesis)", "",
               f"`python -m licfpga.overlay.plan --all --fps {args.fps:g}`: {args.arch}, "
               f"widths {', '.join(map(str, widths))}, budget {args.budget:.0%}, "
               f"{args.macs_per_dsp} MAC/DSP. Assumptions: overlay/README.md, \"Planner\".", "",
               "| board | resolution | side | verdict |", "| --- | --- | --- | --- |"]
    everything = []
    for board in list_boards():
        for res in ALL_RESOLUTIONS:
            w, h = parse_resolution(res)
            for side in ("encoder", "decoder"):
                p = plan(board, w, h, args.fps, side, args.budget, args.clock_mhz, widths,
                         args.arch, args.macs_per_dsp, args.uram_weights)
                everything.append(p)
                stem = f"{board}_{res}_{side}"
                (args.out / f"{stem}.md").write_text(to_markdown(p))
                summary.append(f"| {board} | {res} | {side} | [{p['verdict']}]({stem}.md) |")
    N = shipped_width()
    table, rows = shipped_width_table(N, args.budget, args.macs_per_dsp, args.uram_weights)
    summary += ["", f"## The deployed width at 720p, 1080p and 4K (planner estimates, never synthesised)", "",
                f"The shipped student (N={N}) on each board, every side folded as far as the budget allows",
                "(not only to 30 fps): the fps the board's clock gives at that folding (`fps = clock /",
                "slowest stage's cycles per padded frame`), the resource it ran out of, and the resources of",
                "that folding (% of the board). The FINN-compiled 1080p30 builds are in results/finn/; the",
                "planner's folding is its own (FINN's SetFolding picks other PE/SIMD splits).", "",
                *planner_vs_full_count(N, args.budget, args.macs_per_dsp, args.uram_weights), "", table]
    (args.out / "README.md").write_text("\n".join(summary) + "\n")
    (args.out / "plan.json").write_text(json.dumps(everything, indent=1) + "\n")
    (args.out / "shipped_width.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(summary))
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        widths = sorted({int(v) for v in args.widths.split(",") if v.strip()})
    except ValueError:
        print(f"licfpga plan: error: --widths must be integers, got {args.widths!r}", file=sys.stderr)
        return 2
    if not widths or min(widths) < 1:
        print("licfpga plan: error: --widths needs positive integers", file=sys.stderr)
        return 2
    if not 0 < args.budget <= 1:
        print(f"licfpga plan: error: --budget must be in (0, 1], got {args.budget}", file=sys.stderr)
        return 2
    if args.fps <= 0:
        print(f"licfpga plan: error: --fps must be positive, got {args.fps}", file=sys.stderr)
        return 2
    try:
        if args.all:
            return _run_all(args, widths)
        w, h = args.resolution
        sides = ("encoder", "decoder") if args.side == "both" else (args.side,)
        plans = [plan(args.board, w, h, args.fps, s, args.budget, args.clock_mhz, widths,
                      args.arch, args.macs_per_dsp, args.uram_weights) for s in sides]
    except BoardError as e:
        print(f"licfpga plan: error: {e}", file=sys.stderr)
        return 2
    md = "\n".join(to_markdown(p) for p in plans)
    print(md, end="")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(plans[0] if len(plans) == 1 else plans, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
