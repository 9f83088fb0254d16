"""napari plug-in (npe2 manifest ``napari.yaml``; the ``napari`` extra).

* Reader: noise-codec files (``.rsnc``, the TIFF/HDF5/zarr containers, pre-issue-13
  layouts too) open as one image layer of the decoded uint16 frames, metadata
  ``rawsigma.lossy_derived = True`` (a volume: its voxel size as ``scale``); camera
  profiles (HDF5 ``rawsigma.camera_profile``) open as one layer per map (offset and
  read noise in ADU, gain in ADU/e⁻, metadata ``unit``) plus the defect mask as labels.
  Other files: None (napari asks the next reader).
* Score results (``rawsigma score`` output directory, or its ``maps.h5``): the raw
  image, the raw and per-codec labels, each codec's per-pixel ε map (diverging
  colormap, ±3); see `rawsigma.napari.score`. Widget `ScoreWidget` lists the codecs with
  their verdict and shows/hides their layers. 3D results (``volumes.h5``) and
  tomography results open the same way (see `rawsigma.napari.volume_result`).
* Widget `ProfileWidget`: opens a profile, adds its maps as layers and plots its
  photon-transfer curve (temporal variance against mean, ADU).

The reader functions are plain Python (`read_layers`) and are tested without napari.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rawsigma.napari.score import ScoreWidget, is_score_result, score_layers

__all__ = ["ProfileWidget", "ScoreWidget", "get_reader", "read_layers", "sniff"]

LayerData = tuple[Any, dict[str, Any], str]


def sniff(path: str | os.PathLike) -> str | None:
    """``"codec"``, ``"profile"``, ``"score"``, ``"damaged"`` or None (not a rawsigma file).

    ``"damaged"``: an HDF5 file on which libhdf5 crashes or hangs (`rawsigma.h5probe`);
    `read_layers` refuses it in one line.
    """
    p = Path(path)
    s = p.name.lower()
    try:
        if is_score_result(p):
            return "score"
        if s.endswith(".rsnc"):
            return "codec" if p.read_bytes()[:4] == b"RSNC" else None
        if s.endswith(".zarr") and p.is_dir():
            meta = "".join(
                (p / n).read_text() for n in ("zarr.json", ".zarray") if (p / n).is_file()
            )
            return "codec" if "rawsigma_noise" in meta else None
        if s.endswith((".tif", ".tiff")):
            import tifffile

            with tifffile.TiffFile(p) as tf:
                page = tf.pages[0]
                desc = page.description or ""
                if page.compression == 61500 or "rawsigma-noisecodec" in desc:
                    return "codec"
            return None
        if s.endswith((".h5", ".hdf5")):
            import h5py
            from rawsigma.errors import DamagedHDF5Error
            from rawsigma.h5probe import check_hdf5

            try:
                check_hdf5(p)
            except DamagedHDF5Error:
                return "damaged"  # read_layers says so in one line
            with h5py.File(p, "r") as f:
                if f.attrs.get("format") == "rawsigma.camera_profile":
                    return "profile"
                for name in ("rsnc", "codes"):
                    if name in f and f[name].attrs.get("format") == "rawsigma-noisecodec":
                        return "codec"
    except (OSError, ValueError, KeyError):
        return None
    return None


def profile_layers(profile: Any, name: str) -> list[LayerData]:
    """A profile's maps as napari layer data (units in ``metadata["unit"]``)."""
    meta = {"profile_id": profile.profile_id, "source": name}
    maps = [
        ("offset", profile.offset, "ADU"),
        ("gain", profile.gain, "ADU/e-"),
        ("read noise", profile.read_noise, "ADU"),
    ]
    layers: list[LayerData] = [
        (m, {"name": f"{name}: {label} [{unit}]", "metadata": {**meta, "unit": unit}}, "image")
        for label, m, unit in maps
    ]
    if profile.defects is not None:
        layers.append(
            (
                profile.defects.astype("uint8"),
                {"name": f"{name}: defects", "metadata": {**meta, "unit": "DEFECT_* bits"}},
                "labels",
            )
        )
    return layers


def _codec_layers(p: Path) -> list[LayerData]:
    """The decoded frames of a noise-codec file, a volume with its voxel size as scale."""
    from rawsigma.analysis.noisecodec.containers import read_compressed, read_meta

    data = read_compressed(p)
    rec = read_meta(p)
    meta = {
        "rawsigma": {
            "lossy_derived": True,
            "decoded_from": str(p),
            "note": "decoded from the rawsigma noise codec: not the raw camera values",
            **rec,
        },
        "unit": "ADU",
    }
    kw: dict[str, Any] = {"name": p.name, "metadata": meta}
    if rec.get("axes") == "ZYX" and "spacing_zyx" in rec and data.ndim == 3:
        kw["scale"] = tuple(rec["spacing_zyx"])  # as the 3D score result's layers
    return [(data, kw, "image")]


def read_layers(path: str | os.PathLike) -> list[LayerData]:
    """Layer data of a rawsigma file (see the module docstring)."""
    p = Path(path)
    kind = sniff(p)
    if kind == "score":
        return score_layers(p)
    if kind == "profile":
        from rawsigma.calib.profile import CameraProfile

        return profile_layers(CameraProfile.load(p), p.stem)
    if kind == "codec":
        return _codec_layers(p)
    if kind == "damaged":
        from rawsigma.h5probe import check_hdf5

        check_hdf5(p)  # raises DamagedHDF5Error (the answer is cached)
    raise ValueError(f"{p}: not a rawsigma noise-codec file, camera profile or score result")


def get_reader(path: str | list[str]) -> Any:
    """npe2 reader hook: a reader function for rawsigma files, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if sniff(path) is None:
        return None
    return lambda p: read_layers(p[0] if isinstance(p, list) else p)


def _ptc_figure(profile: Any) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), tight_layout=True)
    ax = fig.add_subplot()
    ptc = profile.ptc
    if "mean" in ptc and "var" in ptc and len(ptc["mean"]):
        ax.loglog(ptc["mean"], ptc["var"], "o-", ms=3)
    ax.set_xlabel("mean [ADU]")
    ax.set_ylabel("temporal variance [ADU²]")
    ax.set_title(f"PTC, K = {profile.gain_global:.3g} ADU/e⁻")
    return fig


def ProfileWidget(napari_viewer: Any) -> Any:  # noqa: N802 - npe2 widget factory
    """Dock widget: a profile path, "Open" (maps → layers) and the PTC plot."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from qtpy.QtWidgets import QLineEdit, QPushButton, QVBoxLayout, QWidget

    w = QWidget()
    lay = QVBoxLayout(w)
    edit = QLineEdit()
    edit.setPlaceholderText("camera profile (.h5)")
    btn = QPushButton("Open profile")
    lay.addWidget(edit)
    lay.addWidget(btn)
    w.canvas = None

    def open_profile(path: str | None = None) -> None:
        from rawsigma.calib.profile import CameraProfile

        p = Path(path or edit.text())
        prof = CameraProfile.load(p)
        for data, kw, kind in profile_layers(prof, p.stem):
            getattr(napari_viewer, f"add_{kind}")(data, **kw)
        if w.canvas is not None:
            lay.removeWidget(w.canvas)
            w.canvas.deleteLater()
        w.canvas = FigureCanvasQTAgg(_ptc_figure(prof))
        lay.addWidget(w.canvas)

    btn.clicked.connect(lambda: open_profile())
    w.open_profile = open_profile
    return w
