"""Which backend decodes a file: chosen from what the file names (its model id and weights
hash), never from the name's spelling alone.

Each backend declares how it recognises its model ids (``recognises(model_id)``) and
finds, among its shipped (or given) models, the one whose identity the file names
(``for_file(f, candidates, **kwargs)``: a codec, None when the id is not of its kind, or
:class:`~licfpga.host.container.ContainerError` when it is but no such model is here):

* :class:`licfpga.host.integer_codec.IntegerCodec` parses the id into architecture + widths
  and matches the shipped integer artifacts (model id + SHA-256 of the artifact);
* :class:`licfpga.host.codec.Codec` (float, torch) matches the shipped checkpoints.

They are asked in :data:`BACKENDS` order, each imported only when asked: the integer backend
first, so that decoding an integer file never imports torch.
"""

from __future__ import annotations

import importlib

from .codec_base import BaseCodec
from .container import ContainerError, LicFile, unpack

# (module, class): the torch-free integer backend first, the float one second
BACKENDS = (("licfpga.host.integer_codec", "IntegerCodec"), ("licfpga.host.codec", "Codec"))


def backend_classes():
    """The backend classes, in the order :func:`codec_for_file` asks them (imports them all)."""
    return [getattr(importlib.import_module(m), c) for m, c in BACKENDS]


def codec_for_file(data: bytes | LicFile, candidates=None, **kwargs) -> BaseCodec:
    """The codec whose model (shipped, or among ``candidates``) the file names."""
    f = data if isinstance(data, LicFile) else unpack(data)
    missing = None
    for module, cls in BACKENDS:
        try:
            backend = getattr(importlib.import_module(module), cls)
        except ImportError as exc:       # e.g. the float backend on a board without torch
            missing = exc
            continue
        codec = backend.for_file(f, candidates, **kwargs)
        if codec is not None:
            return codec
    hint = f" (a backend could not be imported: {missing})" if missing else ""
    raise ContainerError(f"no available checkpoint or integer artifact matches the file's model "
                         f"{f.model_id} (weights {f.weights_hash.hex()[:12]}); pass --model{hint}")
