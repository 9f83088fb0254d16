"""A 3D ``rawsigma score`` result in napari: the raw volume, the labels and the ε maps.

Reads ``volumes.h5`` (written by ``rawsigma score VOLUME`` beside ``results.json``) or
the result directory that holds it. Layers, in the order and with the names of a 2D
result (`rawsigma.napari.score`): the raw volume (ADU), the raw segmentation and each
version's segmentation as labels (hidden), and each version's per-voxel ε map of its
worst scoring feature (``feature_eps/<spec>``; diverging colormap, ±3), named
``ε <spec> · <feature> (<verdict>, <ratio>:1)`` with the verdict and ratio of
``results.json`` (without them when it is missing). Every layer has ``scale`` = the
voxel size (Z, Y, X) of the run; its unit is in ``metadata["spacing_unit"]`` ("µm", or
"voxel" when the run assumed isotropic 1). The volumes stay on disk (dask arrays over
the HDF5 datasets) when larger than `LAZY_BYTES` and dask is installed (napari's own
dependency).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import os

__all__ = ["LAZY_BYTES", "VOLUMES_FILE", "is_volume_result", "volume_layers"]

VOLUMES_FILE = "volumes.h5"
#: Datasets larger than this are opened lazily (dask over the HDF5 file) when dask exists.
LAZY_BYTES = 512 << 20

LayerData = tuple[Any, dict[str, Any], str]


def _volumes_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p / VOLUMES_FILE if p.is_dir() else p


def is_volume_result(path: str | os.PathLike) -> bool:
    """True for a 3D score result directory holding ``volumes.h5``, or that file."""
    p = _volumes_file(path)
    if not p.is_file() or not p.name.lower().endswith((".h5", ".hdf5")):
        return False
    import h5py
    from rawsigma.errors import DamagedHDF5Error
    from rawsigma.h5probe import check_hdf5

    try:
        check_hdf5(p)
        with h5py.File(p, "r") as f:
            if f.attrs.get("format") == "rawsigma.score_volumes":
                return True
            # files written before the format attribute: the layout of `write_volumes_h5`
            return "spacing_zyx" in f.attrs and "raw" in f and "labels/raw" in f
    except (OSError, DamagedHDF5Error):
        return False


def _results(p: Path) -> dict[str, Any]:
    """``results.json`` beside the file (empty when missing or unreadable)."""
    try:
        return json.loads((p.parent / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _array(ds: Any) -> Any:
    """The dataset in memory, or a dask array over it when larger than `LAZY_BYTES`."""
    if ds.size * ds.dtype.itemsize > LAZY_BYTES:
        try:
            import dask.array as da
        except ImportError:
            return ds[()]
        return da.from_array(ds, chunks=ds.chunks or "auto")
    return ds[()]


def _codec_meta(spec: str, c: dict[str, Any]) -> dict[str, Any]:
    v = c.get("verdict", {})
    return {
        "codec": spec,
        "description": c.get("description", ""),
        "within_noise": v.get("within_noise"),
        "compression_ratio": c.get("compression_ratio"),
        "verdict": v,
    }


def _suffix(meta: dict[str, Any]) -> str:
    """`` (within noise, 8.1:1)``, or "" without ``results.json``."""
    from rawsigma.napari.score import _verdict_text

    if meta["within_noise"] is None or meta["compression_ratio"] is None:
        return ""
    return f" ({_verdict_text(meta)})"


def volume_layers(path: str | os.PathLike) -> list[LayerData]:
    """Layer data of a 3D score result (see the module docstring)."""
    import h5py
    from rawsigma.h5probe import check_hdf5

    p = _volumes_file(path)
    check_hdf5(p)
    f = h5py.File(p, "r")  # left open while lazy layers read from it
    try:
        layers = _layers(f, path, _results(p))
    except BaseException:
        f.close()
        raise
    if all(isinstance(d, np.ndarray) for d, _, _ in layers):
        f.close()
    return layers


def _layers(f: Any, path: str | os.PathLike, res: dict[str, Any]) -> list[LayerData]:
    from rawsigma.napari.score import EPS_CLIM, EPS_COLORMAP

    spacing = tuple(float(s) for s in f.attrs["spacing_zyx"])
    source = str(res.get("volume", {}).get("spacing_source", ""))
    unit = "voxel" if source.startswith("default") else "µm"
    src = {"source": str(path), "provenance": res.get("provenance", {})}
    common = {"spacing_zyx": spacing, "spacing_unit": unit, "spacing_source": source}
    by_spec = {c["spec"]: c for c in res.get("codecs", [])}
    stored = list(f.get("labels", {}))
    specs = [s for s in by_spec if s in stored] + [
        s for s in stored if s not in by_spec and s != "raw"
    ]
    layers: list[LayerData] = [
        (_array(f["raw"]), {"name": "raw volume", "scale": spacing,
                            "metadata": {"unit": "ADU", "rawsigma": src, **common}}, "image"),
        (_array(f["labels/raw"]), {"name": "raw labels", "scale": spacing,
                                   "metadata": {"rawsigma": src, **common}}, "labels"),
    ]  # fmt: skip
    for spec in specs:
        meta = _codec_meta(spec, by_spec.get(spec, {}))
        kw = {"name": f"labels {spec}", "scale": spacing, "visible": False,
              "metadata": {"rawsigma": meta, **common}}  # fmt: skip
        layers.append((_array(f["labels"][spec]), kw, "labels"))
        if spec not in f.get("feature_eps", {}):
            continue
        ds = f["feature_eps"][spec]
        feature = str(ds.attrs.get("feature", "feature"))
        meaning = (
            f"per-voxel epsilon of the scoring feature {feature} (raw - version) / "
            "sigma_replicas; |eps| < 1 is within the raw noise"
        )
        kw = {
            "name": f"ε {spec} · {feature}{_suffix(meta)}",
            "scale": spacing,
            "metadata": {"unit": "ε (dimensionless)", "meaning": meaning, "feature": feature,
                         "rawsigma": meta, **common},
            "colormap": EPS_COLORMAP,
            "contrast_limits": (-EPS_CLIM, EPS_CLIM),
            "opacity": 0.7,
            "blending": "translucent",
        }  # fmt: skip
        layers.append((_array(ds), kw, "image"))
    return layers
