"""Recorded Micro-Manager / pymmcore-plus datasets as calibration input.

`read_dataset(path)` opens, without loading the pixels:

- **Micro-Manager 2 TIFF / OME-TIFF** (single file, or the folder of a multi-file
  dataset ``*_MMStack_Pos0.ome.tif``, ``*_MMStack_Pos0_1.ome.tif``, ...): per-plane
  JSON metadata (TIFF tag 51123, tifffile's ``micromanager_metadata``);
- **NDTiff** datasets written by Micro-Manager / pycromanager (the folder holding
  ``NDTiff.index``, or its parent), through the ``ndstorage`` package (``mm`` extra);
- **pymmcore-plus MDA outputs**: OME-TIFF and OME-Zarr written by its ome-writers
  sink (``core.mda.run(seq, output="x.ome.tiff")``): the summary metadata (every
  device property at the start of the sequence, the ``MDASequence`` and its config
  presets) and the per-plane exposure time;
- a **folder** of such files (e.g. the output of ``MDASweep(output_dir=...)``),
  read in name order as one dataset.

Every frame gets its exposure and the device properties it was taken with
(``"Device-Property" -> value``). `group_levels` then sorts frames into dark and
light levels, replacing the hand-written CSV:

1. **dark or light** from the shutter: ``Core-AutoShutter`` on with a
   ``Core-Shutter`` device means lit; otherwise the shutter's ``State`` property
   (1/Open = lit); no ``Core-Shutter`` in a dataset whose other frames have one
   means dark (the shutter deselected). A lit frame whose light control is 0 is dark.
2. **light levels**: the distinct (exposure, control value) pairs of the lit
   frames, in ascending order. The control is ``control`` (``"LED-Intensity"``)
   when given, else every non-camera property whose value varies among the lit
   frames (seeds, clocks, temperatures and positions excluded).
3. **darks**: one group per exposure time (levels -1, -2, ... ascending; darks at
   two or more exposures give the dark current), all pooled for the offset; when
   every light level has its own exposure and darks were taken at each of them,
   those are the level's darks.

The camera identity (camera label, model, serial, binning, ROI, bit depth,
exposure, temperature) comes from the metadata. Frames are decoded one at a time.
Files from pymmcore-plus's deprecated ``mda.handlers.OMETiffWriter`` carry no device
state: they are read as plain stacks (file order, or a CSV).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.errors import InputFileError

from .dataset_formats import (
    FrameInfo,
    RecordedDataset,
    folder_members,
    identity_from_props,
    is_zarr,
    ndtiff_dir,
    read_ndtiff,
    read_tiff,
    read_zarr,
    tiff_kind,
    to_float,
)
from .profile import CameraIdentity

__all__ = [
    "FrameInfo",
    "RecordedDataset",
    "group_levels",
    "identity_from_props",
    "is_recorded_dataset",
    "read_dataset",
    "recorded_frame_table",
    "recorded_identity",
    "recorded_stack_info",
]

_SKIP_WORDS = ("seed", "time", "temperature", "position", "elapsed", "frame", "index", "date")
_TIFF = (".tif", ".tiff")


def is_recorded_dataset(path: str | os.PathLike[str]) -> bool:
    """True for a folder dataset, or a TIFF carrying Micro-Manager/pymmcore-plus metadata."""
    p = Path(path)
    if p.is_dir():
        return True
    return p.is_file() and p.suffix.lower() in _TIFF and tiff_kind(p) is not None


def read_dataset(path: str | os.PathLike[str]) -> RecordedDataset:
    """Open a recorded dataset (see module docstring) without reading its pixels.

    Raises
    ------
    InputFileError
        Missing path, unknown layout, frames of different shapes, non-integer pixels,
        or ``ndstorage`` missing for an NDTiff dataset.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such file or folder")
    return _read_cached(str(p.resolve()), _stamp(p))


def _stamp(p: Path) -> tuple[object, ...]:
    """Cache key: modification times of the path and (folders) of its direct children."""
    if p.is_dir():
        return tuple((q.name, q.stat().st_mtime_ns) for q in sorted(p.iterdir()))
    return (p.stat().st_mtime_ns, p.stat().st_size)


@lru_cache(maxsize=8)
def _read_cached(path: str, stamp: tuple[object, ...]) -> RecordedDataset:  # noqa: ARG001 - cache key
    p = Path(path)
    if p.is_dir():
        nd = ndtiff_dir(p)
        if nd is not None:
            return _check(read_ndtiff(nd))
        if is_zarr(p):
            return _check(read_zarr(p))
        members = folder_members(p)
        if not members:
            raise InputFileError(f"{p}: no NDTiff dataset, OME-Zarr or TIFF files in this folder")
        parts = [_read_cached(str(m), _stamp(m)) for m in members]
        return _check(_concat(p, parts))
    kind = tiff_kind(p)
    if kind is None:
        return _check(read_tiff(p, "tiff"))
    return _check(read_tiff(p, kind))


def _check(ds: RecordedDataset) -> RecordedDataset:
    if ds.n_frames == 0:
        raise InputFileError(f"{ds.path}: contains no image")
    if len(ds.shape) != 2:
        raise InputFileError(f"{ds.path}: frames have shape {ds.shape}; 2-D frames are required")
    if np.dtype(ds.dtype).kind not in "ui":
        raise InputFileError(
            f"{ds.path}: pixel type {ds.dtype}; raw integer camera frames (uint8/uint16) are "
            "required (calibration needs the camera's own integer values)"
        )
    return ds


def _concat(p: Path, parts: list[RecordedDataset]) -> RecordedDataset:
    shapes = {(d.shape, np.dtype(d.dtype)) for d in parts}
    if len(shapes) > 1:
        raise InputFileError(
            f"{p}: files have different frame shapes or types: "
            + ", ".join(f"{d.path.name}: {d.shape} {d.dtype}" for d in parts)
        )
    bits = {d.bit_depth for d in parts if d.bit_depth}
    return RecordedDataset(
        path=p,
        format="folder",
        shape=parts[0].shape,
        dtype=parts[0].dtype,
        frames=[f for d in parts for f in d.frames],
        bit_depth=bits.pop() if len(bits) == 1 else None,
        summary=parts[0].summary,
        _locators=[loc for d in parts for loc in d._locators],
    )


# ---------------------------------------------------------------------- grouping
def _truthy(v: str | None) -> bool | None:
    if v is None or v == "":
        return None
    s = str(v).strip().lower()
    if s in ("1", "1.0", "true", "open", "on", "yes"):
        return True
    if s in ("0", "0.0", "false", "closed", "close", "off", "no"):
        return False
    return None


def _lit(props: dict[str, str], shutter_used: bool) -> bool | None:
    shutter = props.get("Core-Shutter", "")
    if shutter and _truthy(props.get("Core-AutoShutter")):
        return True
    if shutter:
        return _truthy(props.get(f"{shutter}-State"))
    if shutter_used and "Core-Shutter" in props:
        return False  # shutter deselected (Micro-Manager's usual "dark" preset)
    return None


def _varying(frames: list[FrameInfo], cam: str) -> list[str]:
    keys: set[str] = set()
    for f in frames:
        keys.update(f.props)
    out = []
    for k in sorted(keys):
        dev = k.split("-", 1)[0]
        if "-" not in k or dev in ("Core", cam) or k.startswith(("Exposure-", "ElapsedTime-")):
            continue
        if any(w in k.lower() for w in _SKIP_WORDS) or k.endswith("-State"):
            continue
        if len({f.props.get(k) for f in frames}) > 1:
            out.append(k)
    return out


def _sort_key(v: str | None) -> tuple[int, float, str]:
    x = to_float(v)
    return (0, x, "") if x is not None else (1, 0.0, str(v))


def group_levels(
    datasets: Sequence[RecordedDataset],
    control: str | None = None,
    names: Sequence[str] | None = None,
) -> list[dict[str, Any]] | None:
    """Sort the frames of one or more datasets into dark and light levels.

    Parameters
    ----------
    datasets : sequence of RecordedDataset
        Read with `read_dataset`; level numbering spans all of them.
    control : str, optional
        ``"Device-Property"`` of the light control; default: every non-camera
        property that varies among the lit frames.
    names : sequence of str, optional
        The ``file`` of each dataset's rows (default: the dataset folder/file name).

    Returns
    -------
    list of dict or None
        One row per frame (the rows of `rawsigma.calib.stacks.read_frame_table`:
        ``file`` (dataset path name), ``frame``, ``kind``, ``level``,
        ``exposure_s``, ``photons``, ``control``), or None when the metadata do not
        say which frames are lit (no shutter state recorded).
    """
    names = [d.path.name for d in datasets] if names is None else list(names)
    allf = [
        (nm, i, f) for d, nm in zip(datasets, names, strict=True) for i, f in enumerate(d.frames)
    ]
    used = any(f.props.get("Core-Shutter") for _, _, f in allf)
    lit = [_lit(f.props, used) for _, _, f in allf]
    if any(v is None for v in lit):
        return None
    cam = next((f.props.get("Core-Camera", "") for _, _, f in allf), "")
    if control is not None:
        keys = [control.replace(".", "-", 1) if "-" not in control else control]
    else:
        keys = _varying([f for (_, _, f), on in zip(allf, lit, strict=True) if on], cam)
    rows: list[dict[str, Any]] = []
    for (d, i, f), on in zip(allf, lit, strict=True):
        vals = tuple(f.props.get(k) for k in keys)
        if on and keys and all(to_float(v) == 0 for v in vals):
            on = False  # light control at zero: a dark frame
        exp = None if f.exposure_ms is None else round(float(f.exposure_ms), 6)
        rows.append({"file": d, "frame": i, "on": on, "exp": exp, "vals": vals})
    settings = sorted(
        {(r["exp"] or 0.0, r["vals"]) for r in rows if r["on"]},
        key=lambda s: (s[0], [_sort_key(v) for v in s[1]]),
    )
    level_of = {s: j for j, s in enumerate(settings)}
    exps = [s[0] for s in settings]
    dark_exps = {r["exp"] or 0.0 for r in rows if not r["on"]}
    per_level_dark = len(set(exps)) == len(exps) > 1 and set(exps) <= dark_exps
    dark_level = {e: j for j, e in enumerate(exps)} if per_level_dark else {}
    # other dark exposures: one dark group each (-1, -2, ...), so darks at several
    # exposure times give the dark current (calibrate_from_stacks pools them all
    # for the offset)
    for k, e in enumerate(sorted(dark_exps - set(dark_level))):
        dark_level[e] = -1 - k
    out = []
    for r in rows:
        e = r["exp"] or 0.0
        if r["on"]:
            lv, kind = level_of[(e, r["vals"])], "light"
        else:
            lv, kind = dark_level.get(e, -1), "dark"
        ctl = to_float(r["vals"][0]) if len(r["vals"]) == 1 else None
        out.append(
            {
                "file": r["file"],
                "frame": r["frame"],
                "kind": kind,
                "level": lv,
                "exposure_s": np.nan if r["exp"] is None else r["exp"] / 1000.0,
                "photons": np.nan,
                "control": np.nan if ctl is None else ctl,
            }
        )
    return out


# ---------------------------------------------------------------------- calib.stacks hooks
def recorded_stack_info(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """`rawsigma.calib.stacks.stack_info` of a recorded dataset (None for a plain stack)."""
    p = Path(path)
    if not is_recorded_dataset(p):
        return None
    ds = read_dataset(p)
    return {
        "path": p,
        "n_frames": ds.n_frames,
        "shape": tuple(ds.shape),
        "dtype": np.dtype(ds.dtype),
        "bit_depth": ds.bit_depth,
        "table": None,
        "dataset": ds,
    }


def recorded_frame_table(infos: dict[str, dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Frame table from the metadata when every stack is a recorded dataset, else None."""
    if not infos or not all("dataset" in i for i in infos.values()):
        return None
    return group_levels([i["dataset"] for i in infos.values()], names=list(infos))


def recorded_identity(
    infos: dict[str, dict[str, Any]], bit_depth: int, shape: tuple[int, int]
) -> Any:
    """`CameraIdentity` from the first recorded dataset's metadata, else None."""
    ds = next((i["dataset"] for i in infos.values() if "dataset" in i), None)
    if ds is None:
        return None
    fields = identity_from_props(ds.frames, shape, bit_depth, ds.summary)
    fields["bit_depth"] = int(bit_depth)
    fields.setdefault("extra", {})["stacks"] = ", ".join(infos)
    return CameraIdentity.from_dict(fields)
