"""Brevitas quantisation-aware student: int8 convolutions, 32-bit fixed-point GDN.

:func:`quantize_student` turns a float ``hyperprior`` student (``licfpga.model.zoo``) into a
:class:`QuantHyperprior` with the same weights:

* every ``Conv2d`` / ``ConvTranspose2d`` -> Brevitas ``QuantConv2d`` / ``QuantConvTranspose2d``,
  per-output-channel weight scales (8 bit default; 4 and 6 per layer via ``bits``),
  ``Int32Bias`` (bias in the accumulator's scale, as the hardware adds it);
* every activation is an explicit Brevitas quantiser: ``QuantIdentity`` (int8) before each
  GDN/IGDN, ``QuantReLU`` (uint8) in the hyper-transforms;
* GDN / IGDN -> :class:`QuantGDN`: float GDN in training (on the int8 input), and in eval the
  bit-exact fixed-point kernel of ``model/golden/gdn.py`` (what ``hls/gdn/gdn_axis.sv``
  computes) between the int8 input quantiser and its own int8 output quantiser;
* the quantities the entropy coder sees are integers on a fixed grid (constant scale 1):
  the latent ``y`` (int8, narrow range), ``z`` (int8) and ``|y|`` into h_a (uint8); the
  pixels are uint8 with constant scale 1/255 in and out; the entropy-model scales are the
  uint8 output of h_s' last ``QuantReLU`` and are turned into CDF indexes by integer
  thresholds (``licfpga.model.golden.network``), so encoder and decoder agree bit for bit.

Training uses straight-through rounding everywhere (Brevitas' quantisers), so the
likelihoods are those of the integers that will be coded. ``po2=True`` restricts every
scale to a power of two (requantisation becomes a shift); the RD cost of that is measured
by ``licfpga qat --po2`` (see README).
"""

from __future__ import annotations

import argparse
import copy
import csv
import fnmatch
import math
import time
from pathlib import Path

import brevitas.nn as qnn
import numpy as np
import torch
import torch.nn as nn
from brevitas.graph.calibrate import calibration_mode
from brevitas.inject.enum import ScalingImplType
from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8ActPerTensorFloat, Int8WeightPerChannelFloat,
                            Int8WeightPerTensorFixedPoint, Int32Bias, Uint8ActPerTensorFixedPoint,
                            Uint8ActPerTensorFloat)
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import GDN, GDN1
from compressai.models import CompressionModel
from tqdm import tqdm

from .geometry import STRIDE
from .golden import gdn as golden_gdn

WEIGHT_BITS = (4, 6, 8)
TRANSFORMS = ("g_a", "h_a", "h_s", "g_s")
ENTROPY_MODELS = ("entropy_bottleneck", "gaussian_conditional")


class Int8WeightPerChannelFixedPoint(Int8WeightPerTensorFixedPoint):
    """Per-output-channel power-of-two weight scales (Brevitas ships only per-tensor)."""
    scaling_per_output_channel = True


def _const_act(signed: bool, max_val: float) -> nn.Module:
    """Quantiser with a constant scale: int8 narrow range [-127, 127] with scale
    ``max_val/127`` or uint8 [0, 255] with scale ``max_val/255``."""
    if signed:
        return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, scaling_impl_type=ScalingImplType.CONST,
                                 scaling_init=max_val, narrow_range=True, return_quant_tensor=True)
    return qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, scaling_impl_type=ScalingImplType.CONST,
                             scaling_init=max_val, return_quant_tensor=True)


def _act(signed: bool, po2: bool) -> nn.Module:
    if signed:
        return qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint if po2 else Int8ActPerTensorFloat,
                                 return_quant_tensor=True)
    return qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint if po2 else Uint8ActPerTensorFloat,
                         return_quant_tensor=True)


def _value(t):
    return t.value if hasattr(t, "value") else t


class QuantGDN(nn.Module):
    """GDN / IGDN between an int8 input (QuantTensor) and its own int8 output quantiser.

    Holds a CompressAI ``GDN`` (same parameters and non-negative re-parametrisation, so
    float weights load unchanged). Eval mode runs :func:`golden_gdn.gdn_int` on the int8
    input with the quantisers' scales: exactly the hardware kernel."""

    def __init__(self, channels: int, inverse: bool, po2: bool = False, simplified: bool = False):
        super().__init__()
        self.gdn = (GDN1 if simplified else GDN)(channels, inverse=inverse)
        self.variant = "simplified" if simplified else "gdn"
        self.out_quant = _act(True, po2)
        self._cache = None

    @property
    def inverse(self) -> bool:
        return bool(self.gdn.inverse)

    def float_params(self) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            beta = self.gdn.beta_reparam(self.gdn.beta).double().numpy()
            gamma = self.gdn.gamma_reparam(self.gdn.gamma).double().numpy()
        return beta, gamma

    def int_params(self, in_scale: float, out_scale: float) -> golden_gdn.GDNIntParams:
        beta, gamma = self.float_params()
        key = (in_scale, out_scale, beta.tobytes(), gamma.tobytes())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, golden_gdn.quantize_gdn_params(beta, gamma, in_scale, out_scale, self.inverse,
                                                               self.variant))
        return self._cache[1]

    def forward(self, x):
        y = self.out_quant(self.gdn(_value(x)))
        if self.training or not hasattr(x, "scale") or not hasattr(y, "scale"):
            return y        # training, or Brevitas calibration (quantisers pass floats through)
        s_in, s_out = float(x.scale), float(y.scale)
        p = self.int_params(s_in, s_out)
        q = x.int().detach().cpu().numpy().astype(np.int8)
        yi = np.stack([golden_gdn.gdn_int(q[n], p) for n in range(q.shape[0])])
        return self.out_quant(torch.from_numpy(yi.astype(np.float32)) * y.scale)


def _noisy(v: torch.Tensor, bound: int) -> torch.Tensor:
    """The training proxy of rounding for the rate term: ``v`` + U(-1/2, 1/2), inside the
    int8 narrow range the integer is clamped to."""
    return v.clamp(-bound, bound) + torch.empty_like(v).uniform_(-0.5, 0.5)


def _bottleneck_likelihood(eb: EntropyBottleneck, z: torch.Tensor) -> torch.Tensor:
    """P(z) of integer ``z`` [B, C, H, W] (CompressAI's ``_likelihood`` wants [C, 1, -1])."""
    b, c = z.shape[:2]
    lik, _, _ = eb._likelihood(z.transpose(0, 1).reshape(c, 1, -1))
    return lik.reshape(c, b, *z.shape[2:]).transpose(0, 1)


def _quant_conv(m: nn.Module, bits: int, po2: bool) -> nn.Module:
    wq = Int8WeightPerChannelFixedPoint if po2 else Int8WeightPerChannelFloat
    kw = dict(weight_quant=wq, weight_bit_width=bits, bias_quant=Int32Bias, return_quant_tensor=False)
    if isinstance(m, nn.ConvTranspose2d):
        q = qnn.QuantConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                                     padding=m.padding, output_padding=m.output_padding, **kw)
    else:
        q = qnn.QuantConv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                            padding=m.padding, **kw)
    with torch.no_grad():
        q.weight.copy_(m.weight)
        q.bias.copy_(m.bias)
    return q


def _bits_for(name: str, bits: dict[str, int] | None) -> int:
    """Weight bit width of layer ``name`` (e.g. ``g_a.2``): the last matching glob wins."""
    b = 8
    for pattern, v in (bits or {}).items():
        if fnmatch.fnmatchcase(name, pattern):
            b = v
    if b not in WEIGHT_BITS:
        raise ValueError(f"weight bit width {b} for {name}: choose one of {WEIGHT_BITS}")
    return b


def quant_transform(seq: nn.Sequential, name: str, bits, po2: bool, last: nn.Module | None) -> nn.Sequential:
    """Map a float transform onto Brevitas layers; ``last`` quantises its output."""
    layers: list[nn.Module] = []
    for i, m in enumerate(seq):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            layers.append(_quant_conv(m, _bits_for(f"{name}.{i}", bits), po2))
        elif isinstance(m, GDN):
            layers.append(_act(True, po2))                 # int8 input of the GDN kernel
            g = QuantGDN(m.beta.numel(), m.inverse, po2, simplified=isinstance(m, GDN1))
            g.gdn.load_state_dict(m.state_dict())
            layers.append(g)
        elif isinstance(m, nn.ReLU):
            layers.append(_act(False, po2))
        else:
            raise TypeError(f"{name}.{i}: {type(m).__name__} has no quantised mapping")
    if last is not None:
        layers.append(last)
    return nn.Sequential(*layers)


class QuantHyperprior(CompressionModel):
    """The deployable student: Ballé 2018 scale hyperprior, every tensor on an integer grid."""

    def __init__(self, N: int, M: int, bits: dict | None = None, po2: bool = False,
                 float_model: nn.Module | None = None, Nh: int | None = None, gdn: str = "gdn"):
        super().__init__()
        from .zoo import ScaleHyperprior

        self.N, self.M, self.bits, self.po2 = N, M, dict(bits or {}), po2
        ref = float_model if float_model is not None else ScaleHyperprior(N, M, gdn=gdn, Nh=Nh)
        self.Nh = ref.h_a[-1].out_channels
        self.gdn = "simplified" if any(isinstance(m, GDN1) for m in ref.g_a) else "gdn"
        self.entropy_bottleneck = EntropyBottleneck(ref.h_a[-1].out_channels)
        self.gaussian_conditional = GaussianConditional(None)
        self.x_quant = _const_act(False, 1.0)               # pixels: uint8, scale 1/255
        self.g_a = quant_transform(ref.g_a, "g_a", bits, po2, _const_act(True, 127.0))   # y: int8, scale 1
        self.abs_quant = _const_act(False, 255.0)            # |y|: uint8, scale 1
        self.h_a = quant_transform(ref.h_a, "h_a", bits, po2, _const_act(True, 127.0))   # z: int8, scale 1
        self.z_in = _const_act(True, 127.0)
        self.h_s = quant_transform(ref.h_s, "h_s", bits, po2, None)                      # ends in QuantReLU
        self.g_s = quant_transform(ref.g_s, "g_s", bits, po2, _const_act(False, 1.0))    # pixels out

    @property
    def downsampling_factor(self) -> int:
        return STRIDE

    def forward(self, x: torch.Tensor) -> dict:
        y_float = self.g_a[:-1](self.x_quant(x))
        y_q = self.g_a[-1](y_float)                     # the int8 latent (scale 1)
        y_hat = _value(y_q)
        z_float = self.h_a[:-1](self.abs_quant(y_hat.abs()))
        z_hat = _value(self.h_a[-1](z_float))
        scales = _value(self.h_s(self.z_in(z_hat)))
        gc, eb = self.gaussian_conditional, self.entropy_bottleneck
        # Training: the rate of y and z is measured on the unrounded value + U(-1/2, 1/2) noise,
        # as the float model was trained, while synthesis and h_s see the rounded integers
        # (straight-through). With the rate on the rounded value (gradient ~0 inside a bin), a
        # channel that float training had parked on a constant drifts to a rounding boundary
        # and starts costing bits: z cost 4.6x the float student's rate (+10 % bpp in total).
        y_rate, z_rate = y_hat, z_hat
        if self.training:
            y_rate = _noisy(_value(y_float), 127)
            z_rate = _noisy(_value(z_float), 127)
        y_lik = gc.likelihood_lower_bound(gc._likelihood(y_rate, scales))
        z_lik = eb.likelihood_lower_bound(_bottleneck_likelihood(eb, z_rate))
        x_hat = _value(self.g_s(y_q))
        return {"x_hat": x_hat, "likelihoods": {"y": y_lik, "z": z_lik}, "y_hat": y_hat,
                "z_hat": z_hat, "scales": scales}

    def config(self) -> dict:
        return {"N": self.N, "M": self.M, "Nh": self.Nh, "gdn": self.gdn, "bits": self.bits, "po2": self.po2}


def quantize_student(student: nn.Module, bits: dict | None = None, po2: bool = False) -> QuantHyperprior:
    """A :class:`QuantHyperprior` carrying the float student's weights (not yet calibrated)."""
    N, M = student.g_a[0].out_channels, student.g_a[-1].out_channels
    q = QuantHyperprior(N, M, bits, po2, float_model=student)
    # copies, not load_state_dict: a final checkpoint's CDF buffers are sized, fresh ones empty
    q.entropy_bottleneck = copy.deepcopy(student.entropy_bottleneck)
    q.gaussian_conditional = copy.deepcopy(student.gaussian_conditional)
    return q


def calibrate(model: QuantHyperprior, batches) -> None:
    """Initialise every learned activation scale from data (Brevitas calibration mode)."""
    model.eval()
    # only the quantised layers: calibration_mode calls `init_scale()` on every module that
    # has one, and CompressAI's EntropyBottleneck has a float attribute of that name
    quantised = nn.ModuleList([m for n, m in model.named_children() if n not in ENTROPY_MODELS])
    with torch.no_grad(), calibration_mode(quantised):
        for x in batches:
            model(x)


def save_qat(path, model: QuantHyperprior, meta: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # tensors + plain containers only: load_qat reads it with weights_only=True
    state = {"format": "licfpga-qat/1", "config": _plain(model.config()), "state_dict": model.state_dict(),
             "meta": _plain(dict(meta or {}))}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _plain(obj):
    """JSON-like plain data (dict/list/str/number/bool/None; anything else as its str), so a
    checkpoint never needs pickle's arbitrary objects to be read back."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def load_qat(path) -> tuple[QuantHyperprior, dict]:
    """A QAT checkpoint, read with ``torch.load(weights_only=True)`` (tensors and plain data
    only: a checkpoint never runs code). CheckpointError when missing, unreadable or not ours."""
    from .checkpoint import CheckpointError, safe_load

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"QAT checkpoint not found: {path}")
    state = safe_load(path, "QAT checkpoint")
    if not isinstance(state, dict) or state.get("format") != "licfpga-qat/1":
        raise CheckpointError(f"{path} is not a licfpga QAT checkpoint (format licfpga-qat/1)")
    c = state["config"]
    model = QuantHyperprior(c["N"], c["M"], c["bits"], c["po2"], Nh=c.get("Nh"), gdn=c.get("gdn", "gdn"))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["state_dict"].items()})
    model.eval()
    return model, state


def ship_qat(src, name: str, dst_dir=None) -> Path:
    """Shipped copy of a QAT checkpoint: convolution weights as float16 (halves the
    repository size), every scale, bias, GDN and entropy parameter float32. The shipped
    file *is* the model: its integer artifact is exported from it, after this rounding."""
    from .checkpoint import SHIPPED_DIR

    model, state = load_qat(src)
    sd = {k: (v.half() if k.endswith(".weight") and v.is_floating_point() and v.numel() > 1024 else v)
          for k, v in model.state_dict().items()}
    dst = Path(dst_dir or SHIPPED_DIR) / f"{name}.pt"
    torch.save({**state, "state_dict": sd, "meta": {**state["meta"], "name": name, "source": str(src)}}, dst)
    return dst


def parse_bits(specs) -> dict[str, int]:
    """``["g_a.0=6", "h_s.*=4"]`` -> {"g_a.0": 6, "h_s.*": 4}."""
    out = {}
    for s in specs or []:
        if "=" not in s:
            raise ValueError(f"--bits takes LAYER=BITS (glob allowed), got {s!r}")
        k, v = s.split("=", 1)
        out[k] = int(v)
        if out[k] not in WEIGHT_BITS:
            raise ValueError(f"--bits {s}: choose a width in {WEIGHT_BITS}")
    return out


def main(argv=None) -> Path:
    """``licfpga qat``: calibrate + QAT fine-tune a float student, save a QAT checkpoint."""
    from .checkpoint import load_model, resolve_checkpoint
    from .train import SPLIT, RandomCrops, center_crops, lr_at, optimizer_step, rd_loss, train_val_files

    p = argparse.ArgumentParser(prog="licfpga qat", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", required=True, help="float student checkpoint (hyperprior)")
    p.add_argument("--bits", nargs="*", default=[], help="weight bits per layer, e.g. g_a.0=6 'h_s.*=4'")
    p.add_argument("--po2", action="store_true", help="power-of-two scales everywhere")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--calib-batches", type=int, default=8)
    p.add_argument("--data", default="../shared/data/train")
    p.add_argument("--val-data", default=SPLIT, help="'split' (default): held-out list of --data; or a folder")
    p.add_argument("--val-images", type=int, default=4)
    p.add_argument("--out", default="runs/qat")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    student, sstate = load_model(resolve_checkpoint(args.student), update=False)
    if sstate["arch"] != "hyperprior":
        raise SystemExit(f"--student must be a hyperprior student, got {sstate['arch']}")
    lmbda = float(sstate["meta"]["lambda"])
    model = quantize_student(student, parse_bits(args.bits), args.po2)
    train_files, val_files = train_val_files(args.data, args.val_data)
    crops = RandomCrops(train_files, args.patch, seed=args.seed + 777)
    calibrate(model, [crops.batch(args.batch) for _ in range(args.calib_batches)])
    val = center_crops(val_files, 256, args.val_images) if args.val_images else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "log.csv", "w", newline="")
    log = csv.writer(logf)
    log.writerow(["step", "split", "loss", "bpp", "psnr", "lr", "seconds"])

    def validate(step):
        if val is None:
            return
        model.eval()
        with torch.no_grad():
            v = rd_loss(model(val), val, lmbda, "mse")
        psnr = -10 * math.log10(v["mse"].item())
        log.writerow([step, "val", v["loss"].item(), v["bpp"].item(), psnr, "", round(time.time() - t0, 1)])
        logf.flush()
        tqdm.write(f"QAT step {step}: val loss {v['loss'].item():.4f} bpp {v['bpp'].item():.4f} PSNR {psnr:.2f} dB")

    t0 = time.time()
    validate(0)
    aux_names = {n for n, _ in model.named_parameters() if n.endswith(".quantiles")}
    params = [q for n, q in model.named_parameters() if n not in aux_names]
    opt = torch.optim.Adam(params, lr=args.lr)
    aux_opt = torch.optim.Adam([q for n, q in model.named_parameters() if n in aux_names], lr=1e-3)
    for step in tqdm(range(args.steps), desc=f"QAT λ={lmbda}", unit="step"):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, 0.85)
        model.train()
        x = crops.batch(args.batch)
        res = rd_loss(model(x), x, lmbda, "mse")
        optimizer_step(res["loss"], params, opt, model, aux_opt, 1.0)
        if step % 50 == 0:
            log.writerow([step, "train", res["loss"].item(), res["bpp"].item(),
                          -10 * math.log10(max(res["mse"].item(), 1e-10)), args.lr, round(time.time() - t0, 1)])
            logf.flush()
    validate(args.steps)
    logf.close()
    final = out / "final.pt"
    save_qat(final, model, {"lambda": lmbda, "student": str(args.student), "steps": args.steps,
                            "student_kwargs": sstate["kwargs"]})
    return final


if __name__ == "__main__":
    main()
