"""Read a 3D raw volume (Z, Y, X) with its axes and voxel size.

:func:`read_volume` reads TIFF/OME-TIFF stacks, zarr/OME-Zarr arrays, HDF5 datasets and
``.npy`` as one ``(Z, Y, X)`` array, with the voxel size (dz, dy, dx) when the file
declares it:

- OME-TIFF: ``Pixels`` ``PhysicalSizeZ/Y/X`` and the series' axes;
- ImageJ TIFF: ``spacing`` (z) and ``XResolution``/``YResolution`` (pixels per unit);
- TIFF with a JSON description (rawsigma, the shared test data): ``axes`` and
  ``spacing``/``voxel_size``/``voxel_size_um``/``voxel_size_um_zyx`` (Z, Y, X);
- OME-Zarr: ``multiscales[0].axes`` and the ``scale`` transform of level 0;
- HDF5 / zarr attributes: ``axes`` (a string such as ``"ZYX"``) and
  ``element_size_um`` (Fiji / ilastik) or ``spacing``.

Options given by the user win over the file (``axes``, ``spacing``). Axes of size 1
other than Z, Y, X are dropped; a generic stack axis (tifffile's ``I``/``Q``) is taken
as Z. Anything else is refused with one line: an axes string that does not match the
array's dimensions, a volume whose axes are not in Z, Y, X order (e.g. ``YXZ``: the
library does not reorder silently), a time or channel axis of size > 1, a spacing with
zeros, NaN or negative values.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._tiffcheck import tiff_intact
from .errors import InputFileError, UsageError
from .imread import _check_dtype, _sniff, check_not_masked, split_dataset

__all__ = [
    "VolumeInfo",
    "VolumeSource",
    "declared_axes",
    "open_volume",
    "parse_spacing",
    "read_volume",
]

_GENERIC = set("IQ")  # tifffile's axis letters for a stack of unknown meaning


@dataclass(frozen=True)
class VolumeInfo:
    """What :func:`read_volume` found.

    Attributes
    ----------
    path : Path
    format : str
        ``"tiff"``, ``"ome-tiff"``, ``"hdf5"``, ``"zarr"``, ``"ome-zarr"`` or ``"npy"``.
    layout : str
        Human-readable description, e.g. ``"OME-TIFF series (40, 128, 128) axes 'ZYX'"``.
    file_axes : str
        Axes as declared by the file (or assumed / given), before dropping size-1 axes.
    shape : tuple of int
        ``(Z, Y, X)``.
    dtype : numpy.dtype
    spacing : tuple of float or None
        (dz, dy, dx), None when neither the file nor the user gave one.
    spacing_source : str
        Where the spacing came from.
    dataset : str or None
    """

    path: Path
    format: str
    layout: str
    file_axes: str
    shape: tuple[int, ...]
    dtype: np.dtype
    spacing: tuple[float, float, float] | None
    spacing_source: str
    dataset: str | None = None

    def describe(self) -> str:
        """One line for the terminal."""
        sp = (
            f"voxel {' x '.join(f'{s:g}' for s in self.spacing)} ({self.spacing_source})"
            if self.spacing
            else "no voxel size"
        )
        return f"{self.path}: {self.layout} -> volume {self.shape} {self.dtype}, {sp}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able record (for provenance)."""
        return {
            "path": str(self.path),
            "format": self.format,
            "layout": self.layout,
            "file_axes": self.file_axes,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "spacing_zyx": None if self.spacing is None else list(self.spacing),
            "spacing_source": self.spacing_source,
            "dataset": self.dataset,
        }


#: Voxel sizes accepted by `parse_spacing` (µm: a nanometre to a metre). Beyond it, the
#: voxel volume (a product of three sizes) and the surface areas overflow or underflow.
SPACING_RANGE = (1e-3, 1e6)


def parse_spacing(text: str | Any, name: str = "--spacing") -> tuple[float, float, float]:
    """``"2,0.5,0.5"`` (or 3 numbers) → (dz, dy, dx); :class:`UsageError` otherwise."""
    parts = text.replace(" ", "").split(",") if isinstance(text, str) else list(text)
    try:
        sp = tuple(float(s) for s in parts)
    except (TypeError, ValueError):
        raise UsageError(f"{name}: expected three numbers Z,Y,X, got {text!r}") from None
    if len(sp) != 3:
        raise UsageError(f"{name}: expected three numbers Z,Y,X, got {len(sp)} in {text!r}")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise UsageError(
            f"{name}: voxel sizes must be positive finite numbers, got {text!r} "
            "(no zeros, NaN or negative values)"
        )
    if not all(SPACING_RANGE[0] <= s <= SPACING_RANGE[1] for s in sp):
        lo, hi = SPACING_RANGE
        raise UsageError(
            f"{name}: voxel sizes must lie in [{lo:g}, {hi:g}] (µm), got {text!r}; "
            "volumes and surfaces would underflow or overflow"
        )
    return sp  # type: ignore[return-value]


# ----------------------------------------------------------------------------- readers
def _json_desc(desc: str) -> dict[str, Any]:
    try:
        d = json.loads(desc or "{}")
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _ome_spacing(xml: str) -> dict[str, float]:
    m = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml or "")
    if not m:
        return {}
    out = {}
    for ax in "ZYX":
        v = re.search(rf'PhysicalSize{ax}="([^"]+)"', m.group(0))
        if v:
            out[ax] = float(v.group(1))
    return out


def _json_spacing(d: dict[str, Any]) -> list[float] | None:
    for key in (
        "spacing",
        "voxel_size",
        "voxel_size_um",
        "voxel_size_um_zyx",
        "spacing_zyx",
        "element_size_um",
    ):
        v = d.get(key)
        if isinstance(v, list | tuple) and len(v) == 3:
            return [float(s) for s in v]
    return None


def _tiff(
    p: Path, lazy: bool = False
) -> tuple[Any, str, dict[str, float] | list[float] | None, str, str]:
    import tifffile

    with tiff_intact(p), tifffile.TiffFile(p) as tif:
        series = [s for s in tif.series if s.shape]
        if len(series) != 1:
            raise InputFileError(
                f"{p}: {len(series)} image series; a volume file holds one (Z, Y, X) series"
            )
        s = series[0]
        page0 = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
        desc = getattr(page0, "description", "") or ""
        check_not_masked(p, desc)
        axes, spacing, src = s.axes, None, ""
        fmt = "ome-tiff" if tif.is_ome else "tiff"
        if tif.is_ome:
            spacing, src = _ome_spacing(tif.ome_metadata or ""), "OME PhysicalSize"
        elif tif.is_imagej:
            ij = tif.imagej_metadata or {}
            tags = page0.tags
            res = [tags.get(n) for n in ("YResolution", "XResolution")]
            if "spacing" in ij and all(r is not None for r in res):
                yx = [r.value[1] / r.value[0] if r.value[0] else math.nan for r in res]
                spacing, src = {"Z": float(ij["spacing"]), "Y": yx[0], "X": yx[1]}, "ImageJ"
        else:
            d = _json_desc(desc)
            if isinstance(d.get("axes"), str) and len(d["axes"]) == len(s.shape):
                axes = d["axes"].upper()
            js = _json_spacing(d)
            if js is not None:
                spacing, src = js, "TIFF description"
        layout = f"{'OME-TIFF' if tif.is_ome else 'TIFF'} series {tuple(s.shape)} axes {axes!r}"
        data = _Lazy(tuple(s.shape), s.dtype, None) if lazy else s.asarray()
        return data, axes, spacing, src, layout + f"|{fmt}"


def _attr_axes_spacing(attrs: Any) -> tuple[str, list[float] | None]:
    axes = attrs.get("axes", "")
    axes = axes if isinstance(axes, str) else ""
    sp = None
    for key in ("element_size_um", "spacing", "voxel_size"):
        v = attrs.get(key)
        if v is not None and np.size(v) >= 3:
            sp = [float(s) for s in np.ravel(v)]
            break
    return axes.upper(), sp


def _hdf5(p: Path, name: str | None, lazy: bool = False) -> tuple[Any, str, Any, str, str]:
    import h5py

    from .h5probe import check_hdf5

    check_hdf5(p)
    with h5py.File(p, "r") as f:
        if name is not None:
            ds = f.get(name)
            if not isinstance(ds, h5py.Dataset):
                raise InputFileError(f"{p}: no dataset {name!r}")
        else:
            found: list[Any] = []
            f.visititems(lambda _n, o: found.append(o) if isinstance(o, h5py.Dataset)
                         and o.ndim >= 3 else None)  # fmt: skip
            if len(found) != 1:
                names = ", ".join(f"{d.name} {d.shape}" for d in found[:8]) or "none"
                raise InputFileError(
                    f"{p}: {len(found)} datasets of 3 or more dimensions ({names}); "
                    f"choose one with {p}:NAME"
                )
            ds = found[0]
        axes, sp = _attr_axes_spacing(ds.attrs)
        layout = f"HDF5 dataset {ds.name} {ds.shape} {ds.dtype}|hdf5"
        data = _Lazy(tuple(ds.shape), ds.dtype, ds.name) if lazy else ds[()]
        return data, axes, sp, "HDF5 attributes" if sp else "", layout


def _zarr(p: Path, name: str | None, lazy: bool = False) -> tuple[Any, str, Any, str, str]:
    import warnings

    import zarr

    from ._imread_stores import _zarr_pick, check_no_outside_chunks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node = zarr.open(str(p), mode="r")
        arr, key = _zarr_pick(p, node, name)
        ms = None if isinstance(node, zarr.Array) else node.attrs.get("multiscales")
        axes, sp = _attr_axes_spacing(arr.attrs)
        src, fmt = ("zarr attributes" if sp else ""), "zarr"
        if isinstance(ms, list) and ms:
            fmt = "ome-zarr"
            ax = ms[0].get("axes") or []
            axes = "".join(
                (a.get("name", "?") if isinstance(a, dict) else str(a))[:1].upper() for a in ax
            )
            for d in ms[0].get("datasets", []):
                if d.get("path") == key:
                    for t in d.get("coordinateTransformations", []):
                        if t.get("type") == "scale":
                            sp, src = [float(s) for s in t["scale"]], "OME-Zarr scale"
        missing = arr.nchunks - arr.nchunks_initialized
        if missing:
            raise InputFileError(
                f"{p}: {missing} of {arr.nchunks} chunks of array {key!r} are missing; "
                "they would read as the fill value, not as data"
            )
        check_no_outside_chunks(arr, p, key)
        layout = f"{'OME-Zarr' if fmt == 'ome-zarr' else 'zarr'} array {key!r} {arr.shape}|{fmt}"
        if lazy:
            sub = None if isinstance(node, zarr.Array) else key
            return _Lazy(tuple(arr.shape), np.dtype(arr.dtype), sub), axes, sp, src, layout
        return np.asarray(arr[...]), axes, sp, src, layout


# ----------------------------------------------------------------------------- axes
def _spacing_for(sp: Any, file_axes: str, keep: list[int]) -> tuple[float, float, float] | None:
    """Spacing for the kept Z, Y, X axes from a per-axis dict or a per-dimension list."""
    if sp is None:
        return None
    if isinstance(sp, dict):
        if not all(a in sp for a in "ZYX"):
            return None
        vals = [sp["Z"], sp["Y"], sp["X"]]
    elif len(sp) == len(file_axes):
        vals = [sp[i] for i in keep]
    elif len(sp) == 3:
        vals = list(sp)
    else:
        return None
    return tuple(float(v) for v in vals)  # type: ignore[return-value]


def _normalise_axes(
    arr: np.ndarray, axes: str, p: Path, layout: str
) -> tuple[np.ndarray, list[int]]:
    if len(axes) != arr.ndim:
        raise UsageError(
            f"{p}: axes {axes!r} have {len(axes)} letters but the array has {arr.ndim} "
            f"dimensions (shape {arr.shape}, {layout}); give one letter per dimension"
        )
    ax = "".join("Z" if a in _GENERIC else a for a in axes.upper())
    keep = [i for i, (a, n) in enumerate(zip(ax, arr.shape, strict=True)) if a in "ZYX" or n > 1]
    kept = "".join(ax[i] for i in keep)
    extra = [a for a in kept if a not in "ZYX"]
    if extra or len(set(kept)) != len(kept):
        raise InputFileError(
            f"{p}: axes {axes!r} (shape {arr.shape}) hold {', '.join(extra) or 'repeated'} "
            "axes of size > 1 besides Z, Y, X; a volume has exactly Z, Y and X"
        )
    if sorted(kept) != ["X", "Y", "Z"]:
        raise InputFileError(f"{p}: axes {axes!r} (shape {arr.shape}) are not a Z, Y, X volume")
    if kept != "ZYX":
        raise InputFileError(
            f"{p}: axes {kept!r}: the volume must be ordered Z, Y, X (Z first, X last); "
            "reorder it (numpy.moveaxis) or save it as ZYX"
        )
    return arr.reshape([arr.shape[i] for i in keep]), keep


def declared_axes(path: str | os.PathLike) -> str:
    """Axes a file declares for its image, without reading the data ("" if none).

    Used by the CLI to tell a 3D volume (an axis ``Z``) from a stack of frames.
    """
    p, ds = split_dataset(path)
    damaged: InputFileError | None = None
    try:
        kind = _sniff(p)
        if kind == "tiff":
            import tifffile

            try:  # damage tifffile logs here is refused in one line, not printed
                with tiff_intact(p), tifffile.TiffFile(p) as tif:
                    s = tif.series[0]
                    page0 = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
                    d = {} if tif.is_ome else _json_desc(getattr(page0, "description", "") or "")
                    a = d.get("axes")
                    return a.upper() if isinstance(a, str) and len(a) == len(s.shape) else s.axes
            except InputFileError as exc:  # tiff_intact's: the file is damaged
                damaged = exc
        if kind == "zarr":
            import zarr

            node = zarr.open(str(p), mode="r")
            ms = None if isinstance(node, zarr.Array) else node.attrs.get("multiscales")
            if isinstance(ms, list) and ms:
                return "".join(
                    (a.get("name", "?") if isinstance(a, dict) else str(a))[:1].upper()
                    for a in ms[0].get("axes") or []
                )
            arr = node if isinstance(node, zarr.Array) else None
            return str(arr.attrs.get("axes", "")).upper() if arr is not None else ""
        if kind == "hdf5":
            import h5py

            from .h5probe import check_hdf5

            check_hdf5(p)
            with h5py.File(p, "r") as f:
                obj = f.get(ds) if ds else None
                return str(obj.attrs.get("axes", "")).upper() if obj is not None else ""
    except Exception:  # noqa: BLE001 - only a hint; the real reader reports problems
        return ""
    if damaged is not None:
        raise damaged
    return ""


def read_volume(
    path: str | os.PathLike,
    *,
    axes: str | None = None,
    spacing: tuple[float, float, float] | None = None,
    integer: bool = True,
    what: str = "volume",
) -> tuple[np.ndarray, VolumeInfo]:
    """Read one (Z, Y, X) volume, its axes and its voxel size.

    Parameters
    ----------
    path : path-like
        TIFF/OME-TIFF, HDF5 (``FILE.h5[:DATASET]``), zarr/OME-Zarr (``DIR.zarr[:NAME]``)
        or ``.npy``.
    axes : str, optional
        One letter per dimension of the stored array (e.g. ``"ZYX"``, ``"TZYX"``); wins
        over the file's. Without axes from the file or here, a 3-D array is ``ZYX``.
    spacing : (dz, dy, dx), optional
        Voxel size; wins over the file's.
    integer : bool
        Refuse floating-point data (raw counts are integers).
    what : str
        Noun used in messages.

    Returns
    -------
    volume : ndarray, (Z, Y, X)
    info : VolumeInfo

    Raises
    ------
    InputFileError
        Unreadable file, axes not in Z, Y, X order, extra axes, spacing in the file
        with zeros/NaN/negative values.
    UsageError
        ``axes`` of the wrong length, ``spacing`` not 3 positive finite numbers.
    """
    vol, info, _ = _open(path, axes, spacing, integer, what, lazy=False)
    return vol, info


def open_volume(
    path: str | os.PathLike,
    *,
    axes: str | None = None,
    spacing: tuple[float, float, float] | None = None,
    integer: bool = True,
    what: str = "volume",
) -> tuple[VolumeSource, VolumeInfo]:
    """Open one (Z, Y, X) volume without reading its voxels (as :func:`read_volume`).

    The returned :class:`VolumeSource` reads blocks on demand (zarr/OME-Zarr and HDF5
    through their chunks, TIFF through tifffile's zarr store, ``.npy`` memory-mapped);
    it pickles (a path and a key), so workers reopen the file themselves. A zarr array
    with missing chunks is refused here: they would read as the fill value.
    """
    _, info, src = _open(path, axes, spacing, integer, what, lazy=True)
    assert src is not None
    return src, info


def _open(
    path: str | os.PathLike,
    axes: str | None,
    spacing: tuple[float, float, float] | None,
    integer: bool,
    what: str,
    lazy: bool,
) -> tuple[Any, VolumeInfo, VolumeSource | None]:
    p, ds = split_dataset(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    if spacing is not None:
        spacing = parse_spacing(spacing)
    kind = _sniff(p)
    try:
        if kind == "hdf5":
            arr, faxes, fsp, src, layout = _hdf5(p, ds, lazy)
        elif kind == "zarr":
            arr, faxes, fsp, src, layout = _zarr(p, ds, lazy)
        elif kind == "npy":
            arr = np.load(p, allow_pickle=False, mmap_mode="r" if lazy else None)
            faxes, fsp, src, layout = "", None, "", f".npy array {arr.shape}|npy"
            arr = _Lazy(tuple(arr.shape), arr.dtype, None) if lazy else arr
        else:
            arr, faxes, fsp, src, layout = _tiff(p, lazy)
    except (InputFileError, UsageError):
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure is a bad input file
        raise InputFileError(f"{p}: cannot read as {kind} ({type(exc).__name__}: {exc})") from None
    layout, fmt = layout.rsplit("|", 1)
    arr = arr if lazy else np.asarray(arr)
    use_axes = axes.upper() if axes else (faxes if len(faxes) == arr.ndim else "")
    if not use_axes:
        if arr.ndim != 3:
            raise InputFileError(
                f"{p}: {arr.ndim}-D array {arr.shape} ({layout}) without axes; give --axes "
                "(one letter per dimension, e.g. ZYX)"
            )
        use_axes = "ZYX"
    vol, keep = _normalise_axes(arr, use_axes, p, layout)
    if spacing is not None:
        sp, sp_src = spacing, "--spacing"
    else:
        sp, sp_src = _spacing_for(fsp, use_axes, keep), src
        if sp is not None and not all(math.isfinite(s) and s > 0 for s in sp):
            raise InputFileError(
                f"{p}: the file declares voxel size {', '.join(f'{s:g}' for s in sp)} ({src}); "
                "zeros, NaN or negative sizes are not a voxel size: give --spacing Z,Y,X"
            )
        if sp is None:
            sp_src = "none"
    info = VolumeInfo(p, fmt, layout, use_axes, tuple(int(n) for n in vol.shape), vol.dtype,
                      sp, sp_src, ds)  # fmt: skip
    from .imread import ImageInfo

    _check_dtype(vol, ImageInfo(p, fmt, layout, "ZYX", vol.shape, vol.dtype, 1), integer, what)
    if 0 in vol.shape:
        raise InputFileError(f"{p}: empty {what} (shape {vol.shape})")
    source = None
    if lazy:
        source = VolumeSource(str(p), kind, vol.key, tuple(vol.file_shape), tuple(keep),
                              info.shape, np.dtype(vol.dtype).str, what)  # fmt: skip
    return vol, info, source


# ----------------------------------------------------------------------------- lazy
@dataclass(frozen=True)
class _Lazy:
    """Shape and dtype of an array not read (`_normalise_axes` reshapes it)."""

    shape: tuple[int, ...]
    dtype: Any
    key: str | None
    file_shape: tuple[int, ...] = ()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def reshape(self, shape: list[int]) -> _Lazy:
        return _Lazy(tuple(shape), self.dtype, self.key, self.file_shape or self.shape)


_HANDLES: dict[tuple[str, str, str | None], Any] = {}


@dataclass(frozen=True)
class VolumeSource:
    """A (Z, Y, X) volume in a file, read block by block (:func:`open_volume`).

    Attributes
    ----------
    path, kind, key : str
        The file, its format (``zarr``, ``hdf5``, ``tiff``, ``npy``) and the array in it.
    file_shape : tuple of int
        The stored array's shape; ``keep`` are its Z, Y, X dimensions (others size 1).
    shape : tuple of int
        ``(Z, Y, X)``.
    dtype : str
        NumPy dtype string.
    what : str
        Noun used in messages.
    """

    path: str
    kind: str
    key: str | None
    file_shape: tuple[int, ...]
    keep: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: str
    what: str = "volume"

    @property
    def ndim(self) -> int:
        """3."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes of the whole volume in memory."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def _handle(self) -> Any:
        k = (self.path, self.kind, self.key)
        h = _HANDLES.get(k)
        if h is None:
            if self.kind == "zarr":
                import zarr

                node = zarr.open(self.path, mode="r")
                h = node if self.key is None else node[self.key]
            elif self.kind == "hdf5":
                import h5py

                from .h5probe import check_hdf5

                check_hdf5(self.path)
                h = h5py.File(self.path, "r")[self.key]
            elif self.kind == "npy":
                h = np.load(self.path, mmap_mode="r", allow_pickle=False)
            else:
                import tifffile
                import zarr

                h = zarr.open(tifffile.imread(self.path, aszarr=True), mode="r")
            _HANDLES[k] = h
        return h

    def __getitem__(self, index: tuple[slice, ...]) -> np.ndarray:
        """The block ``index`` (slices of Z, Y, X) as an ndarray."""
        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (3 - len(index))
        it = iter(index)
        full = tuple(next(it) if i in self.keep else 0 for i in range(len(self.file_shape)))
        try:
            return np.asarray(self._handle()[full])
        except Exception as exc:  # noqa: BLE001 - a bad block is a bad input file
            where = ", ".join(f"{s.start}:{s.stop}" if isinstance(s, slice) else str(s)
                              for s in index)  # fmt: skip
            raise InputFileError(
                f"{self.path}: cannot read the {self.what} block [{where}] "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
