"""Offline calibration from recorded TIFF / OME-TIFF stacks.

Two ways to say which frame is which:

- **Files**: one dark stack and one stack per light level
  (``calibrate_from_stacks([dark, level1, level2, ...])`` or ``dark=`` explicitly).
- **CSV**: one or more stacks plus a CSV with a row per frame and the columns
  ``kind`` (``bright``/``light``/``flat`` or ``dark``) and ``level_index`` (an integer
  per light level; dark rows with the same ``level_index`` are that level's darks),
  optionally ``frame`` (0-based page index; default: row order), ``file`` (stack file
  name when several stacks are given), ``exposure_ns``/``exposure_us``/``exposure_ms``/
  ``exposure_s``, ``photons_per_pixel`` and ``control`` (light-source setting; the
  linearity x-axis when neither photons nor a varying exposure is given). This is
  the layout of ``emva1288_ccd12_ptc_roi256.csv`` (24 levels x bright, bright, dark,
  dark) and of the sidecar CSV of ``rawsigma.acquire.framesave``.
- **HDF5** (``.h5``): a ``frames`` dataset (n, H, W); with ``kind`` and
  ``level_index`` datasets (``acquire.framesave``) no CSV is needed.

Frames are decoded one page (HDF5: one frame) at a time and folded into
:class:`~rawsigma.calib.moments.PixelMoments`; the stack is never held in memory.
"""

from __future__ import annotations

import csv as _csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.errors import InputFileError

from .build import build_profile
from .darkcurrent import attach_dark_current, fit_dark_current
from .datasets import (
    recorded_frame_table,
    recorded_identity,
)
from .moments import PixelMoments
from .profile import CameraIdentity, CameraProfile
from .stack_files import _iter_pages, stack_info

__all__ = ["calibrate_from_stacks", "read_frame_table", "stack_info"]

_LIGHT = {"bright", "light", "flat", "flatfield", "flat-field"}
_DARK = {"dark", "black", "bias"}
_EXPOSURE_COLS = {"exposure_ns": 1e-9, "exposure_us": 1e-6, "exposure_ms": 1e-3, "exposure_s": 1.0}


def read_frame_table(
    csv_path: str | os.PathLike, stacks: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Parse and validate a frame CSV against the stacks it describes.

    Parameters
    ----------
    csv_path : path
        The CSV (see module docstring for columns).
    stacks : dict
        :func:`stack_info` of every stack, keyed by file name.

    Returns
    -------
    list of dict
        One entry per frame: ``file`` (name), ``frame`` (page), ``kind``
        (``"light"``/``"dark"``), ``level`` (int), ``exposure_s``, ``photons``.
    """
    cp = Path(csv_path)
    if not cp.exists():
        raise InputFileError(f"{cp}: no such file")
    try:
        with open(cp, newline="") as fh:
            rows = list(_csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, _csv.Error) as e:
        raise InputFileError(f"{cp}: not a readable CSV file ({e})") from None
    if not rows:
        raise InputFileError(f"{cp}: no rows")
    cols = set(rows[0])
    for need in ("kind", "level_index"):
        if need not in cols:
            raise InputFileError(
                f"{cp}: missing column {need!r} (has {sorted(cols)}); needed to tell "
                "dark from light frames and to group levels"
            )
    names = list(stacks)
    if len(names) > 1 and "file" not in cols:
        raise InputFileError(
            f"{cp}: {len(names)} stacks given but the CSV has no 'file' column saying "
            "which stack each frame is in"
        )
    exp_col = next((c for c in _EXPOSURE_COLS if c in cols), None)
    out = [_table_row(cp, r, row, cols, stacks, exp_col) for r, row in enumerate(rows)]
    _check_table_frames(cp, out, stacks)
    return out


def _table_row(
    cp: Path,
    r: int,
    row: dict[str, str],
    cols: set[str],
    stacks: dict[str, dict[str, Any]],
    exp_col: str | None,
) -> dict[str, Any]:
    """One CSV row (line ``r + 2``) checked against the stacks: file, frame, kind, level..."""
    names = list(stacks)
    line = r + 2
    name = names[0]
    if "file" in cols and len(names) > 1:
        name = Path(row["file"]).name
        if name not in stacks:
            raise InputFileError(f"{cp}, line {line}: file {row['file']!r} is not among {names}")
    kind = str(row["kind"]).strip().lower()
    if kind in _LIGHT:
        kind = "light"
    elif kind in _DARK:
        kind = "dark"
    else:
        raise InputFileError(
            f"{cp}, line {line}: kind {row['kind']!r}; use 'bright' (or light/flat) or 'dark'"
        )
    try:
        frame = int(row["frame"]) if "frame" in cols else r
        level = int(float(row["level_index"]))
        exposure = float(row[exp_col]) * _EXPOSURE_COLS[exp_col] if exp_col else np.nan
        photons = float(row["photons_per_pixel"]) if "photons_per_pixel" in cols else np.nan
        control = float(row["control"]) if "control" in cols and row["control"] else np.nan
    except (TypeError, ValueError) as e:
        raise InputFileError(f"{cp}, line {line}: bad number ({e})") from None
    n = stacks[name]["n_frames"]
    if not 0 <= frame < n:
        raise InputFileError(
            f"{cp}, line {line}: frame {frame} does not exist; {name} has {n} frames "
            "(CSV and stack do not match)"
        )
    return {
        "file": name,
        "frame": frame,
        "kind": kind,
        "level": level,
        "exposure_s": exposure,
        "photons": photons,
        "control": control,
    }


def _check_table_frames(
    cp: Path, out: list[dict[str, Any]], stacks: dict[str, dict[str, Any]]
) -> None:
    """No frame listed twice; with one stack, every frame listed."""
    names = list(stacks)
    seen: set[tuple[str, int]] = set()
    for e in out:
        key = (e["file"], e["frame"])
        if key in seen:
            raise InputFileError(f"{cp}: frame {e['frame']} of {e['file']} is listed twice")
        seen.add(key)
    if len(names) == 1:
        n = stacks[names[0]]["n_frames"]
        if len(out) != n:
            raise InputFileError(
                f"{cp}: lists {len(out)} frames but {names[0]} has {n} (CSV and stack do not match)"
            )


def _infer_bits(max_value: int) -> int:
    for b in (8, 10, 12, 14, 16):
        if max_value <= (1 << b) - 1:
            return b
    return 16


def calibrate_from_stacks(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    csv: str | os.PathLike | None = None,
    *,
    dark: str | os.PathLike | None = None,
    identity: CameraIdentity | dict | None = None,
    bit_depth: int | None = None,
    flicker_correction: bool = True,
    progress: Callable[[int, int], None] | None = None,
    gain_map: str = "auto",
) -> CameraProfile:
    """Build a camera profile from recorded stacks.

    Parameters
    ----------
    paths : path or sequence of paths
        TIFF/OME-TIFF (or HDF5 ``frames``) stacks of raw integer frames. Without
        ``csv`` and ``dark``, the first is the dark stack and each further one a light
        level.
    csv : path, optional
        Frame table (see module docstring); then ``paths`` may be a single stack.
    dark : path, optional
        Dark stack, when ``paths`` holds only light levels.
    identity : CameraIdentity or dict, optional
        Camera identity to store; default: file names and the bit depth.
    bit_depth : int, optional
        ADC bit depth. Default: the stack's ImageDescription (JSON ``bit_depth`` /
        ``bits_per_pixel`` or OME ``SignificantBits``), else the smallest of
        8/10/12/14/16 bits that holds the largest value found.
    flicker_correction : bool
        Passed to :func:`~rawsigma.calib.build.build_profile`.
    progress : callable(done, total), optional
        Called after every frame.
    gain_map : {"auto", "per-pixel", "global"}
        See :func:`~rawsigma.calib.build.build_profile`.

    Returns
    -------
    CameraProfile

    Raises
    ------
    InputFileError
        A missing/foreign file, non-integer pixels, a stack with one frame, frame
        shapes, pixel types or declared bit depths that differ, or a CSV that does
        not match the stacks; the message names the file and the problem.
    CalibrationError
        The frames cannot give a usable profile (no light above dark, stacks in the
        wrong order, every level saturated, > 5 % of pixels without a gain).
    """
    plist = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not plist:
        raise InputFileError("no stack files given")
    dark_path = Path(dark) if dark is not None else None
    infos, shape = _stack_infos(([dark_path] if dark_path else []) + plist)
    frames = _frame_plan(plist, dark_path, csv, infos)
    counts = _frame_counts(frames.rows, infos, csv)
    light_levels = sorted(lv for kind, lv in counts if kind == "light")
    accs = _accumulate(frames.rows, counts, infos, shape, progress)
    # every frame went into one accumulator, which tracks the per-pixel maximum
    vmax = max(int(acc.pixel_max.max()) for acc in accs.values())
    bit_depth, bits_source = _bit_depth(infos, bit_depth, vmax)

    levels = [accs[("light", lv)] for lv in light_levels]
    dark_acc = PixelMoments(shape)
    for key, acc in accs.items():
        if key[0] == "dark":
            dark_acc.merge(acc)  # merge reads acc and never modifies it
    level_darks = None
    if all(("dark", lv) in accs for lv in light_levels):
        level_darks = [accs[("dark", lv)] for lv in light_levels]
    photons, exposure = _level_axes(frames.level_meta, light_levels)
    profile = build_profile(
        dark_acc,
        levels,
        _stack_identity(identity, infos, bit_depth, shape),
        plan={
            "kind": "from_stacks",
            "stacks": [str(i["path"]) for i in infos.values()],
            "csv": None if csv is None else str(csv),
            "frame_table": frames.source,
            "levels": light_levels,
        },
        max_adu=(1 << int(bit_depth)) - 1,
        level_darks=level_darks,
        photons=photons if np.all(np.isfinite(photons)) else None,
        exposure=exposure if np.all(np.isfinite(exposure)) and np.ptp(exposure) > 0 else None,
        flicker_correction=flicker_correction,
        gain_map=gain_map,
        source="stacks: " + ", ".join(str(i["path"]) for i in infos.values()),
        bit_depth_source=bits_source,
        total_frames=len(frames.rows),
    )
    groups = {lv: acc for (kind, lv), acc in accs.items() if kind == "dark" and lv is not None}
    return _with_dark_current(profile, groups, frames.dark_exposure)


# ----------------------------------------------------------------------------- steps
FrameKey = tuple[str, int | None]  # ("dark", level or None) / ("light", level)


@dataclass
class _FramePlan:
    """Which frame of which file goes into which accumulator, and what each level is."""

    rows: list[tuple[str, int, FrameKey]] = field(default_factory=list)  # (file, page, key)
    level_meta: dict[int, dict[str, float]] = field(default_factory=dict)
    dark_exposure: dict[int, float] = field(default_factory=dict)  # dark level -> exposure, s
    source: str = "files"  # where the roles come from: csv, metadata or files


def _stack_infos(paths: list[Path]) -> tuple[dict[str, dict[str, Any]], tuple[int, int]]:
    """:func:`stack_info` of every stack by name; one frame shape and pixel type for all."""
    infos = {p.name: stack_info(p) for p in paths}
    if len(infos) != len(paths):
        raise InputFileError(f"stack file names must be distinct: {[str(p) for p in paths]}")
    shapes = {i["shape"] for i in infos.values()}
    if len(shapes) > 1:
        raise InputFileError(
            "stacks have different frame shapes: "
            + ", ".join(f"{n}: {i['shape']}" for n, i in infos.items())
        )
    dtypes = {i["dtype"] for i in infos.values()}
    if len(dtypes) > 1:
        raise InputFileError(
            "stacks have different pixel types (different cameras or modes?): "
            + ", ".join(f"{n}: {i['dtype']}" for n, i in infos.items())
        )
    return infos, shapes.pop()


def _frame_plan(
    plist: list[Path],
    dark_path: Path | None,
    csv: str | os.PathLike | None,
    infos: dict[str, dict[str, Any]],
) -> _FramePlan:
    """The frames' roles: from the CSV, the datasets' metadata, the HDF5 file or the files."""
    table = None
    if csv is not None:
        if dark_path is not None:
            raise InputFileError("give either a CSV frame table or dark=, not both")
        table = read_frame_table(csv, infos)
    elif dark_path is None:  # recorded datasets: dark/light levels from their metadata
        table = recorded_frame_table(infos)
    if table is not None:
        return _plan_from_table(table, "csv" if csv else "metadata")
    if dark_path is None and len(plist) == 1 and infos[plist[0].name]["table"] is not None:
        return _plan_from_stored_roles(plist[0], infos[plist[0].name]["table"])
    return _plan_from_files(plist, dark_path, infos)


def _plan_from_table(table: list[dict[str, Any]], source: str) -> _FramePlan:
    plan = _FramePlan(source=source)
    for e in table:
        key = ("light", e["level"]) if e["kind"] == "light" else ("dark", e["level"])
        plan.rows.append((e["file"], e["frame"], key))
        if e["kind"] == "dark":
            plan.dark_exposure.setdefault(e["level"], e["exposure_s"])
        if e["kind"] == "light":
            plan.level_meta.setdefault(
                e["level"],
                {"exposure_s": e["exposure_s"], "photons": e["photons"], "control": e["control"]},
            )
    return plan


def _plan_from_stored_roles(path: Path, roles: list[tuple[str, int]]) -> _FramePlan:
    """HDF5 frames file written by acquire.framesave: roles stored in the file."""
    plan = _FramePlan()
    for j, (kind, lv) in enumerate(roles):
        k = kind.strip().lower()
        if k not in _LIGHT | _DARK:
            raise InputFileError(f"{path}: frame {j} has kind {kind!r}")
        key = ("light", lv) if k in _LIGHT else ("dark", lv)
        plan.rows.append((path.name, j, key))
        if key[0] == "light":
            plan.level_meta.setdefault(lv, {"exposure_s": np.nan, "photons": np.nan})
    return plan


def _plan_from_files(
    plist: list[Path], dark_path: Path | None, infos: dict[str, dict[str, Any]]
) -> _FramePlan:
    """One dark stack (``dark_path`` or the first) and one stack per light level."""
    if dark_path is None:
        if len(plist) < 2:
            raise InputFileError(
                f"{plist[0]}: one stack without a CSV; give a dark stack and at least "
                "one light-level stack, or a CSV saying which frame is which"
            )
        dark_path, light_paths = plist[0], plist[1:]
    else:
        light_paths = plist
    plan = _FramePlan()
    for j in range(infos[dark_path.name]["n_frames"]):
        plan.rows.append((dark_path.name, j, ("dark", None)))
    for li, lp in enumerate(light_paths):
        for j in range(infos[lp.name]["n_frames"]):
            plan.rows.append((lp.name, j, ("light", li)))
        plan.level_meta[li] = {"exposure_s": np.nan, "photons": np.nan}
    return plan


def _frame_counts(
    rows: list[tuple[str, int, FrameKey]],
    infos: dict[str, dict[str, Any]],
    csv: str | os.PathLike | None,
) -> dict[FrameKey, int]:
    """Frames per accumulator; light and dark frames present, at least 2 in each group."""
    counts: dict[FrameKey, int] = {}
    for _, _, key in rows:
        counts[key] = counts.get(key, 0) + 1
    if not any(kind == "light" for kind, _ in counts):
        raise InputFileError("no light (bright) frames found")
    if not any(kind == "dark" for kind, _ in counts):
        raise InputFileError("no dark frames found; dark frames are needed for the offset")
    for (kind, lv), c in counts.items():
        if c < 2:
            where = (
                csv
                if csv is not None
                else next((infos[f]["path"] for f, _, k in rows if k == (kind, lv)), "")
            )
            what = f"{kind} frames of level {lv}" if lv is not None else "dark frames"
            raise InputFileError(
                f"{where}: has 1 frame for {what}; at least 2 frames are needed to measure "
                "a temporal variance"
            )
    return counts


def _accumulate(
    rows: list[tuple[str, int, FrameKey]],
    counts: dict[FrameKey, int],
    infos: dict[str, dict[str, Any]],
    shape: tuple[int, int],
    progress: Callable[[int, int], None] | None,
) -> dict[FrameKey, PixelMoments]:
    """Fold every frame into its accumulator, file by file, one page at a time."""
    accs: dict[FrameKey, PixelMoments] = {
        key: PixelMoments(shape, higher=(key[0] == "dark"), flicker=(key[0] == "light"))
        for key in counts
    }
    total, done = len(rows), 0
    by_file: dict[str, list[tuple[int, FrameKey]]] = {}
    for f, j, key in rows:
        by_file.setdefault(f, []).append((j, key))
    for f, items in by_file.items():
        keys = dict(items)
        for j, frame in _iter_pages(infos[f]["path"], sorted(keys)):
            accs[keys[j]].add(frame)
            done += 1
            if progress is not None:
                progress(done, total)
    return accs


def _bit_depth(
    infos: dict[str, dict[str, Any]], bit_depth: int | None, vmax: int
) -> tuple[int, str]:
    """The ADC bit depth (given, declared by the files or inferred) and where it came from."""
    bits_declared = {i["bit_depth"] for i in infos.values() if i["bit_depth"]}
    if len(bits_declared) > 1:
        raise InputFileError(
            "stacks declare different bit depths (different camera modes?): "
            + ", ".join(f"{n}: {i['bit_depth']} bits" for n, i in infos.items() if i["bit_depth"])
        )
    if bit_depth is None:
        if len(bits_declared) == 1:
            bit_depth, bits_source = bits_declared.pop(), "file metadata"
        else:
            bit_depth, bits_source = _infer_bits(vmax), "largest value in the data"
    else:
        bits_source = "given"
    if vmax > (1 << bit_depth) - 1:
        raise InputFileError(
            f"{', '.join(infos)}: values up to {vmax} exceed the {bit_depth}-bit range"
        )
    return bit_depth, bits_source


def _level_axes(
    level_meta: dict[int, dict[str, float]], light_levels: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Photons and the linearity x-axis per level.

    The x-axis is the exposure if it varies, else the light control if that varies.
    """
    photons = np.array([level_meta[lv]["photons"] for lv in light_levels])
    exposure = np.array([level_meta[lv]["exposure_s"] for lv in light_levels])
    control = np.array([level_meta[lv].get("control", np.nan) for lv in light_levels])
    if not (np.all(np.isfinite(exposure)) and np.ptp(exposure) > 0):
        if np.all(np.isfinite(control)) and np.ptp(control) > 0:
            exposure = control
    return photons, exposure


def _stack_identity(
    identity: CameraIdentity | dict | None,
    infos: dict[str, dict[str, Any]],
    bit_depth: int,
    shape: tuple[int, int],
) -> CameraIdentity:
    """The given identity, else the datasets' recorded one, else one from the file names."""
    if identity is None:  # from the datasets' metadata when recorded by Micro-Manager
        identity = recorded_identity(infos, int(bit_depth), shape)
    if identity is None:
        return CameraIdentity(
            camera="from stacks",
            bit_depth=int(bit_depth),
            roi=(0, 0, shape[1], shape[0]),
            sensor_shape=shape,
            extra={"stacks": ", ".join(infos)},
        )
    if isinstance(identity, dict):
        return CameraIdentity.from_dict({"bit_depth": bit_depth, **identity})
    return identity


def _with_dark_current(
    profile: CameraProfile, groups: dict[int, Any], exposure: dict[int, float]
) -> CameraProfile:
    """Add the dark current when the CSV's dark frames span >= 2 exposure times.

    Groups of equal exposure are merged; the profile's offset (all darks merged) is
    at the frame-weighted mean dark exposure, its reference for ``at_exposure``.
    """
    by_t: dict[float, PixelMoments] = {}
    for lv, acc in groups.items():
        t = exposure.get(lv, np.nan)
        if not np.isfinite(t):
            return profile
        by_t.setdefault(float(t), PixelMoments(acc.shape)).merge(acc)
    if len(by_t) < 2:
        return profile
    ts = sorted(by_t)
    n = np.array([by_t[t].n for t in ts], np.float64)
    t_ref = float(np.sum(n * np.array(ts)) / n.sum())
    return attach_dark_current(profile, fit_dark_current([by_t[t] for t in ts], ts), t_ref)
