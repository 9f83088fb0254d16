"""The per-pixel arrays of a scoring run as one HDF5 file, ``maps.h5``, for viewers.

``rawsigma score`` writes it beside ``results.json``; the napari plug-in opens it (or
the result directory). Layout (format ``rawsigma.score_maps``, version 1)::

    /                 attrs: format, version, provenance (JSON), eps_meaning, eps_dtype
    /image            (H, W) the raw image, its own dtype (ADU)
    /raw_labels       (H, W) int32, objects of the raw segmentation (0 = background)
    /codecs/NN        NN = 00, 01, … in the order of results.json["codecs"];
                      attrs: spec, description, compression_ratio, within_noise,
                      verdict (JSON of the codec's verdict)
    /codecs/NN/labels     (H, W) int32, the segmentation of the processed image
    /codecs/NN/pixel_eps  (H, W) float16, ε = (raw − decoded)/σ_pixel, σ_pixel the
                          raw noise of the camera profile at that pixel (ADU);
                          NaN at saturated pixels; |ε| clipped at 65504
    /codecs/NN/feature_eps/<name>  (H, W) float16, the per-pixel ε map of the scoring
                          feature with the largest mean |ε| for this codec (e.g.
                          ``GaussianSmoothing_s3.5``), NaN where σ of the feature is 0;
                          attrs mean_abs_epsilon

float16 keeps three significant digits (ε is shown at ±3; a pixel is within the raw
noise at |ε| < 1) and halves the file against float32; the datasets are gzip'd.
Only the worst feature's ε map is kept per codec (the runner reduces the others to
per-feature means in ``results.json``): all 12 scoring features would make the file
~12× larger and hold 12 float32 maps per codec in memory during the run. The scoring
features are those of ``provenance.scoring_features`` (default: the classifier bank's
channels at scales 1, 1.6, 3.5; files written before recorded no such key and used 1, 2, 4).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.fileio import atomic_write
from rawsigma.h5probe import check_hdf5

__all__ = ["EPS_MEANING", "FORMAT", "MAPS_FILE", "read_score_maps", "write_score_maps"]

FORMAT = "rawsigma.score_maps"
MAPS_FILE = "maps.h5"
EPS_MEANING = (
    "per-pixel epsilon = (raw - decoded) / sigma_pixel, sigma_pixel the raw noise (ADU) "
    "of the camera profile; dimensionless; |eps| < 1 is within the raw noise"
)
_F16_MAX = float(np.finfo(np.float16).max)


def json_default(o: Any) -> Any:
    """``json.dumps`` default: numpy scalars and arrays, tuples as lists."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def clean_nonfinite(o: Any) -> Any:
    """Replace non-finite floats by strings so the JSON is strict."""
    if isinstance(o, dict):
        return {str(k): clean_nonfinite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [clean_nonfinite(v) for v in o]
    if isinstance(o, float | np.floating) and not math.isfinite(float(o)):
        return "nan" if math.isnan(float(o)) else ("inf" if o > 0 else "-inf")
    return o


def _json(o: Any) -> str:
    return json.dumps(clean_nonfinite(json.loads(json.dumps(o, default=json_default))), default=str)


def _eps16(eps: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(eps, np.float32), -_F16_MAX, _F16_MAX).astype(np.float16)


def write_score_maps(result: Any, path: str | os.PathLike, force: bool = False) -> Path:
    """Write a `ScoreResult`'s image, labels and per-codec ε maps (layout above).

    Parameters
    ----------
    result : ScoreResult
        Output of :func:`rawsigma.analysis.scoring.runner.score_image`.
    path : path-like
        The ``.h5`` file; written through a temporary file and renamed.
    force : bool
        Replace an existing file.

    Returns
    -------
    Path
        ``path``.
    """
    import h5py

    kw = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    with atomic_write(path, force=force) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(
            format=FORMAT,
            version=1,
            provenance=_json(result.provenance),
            eps_meaning=EPS_MEANING,
            eps_dtype="float16",
        )
        f.create_dataset("image", data=result.image, **kw).attrs["unit"] = "ADU"
        f.create_dataset("raw_labels", data=result.raw_labels.astype(np.int32), **kw)
        grp = f.create_group("codecs")
        for i, c in enumerate(result.codecs):
            g = grp.create_group(f"{i:02d}")
            g.attrs.update(
                spec=c.spec,
                description=c.description,
                compression_ratio=float(c.ratio),
                within_noise=bool(c.verdict["within_noise"]),
                verdict=_json(c.verdict),
            )
            g.create_dataset("labels", data=np.asarray(c.labels).astype(np.int32), **kw)
            e = g.create_dataset("pixel_eps", data=_eps16(c.pixel_eps), **kw)
            e.attrs["meaning"] = EPS_MEANING
            fg = g.create_group("feature_eps")
            for name, fmap in getattr(c, "feature_eps", {}).items():
                d = fg.create_dataset(name, data=_eps16(fmap), **kw)
                d.attrs["mean_abs_epsilon"] = float(c.features[name]["mean_abs_epsilon"])
    return Path(path)


def read_score_maps(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``maps.h5`` (or a result directory holding it) into plain arrays.

    Returns
    -------
    dict
        ``{"image", "raw_labels", "provenance", "eps_meaning", "codecs": [{"spec",
        "description", "compression_ratio", "within_noise", "verdict", "labels",
        "pixel_eps", "feature_eps": {name: map}}, …]}``.

    Raises
    ------
    ValueError
        If the file is not a rawsigma score-maps file.
    """
    import h5py

    p = Path(path)
    if p.is_dir():
        p = p / MAPS_FILE
    check_hdf5(p)
    with h5py.File(p, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{p}: not a rawsigma score-maps file (format {FORMAT})")
        codecs = []
        for name in sorted(f["codecs"]):
            g = f["codecs"][name]
            codecs.append(
                {
                    "spec": str(g.attrs["spec"]),
                    "description": str(g.attrs["description"]),
                    "compression_ratio": float(g.attrs["compression_ratio"]),
                    "within_noise": bool(g.attrs["within_noise"]),
                    "verdict": json.loads(g.attrs["verdict"]),
                    "labels": g["labels"][()],
                    "pixel_eps": g["pixel_eps"][()],
                    "feature_eps": {k: v[()] for k, v in g.get("feature_eps", {}).items()},
                }
            )
        return {
            "image": f["image"][()],
            "raw_labels": f["raw_labels"][()],
            "provenance": json.loads(f.attrs["provenance"]),
            "eps_meaning": str(f.attrs["eps_meaning"]),
            "codecs": codecs,
        }
