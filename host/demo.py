"""``licfpga demo``: the main job on a built-in default.

Compresses the sample images shipped in ``host/samples`` with the default shipped
checkpoint, writes ``.lic`` files and reconstructions, prints a table beside JPEG at
matched bpp, and writes RD plots of all shipped checkpoints against classical codecs.
"""

from __future__ import annotations

from pathlib import Path

from licfpga.model.checkpoint import shipped_checkpoints
from licfpga.model.package_data import SAMPLES_DIR

from . import classical
from .codec import Codec
from .evaluate import evaluate, load_images, measure_learned, write_outputs
from .images import save_image
from .metrics import bpp, ms_ssim, psnr

SAMPLES = SAMPLES_DIR
DEMO_CODECS = ("jpeg", "webp", "heif")


def print_integer_backend(images, out: Path, artifact: str = "int-student-0.013") -> None:
    """The same samples through the bit-exact integer model (the FPGA's arithmetic)."""
    from .integer_codec import IntegerCodec, shipped_artifacts

    if not any(a.stem == artifact for a in shipped_artifacts()):
        print(f"\n(integer backend: artifact {artifact} not shipped; skipped)")
        return
    codec = IntegerCodec(artifact)
    print(f"\ninteger backend ({artifact}: int8 student, fixed-point GDN; what the FPGA computes)")
    head = f"{'image':<10} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'enc ms':>8} {'dec ms':>8}"
    print(head + "\n" + "-" * len(head))
    for name, img in images:
        row, data, rec = measure_learned(codec, name, img)
        (out / f"{name}.int.lic").write_bytes(data)
        save_image(rec, out / f"{name}_int.png")
        print(f"{name:<10} {row['bpp']:7.4f} {row['psnr']:7.2f} {row['ms_ssim']:8.4f} {row['encode_ms']:8.0f} "
              f"{row['decode_ms']:8.0f}")


def main(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = load_images(SAMPLES)
    codec = Codec.load(args.model)
    jpeg = classical.get_codec("jpeg")
    print(f"model {codec.name}: {codec.model_id}\n")
    head = (f"{'image':<10} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'enc ms':>8} {'dec ms':>8} | "
            f"{'JPEG bpp':>8} {'PSNR':>7} {'MS-SSIM':>8}")
    print(head + "\n" + "-" * len(head))
    for name, img in images:
        row, data, rec = measure_learned(codec, name, img)
        (out / f"{name}.lic").write_bytes(data)
        save_image(rec, out / f"{name}_lic.png")
        jdata, jrec, q = classical.encode_at_bpp(jpeg, img, row["bpp"])
        (out / f"{name}_jpeg_q{q}.jpg").write_bytes(jdata)
        h, w = img.shape[:2]
        print(f"{name:<10} {row['bpp']:7.4f} {row['psnr']:7.2f} {row['ms_ssim']:8.4f} {row['encode_ms']:8.0f} "
              f"{row['decode_ms']:8.0f} | {bpp(len(jdata), h, w):8.4f} {psnr(img, jrec):7.2f} {ms_ssim(img, jrec):8.4f}")

    print_integer_backend(images, out)

    ckpts = [p.stem for p in shipped_checkpoints()]
    print(f"\nRD curves of {len(ckpts)} shipped checkpoints vs {', '.join(DEMO_CODECS)} on {len(images)} samples")
    result = evaluate(images, ckpts, list(DEMO_CODECS), anchors=("jpeg", "heif"))
    written = write_outputs(result, out, f"licfpga demo ({len(images)} samples)")
    print(written["markdown"])
    print(f"\nwrote {out}/*.lic, *_lic.png, *_jpeg_*.jpg, {written['plots']['psnr']}, {written['plots']['ms-ssim']}")
