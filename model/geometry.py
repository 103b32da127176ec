"""The models' geometry, in one place: the stride every shipped architecture has and how a
frame is padded to it. NumPy only (the board runtime imports it).

Every zoo model, the QAT students and the integer model downsample by ``2**6 = 64``
(g_a x16, h_a x4): a frame's height and width must be multiples of :data:`STRIDE`, so the
codecs pad each tile to the next multiple by **edge replication** (:func:`pad_to_stride`)
and crop the decoded pixels back; the FPGA planner sizes frames the same way
(:func:`padded`).
"""

from __future__ import annotations

import numpy as np

STRIDE = 64     # g_a downsamples x16, h_a x4


def padded(n: int, stride: int = STRIDE) -> int:
    """``n`` rounded up to a multiple of ``stride``."""
    return -(-n // stride) * stride


def latent_size(n: int, stride: int = STRIDE) -> int:
    """Positions of the hyper-latent z along an edge of ``n`` pixels (``ceil(n / stride)``)."""
    return -(-n // stride)


def pad_to_stride(rgb: np.ndarray, stride: int = STRIDE) -> np.ndarray:
    """``rgb`` ([H, W, ...]) padded at the bottom and right to multiples of ``stride`` by
    replicating the last row and column (``rgb`` itself when nothing is needed)."""
    h, w = rgb.shape[:2]
    ph, pw = (-h) % stride, (-w) % stride
    if not (ph or pw):
        return rgb
    return np.pad(rgb, ((0, ph), (0, pw)) + ((0, 0),) * (rgb.ndim - 2), mode="edge")
