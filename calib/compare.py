"""Summaries of one profile and comparisons of two (how a camera changed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.calib.profile_fields import DEFECT_NAMES

if TYPE_CHECKING:
    from rawsigma.calib.profile import CameraProfile

#: Identity fields compared by :func:`compare_profiles`.
IDENTITY_FIELDS = (
    "camera",
    "model",
    "serial",
    "vendor",
    "bit_depth",
    "binning",
    "roi",
    "sensor_shape",
    "readout_mode",
    "gain_mode",
    "exposure_ms",
    "temperature_c",
)
_STAT_MAPS = ("offset", "gain", "read_noise", "offset_se", "gain_se", "read_noise_se", "prnu")
PERCENTILES = (0.1, 1.0, 5.0, 50.0, 95.0, 99.0, 99.9)


def map_stats(values: np.ndarray) -> dict[str, float]:
    """Robust statistics of a 1-D or N-D array, ignoring NaN.

    Returns
    -------
    dict
        ``n``, ``median``, ``mad`` (raw median absolute deviation, not scaled),
        ``mean``, ``std``, ``min``, ``max`` and ``p<q>`` for q in :data:`PERCENTILES`;
        NaN values when nothing is finite.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    out: dict[str, float] = {"n": float(v.size)}
    if v.size == 0:
        nan = float("nan")
        out.update(median=nan, mad=nan, mean=nan, std=nan, min=nan, max=nan)
        out.update({f"p{q:g}": nan for q in PERCENTILES})
        return out
    med = float(np.median(v))
    out["median"] = med
    out["mad"] = float(np.median(np.abs(v - med)))
    out["mean"] = float(v.mean())
    out["std"] = float(v.std())
    out["min"] = float(v.min())
    out["max"] = float(v.max())
    pct = np.percentile(v, PERCENTILES)
    out.update({f"p{q:g}": float(p) for q, p in zip(PERCENTILES, pct, strict=True)})
    return out


def defect_counts(profile: CameraProfile) -> dict[str, int]:
    """Number of pixels carrying each defect flag, plus ``any`` and ``good``."""
    n = int(np.prod(profile.shape))
    if profile.defects is None:
        counts = {name: 0 for name in DEFECT_NAMES.values()}
        counts.update(any=0, good=n)
        return counts
    d = profile.defects
    counts = {name: int(np.count_nonzero(d & bit)) for bit, name in DEFECT_NAMES.items()}
    bad = int(np.count_nonzero(d))
    counts.update(any=bad, good=n - bad)
    return counts


def profile_summary(profile: CameraProfile) -> dict[str, Any]:
    """JSON-friendly summary: identity, global numbers, map statistics, defects.

    Map statistics are over good pixels (all pixels when none is good); the read
    noise is in ADU rms, gain in ADU/e-, offset in ADU.
    """
    good = profile.good
    sel = good if good.any() else np.ones(profile.shape, dtype=bool)
    maps = {}
    for name in _STAT_MAPS:
        arr = getattr(profile, name)
        if arr is not None:
            maps[name] = map_stats(arr[sel])
    prov = profile.provenance
    return {
        "profile_id": profile.profile_id,
        "estimated": profile.estimated,
        "shape": list(profile.shape),
        "identity": profile.identity.to_dict(),
        "max_adu": profile.max_adu,
        "global": {
            "gain": profile.gain_global,
            "offset": profile.offset_global,
            "read_noise": profile.read_noise_global,
        },
        "maps": maps,
        "defects": defect_counts(profile),
        "emva": dict(profile.emva),
        "ptc_levels": int(len(next(iter(profile.ptc.values())))) if profile.ptc else 0,
        "provenance": {
            k: prov[k]
            for k in (
                "software_version",
                "date_utc",
                "estimated",
                "seed",
                "source",
                "gain_map",
                "gain_map_reason",
            )
            if k in prov
        },
    }


def _overlap(a: CameraProfile, b: CameraProfile) -> tuple[int, int, int, int] | None:
    ax, ay, aw, ah = a.identity.roi  # type: ignore[misc]
    bx, by, bw, bh = b.identity.roi  # type: ignore[misc]
    x0, y0 = max(ax, bx), max(ay, by)
    x1, y1 = min(ax + aw, bx + bw), min(ay + ah, by + bh)
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def compare_profiles(a: CameraProfile, b: CameraProfile, k: float = 3.0) -> dict[str, Any]:
    """How camera profile ``b`` differs from ``a`` (e.g. a later calibration).

    Maps are compared on the overlap of the two ROIs (absolute sensor coordinates)
    when the binning agrees. For each map, the difference ``b - a`` is summarised
    (median, MAD, percentiles, over pixels good in both) and, when both profiles
    have standard errors, the number of pixels whose change exceeds ``k`` times the
    combined standard error ``sqrt(se_a**2 + se_b**2)``.

    Returns
    -------
    dict
        ``ids``, ``identity`` (field -> [a, b] for fields that differ), ``roi``
        (overlap or None), ``comparable`` (bool), ``reason`` (when not), ``global``
        (name -> {a, b, diff, rel}), ``maps`` (name -> stats of b - a plus
        ``n_significant``, ``frac_significant``, ``k``), ``defects`` (``new``,
        ``gone``, ``both``), ``emva`` (key -> {a, b, rel}).
    """
    ia, ib = a.identity.to_dict(), b.identity.to_dict()
    ident_diff = {f: [ia[f], ib[f]] for f in IDENTITY_FIELDS if ia[f] != ib[f]}
    out: dict[str, Any] = {
        "ids": [a.profile_id, b.profile_id],
        "identity": ident_diff,
        "roi": None,
        "comparable": False,
        "reason": "",
        "k": float(k),
        "global": {},
        "maps": {},
        "defects": {},
        "emva": {},
    }
    for name in ("gain", "offset", "read_noise"):
        va, vb = getattr(a, f"{name}_global"), getattr(b, f"{name}_global")
        out["global"][name] = {
            "a": va,
            "b": vb,
            "diff": vb - va,
            "rel": (vb - va) / va if va else float("nan"),
        }
    for key in sorted(set(a.emva) & set(b.emva)):
        va, vb = a.emva[key], b.emva[key]
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)):
            rel = (vb - va) / va if va else float("nan")
            out["emva"][key] = {"a": float(va), "b": float(vb), "rel": float(rel)}
    if a.identity.binning != b.identity.binning:
        out["reason"] = (
            f"binning differs ({a.identity.binning} vs {b.identity.binning}); maps not compared"
        )
        return out
    roi = _overlap(a, b)
    if roi is None:
        out["reason"] = "the two ROIs do not overlap; maps not compared"
        return out
    ca, cb = a.crop(roi), b.crop(roi)
    out["roi"] = list(roi)
    out["comparable"] = True
    good = ca.good & cb.good
    sel = good if good.any() else np.ones(ca.shape, dtype=bool)
    for name in ("offset", "gain", "read_noise", "prnu"):
        ma, mb = getattr(ca, name), getattr(cb, name)
        if ma is None or mb is None:
            continue
        diff = mb.astype(np.float64) - ma
        stats = map_stats(diff[sel])
        sa, sb = getattr(ca, f"{name}_se", None), getattr(cb, f"{name}_se", None)
        if sa is not None and sb is not None:
            se = np.sqrt(sa.astype(np.float64) ** 2 + sb.astype(np.float64) ** 2)
            ok = sel & np.isfinite(se) & (se > 0)
            sig = ok & (np.abs(diff) > k * se)
            z = diff[ok] / se[ok]
            stats["n_significant"] = int(np.count_nonzero(sig))
            stats["n_tested"] = int(np.count_nonzero(ok))
            stats["frac_significant"] = float(sig.sum() / max(int(ok.sum()), 1))
            stats["z_std"] = float(np.std(z)) if z.size else float("nan")
        out["maps"][name] = stats
    da = ca.defects if ca.defects is not None else np.zeros(ca.shape, np.uint8)
    db = cb.defects if cb.defects is not None else np.zeros(cb.shape, np.uint8)
    out["defects"] = {
        "new": int(np.count_nonzero((da == 0) & (db != 0))),
        "gone": int(np.count_nonzero((da != 0) & (db == 0))),
        "both": int(np.count_nonzero((da != 0) & (db != 0))),
    }
    return out


def difference_maps(a: CameraProfile, b: CameraProfile) -> dict[str, np.ndarray]:
    """``b - a`` for offset, gain and read noise on the ROI overlap (float32 maps).

    Empty when the binning differs or the ROIs do not overlap.
    """
    if a.identity.binning != b.identity.binning:
        return {}
    roi = _overlap(a, b)
    if roi is None:
        return {}
    ca, cb = a.crop(roi), b.crop(roi)
    return {
        n: (getattr(cb, n).astype(np.float32) - getattr(ca, n))
        for n in ("offset", "gain", "read_noise")
    }
