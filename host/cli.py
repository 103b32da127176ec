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
    from .codec import Codec

    return Codec.load(model or DEFAULT_MODEL, **kwargs)


def _cmd_compress(a) -> None:
    from .codec_base import check_tile
    from .images import check_output

    check_tile(a.tile)                  # before loading anything: a bad --tile fails at once
    check_output(a.output)
    codec = _load_codec(a.backend, a.model, overlay=a.overlay, tile=a.tile, progress=_progress())
    n, (h, w) = codec.compress_file(a.input, a.output, max_pixels=a.max_pixels)
    where = f", g_a on the FPGA for {codec.fpga_tiles} tiles, CPU {codec.cpu_tiles}" if a.backend == "fpga" else ""
    print(f"{a.input} -> {a.output}: {n} bytes, {8 * n / (h * w):.4f} bpp, "
          f"{codec.timing.encode_ms:.0f} ms ({codec.name}{where})")


def _cmd_decompress(a) -> None:
    from .backends import codec_for_file
    from .codec_base import read_lic
    from .images import check_output, output_format

    check_output(a.output)              # before reading or decoding anything
    output_format(a.output)             # lossless formats only
    data = read_lic(a.input)
    if a.backend == "fpga":      # the file names its integer artifact; g_s on the overlay
        from .integer_codec import IntegerCodec

        model = a.model
        if model is None:
            named = codec_for_file(data)
            if not isinstance(named, IntegerCodec):
                raise ValueError("--backend fpga decodes integer-backend files; this one is from a float model")
            model = named.path
        codec = _load_codec("fpga", model, overlay=a.overlay, progress=_progress())
    else:
        codec = (_load_codec(a.backend, a.model, progress=_progress()) if a.model
                 else codec_for_file(data, progress=_progress()))
    rgb, layout = codec.decode(data, max_pixels=a.max_pixels)
    from .images import save_image

    save_image(rgb, a.output, layout)
    print(f"{a.input} -> {a.output}: {rgb.shape[1]}x{rgb.shape[0]} {layout}, "
          f"{codec.timing.decode_ms:.0f} ms ({codec.name})")


def _cmd_info(a) -> None:
    from .codec_base import read_lic
    from .container import unpack

    f = unpack(read_lic(a.input))
    payload = sum(len(p) for t in f.tiles for p in t.payloads)
    print(f"model    {f.model_id}\nweights  {f.weights_hash.hex()}\nsize     {f.width}x{f.height} "
          f"({'gray' if f.layout else 'rgb'})\ntiles    {len(f.tiles)} of {f.tile} px, {f.groups} payload groups\n"
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

    c = sub.add_parser("compress", help="image -> .lic")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--model", default=None,
                   help=f"shipped checkpoint name or a .pt path (default {DEFAULT_MODEL}); with "
                        f"--backend integer an integer artifact (default {DEFAULT_INTEGER_MODEL})")
    c.add_argument("--backend", choices=BACKENDS, default="float",
                   help="float: PyTorch model; integer: the bit-exact integer model the FPGA runs; fpga: "
                        "integer with g_a on the overlay (on a PYNQ board; same bytes as integer)")
    c.add_argument("--overlay", default=None,
                   help="--backend fpga: the bitstream (default licfpga.bit; .hwh and overlay.json beside it)")
    c.add_argument("--tile", type=int, default=1024, help="tile edge in px (multiple of 64)")   # = geometry.STRIDE, codec_base.DEFAULT_TILE
    c.add_argument("--max-pixels", type=_positive_int, default=None, metavar="N",
                   help=f"refuse larger images (default {DEFAULT_MAX_PIXELS} = 2**28)")
    c.set_defaults(fn=_cmd_compress)

    d = sub.add_parser("decompress", help=".lic -> PNG")
    d.add_argument("input")
    d.add_argument("output")
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
    e.add_argument("--models", nargs="+", default=None, help="checkpoints (default: all shipped)")
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
    from licfpga.model.checkpoint import CheckpointError

    from .container import ContainerError
    from .images import ImagePolicyError
    from .pynq_driver import FpgaUnavailable

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
    try:
        rc = run()                  # an int: the subcommand's own exit status (plan)
    except (ContainerError, ImagePolicyError, CheckpointError, OSError, ValueError, FpgaUnavailable,
            MemoryError) as exc:
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
