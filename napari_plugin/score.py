"""A ``rawsigma score`` result in napari: the raw image, the labels and the ε maps.

Reads ``maps.h5`` (written by ``rawsigma score`` and ``rawsigma tomo score`` beside
``results.json``) or the result directory that holds it; a 3D result (``volumes.h5``)
is read by `rawsigma.napari.volume_result`. Layers: the raw image (ADU; a tomography
result's raw reconstruction, named so, with its unit), the raw segmentation and each
codec's segmentation as labels, and each codec's per-pixel ε map as an image with a
diverging colormap, contrast limits ±3 (|ε| < 1: within the raw noise). Every codec
layer carries ``metadata["rawsigma"]["codec"]`` so `ScoreWidget` can show or hide a
codec's layers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["EPS_CLIM", "ScoreWidget", "is_score_result", "score_layers"]

#: Contrast limits of the ε layers: ±EPS_CLIM.
EPS_CLIM = 3.0
EPS_COLORMAP = "PiYG"  # diverging; napari takes matplotlib colormap names

LayerData = tuple[Any, dict[str, Any], str]


def is_score_result(path: str | os.PathLike) -> bool:
    """True for a score result directory (2D, 3D, tomography) or its ``.h5`` file."""
    from rawsigma.analysis.scoring.score_maps import FORMAT, MAPS_FILE
    from rawsigma.napari.volume_result import is_volume_result

    if is_volume_result(path):
        return True
    p = Path(path)
    if p.is_dir():
        p = p / MAPS_FILE
    if not p.is_file() or not p.name.lower().endswith((".h5", ".hdf5")):
        return False
    import h5py
    from rawsigma.errors import DamagedHDF5Error
    from rawsigma.h5probe import check_hdf5

    try:
        check_hdf5(p)
        with h5py.File(p, "r") as f:
            return f.attrs.get("format") == FORMAT
    except (OSError, DamagedHDF5Error):
        return False


def _verdict_text(c: dict) -> str:
    if c.get("within_noise") is None or c.get("compression_ratio") is None:
        return "no verdict (results.json missing)"
    v = "within noise" if c["within_noise"] else "exceeds noise"
    return f"{v}, {c['compression_ratio']:.1f}:1"


def _image_kind(path: str | os.PathLike) -> tuple[str, str, str]:
    """(layer name, unit, ε label) of ``/image``: a 2D image or a tomographic volume."""
    import h5py
    from rawsigma.analysis.scoring.score_maps import MAPS_FILE
    from rawsigma.h5probe import check_hdf5

    p = Path(path)
    p = p / MAPS_FILE if p.is_dir() else p
    check_hdf5(p)
    with h5py.File(p, "r") as f:
        unit = str(f["image"].attrs.get("unit", "ADU"))
        tomo = str(f.attrs.get("content", "")).startswith("tomography")
    return ("raw reconstruction", unit, "voxel Δ/σ") if tomo else ("raw image", unit, "pixel Δ/σ")


def score_layers(path: str | os.PathLike) -> list[LayerData]:
    """Layer data of a score result (see the module docstring)."""
    from rawsigma.analysis.scoring.score_maps import read_score_maps
    from rawsigma.napari.volume_result import is_volume_result, volume_layers

    if is_volume_result(path):
        return volume_layers(path)
    m = read_score_maps(path)
    name, unit, eps_label = _image_kind(path)
    src = {"source": str(path), "provenance": m["provenance"]}
    layers: list[LayerData] = [
        (m["image"], {"name": name, "metadata": {"unit": unit, "rawsigma": src}}, "image"),
        (m["raw_labels"], {"name": "raw labels", "metadata": {"rawsigma": src}}, "labels"),
    ]
    for c in m["codecs"]:
        meta = {
            "codec": c["spec"],
            "description": c["description"],
            "within_noise": c["within_noise"],
            "compression_ratio": c["compression_ratio"],
            "verdict": c["verdict"],
        }
        layers.append(
            (
                c["labels"],
                {"name": f"labels {c['spec']}", "metadata": {"rawsigma": meta}, "visible": False},
                "labels",
            )
        )
        eps_meta = {"unit": "ε (dimensionless)", "meaning": m["eps_meaning"], "rawsigma": meta}
        maps = [(eps_label, c["pixel_eps"], m["eps_meaning"])]
        maps += [
            (f, e, f"per-pixel epsilon of the scoring feature {f} (raw - codec) / sigma_replicas")
            for f, e in c["feature_eps"].items()
        ]
        for label, eps, meaning in maps:
            layers.append(
                (
                    eps,
                    {
                        "name": f"ε {c['spec']} · {label} ({_verdict_text(c)})",
                        "metadata": {**eps_meta, "meaning": meaning, "feature": label},
                        "colormap": EPS_COLORMAP,
                        "contrast_limits": (-EPS_CLIM, EPS_CLIM),
                        "opacity": 0.7,
                        "blending": "translucent",
                    },
                    "image",
                )
            )
    return layers


def _results_verdicts(path: Path) -> dict[str, str]:
    """``{spec: "within noise, 8.1:1"}`` from ``results.json`` beside the maps."""
    d = path if path.is_dir() else path.parent
    try:
        res = json.loads((d / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out = {}
    for c in res.get("codecs", []):
        ok = c.get("verdict", {}).get("within_noise")
        out[c["spec"]] = (
            f"{'within noise' if ok else 'exceeds noise'}, {c['compression_ratio']:.1f}:1"
        )
    return out


def ScoreWidget(napari_viewer: Any) -> Any:  # noqa: N802 - npe2 widget factory
    """Dock widget: open a score result; one checkbox per codec shows/hides its layers.

    Each row reads ``<spec>: <verdict>, <ratio>`` (the verdict from ``results.json``,
    else from ``maps.h5``). Checking a row shows the codec's ε map and labels.
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import (
        QLineEdit,
        QListWidget,
        QListWidgetItem,
        QPushButton,
        QVBoxLayout,
        QWidget,
    )

    w = QWidget()
    lay = QVBoxLayout(w)
    edit = QLineEdit()
    edit.setPlaceholderText("score result directory (or its maps.h5)")
    btn = QPushButton("Open score result")
    listing = QListWidget()
    for x in (edit, btn, listing):
        lay.addWidget(x)
    w.listing = listing

    def codec_layers(spec: str) -> list[Any]:
        return [
            layer
            for layer in napari_viewer.layers
            if layer.metadata.get("rawsigma", {}).get("codec") == spec
        ]

    def set_visible(spec: str, visible: bool) -> None:
        for layer in codec_layers(spec):
            layer.visible = visible

    def on_item(item: Any) -> None:
        set_visible(item.data(Qt.ItemDataRole.UserRole), item.checkState() == Qt.CheckState.Checked)

    def open_result(path: str | None = None) -> None:
        p = Path(path or edit.text())
        layers = score_layers(p)
        listing.blockSignals(True)
        listing.clear()
        listed: set[str] = set()
        verdicts = _results_verdicts(p)
        for data, kw, kind in layers:
            layer = getattr(napari_viewer, f"add_{kind}")(data, **kw)
            spec = kw["metadata"].get("rawsigma", {}).get("codec")
            if spec is None or kind != "image" or spec in listed:
                continue  # one row per codec, at its first ε map
            listed.add(spec)
            layer.visible = listing.count() == 0  # the first codec's ε map on top
            text = verdicts.get(spec) or _verdict_text(kw["metadata"]["rawsigma"])
            item = QListWidgetItem(f"{spec}: {text}")
            item.setData(Qt.ItemDataRole.UserRole, spec)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
            listing.addItem(item)
        listing.blockSignals(False)
        for i in range(listing.count()):
            on_item(listing.item(i))

    listing.itemChanged.connect(on_item)
    btn.clicked.connect(lambda: open_result())
    w.open_result = open_result
    w.set_visible = set_visible
    return w
