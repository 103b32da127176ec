"""Checkpoints: what a model is (architecture + widths) travels with its weights.

A checkpoint is a ``torch.save`` dict::

    {"format": "licfpga-ckpt/1", "arch": "mean-scale", "kwargs": {"N": 64, "M": 96},
     "state_dict": {...}, "meta": {"lambda": 0.013, "metric": "mse", "step": 6000, ...}}

Training checkpoints also hold optimizer/scheduler state for ``--resume``; shipped ones
are stripped and carry the entropy coder's CDF tables (``model.update()`` done).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

from .package_data import PREVIOUS_DIR, SHIPPED_DIR
from .zoo import build_model

FORMAT = "licfpga-ckpt/1"


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable, or not one of ours."""


def save_checkpoint(path, model, arch: str, kwargs: dict, meta: dict | None = None, **extra) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "arch": arch, "kwargs": dict(kwargs),
             "state_dict": model.state_dict(), "meta": dict(meta or {}), **extra}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written checkpoint


def safe_load(path, what: str = "checkpoint"):
    """``torch.load(weights_only=True)``: tensors and plain data only, a checkpoint never runs
    code. Every failure is a one-sentence :class:`CheckpointError` (a file holding other
    Python objects names the first one refused)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        msg = " ".join(str(exc).split())
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", msg)
        if refused:
            msg = (f"it holds a Python object ({refused.group(1)}) besides tensors and plain data; "
                   "refused, since loading it could run code")
        raise CheckpointError(f"cannot read {what} {path}: {msg[:300]}") from None


def read_checkpoint(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    state = safe_load(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a licfpga checkpoint (format {FORMAT})")
    return state


def load_model(path, update: bool = True):
    """Return ``(model, checkpoint_dict)`` in eval mode with entropy-coder tables ready."""
    state = read_checkpoint(path)
    model = build_model(state["arch"], **state["kwargs"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["state_dict"].items()})
    model.eval()
    if update:
        model.update(force=False)
    return model, state


def model_id(state: dict) -> str:
    """Human-readable model identifier stored in every compressed file."""
    return state["arch"] + json.dumps(state["kwargs"], sort_keys=True, separators=(",", ":"))


def weights_hash(model: torch.nn.Module) -> bytes:
    """SHA-256 over every tensor of the state dict (names, dtypes, shapes, bytes), including
    the entropy coder's CDF tables: a decoder with different weights or tables than the
    encoder would silently decode garbage, so files record this and decoders check it."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.digest()


_KEEP_FP32 = ("gamma", "beta", "quantiles", "entropy_bottleneck", "gaussian_conditional")


def export_shipped(src, name: str, dst_dir=SHIPPED_DIR) -> Path:
    """Write a training run's final checkpoint as a shipped one: entropy-coder tables
    included, no optimizer state, and convolution weights stored as float16 (halves the
    repository size; loading casts back to float32, and every RD figure we report is
    measured on the loaded float16-rounded weights). GDN and entropy-model parameters
    stay float32: their small values feed square roots and CDF tables."""
    model, state = load_model(src)
    sd = {k: (v.half() if v.is_floating_point() and v.numel() > 1024 and not any(s in k for s in _KEEP_FP32)
              else v) for k, v in model.state_dict().items()}
    dst = Path(dst_dir) / f"{name}.pt"
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "arch": state["arch"], "kwargs": state["kwargs"], "state_dict": sd,
                "meta": {**state["meta"], "name": name, "source": str(src)}}, dst)
    return dst


def shipped_checkpoints() -> list[Path]:
    return sorted(SHIPPED_DIR.glob("*.pt"))


def decodable_checkpoints() -> list[Path]:
    """The shipped checkpoints, then those of earlier releases (``previous/``): a file is
    decoded by whichever one its model id and weights hash name."""
    return shipped_checkpoints() + sorted(PREVIOUS_DIR.glob("*.pt"))


def resolve_checkpoint(name_or_path) -> Path:
    """Accept a path, or the stem of a shipped checkpoint (e.g. ``mean-scale-q3``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = SHIPPED_DIR / f"{name_or_path}.pt"
    if shipped.is_file():
        return shipped
    names = ", ".join(c.stem for c in shipped_checkpoints()) or "none"
    raise CheckpointError(f"no checkpoint {name_or_path!r} (a file path, or a shipped one: {names})")
