"""Where the files shipped inside the package are, read through :mod:`importlib.resources`
(so they are found from a wheel or ``pip install`` as well as from the source tree). One
place for each; ``pyproject.toml``'s ``[tool.setuptools.package-data]`` lists them:

* :data:`SHIPPED_DIR` -- ``licfpga.model/checkpoints``: float checkpoints (``*.pt``),
  integer artifacts (``int-*.json`` + ``.npz``), QAT students (``qat/*.pt``);
* :data:`PREVIOUS_DIR` -- ``checkpoints/previous``: the models of earlier releases (same
  names), kept so that files they wrote still decode (matched by model id + weights hash);
  never picked by name or for encoding;
* :data:`VAL_SPLIT` -- ``licfpga.model/data/val_split.txt``: the held-out validation list;
* :data:`SAMPLES_DIR` -- ``licfpga.host/samples``: the demo's sample images.

No torch (the board runtime imports it).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def resource_path(package: str, *parts: str) -> Path:
    """A file or folder of ``package`` as a filesystem path (licfpga is never installed
    zipped: its C extension and ``np.load`` of the artifacts need real files)."""
    p = files(package).joinpath(*parts)
    if not isinstance(p, Path):
        raise RuntimeError(f"{package} is not installed as plain files ({p!r}); reinstall it unzipped")
    return p


SHIPPED_DIR = resource_path("licfpga.model", "checkpoints")
QAT_DIR = SHIPPED_DIR / "qat"
PREVIOUS_DIR = SHIPPED_DIR / "previous"
VAL_SPLIT = resource_path("licfpga.model", "data", "val_split.txt")
SAMPLES_DIR = resource_path("licfpga.host", "samples")
