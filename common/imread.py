"""One reader for raw images and stacks: TIFF, OME-TIFF, HDF5, zarr and ``.npy``.

Every command that reads camera frames goes through :func:`imread` (or its two
shortcuts :func:`read_stack` and :func:`read_frame`), so every command understands
every layout rawsigma writes and refuses, with the shape and layout it found, what
it cannot interpret. Nothing is guessed silently: an RGB file, several unrelated
images in one file, a 5-D array without axes, a float image where raw integer
counts are required or a zarr array with missing chunks is an
:class:`~rawsigma.errors.InputFileError`, never a plausible-looking array.

Layouts read
------------
TIFF / OME-TIFF
    One page (``YX``), a multi-page stack (``IYX``, ``TYX``, ``ZYX``, ...), and an
    OME-TIFF whose frames are separate OME images (N series of one ``YX`` plane each,
    as `rawsigma.acquire.framesave.FrameWriter` wrote them) or one series with a
    ``T`` (or ``Z``) axis. Axes of size 1 are dropped.
HDF5
    ``FILE.h5:NAME`` (or ``dataset="NAME"``), else the ``frames`` dataset
    (`FrameWriter`), else the only dataset with at least 2 dimensions.
zarr
    An array, or a group holding ``frames``, an OME-Zarr ``multiscales`` (level 0)
    or exactly one array (``PATH.zarr:NAME`` selects one). Every chunk must be
    stored: a missing chunk would read as the fill value (zeros), so it is an error.
NumPy
    ``.npy`` (no pickles).

The result is ``(array, ImageInfo)``: the array is 2-D ``(H, W)`` or 3-D
``(N, H, W)`` with the file's dtype, and `ImageInfo` records the path, format,
layout found, axes, frame count and declared bit depth.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputFileError

__all__ = ["ImageInfo", "imread", "read_frame", "read_stack", "split_dataset"]

#: Axis letters that never index frames: samples (RGB), channels and the image plane.
_NOT_FRAME_AXES = set("SCYX")
_H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
_FORMATS = "TIFF/OME-TIFF, HDF5, zarr or .npy"


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`imread` found in a file.

    Attributes
    ----------
    path : Path
        The file (or zarr directory).
    format : str
        ``"tiff"``, ``"ome-tiff"``, ``"hdf5"``, ``"zarr"`` or ``"npy"``.
    layout : str
        Human-readable description of the layout found, e.g.
        ``"OME-TIFF, 5 series of (64, 64) uint16 (one frame each)"``.
    axes : str
        One letter per dimension of the returned array: ``"YX"`` or ``"TYX"``
        (``T`` is any frame axis: time, z, generic index).
    shape : tuple of int
        Shape of the returned array.
    dtype : numpy.dtype
    n_frames : int
        1 for a 2-D image, N for an (N, H, W) stack.
    bit_depth : int or None
        Significant bits declared by the file (OME ``SignificantBits``, HDF5/zarr
        attribute ``bit_depth``), if any.
    dataset : str or None
        HDF5 dataset or zarr array path inside the container.
    """

    path: Path
    format: str
    layout: str
    axes: str
    shape: tuple[int, ...]
    dtype: np.dtype
    n_frames: int
    bit_depth: int | None = None
    dataset: str | None = None

    def describe(self) -> str:
        """One line: ``path: layout -> shape dtype, N frame(s)``."""
        n = f"{self.n_frames} frame" + ("s" if self.n_frames != 1 else "")
        return f"{self.path}: {self.layout} -> {self.shape} {self.dtype}, {n}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able record (for provenance)."""
        return {
            "path": str(self.path),
            "format": self.format,
            "layout": self.layout,
            "axes": self.axes,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "n_frames": self.n_frames,
            "bit_depth": self.bit_depth,
            "dataset": self.dataset,
        }


#: The end of the colour-image refusal (labels get their own wording).
_ONE_SAMPLE = "a raw camera frame has one sample per pixel"


def split_dataset(path: str | os.PathLike) -> tuple[Path, str | None]:
    """``"a.h5:/grp/ds"`` → ``(Path("a.h5"), "/grp/ds")``; other paths unchanged.

    Only a ``:`` after an HDF5 or zarr suffix counts (and only if the whole text
    is not an existing file), so Windows drive letters and odd names are kept.
    """
    text = os.fspath(path)
    if os.path.exists(text):
        return Path(text), None
    m = re.match(r"^(?P<file>.+?(?:\.h5|\.hdf5|\.hdf|\.he5|\.zarr)/?):(?P<ds>.+)$", text, re.I)
    if m:
        return Path(m["file"]), m["ds"]
    return Path(text), None


# ----------------------------------------------------------------------------- public
def imread(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    integer: bool = True,
    what: str = "image",
) -> tuple[np.ndarray, ImageInfo]:
    """Read a 2-D image or a stack of 2-D frames from any supported file.

    Parameters
    ----------
    path : path-like
        TIFF/OME-TIFF, HDF5, zarr (directory) or ``.npy``. ``FILE.h5:NAME`` and
        ``DIR.zarr:NAME`` select a dataset.
    dataset : str, optional
        HDF5 dataset / zarr array inside the container (overrides ``:NAME``).
    integer : bool
        Require integer (or bool) pixels; floating-point data is refused with a
        message saying raw camera counts are integers.
    what : str
        Noun used in messages (``"image"``, ``"label image"``, ``"stack"``).

    Returns
    -------
    array : numpy.ndarray
        ``(H, W)`` or ``(N, H, W)``, the file's dtype.
    info : ImageInfo

    Raises
    ------
    InputFileError
        Missing or unreadable file, unsupported format, a layout that is not one
        frame or one stack of frames (RGB, several channels, several unrelated
        images, more than one frame axis), floating-point data with ``integer``,
        zarr chunks missing.
    """
    p, ds = split_dataset(path)
    ds = dataset if dataset is not None else ds
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    kind = _sniff(p)
    try:
        if kind == "npy":
            arr, info = _read_npy(p)
        elif kind == "hdf5":
            from ._imread_stores import read_hdf5

            arr, info = read_hdf5(p, ds)
        elif kind == "zarr":
            from ._imread_stores import read_zarr

            arr, info = read_zarr(p, ds)
        else:
            arr, info = _read_tiff(p)
    except InputFileError as exc:
        if what.startswith("label") and _ONE_SAMPLE in str(exc):
            raise InputFileError(
                str(exc).replace(_ONE_SAMPLE, "labels have one value per pixel")
            ) from None
        raise
    except MemoryError:
        raise InputFileError(f"{p}: too large to read into memory") from None
    except Exception as exc:  # noqa: BLE001 - every reader failure is a bad input file
        raise InputFileError(f"{p}: cannot read as {kind} ({type(exc).__name__}: {exc})") from None
    _check_dtype(arr, info, integer, what)
    if 0 in arr.shape:
        raise InputFileError(f"{p}: empty {what} (shape {arr.shape}, {info.layout})")
    return arr, info


def read_stack(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    integer: bool = True,
    what: str = "stack",
) -> tuple[np.ndarray, ImageInfo]:
    """:func:`imread`, always returning ``(N, H, W)`` (a 2-D image is one frame)."""
    arr, info = imread(path, dataset=dataset, integer=integer, what=what)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
        info = _replace(info, axes="T" + info.axes, shape=arr.shape)
    return arr, info


def read_frame(
    path: str | os.PathLike,
    index: int | None = None,
    *,
    dataset: str | None = None,
    integer: bool = True,
    what: str = "image",
    option: str = "--index",
) -> tuple[np.ndarray, ImageInfo]:
    """One 2-D frame: the image itself, or frame ``index`` (0-based) of a stack.

    A stack without ``index`` is refused with its frame count (the message names
    ``option``, the CLI flag that selects a frame).
    """
    arr, info = imread(path, dataset=dataset, integer=integer, what=what)
    if arr.ndim == 3:
        n = arr.shape[0]
        if index is None:
            raise InputFileError(
                f"{info.path}: stack of {n} frames ({info.layout}); choose one {what} with "
                f"{option} (0..{n - 1})"
            )
        if not 0 <= index < n:
            raise InputFileError(f"{info.path}: {option} {index} out of range 0..{n - 1}")
        arr = arr[index]
        info = _replace(info, axes=info.axes[1:], shape=arr.shape, n_frames=1)
    elif index not in (None, 0):
        raise InputFileError(f"{info.path}: {option} {index}, but the file holds one 2-D {what}")
    return arr, info


# ----------------------------------------------------------------------------- helpers
def _replace(info: ImageInfo, **changes: Any) -> ImageInfo:
    from dataclasses import replace

    return replace(info, **changes)


def _sniff(p: Path) -> str:
    """File kind from its magic bytes (the suffix only breaks ties)."""
    if p.is_dir():
        if any((p / m).exists() for m in ("zarr.json", ".zarray", ".zgroup")):
            return "zarr"
        raise InputFileError(f"{p}: a directory, not a zarr store (expected {_FORMATS})")
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputFileError(f"{p}: cannot open ({exc.strerror or exc})") from None
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if p.suffix.lower() in _H5_SUFFIXES:  # HDF5 with a user block: let h5py decide
        return "hdf5"
    if not head:
        raise InputFileError(f"{p}: empty file")
    if head[:4] == b"RSNC":
        raise InputFileError(
            f"{p}: a rawsigma noise-codec stream (.rsnc), not raw frames; run "
            "`rawsigma decompress` first"
        )
    raise InputFileError(f"{p}: not a {_FORMATS} file (unrecognised content)")


def _check_dtype(arr: np.ndarray, info: ImageInfo, integer: bool, what: str) -> None:
    kind = arr.dtype.kind
    if kind not in "uifb":
        raise InputFileError(
            f"{info.path}: {arr.dtype} data ({info.layout}); a {what} must be numeric"
        )
    if integer and kind == "f" and what.startswith("label"):
        raise InputFileError(
            f"{info.path}: floating-point {what} ({arr.dtype}, {info.layout}); labels are "
            "integer classes or instance ids: save them as uint8, uint16 or uint32"
        )
    if integer and kind == "f":
        raise InputFileError(
            f"{info.path}: floating-point {what} ({arr.dtype}, {info.layout}); raw camera "
            "counts are integers (uint16): use the file as recorded, before any conversion"
        )


def _frames_from(arr: np.ndarray, axes: str, path: Path, layout: str) -> tuple[np.ndarray, str]:
    """Squeeze size-1 axes; accept ``YX`` or one frame axis + ``YX``; else refuse."""
    if len(axes) != arr.ndim:
        axes = _default_axes(arr, path, layout)
    keep = [i for i, (a, n) in enumerate(zip(axes, arr.shape, strict=True)) if n != 1 or a in "YX"]
    sq = arr.reshape([arr.shape[i] for i in keep])
    ax = "".join(axes[i] for i in keep)
    where = f"({layout})" if "axes" in layout else f"({layout}, axes {axes!r})"
    if "S" in ax:
        raise InputFileError(f"{path}: colour (RGB) image {where}; {_ONE_SAMPLE}")
    if "C" in ax:
        n = arr.shape[axes.index("C")]
        raise InputFileError(f"{path}: {n} channels {where}; save one channel per file")
    if not ax.endswith("YX"):
        raise InputFileError(f"{path}: axes do not end in Y, X {where}; no image plane found")
    extra = ax[:-2]
    if len(extra) > 1:
        raise InputFileError(
            f"{path}: {len(extra)} non-spatial axes of size > 1 {where}; rawsigma reads one "
            "2-D frame or one stack of 2-D frames"
        )
    if extra and extra in _NOT_FRAME_AXES:
        raise InputFileError(f"{path}: unsupported axis {extra!r} {where}")
    return sq, ("T" if extra else "") + "YX"


def _default_axes(arr: np.ndarray, path: Path, layout: str) -> str:
    """Axes of an array without axis metadata (npy, HDF5, zarr)."""
    if arr.ndim == 2:
        return "YX"
    if arr.ndim == 3:
        if arr.shape[-1] in (3, 4) and min(arr.shape[:2]) > 4:
            raise InputFileError(
                f"{path}: shape {arr.shape} ({layout}) looks like a colour (RGB) image; "
                f"{_ONE_SAMPLE}"
            )
        return "TYX"
    if arr.ndim > 3 and all(n == 1 for n in arr.shape[:-3]):
        return "Q" * (arr.ndim - 3) + "TYX"
    raise InputFileError(
        f"{path}: {arr.ndim}-D array of shape {arr.shape} ({layout}) without axis "
        "metadata; rawsigma reads (H, W) frames or (N, H, W) stacks"
    )


def _info(
    path: Path,
    fmt: str,
    layout: str,
    arr: np.ndarray,
    axes: str,
    bits: Any = None,
    dataset: str | None = None,
) -> ImageInfo:
    return ImageInfo(
        path=path,
        format=fmt,
        layout=layout,
        axes=axes,
        shape=tuple(int(n) for n in arr.shape),
        dtype=arr.dtype,
        n_frames=int(arr.shape[0]) if arr.ndim == 3 else 1,
        bit_depth=None if bits is None else int(bits),
        dataset=dataset,
    )


# ----------------------------------------------------------------------------- npy
def _read_npy(p: Path) -> tuple[np.ndarray, ImageInfo]:
    try:
        a = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise InputFileError(f"{p}: not a plain numeric .npy array ({exc})") from None
    layout = f".npy array {a.shape} {a.dtype}"
    arr, axes = _frames_from(a, "", p, layout)
    return arr, _info(p, "npy", layout, arr, axes)


# ----------------------------------------------------------------------------- TIFF
_NOISE_CODEC_FORMAT = "rawsigma-noisecodec"
#: TIFF Compression value of noise-codec pages (rawsigma.analysis.noisecodec).
_COMPRESSION_RSNC = 61500


def _rsnc_compressed(page: Any) -> bool:
    try:
        return int(page.compression) == _COMPRESSION_RSNC
    except (TypeError, ValueError):
        return False


def _noise_codec_tiff(desc: str) -> bool:
    return str(_json_desc(desc).get("format", "")).startswith("rawsigma")


def check_not_masked(p: Path, desc: str) -> None:
    """Refuse frames `decompress --allow-missing` wrote with lost regions (`InputFileError`).

    Their lost frames or chunks hold 0 (the mask beside them says where): read as
    camera counts, those zeros would be compressed again as data (and the loss
    forgotten), or enter a noise estimate or a score.
    """
    own = _json_desc(desc).get("rawsigma")
    if isinstance(own, dict) and own.get("masked_frames"):
        mask = p.with_name(p.name[: -len(p.suffix)] + ".mask.tif") if p.suffix else p
        raise InputFileError(
            f"{p}: decoded with --allow-missing: its lost regions hold 0, not camera counts "
            f"(mask {mask.name}); use an intact copy, or cut the lost frames out first"
        )


def _read_tiff(p: Path) -> tuple[np.ndarray, ImageInfo]:
    import tifffile

    from ._tiffcheck import tiff_intact

    with tiff_intact(p), tifffile.TiffFile(p) as tif:
        if not tif.pages:
            raise InputFileError(f"{p}: TIFF without any image")
        page0 = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
        desc = getattr(page0, "description", "") or ""
        if _noise_codec_tiff(desc) or _NOISE_CODEC_FORMAT in desc or _rsnc_compressed(page0):
            raise InputFileError(
                f"{p}: a rawsigma compressed file (noise codec), not raw frames; "
                "run `rawsigma decompress` first"
            )
        check_not_masked(p, desc)
        fmt = "ome-tiff" if tif.is_ome else "tiff"
        series = [s for s in tif.series if s.shape]
        m = re.search(r'SignificantBits="(\d+)"', tif.ome_metadata or "") if tif.is_ome else None
        bits = int(m.group(1)) if m else _json_bits(desc)
        name = "OME-TIFF" if tif.is_ome else "TIFF"
        if len(series) == 1:
            s = series[0]
            axes, note = _tiff_axes(s, desc, page0, tif.is_ome)
            layout = f"{name}, 1 series {tuple(s.shape)} axes {axes!r}{note}"
            arr, axes = _frames_from(s.asarray(), axes, p, layout)
            return arr, _info(p, fmt, layout, arr, axes, bits)
        return _tiff_multiseries(p, fmt, name, series, bits)


def _json_desc(desc: str) -> dict[str, Any]:
    try:
        d = json.loads(desc or "{}")
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _json_bits(desc: str) -> int | None:
    d = _json_desc(desc)
    for key in ("bit_depth", "bits_per_pixel", "significant_bits", "BitDepth"):
        if isinstance(d.get(key), int):
            return int(d[key])
    return None


def _tiff_axes(s: Any, desc: str, page0: Any, is_ome: bool) -> tuple[str, str]:
    """The series' axes, corrected by what the file declares.

    A JSON description with an ``"axes"`` entry of the right length wins (files
    written with per-file JSON records, like the shared test data). Planar
    (``SEPARATE``) 16-bit "RGB" samples are separate frames saved as colour
    planes (no camera records 16-bit planar colour): they are read as frames.
    """
    axes = s.axes
    declared = _json_desc(desc).get("axes") if not is_ome else None
    if isinstance(declared, str) and len(declared) == len(s.shape) and declared.isalpha():
        return declared.upper(), " (axes declared in the description)"
    planar = int(getattr(page0, "planarconfig", 1)) == 2
    if axes.startswith("S") and planar and np.dtype(s.dtype).itemsize >= 2:
        return "I" + axes[1:], " (planar samples read as frames)"
    return axes, ""


def _tiff_multiseries(
    p: Path, fmt: str, name: str, series: list[Any], bits: int | None
) -> tuple[np.ndarray, ImageInfo]:
    """Several series: frames saved as separate images, all of one shape, are stacked."""
    shapes = {(tuple(s.shape), s.axes, str(s.dtype)) for s in series}
    if len(shapes) != 1:
        found = "; ".join(f"{tuple(s.shape)} {s.axes} {s.dtype}" for s in series[:6])
        more = f" (+{len(series) - 6} more)" if len(series) > 6 else ""
        raise InputFileError(
            f"{p}: {name} with {len(series)} images of different shapes ({found}{more}); "
            "cannot read them as one stack of frames: save one image per file"
        )
    ((shape, axes, dtype),) = shapes
    layout = f"{name}, {len(series)} series of {shape} {dtype} axes {axes!r}"
    parts = [_frames_from(s.asarray(), s.axes, p, layout) for s in series]
    if parts[0][1] == "YX":
        arr = np.stack([a for a, _ in parts])
    else:
        arr = np.concatenate([a for a, _ in parts])
    return arr, _info(p, fmt, layout, arr, "TYX", bits)
