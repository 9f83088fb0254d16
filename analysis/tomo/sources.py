"""Projection inputs of ``rawsigma tomo reconstruct``: files, frame selections, angles.

Readable: TIFF stacks or single frames (a 2D TIFF of a sinogram is angles × detector),
``.npy``, zarr arrays, HDF5 (Data Exchange ``exchange/data``, ``data_dark``,
``data_white``, ``theta``, or plain ``data``/``darks``/``flats``/``angles``). A path may
end in a frame selection ``[i]`` or ``[i:j]`` (e.g. ``frames.tif[0:7]``). Several
projection files are stacked in the given order (frames of one shape).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.errors import ImageMismatchError, InputFileError, UsageError
from rawsigma.h5probe import check_hdf5

from .normalize import NormalizedProjections

_SELECT = re.compile(r"^(?P<path>.*)\[(?P<a>-?\d*)(?P<colon>:?)(?P<b>-?\d*)\]$")
H5_KEYS = {
    "data": ("exchange/data", "data", "projections"),
    "dark": ("exchange/data_dark", "darks", "dark"),
    "flat": ("exchange/data_white", "flats", "flat"),
    "angles": ("exchange/theta", "angles", "theta"),
}


def split_selection(spec: str) -> tuple[Path, slice | int | None]:
    """``"a.tif[2:5]"`` → (a.tif, slice(2, 5)); ``"a.tif[7]"`` → (a.tif, 7); else no selection."""
    p = Path(spec)
    m = _SELECT.match(spec)
    if p.exists() or not m:
        return p, None
    a, b = m["a"], m["b"]
    if not m["colon"]:
        if not a:
            raise UsageError(f"{spec}: empty frame selection []")
        return Path(m["path"]), int(a)
    return Path(m["path"]), slice(int(a) if a else None, int(b) if b else None)


def _h5_find(f: Any, what: str) -> Any:
    for key in H5_KEYS[what]:
        if key in f:
            return f[key]
    return None


def _read_any(path: Path) -> Any:
    """Array-like of a file (HDF5 and zarr stay lazy)."""
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".h5", ".hdf5", ".hdf", ".nxs"):
            import h5py

            check_hdf5(path)
            f = h5py.File(path, "r")
            data = _h5_find(f, "data")
            if data is None:
                raise InputFileError(f"{path}: no projections (looked for {H5_KEYS['data']})")
            return data
        if suffix == ".zarr" or path.is_dir():
            import zarr

            return zarr.open_array(str(path), mode="r")
        if suffix == ".npy":
            return np.load(path, mmap_mode="r")
        import tifffile
        from rawsigma._tiffcheck import tiff_intact

        with tiff_intact(path):  # a truncated stack: refused, not its first pages
            with tifffile.TiffFile(path) as tf:
                axes = tf.series[0].axes if tf.series else ""
                if "S" in axes:  # (rows, cols, 3) read as 3-pixel-wide projections
                    raise InputFileError(
                        f"{path}: colour (RGB) image (axes {axes!r}, shape "
                        f"{tf.series[0].shape}); projections have one sample per pixel"
                    )
                return tf.asarray()
    except (InputFileError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a foreign or damaged file: one line
        raise InputFileError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def read_frames(spec: str) -> Any:
    """Frames of ``spec`` (a path with an optional ``[i]``/``[i:j]`` selection)."""
    path, sel = split_selection(spec)
    return select_frames(_read_any(path), sel, spec, path)


def select_frames(arr: Any, sel: slice | int | None, spec: str, path: Path) -> Any:
    """The frames of ``arr`` (read from ``path``) that ``sel`` selects.

    ``sel`` is `split_selection`'s of ``spec``: None selects all; a selection outside the
    file's frames or holding none is a `UsageError`.
    """
    if sel is None:
        return arr
    n = arr.shape[0]
    if isinstance(sel, int) and not -n <= sel < n:
        raise UsageError(f"{spec}: frame {sel} out of range (the file has {n})")
    if isinstance(sel, slice) and any(
        e is not None and not -n <= e <= n for e in (sel.start, sel.stop)
    ):  # Python would clip [0:70] to the file's frames: darks and flats as projections
        raise UsageError(f"{spec}: frames out of range (the file has {n}, 0 to {n - 1})")
    out = arr[sel]
    if getattr(out, "shape", (1,))[0] == 0:
        raise UsageError(f"{spec}: selects none of the {n} frames of {path}")
    return out


@dataclass
class TomoInput:
    """Projections ready for `fbp` (line integrals), with what the files said."""

    projections: Any
    angles: np.ndarray | None
    normalisation: str
    sources: list[str] = field(default_factory=list)


def _stack(specs: list[str]) -> Any:
    parts = [read_frames(s) for s in specs]
    if len(parts) == 1:
        return parts[0]
    frames = []
    for spec, p in zip(specs, parts, strict=True):
        a = np.asarray(p)
        frames.extend(a if a.ndim == 3 else [a])
        if frames[-1].shape != frames[0].shape:
            raise ImageMismatchError(
                f"projections of mixed shapes: {spec} holds {frames[-1].shape} frames, "
                f"{specs[0]} {frames[0].shape}"
            )
    return np.stack(frames)


def _h5_extras(spec: str) -> tuple[Any, Any, np.ndarray | None]:
    """Dark, flat and angles (degrees) stored beside HDF5 projections, if any."""
    path, _ = split_selection(spec)
    if path.suffix.lower() not in (".h5", ".hdf5", ".hdf", ".nxs"):
        return None, None, None
    import h5py

    check_hdf5(path)
    with h5py.File(path, "r") as f:
        dark, flat, ang = (_h5_find(f, k) for k in ("dark", "flat", "angles"))
        dark = None if dark is None else dark[()]
        flat = None if flat is None else flat[()]
        angles = None
        if ang is not None:
            angles = np.asarray(ang[()], np.float64).ravel()
            units = str(ang.attrs.get("units", "degrees")).lower()
            if units.startswith("rad"):
                angles = np.rad2deg(angles)
    return dark, flat, angles


def open_beam_from_edges(data: Any, edge: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-projection open beam from the ``edge`` first and last detector columns.

    For raw counts without a flat: each projection (and row) is divided by the mean of
    its edge columns, which must see no sample. Returns (dark = 0, flat) frames shaped
    like ``data``'s (n, rows, 1), broadcast over the detector.
    """
    a = np.asarray(data, np.float32)
    a = a[:, None, :] if a.ndim == 2 else a
    ob = np.concatenate([a[..., :edge], a[..., -edge:]], axis=-1).mean(axis=-1, keepdims=True)
    if not np.all(ob > 0):
        raise InputFileError("no open beam at the detector edges (give --dark and --flat)")
    return np.zeros_like(ob), ob


def load_input(
    specs: list[str],
    *,
    dark: str | None = None,
    flat: str | None = None,
    kind: str = "auto",
    edge_fraction: float = 0.05,
) -> TomoInput:
    """Read projections (and their dark, flat, angles) and make them line integrals.

    ``kind``: ``counts`` (raw camera counts: dark/flat normalisation, or without a flat
    the open beam of the detector edges, see `open_beam_from_edges`), ``transmission``
    (already I/I0: −log only), ``attenuation`` (already line integrals), ``auto``
    (counts if a dark/flat is known or the data are integers, else attenuation).
    """
    data = _stack(specs)
    if len(data.shape) not in (2, 3):
        raise ImageMismatchError(f"{specs[0]}: projections must be 2D or 3D, got {data.shape}")
    h5_dark, h5_flat, angles = _h5_extras(specs[0]) if len(specs) == 1 else (None, None, None)
    d = read_frames(dark) if dark else h5_dark
    f = read_frames(flat) if flat else h5_flat
    if (d is None) != (f is None) and kind in ("auto", "counts"):
        raise UsageError("give both --dark and --flat (or neither)")
    if kind == "auto":
        integer = np.issubdtype(np.dtype(data.dtype), np.integer)
        kind = "counts" if f is not None or integer else "attenuation"
    if kind == "attenuation":
        return TomoInput(data, angles, "none (line integrals given)", specs)
    if kind == "transmission":
        one = np.ones(data.shape[-2:] if len(data.shape) == 3 else (1, data.shape[-1]))
        src = data if len(data.shape) == 3 else np.asarray(data)[:, None, :]
        return TomoInput(NormalizedProjections(src, 0 * one, one), angles, "-log(I)", specs)
    if f is None:
        edge = max(4, int(round(edge_fraction * data.shape[-1])))
        src = np.asarray(data, np.float32)
        src = src[:, None, :] if src.ndim == 2 else src
        _, ob = open_beam_from_edges(src, edge)
        how = f"-log(I / open beam), open beam = mean of the {edge} first and last columns"
        return TomoInput(-np.log(np.maximum(src / ob, 1e-6)), angles, how, specs)
    src = data if len(data.shape) == 3 else np.asarray(data)[:, None, :]
    d2 = np.asarray(d)
    f2 = np.asarray(f)
    if len(data.shape) == 2:
        d2, f2 = d2.reshape(-1, 1, data.shape[-1]), f2.reshape(-1, 1, data.shape[-1])
    return TomoInput(
        NormalizedProjections(src, d2, f2), angles, "-log((I - dark) / (flat - dark))", specs
    )


def parse_angles(
    angles: str | None, angle_range: str | None, n: int, from_file: np.ndarray | None,
    include_end: bool = False,
) -> tuple[np.ndarray, str]:  # fmt: skip
    """Angles (degrees) from ``--angles``, ``--angle-range`` or the input file.

    ``--angles``: comma-separated degrees or a text/.npy file with one per projection;
    ``--angle-range A,B``: ``n`` angles evenly from A to B, B excluded (the usual full
    turn) unless ``include_end`` (scans whose last frame repeats the first).
    `UsageError` (exit 2) for a count that does not match the projections.
    """
    if angles and angle_range:
        raise UsageError("give --angles or --angle-range, not both")
    if angles:
        p = Path(angles)
        try:
            if p.exists():
                a = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, delimiter=None, ndmin=1)
            else:
                a = np.array([float(x) for x in angles.split(",") if x.strip()])
        except ValueError as exc:
            raise UsageError(f"--angles {angles!r}: not numbers ({exc})") from None
        a = np.asarray(a, np.float64).ravel()
        if not np.isfinite(a).all():
            raise UsageError(f"--angles {angles!r}: angles must be finite numbers (degrees)")
        if a.size != n:
            raise UsageError(f"--angles gives {a.size} angles for {n} projections")
        return a, f"--angles ({a.size} values)"
    if angle_range:
        try:
            lo, hi = (float(x) for x in angle_range.split(","))
        except ValueError:
            raise UsageError(f"--angle-range {angle_range!r}: expected START,STOP") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo != hi):
            raise UsageError(
                f"--angle-range {angle_range!r}: START and STOP must be finite and differ"
            )
        end = "including" if include_end else "excluding"
        how = f"--angle-range {lo:g},{hi:g}: {n} angles, {end} {hi:g}"
        return np.linspace(lo, hi, n, endpoint=include_end), how
    if from_file is not None:
        if from_file.size != n:
            raise InputFileError(
                f"the input file gives {from_file.size} angles for {n} projections"
            )
        return from_file, "from the input file"
    raise UsageError("no angles: give --angles or --angle-range (e.g. --angle-range 0,360)")
