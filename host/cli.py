"""``licfpga`` command line: compress, decompress, info, train, eval, demo, bench."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

DEFAULT_MODEL = "mean-scale-0.013"
DEFAULT_INTEGER_MODEL = "int-student-0.013"
BACKENDS = ("float", "integer", "fpga")
DEFAULT_MAX_PIXELS = 1 << 28        # = licfpga.host.images.DEFAULT_MAX_PIXELS (not imported: keeps --help fast)
DEFAULT_TILE = "1024"               # = codec_base.DEFAULT_TILE (not imported: keeps --help fast)
FULL_INSTALL = 'pip install "licfpga[full]"'
# top-level modules that only the full install provides (pyproject.toml, extra `full`): an
# ImportError naming one of them means "this is the board install", not a bug
FULL_ONLY = frozenset({"torch", "torchvision", "compressai", "brevitas", "qonnx", "onnx", "onnxruntime",
                       "onnxoptimizer", "onnxscript", "scipy", "pytorch_msssim", "pillow_heif", "imagecodecs",
                       "matplotlib"})
# what `compress IN OUT` refuses as OUT (an image would be overwritten by a .lic: two inputs
# without --out-dir); `decompress IN OUT` refuses a second .lic the same way
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".ppm", ".pgm", ".pnm", ".webp",
                            ".gif", ".heic", ".heif", ".avif", ".jxl", ".jp2"})


class NeedsFullInstall(Exception):
    """The command or backend needs torch & co. (the `full` extra); this install lacks them."""


def _missing_full(exc: BaseException) -> str | None:
    """The full-install module an ImportError is about, or None."""
    name = getattr(exc, "name", None) or ""
    top = name.split(".")[0]
    return top if isinstance(exc, ImportError) and top in FULL_ONLY else None


def _needs_full(what: str, exc: ImportError) -> NeedsFullInstall:
    return NeedsFullInstall(f"{what} needs the full install: {FULL_INSTALL} "
                            f"({_missing_full(exc)} is not installed here)")


def _user_errors() -> tuple:
    """The exception types that are user errors (one line, exit 2). Built when an error is
    being handled, from the modules already imported: a module's error can only have been
    raised if it was imported, and importing none up front keeps start-up short (the float
    backend's CheckpointError lives beside torch)."""
    errs = [NeedsFullInstall, OSError, ValueError, MemoryError]
    for module, name in (("licfpga.host.container", "ContainerError"), ("licfpga.host.images", "ImagePolicyError"),
                         ("licfpga.model.checkpoint", "CheckpointError"), ("licfpga.host.pynq_driver", "FpgaUnavailable")):
        m = sys.modules.get(module)
        if m is not None:
            errs.append(getattr(m, name))
    return tuple(errs)


def _tile_arg(text: str):
    """``--tile`` as given (a string: ``codec_base.check_tile`` parses it); digits alone
    become an int, which every version of check_tile takes."""
    text = text.strip()
    return int(text) if text.isdigit() else text


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _progress() -> bool:
    """Tile progress bars on a terminal only: in a pipe or a log they would sit on stderr
    beside the one error line."""
    return sys.stderr.isatty()


def _one_line(exc: BaseException) -> str:
    """The error's message on one line (OS errors as 'reason: file')."""
    if isinstance(exc, MemoryError):
        msg = f"out of memory{': ' + str(exc) if str(exc) else ''}"
    elif isinstance(exc, OSError) and exc.strerror:
        msg = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        msg = str(exc) or type(exc).__name__
    return " ".join(msg.split())


def _load_codec(backend: str, model, overlay=None, **kwargs):
    if backend == "fpga":
        from .integer_codec import FpgaIntegerCodec

        return FpgaIntegerCodec(model or DEFAULT_INTEGER_MODEL, overlay=overlay or "licfpga.bit", **kwargs)
    if backend == "integer":
        from .integer_codec import IntegerCodec

        return IntegerCodec.load(model or DEFAULT_INTEGER_MODEL, **kwargs)
    try:
        from .codec import Codec
    except ImportError as exc:
        if not _missing_full(exc):
            raise
        raise _needs_full("--backend float (the default; --backend integer or fpga runs on this install)",
                          exc) from None

    return Codec.load(model or DEFAULT_MODEL, **kwargs)


def _jobs(cmd: str, inputs: list[str], out: str | None, out_dir: str | None, suffix: str) -> list[tuple]:
    """(input, output) pairs of a compress / decompress call:

    * ``IN OUT`` (two positionals, no ``--out``/``--out-dir``): one file, as before;
    * ``IN -o OUT``: one file;
    * ``IN... --out-dir DIR``: every input to ``DIR/<stem><suffix>``.

    Refused before anything is loaded: ``--out`` with several inputs, several inputs without
    ``--out-dir``, two inputs with the same stem (one output would overwrite the other), and
    an ``IN OUT`` whose OUT looks like another input (an image for compress, a .lic for
    decompress), which would otherwise be overwritten."""
    from pathlib import Path

    if out is not None and out_dir is not None:
        raise ValueError("give -o/--out (one input) or --out-dir (any number of inputs), not both")
    if out_dir is not None:
        pairs, seen = [], {}
        for src in inputs:
            dst = Path(out_dir) / (Path(src).stem + suffix)
            if dst in seen:
                raise ValueError(f"{seen[dst]} and {src} have the same stem: both would be written to {dst}; "
                                 "rename one or code them in separate calls")
            seen[dst] = src
            pairs.append((src, str(dst)))
        return pairs
    if out is not None:
        if len(inputs) != 1:
            raise ValueError(f"-o/--out names one output, but {len(inputs)} inputs were given: "
                             "use --out-dir DIR for several")
        return [(inputs[0], out)]
    if len(inputs) == 1:
        raise ValueError(f"no output for {inputs[0]}: give IN OUT, IN -o OUT, or IN... --out-dir DIR")
    if len(inputs) > 2:
        raise ValueError(f"{len(inputs)} inputs need --out-dir DIR (the outputs are DIR/<stem>{suffix})")
    src, dst = inputs
    other = Path(dst).suffix.lower()
    if (cmd == "compress" and other in IMAGE_SUFFIXES) or (cmd == "decompress" and other == ".lic"):
        raise ValueError(f"{dst} looks like a second input, not an output: to {cmd} several files use "
                         f"--out-dir DIR (or -o OUT for one)")
    return [(src, dst)]


def _check_inputs(jobs, what: str) -> None:
    """Every input exists, before anything is loaded or coded (one line naming them all)."""
    from pathlib import Path

    missing = [src for src, _ in jobs if not Path(src).exists()]
    if missing:
        rest = "" if len(jobs) == 1 else f" (nothing was coded; {len(jobs) - len(missing)} others exist)"
        raise FileNotFoundError(2, f"{what} not found{rest}", ", ".join(missing))


def _run_jobs(cmd: str, jobs, one) -> int:
    """``one(src, dst) -> line`` for every job. One input: its error propagates (one line,
    exit 2). Several: a failing input is reported (one line naming it), the others are still
    coded, and the call exits 2 with a last line naming every failed input; a failed output
    is never left half-written (atomic writes: no .part)."""
    if len(jobs) == 1:
        print(one(*jobs[0]))
        return 0
    from tqdm import tqdm

    failed = []
    bar = tqdm(jobs, desc=cmd, unit="file", disable=not _progress())
    for src, dst in bar:
        try:
            line = one(src, dst)
        except _user_errors() as exc:
            failed.append(src)
            bar.clear()
            print(f"licfpga {cmd}: error: {src}: {_one_line(exc)}", file=sys.stderr)
            bar.refresh()
            continue
        bar.write(line, file=sys.stdout)
    bar.close()
    if failed:
        print(f"licfpga {cmd}: error: {len(failed)} of {len(jobs)} inputs failed ({', '.join(failed)}); "
              f"the other {len(jobs) - len(failed)} were written", file=sys.stderr)
        return 2
    return 0


def _cmd_compress(a) -> int:
    from .codec_base import check_tile
    from .images import check_output

    tile = check_tile(_tile_arg(a.tile))    # before loading anything: a bad --tile fails at once
    jobs = _jobs("compress", a.inputs, a.out, a.out_dir, ".lic")
    for _, dst in jobs:
        check_output(dst)
    _check_inputs(jobs, "input image" + ("s" if len(jobs) > 1 else ""))
    codec = _load_codec(a.backend, a.model, overlay=a.overlay, tile=tile, progress=_progress() and len(jobs) == 1)

    def one(src, dst):
        n, (h, w) = codec.compress_file(src, dst, max_pixels=a.max_pixels)
        where = f", {codec.transform} on the FPGA for {codec.fpga_tiles} tiles, CPU {codec.cpu_tiles}" if a.backend == "fpga" else ""
        return (f"{src} -> {dst}: {n} bytes, {8 * n / (h * w):.4f} bpp, "
                f"{codec.timing.encode_ms:.0f} ms ({codec.name}{where})")

    return _run_jobs("compress", jobs, one)


def _cmd_decompress(a) -> int:
    from .codec_base import read_lic
    from .container import unpack
    from .images import check_output, output_format, save_image

    jobs = _jobs("decompress", a.inputs, a.out, a.out_dir, ".png")
    for _, dst in jobs:
        check_output(dst)               # before reading or decoding anything
        output_format(dst)              # lossless formats only
    _check_inputs(jobs, "compressed file" + ("s" if len(jobs) > 1 else ""))
    progress = _progress() and len(jobs) == 1
    loaded = []                         # codecs loaded so far: a model is loaded once per call

    def named(f, src):
        """The codec the file names (shipped, or loaded earlier in this call)."""
        for c in loaded:
            if c.matches(f):
                return c
        from .backends import codec_for_file
        from .integer_codec import IntegerCodec

        if not IntegerCodec.recognises(f.model_id):        # a float-model file: needs torch
            try:
                import licfpga.host.codec  # noqa: F401
            except ImportError as exc:
                if not _missing_full(exc):
                    raise
                raise _needs_full(f"{src} was coded by the float model {f.model_id}: decoding it", exc) from None
        codec = codec_for_file(f, progress=progress)
        loaded.append(codec)
        return codec

    fixed = {}

    def codec_for(f, src):
        if a.backend == "fpga":         # the file names its integer artifact; g_s on the overlay
            from .integer_codec import IntegerCodec

            model = a.model
            if model is None:
                n = named(f, src)
                if not isinstance(n, IntegerCodec):
                    raise ValueError("--backend fpga decodes integer-backend files; this one is from a float model")
                model = n.path
            key = str(model)
            if key not in fixed:
                fixed[key] = _load_codec("fpga", model, overlay=a.overlay, progress=progress)
            return fixed[key]
        if a.model:
            if "model" not in fixed:
                fixed["model"] = _load_codec(a.backend, a.model, progress=progress)
            return fixed["model"]
        return named(f, src)

    def one(src, dst):
        data = read_lic(src)
        codec = codec_for(unpack(data), src)
        rgb, layout = codec.decode(data, max_pixels=a.max_pixels)
        save_image(rgb, dst, layout)
        return (f"{src} -> {dst}: {rgb.shape[1]}x{rgb.shape[0]} {layout}, "
                f"{codec.timing.decode_ms:.0f} ms ({codec.name})")

    return _run_jobs("decompress", jobs, one)


def _cmd_info(a) -> None:
    from .codec_base import read_lic
    from .container import unpack

    f = unpack(read_lic(a.input))
    payload = sum(len(p) for t in f.tiles for p in t.payloads)
    tw, th = f.tile if isinstance(f.tile, tuple) else (f.tile, f.tile)
    print(f"format   version {f.version}\nmodel    {f.model_id}\nweights  {f.weights_hash.hex()}\n"
          f"size     {f.width}x{f.height} ({'gray' if f.layout else 'rgb'})\n"
          f"tiles    {len(f.tiles)} of {tw}x{th} px, {f.groups} payload groups, "
          f"{f.streams} rANS stream{'s' if f.streams != 1 else ''} per latent group\n"
          f"payload  {payload} bytes, {8 * payload / (f.width * f.height):.4f} bpp")


def _cmd_train(a, rest) -> None:
    from licfpga.model.train import main

    main(rest)


def _cmd_eval(a) -> None:
    from .evaluate import main

    main(a)


def _cmd_demo(a) -> None:
    from .demo import main

    main(a)


def _cmd_bench(a) -> None:
    from .bench import main

    main(a)


def _cmd_analyze(a, rest) -> None:
    from licfpga.model.analyze import main

    main(rest)


def _cmd_distill(a, rest) -> None:
    from licfpga.model.distill import main

    print(f"wrote {main(rest)}")


def _cmd_qat(a, rest) -> None:
    from licfpga.model.qat import main

    print(f"wrote {main(rest)}")


def _cmd_export_int(a, rest) -> None:
    from licfpga.model.export_int import main

    main(rest)


def _cmd_prune(a, rest) -> None:
    from licfpga.model.prune import main

    print(f"wrote {main(rest)}")


def _cmd_students(a, rest) -> None:
    from .students import main

    main(rest)


def _cmd_bench_train(a, rest) -> None:
    from licfpga.model.bench_train import main

    main(rest)


def _cmd_plan(a, rest) -> int:
    from licfpga.overlay.plan import main

    return main(rest)


def _cmd_plot_train(a) -> None:
    from licfpga.model.train import plot_logs

    print(f"wrote {plot_logs(a.logs, a.out, x=a.x)}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="licfpga", description="Learned image compression toward FPGA codecs.")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("compress", help="image(s) -> .lic",
                       description="IN OUT.lic, IN -o OUT.lic, or IN... --out-dir DIR (DIR/<stem>.lic each): "
                                   "the model is loaded once for all inputs.")
    c.add_argument("inputs", nargs="+", metavar="IN", help="image(s); without --out-dir: one image and its output")
    c.add_argument("-o", "--out", default=None, metavar="OUT", help="the output file (one input)")
    c.add_argument("--out-dir", default=None, metavar="DIR",
                   help="write each input to DIR/<stem>.lic (created if missing); any number of inputs")
    c.add_argument("--model", default=None,
                   help=f"shipped checkpoint name or a .pt path (default {DEFAULT_MODEL}); with "
                        f"--backend integer an integer artifact (default {DEFAULT_INTEGER_MODEL})")
    c.add_argument("--backend", choices=BACKENDS, default="float",
                   help="float: PyTorch model (full install); integer: the bit-exact integer model the FPGA "
                        "runs; fpga: integer with g_a on the overlay (on a PYNQ board; same bytes as integer)")
    c.add_argument("--overlay", default=None,
                   help="--backend fpga: the bitstream (default licfpga.bit; .hwh and overlay.json beside it)")
    # a string: codec_base.check_tile parses it (= geometry.STRIDE multiples, codec_base.DEFAULT_TILE)
    c.add_argument("--tile", type=str, default=DEFAULT_TILE, help="tile size in px, multiples of 64: an edge (1024) or WxH (1920x1088: a 1080p frame as one tile)")
    c.add_argument("--max-pixels", type=_positive_int, default=None, metavar="N",
                   help=f"refuse larger images (default {DEFAULT_MAX_PIXELS} = 2**28)")
    c.set_defaults(fn=_cmd_compress)

    d = sub.add_parser("decompress", help=".lic(s) -> PNG",
                       description="IN.lic OUT.png, IN.lic -o OUT.png, or IN.lic... --out-dir DIR "
                                   "(DIR/<stem>.png each): each model is loaded once for all inputs.")
    d.add_argument("inputs", nargs="+", metavar="IN", help=".lic file(s); without --out-dir: one file and its output")
    d.add_argument("-o", "--out", default=None, metavar="OUT", help="the output image (one input; lossless format)")
    d.add_argument("--out-dir", default=None, metavar="DIR",
                   help="write each input to DIR/<stem>.png (created if missing); any number of inputs")
    d.add_argument("--model", default=None, help="default: the shipped checkpoint or artifact named by the file")
    d.add_argument("--backend", choices=BACKENDS, default="float",
                   help="with --model: how to read it (without --model the file says); fpga: g_s on a "
                        "decoder overlay (PYNQ board), same pixels as integer")
    d.add_argument("--overlay", default=None, help="--backend fpga: the bitstream (default licfpga.bit)")
    d.add_argument("--max-pixels", type=_positive_int, default=None, metavar="N",
                   help=f"refuse files declaring larger images, before allocating (default {DEFAULT_MAX_PIXELS})")
    d.set_defaults(fn=_cmd_decompress)

    i = sub.add_parser("info", help="print a .lic file's header")
    i.add_argument("input")
    i.set_defaults(fn=_cmd_info)

    sub.add_parser("train", help="RD training (see `licfpga train --help`)", add_help=False)
    sub.add_parser("analyze", help="FPGA-suitability report of the zoo (see `licfpga analyze --help`)",
                   add_help=False)
    sub.add_parser("distill", help="teacher -> student distillation (see `licfpga distill --help`)", add_help=False)
    sub.add_parser("qat", help="Brevitas QAT of a student (see `licfpga qat --help`)", add_help=False)
    sub.add_parser("export-int", help="QAT checkpoint -> integer artifact (.json + .npz)", add_help=False)
    sub.add_parser("plan", help="FPGA planner: width + folding for a board, resolution and fps", add_help=False)
    sub.add_parser("prune", help="GDN-aware channel pruning + fine-tuning, RD vs MACs", add_help=False)
    sub.add_parser("students", help="Kodak RD table: teacher, student, QAT, integer model", add_help=False)
    sub.add_parser("bench-train", help="training step speed: precision / memory format / compile / threads",
                   add_help=False)

    pt = sub.add_parser("plot-train", help="plot validation PSNR/bpp of training log.csv files")
    pt.add_argument("logs", nargs="+")
    pt.add_argument("--out", default="training.png")
    pt.add_argument("--x", choices=["step", "pixels"], default="step", help="x axis: step or training pixels seen")
    pt.set_defaults(fn=_cmd_plot_train)

    e = sub.add_parser("eval", help="RD evaluation against classical codecs")
    e.add_argument("--data", default="../shared/data/kodak")
    e.add_argument("--models", nargs="+", default=None,
                   help="float checkpoints and/or integer artifacts (int-student-*) (default: all shipped checkpoints)")
    e.add_argument("--codecs", nargs="*", default=None, help="classical codecs (default: all available)")
    e.add_argument("--anchor", nargs="+", default=["jpeg", "heif"], help="BD-rate anchors")
    e.add_argument("--limit", type=int, default=None, help="first N images only")
    e.add_argument("--out", default="results/eval")
    e.set_defaults(fn=_cmd_eval)

    m = sub.add_parser("demo", help="compress the shipped samples, compare with JPEG, plot RD")
    m.add_argument("--out", default="demo_out")
    m.add_argument("--model", default=DEFAULT_MODEL)
    m.set_defaults(fn=_cmd_demo)

    b = sub.add_parser("bench", help="encode/decode time: integer vs float student, codec path vs bare model")
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--size", type=int, nargs=2, default=[512, 768], metavar=("H", "W"))
    b.set_defaults(fn=_cmd_bench)
    return p


def main(argv=None) -> int:
    # CompressAI calls torch.jit.script at import time, which warns on every run
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    # Brevitas at import: an optional CUDA kernel package and its own fx deprecation
    warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
    warnings.filterwarnings("ignore", message="brevitas.fx is deprecated")
    # torch's cpp_extension logs "No CUDA runtime is found" when Brevitas imports it: not ours
    # to report, and it would make an error message two lines
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    # nothing of ours is imported here: `licfpga --help` and the integer backend start without
    # numpy's, Pillow's or torch's import time beyond what they use (results/board/startup.md)

    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = {"train": _cmd_train, "analyze": _cmd_analyze, "distill": _cmd_distill,  # own options
                   "qat": _cmd_qat, "export-int": _cmd_export_int, "plan": _cmd_plan,
                   "prune": _cmd_prune, "students": _cmd_students, "bench-train": _cmd_bench_train,
                   "faults": lambda _a, rest: __import__("licfpga.host.faults", fromlist=["main"]).main(rest)}
    if argv[:1] and argv[0] in passthrough:
        cmd, run = argv[0], lambda: passthrough[argv[0]](None, argv[1:])
    else:
        args = build_parser().parse_args(argv)      # usage errors: argparse's message, exit 2
        cmd, run = args.cmd, lambda: args.fn(args)
    # user errors (bad files, paths, values; out of memory) -> one line, exit 2; a traceback
    # means a bug. ValueError covers ContainerError, ImagePolicyError, OutputError, ArtifactError.
    # On the board install (no torch) a command that needs torch says so in one line, exit 2.
    try:
        rc = run()                  # an int: the subcommand's own exit status (plan)
    except ImportError as exc:
        if not _missing_full(exc):
            raise                   # one of ours or a runtime dependency: a broken install, a bug
        print(f"licfpga {cmd}: error: {_one_line(_needs_full(cmd, exc))}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        print(f"licfpga {cmd}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except SystemExit as exc:       # a subcommand's `raise SystemExit("reason")`; argparse/plan exit codes pass
        if isinstance(exc.code, str):
            print(f"licfpga {cmd}: error: {_one_line(SystemExit(exc.code))}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
