"""Rate-distortion utilities: Bjøntegaard deltas, CompressAI-style results, RD plots.

Bjøntegaard delta (VCEG-M33), piecewise-cubic variant
-----------------------------------------------------
:func:`bd_rate` interpolates log-rate as a function of distortion for each curve with a
monotone piecewise-cubic Hermite interpolant (PCHIP, as in later VCEG/JVET practice and
in the learned-compression literature, instead of the original single cubic fit),
integrates both over the distortion interval the two curves share, and turns the mean
log-rate difference into a percentage::

    BD-rate = (exp(mean(ln r2 - ln r1)) - 1) * 100     (negative: curve 2 saves bits)

:func:`bd_psnr` swaps the roles (distortion as a function of log-rate, integrated over the
shared log-rate interval) and returns the mean distortion gain of curve 2 in the units of
the distortion (dB for PSNR or MS-SSIM-dB).

Each curve needs at least 2 points (PCHIP's minimum, where it is linear); the standard
is 4 points per curve, and more is fine. No extrapolation is ever done: curves whose
ranges do not overlap raise ``ValueError``.

Results files
-------------
:func:`results_json` writes the format of CompressAI's ``results/`` files and its plotting
tool (``{"name", "description", "results": {"bpp": [...], "psnr-rgb": [...], ...}}``, one
mean per RD point), plus our per-image rows under ``"per_image"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from .metrics import ms_ssim_db


# --------------------------------------------------------------------------- Bjøntegaard

def _curve(x, y, xname: str, yname: str, which: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one curve and return it sorted by ``x`` (which must be strictly increasing)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"curve {which}: {xname} has {x.size} values but {yname} has {y.size}")
    if x.size < 2:
        raise ValueError(f"curve {which}: {x.size} RD point(s); the PCHIP Bjøntegaard delta needs "
                         f"at least 2 (4 per curve is the standard)")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"curve {which}: rates and distortions must be finite numbers")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"curve {which}: repeated {xname} value {x[np.argmin(np.diff(x))]}; "
                         f"{yname} must be a function of {xname}")
    return x, y


def _log_rate(r, which: str) -> np.ndarray:
    r = np.asarray(r, dtype=np.float64).ravel()
    if np.any(~(r > 0)):  # also catches NaN
        raise ValueError(f"curve {which}: rates must be positive, got {r.tolist()}")
    return np.log(r)


def _mean_gap(x1, y1, x2, y2, xname: str) -> float:
    """Mean of (y2 - y1) over the shared x interval, both PCHIP-interpolated."""
    from scipy.interpolate import PchipInterpolator

    lo = max(x1[0], x2[0])
    hi = min(x1[-1], x2[-1])
    if not hi > lo:
        raise ValueError(f"the curves do not overlap in {xname}: [{x1[0]:.4g}, {x1[-1]:.4g}] vs "
                         f"[{x2[0]:.4g}, {x2[-1]:.4g}]")
    a1 = PchipInterpolator(x1, y1, extrapolate=False).integrate(lo, hi)
    a2 = PchipInterpolator(x2, y2, extrapolate=False).integrate(lo, hi)
    return float((a2 - a1) / (hi - lo))


def bd_rate(r1, d1, r2, d2) -> float:
    """Bjøntegaard delta rate of curve 2 against anchor curve 1, in percent.

    ``r*`` are rates (bpp, bytes, ... -- any positive unit, the same for both curves),
    ``d*`` distortions where higher is better (PSNR dB, MS-SSIM dB). Negative means
    curve 2 needs fewer bits for the same quality. Raises ``ValueError`` on fewer than 2
    points per curve, repeated distortions, non-positive rates, or no overlap.
    """
    d1s, lr1 = _curve(d1, _log_rate(r1, "1"), "distortion", "log-rate", "1")
    d2s, lr2 = _curve(d2, _log_rate(r2, "2"), "distortion", "log-rate", "2")
    return (math.exp(_mean_gap(d1s, lr1, d2s, lr2, "distortion")) - 1.0) * 100.0


def bd_psnr(r1, d1, r2, d2) -> float:
    """Bjøntegaard delta distortion of curve 2 against anchor curve 1 (units of ``d``, e.g.
    dB); positive means curve 2 is better at the same rate. Same checks as :func:`bd_rate`."""
    lr1, d1s = _curve(_log_rate(r1, "1"), d1, "log-rate", "distortion", "1")
    lr2, d2s = _curve(_log_rate(r2, "2"), d2, "log-rate", "distortion", "2")
    return _mean_gap(lr1, d1s, lr2, d2s, "log-rate")


# --------------------------------------------------------------------------- results files

_POINT_KEYS = ("point", "quality", "lambda")


def _clean(v):
    """JSON-safe scalar: numpy -> Python, NaN/inf -> None."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _num(v) -> float:
    return math.nan if v is None else float(v)


def results_json(name: str, per_image_rows: Iterable[Mapping], description: str | None = None,
                 point_key: str | None = None) -> dict:
    """CompressAI-compatible results dict from per-image measurements.

    ``per_image_rows``: one mapping per (image, RD point) with ``bpp``, ``psnr`` and
    ``ms_ssim`` (NaN/None allowed), the RD point's id under ``point_key`` (default: the
    first of ``point``/``quality``/``lambda`` present), and optionally ``image``.
    Rows from :func:`licfpga.host.classical.rd_curve` qualify once ``image`` is added.

    Returns ``{"name", "description", "results": {"bpp", "psnr-rgb", "ms-ssim-rgb",
    "ms-ssim-rgb-db", <point_key>}, "per_image": [...]}``: every list in ``results`` has
    one entry per RD point, sorted by mean bpp; each is the plain mean over that point's
    images (``ms-ssim-rgb-db`` is the dB value of the mean MS-SSIM, as CompressAI's plot
    tool computes it). Means that are undefined (an image without MS-SSIM) become
    ``None``, so ``json.dump`` writes strict JSON. Every RD point must cover the same
    images (same set of ``image`` names, or the same count when rows carry no names).
    """
    rows = [dict(r) for r in per_image_rows]
    if not rows:
        raise ValueError("results_json: no rows")
    if point_key is None:
        point_key = next((k for k in _POINT_KEYS if k in rows[0]), None)
        if point_key is None:
            raise ValueError(f"results_json: rows carry none of the RD-point keys {_POINT_KEYS}; "
                             f"pass point_key=")
    groups: dict = {}
    for r in rows:
        for k in (point_key, "bpp", "psnr"):
            if k not in r:
                raise ValueError(f"results_json: row without {k!r}: {r}")
        groups.setdefault(_clean(r[point_key]), []).append(r)

    sizes = {p: len(g) for p, g in groups.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"results_json: RD points cover different numbers of images: {sizes}")
    if "image" in rows[0]:
        sets = {p: frozenset(str(r.get("image")) for r in g) for p, g in groups.items()}
        if len(set(sets.values())) != 1:
            raise ValueError("results_json: RD points cover different images")

    def mean(g, key):
        return float(np.mean([_num(r.get(key)) for r in g]))

    points = sorted(groups, key=lambda p: mean(groups[p], "bpp"))
    res = {"bpp": [], "psnr-rgb": [], "ms-ssim-rgb": [], "ms-ssim-rgb-db": [], point_key: []}
    for p in points:
        g = groups[p]
        m_ssim = mean(g, "ms_ssim")
        res["bpp"].append(_clean(mean(g, "bpp")))
        res["psnr-rgb"].append(_clean(mean(g, "psnr")))
        res["ms-ssim-rgb"].append(_clean(m_ssim))
        res["ms-ssim-rgb-db"].append(_clean(ms_ssim_db(m_ssim)))
        res[point_key].append(p)
    n_img = next(iter(sizes.values()))
    if description is None:
        description = (f"{name}: mean over {n_img} image(s) at each of {len(points)} RD points "
                       f"({point_key})")
    per_image = [{k: _clean(v) for k, v in r.items() if not isinstance(v, (bytes, bytearray, np.ndarray))}
                 for r in rows]
    return {"name": name, "description": description, "results": res, "per_image": per_image}


# --------------------------------------------------------------------------- plots

_METRICS = {
    "psnr": ("PSNR-RGB [dB]", "PSNR"),
    "ms-ssim": ("MS-SSIM-RGB [dB]", "MS-SSIM"),
}
_METRIC_ALIASES = {"psnr": "psnr", "psnr-rgb": "psnr", "ms-ssim": "ms-ssim", "msssim": "ms-ssim",
                   "ms_ssim": "ms-ssim", "ms-ssim-db": "ms-ssim", "ms-ssim-rgb": "ms-ssim",
                   "ms-ssim-rgb-db": "ms-ssim"}


def _curve_list(curves) -> list[tuple[str, Mapping]]:
    """Accept a results dict, a list of results dicts, or a mapping label -> results dict
    (or label -> bare ``{"bpp": [...], "psnr-rgb": [...]}``)."""
    if isinstance(curves, Mapping) and "results" in curves:
        curves = [curves]
    if isinstance(curves, Mapping):
        items = [(str(k), v) for k, v in curves.items()]
    else:
        items = [(str(c.get("name", f"curve {i + 1}")), c) for i, c in enumerate(curves)]
    return [(label, c.get("results", c)) for label, c in items]


def _y_values(res: Mapping, metric: str, label: str) -> list:
    if metric == "psnr":
        for k in ("psnr-rgb", "psnr"):
            if k in res:
                return list(res[k])
    else:
        if "ms-ssim-rgb-db" in res:
            return list(res["ms-ssim-rgb-db"])
        for k in ("ms-ssim-rgb", "ms-ssim", "ms_ssim"):
            if k in res:
                return [ms_ssim_db(_num(v)) for v in res[k]]
    raise ValueError(f"plot_rd: curve {label!r} has no {metric} values (keys: {sorted(res)})")


def plot_rd(curves, path, metric: str = "psnr", *, title: str | None = None,
            highlight: str | Iterable[str] | None = None, xlim=None, ylim=None) -> Path:
    """Write an RD plot (PNG, Agg) of ``curves``: bpp on x, PSNR or MS-SSIM (dB) on y.

    ``curves``: a results dict from :func:`results_json` / a CompressAI results file, a
    list of them, or a mapping label -> such dict. ``metric``: ``"psnr"`` or
    ``"ms-ssim"`` (plotted as ``-10 log10(1 - MS-SSIM)``). ``highlight``: label(s) drawn
    bold and on top (our codec). Points with missing values are skipped. Returns the path.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    key = _METRIC_ALIASES.get(metric.lower())
    if key is None:
        raise ValueError(f"plot_rd: unknown metric {metric!r}; use 'psnr' or 'ms-ssim'")
    ylabel, short = _METRICS[key]
    items = _curve_list(curves)
    if not items:
        raise ValueError("plot_rd: no curves")
    if isinstance(highlight, str):
        highlight = [highlight]
    highlight = set(highlight or ())

    fig = Figure(figsize=(7.0, 4.8), dpi=150, layout="constrained")
    ax = fig.add_subplot()
    markers = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h"]
    colors = [f"C{i}" for i in range(10)]
    for i, (label, res) in enumerate(items):
        x = np.array([_num(v) for v in res["bpp"]], dtype=np.float64)
        y = np.array([_num(v) for v in _y_values(res, key, label)], dtype=np.float64)
        if x.size != y.size:
            raise ValueError(f"plot_rd: curve {label!r} has {x.size} rates but {y.size} {short} values")
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            raise ValueError(f"plot_rd: curve {label!r} has no finite ({x.size=}) {short} points")
        order = np.argsort(x[ok])
        bold = label in highlight
        ax.plot(x[ok][order], y[ok][order], label=label, color=colors[i % 10],
                marker=markers[i % len(markers)], markersize=6 if bold else 4.5,
                linewidth=2.4 if bold else 1.4, zorder=3 if bold else 2,
                markeredgecolor="white" if bold else None, markeredgewidth=0.8 if bold else None)
    ax.set_xlabel("Rate [bpp]")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"Rate-distortion ({short})")
    if xlim is not None:
        ax.set_xlim(*xlim)
    else:
        ax.set_xlim(left=0)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.minorticks_on()
    ax.grid(True, which="major", linestyle="-", linewidth=0.6, alpha=0.45)
    ax.grid(True, which="minor", linestyle=":", linewidth=0.5, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="lower right", frameon=True, framealpha=0.9, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
