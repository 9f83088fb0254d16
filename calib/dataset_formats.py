"""Format readers behind `rawsigma.calib.datasets`: metadata and lazy frame access.

One reader per layout (Micro-Manager TIFF tag 51123, pymmcore-plus OME-TIFF / OME-Zarr
summary metadata, NDTiff through ndstorage) fills a `RecordedDataset`: frame
geometry, per-frame `FrameInfo` (exposure, ``"Device-Property" -> value``) and one
locator per frame, from which `RecordedDataset.iter_frames` decodes frames one at a
time. Detection, grouping into levels and the camera identity are in
`rawsigma.calib.datasets`.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from rawsigma.errors import InputFileError

__all__ = [
    "FrameInfo",
    "RecordedDataset",
    "folder_members",
    "identity_from_props",
    "is_zarr",
    "ndtiff_dir",
    "read_ndtiff",
    "read_tiff",
    "read_zarr",
    "tiff_kind",
    "to_float",
]

_MM_TAG = 51123  # MicroManagerMetadata, one JSON per page
_TIFF = (".tif", ".tiff")


@dataclass
class FrameInfo:
    """What the metadata says about one frame.

    Attributes
    ----------
    exposure_ms : float or None
    props : dict of str to str
        ``"Device-Property" -> value`` (Micro-Manager's state-cache keys), plus
        ``Core-Shutter``, ``Core-AutoShutter``, ``Core-Camera`` when recorded.
    """

    exposure_ms: float | None
    props: dict[str, str]


@dataclass
class RecordedDataset:
    """A recorded dataset: frame geometry, per-frame metadata, lazy frame access.

    Attributes
    ----------
    path : Path
    format : str
        ``"micromanager-tiff"``, ``"pymmcore-plus-ome-tiff"``, ``"pymmcore-plus-ome-zarr"``,
        ``"ndtiff"`` or ``"folder"``.
    shape : (int, int)
    dtype : numpy dtype
    frames : list of FrameInfo
    bit_depth : int or None
    summary : dict
        The dataset's summary metadata (format dependent).
    """

    path: Path
    format: str
    shape: tuple[int, int]
    dtype: np.dtype
    frames: list[FrameInfo]
    bit_depth: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    _locators: list[tuple[Any, ...]] = field(default_factory=list, repr=False)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def iter_frames(self, indices: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame)``, decoding one frame at a time (never the whole stack)."""
        idx = range(self.n_frames) if indices is None else indices
        opened: dict[Any, Any] = {}
        try:
            for i in idx:
                loc = self._locators[i]
                try:
                    frame = _read_one(loc, opened)
                except Exception as e:  # noqa: BLE001 - reported with the file
                    raise InputFileError(f"{self.path}: cannot decode frame {i} ({e})") from None
                yield i, np.asarray(frame)
        finally:
            for h in opened.values():
                with contextlib.suppress(Exception):
                    h.close()

    def camera_identity(self) -> dict[str, Any]:
        """CameraIdentity fields found in the metadata (see `identity_from_props`)."""
        return identity_from_props(self.frames, self.shape, self.bit_depth, self.summary)


def _read_one(loc: tuple[Any, ...], opened: dict[Any, Any]) -> np.ndarray:
    kind, src = loc[0], loc[1]
    if kind == "tiff":
        if src not in opened:
            import tifffile

            opened[src] = tifffile.TiffFile(src)
        return opened[src].pages[loc[2]].asarray()
    if kind == "ndtiff":
        return _ndtiff(src).read_image(**loc[2])
    if kind == "zarr":
        if src not in opened:
            import zarr

            opened[src] = _ZarrHandle(zarr.open_array(src, mode="r"))
        return opened[src].arr[loc[2]]
    raise ValueError(kind)


class _ZarrHandle:
    def __init__(self, arr: Any) -> None:
        self.arr = arr

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------- detection
def ndtiff_dir(p: Path) -> Path | None:
    if (p / "NDTiff.index").is_file():
        return p
    subs = [d for d in p.iterdir() if d.is_dir() and (d / "NDTiff.index").is_file()]
    return subs[0] if len(subs) == 1 else None


def is_zarr(p: Path) -> bool:
    return p.is_dir() and ((p / "zarr.json").is_file() or (p / ".zattrs").is_file())


def tiff_kind(p: Path) -> str | None:
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            if _MM_TAG in tif.pages[0].tags or tif.is_micromanager:
                return "micromanager-tiff"
            if tif.is_ome and 'Namespace="pymmcore_plus"' in (tif.ome_metadata or ""):
                return "pymmcore-plus-ome-tiff"
    except Exception:  # noqa: BLE001 - not a TIFF we recognise: a plain stack
        return None
    return None


def folder_members(p: Path) -> list[Path]:
    items = [
        q
        for q in sorted(p.iterdir())
        if (q.is_file() and q.suffix.lower() in _TIFF) or (q.is_dir() and is_zarr(q))
    ]
    return items


# ---------------------------------------------------------------------- metadata
def _scalar(v: Any) -> str | None:
    if isinstance(v, dict):
        for k in ("scalar", "PropVal", "value"):
            if k in v and not isinstance(v[k], (dict, list)):
                return str(v[k])
        return None
    if isinstance(v, (list, tuple)):
        return None
    return str(v)


def _flatten(meta: Any, out: dict[str, str] | None = None) -> dict[str, str]:
    """``Device-Property`` keys at any depth of Micro-Manager JSON (ScopeData, ...)."""
    out = {} if out is None else out
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            return out
    if not isinstance(meta, dict):
        return out
    for k, v in meta.items():
        s = _scalar(v)
        if s is not None:
            out.setdefault(str(k), s)
        elif isinstance(v, dict):
            _flatten(v, out)
    return out


def to_float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _mm_exposure(props: dict[str, str]) -> float | None:
    for k in ("Exposure-ms", "Exposure", "ExposureMs"):
        if (x := to_float(props.get(k))) is not None:
            return x
    cam = props.get("Core-Camera") or props.get("Camera")
    return to_float(props.get(f"{cam}-Exposure")) if cam else None


def _bits(props: dict[str, str]) -> int | None:
    cam = props.get("Core-Camera") or props.get("Camera") or ""
    for k in ("BitDepth", f"{cam}-BitDepth", f"{cam}-PixelBitDepth", f"{cam}-Bit Depth"):
        if (x := to_float(props.get(k))) is not None and 1 <= x <= 32:
            return int(x)
    return None


def _summary_props(summary: dict[str, Any]) -> dict[str, str]:
    """pymmcore-plus summary metadata -> ``Device-Property`` state at sequence start."""
    props: dict[str, str] = {}
    for dev in summary.get("devices", []):
        for pr in dev.get("properties", []):
            props[f"{dev['label']}-{pr['name']}"] = str(pr.get("value"))
    for info in summary.get("image_infos", [])[:1]:
        if info.get("camera_label"):
            props["Core-Camera"] = str(info["camera_label"])
    if not props.get("Core-Shutter"):
        shutters = [
            d["label"]
            for d in summary.get("devices", [])
            if "shutter" in str(d.get("type", "")).lower()
            and any(p["name"] == "State" for p in d.get("properties", []))
        ]
        if len(shutters) == 1:
            props["Core-Shutter"] = shutters[0]
    return props


def _channel_props(summary: dict[str, Any], seq: dict[str, Any]) -> list[dict[str, str]]:
    """Settings of every channel of the sequence (its config preset), in channel order."""
    groups = {g["name"]: g for g in summary.get("config_groups", [])}
    out = []
    for ch in seq.get("channels", []) or []:
        ch = {"config": ch} if isinstance(ch, str) else ch
        g = groups.get(ch.get("group", "Channel"), {})
        pre = next((x for x in g.get("presets", []) if x["name"] == ch.get("config")), {})
        out.append({f"{s['dev']}-{s['prop']}": str(s["val"]) for s in pre.get("settings", [])})
    return out


def _frames_from_summary(
    summary: dict[str, Any], planes: list[tuple[int, float | None]]
) -> list[FrameInfo]:
    base = _summary_props(summary)
    seq = summary.get("mda_sequence") or {}
    chans = _channel_props(summary, seq)
    setup_exp = to_float((seq.get("setup") or {}).get("exposure"))
    frames = []
    for c, exp_s in planes:
        props = dict(base)
        if c < len(chans):
            props.update(chans[c])
        exp = exp_s * 1000.0 if exp_s is not None else setup_exp or _mm_exposure(props)
        frames.append(FrameInfo(exposure_ms=exp, props=props))
    return frames


# ---------------------------------------------------------------------- readers
def read_tiff(p: Path, kind: str) -> RecordedDataset:
    import tifffile
    from rawsigma._tiffcheck import tiff_intact

    try:
        tif = tifffile.TiffFile(p)
    except Exception as e:  # noqa: BLE001
        raise InputFileError(f"{p}: not a readable TIFF file ({e})") from None
    with tiff_intact(p), tif:  # a truncated page chain: refused, not its first pages
        pages = tif.pages
        first = pages[0]
        shape, dtype = tuple(first.shape), np.dtype(first.dtype)
        summary: dict[str, Any] = {}
        frames: list[FrameInfo] = []
        if kind == "micromanager-tiff":
            mm = (tif.micromanager_metadata if tif.is_micromanager else None) or {}
            summary = dict(mm.get("Summary") or {})
            sprops = _flatten(summary)
            for pg in pages:
                if tuple(pg.shape) != shape or np.dtype(pg.dtype) != dtype:
                    raise InputFileError(
                        f"{p}: page {pg.index} has shape {pg.shape} / {pg.dtype}, page 0 "
                        f"has {shape} / {dtype}"
                    )
                tag = pg.tags.get(_MM_TAG)
                props = dict(sprops)
                props.update(_flatten(tag.value if tag is not None else {}))
                frames.append(FrameInfo(_mm_exposure(props), props))
            bits = _bits(frames[0].props) if frames else None
        elif kind == "pymmcore-plus-ome-tiff":
            summary, planes = _ome_summary_planes(tif.ome_metadata, len(pages), p)
            frames = _frames_from_summary(summary, planes)
            bits = _bits(frames[0].props)
        else:  # plain stack: no metadata
            frames = [FrameInfo(None, {}) for _ in pages]
            bits = None
        n = len(pages)
    return RecordedDataset(
        p, kind, shape, dtype, frames, bits, summary, [("tiff", str(p), i) for i in range(n)]
    )


def _ome_summary_planes(
    xml: str, n_pages: int, p: Path
) -> tuple[dict[str, Any], list[tuple[int, float | None]]]:
    import html
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    ns = {"o": root.tag.split("}")[0].strip("{")}
    summary: dict[str, Any] = {}
    for m in root.iter(f"{{{ns['o']}}}M"):
        if m.get("K") == "summary_metadata_json":
            summary = json.loads(html.unescape(m.text or "{}"))
    planes = []
    for pl in root.iter(f"{{{ns['o']}}}Plane"):
        planes.append((int(pl.get("TheC", 0)), to_float(pl.get("ExposureTime"))))
    if len(planes) != n_pages:  # no per-plane list: the sequence's exposure everywhere
        planes = [(0, None)] * n_pages
    return summary, planes


def read_zarr(p: Path) -> RecordedDataset:
    try:
        import zarr
    except ImportError:
        raise InputFileError(
            f"{p}: reading OME-Zarr needs zarr: pip install 'rawsigma[scale]'"
        ) from None
    try:
        grp = zarr.open_group(str(p), mode="r")
        attrs = dict(grp.attrs)
        arr = zarr.open_array(str(p / "0"), mode="r")
    except Exception as e:  # noqa: BLE001
        raise InputFileError(f"{p}: not a readable OME-Zarr dataset ({e})") from None
    summary = (attrs.get("pymmcore_plus") or {}).get("summary_metadata") or {}
    fmeta = (attrs.get("ome_writers") or {}).get("frame_metadata") or []
    lead = arr.shape[:-2]
    idx = [tuple(int(v) for v in np.unravel_index(i, lead)) for i in range(int(np.prod(lead)))]
    dims = list(getattr(arr.metadata, "dimension_names", None) or [])[:-2]
    if len(fmeta) == len(idx):
        idx = [tuple(f.get("storage_index", ix)) for f, ix in zip(fmeta, idx, strict=True)]
    ci = dims.index("c") if "c" in dims else None
    planes = [
        (ix[ci] if ci is not None else 0, to_float(f.get("exposure_time")) if f else None)
        for ix, f in zip(idx, fmeta or [None] * len(idx), strict=True)
    ]
    frames = _frames_from_summary(summary, planes)
    return RecordedDataset(
        p,
        "pymmcore-plus-ome-zarr",
        tuple(arr.shape[-2:]),
        np.dtype(arr.dtype),
        frames,
        _bits(frames[0].props) if frames else None,
        summary,
        [("zarr", str(p / "0"), ix) for ix in idx],
    )


def _ndtiff(path: str) -> Any:
    return _ndtiff_open(path)


@lru_cache(maxsize=4)
def _ndtiff_open(path: str) -> Any:
    try:
        from ndstorage import Dataset
    except ImportError:
        raise InputFileError(
            f"{path}: reading NDTiff needs the ndstorage package: pip install 'rawsigma[mm]'"
        ) from None
    with contextlib.redirect_stdout(io.StringIO()):  # it prints progress to stdout
        return Dataset(path)


def read_ndtiff(p: Path) -> RecordedDataset:
    try:
        ds = _ndtiff(str(p))
        coords = ds.get_image_coordinates_list()
    except InputFileError:
        raise
    except Exception as e:  # noqa: BLE001
        raise InputFileError(f"{p}: not a readable NDTiff dataset ({e})") from None
    summary = dict(ds.summary_metadata or {})
    sprops = _flatten(summary)
    frames = []
    for c in coords:
        props = dict(sprops)
        props.update(_flatten(ds.read_metadata(**c)))
        frames.append(FrameInfo(_mm_exposure(props), props))
    if not coords:
        raise InputFileError(f"{p}: NDTiff dataset holds no image")
    img = ds.read_image(**coords[0])
    return RecordedDataset(
        p,
        "ndtiff",
        tuple(img.shape),
        np.dtype(img.dtype),
        frames,
        _bits(frames[0].props),
        summary,
        [("ndtiff", str(p), c) for c in coords],
    )


# ---------------------------------------------------------------------- identity
def _roi(props: dict[str, str]) -> tuple[int, int, int, int] | None:
    v = props.get("ROI")
    if v:
        nums = [int(float(x)) for x in re.findall(r"\d+(?:\.\d+)?", v)]
        if len(nums) == 4:
            return (nums[0], nums[1], nums[2], nums[3])
    return None


def identity_from_props(
    frames: list[FrameInfo],
    shape: tuple[int, int],
    bit_depth: int | None,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """CameraIdentity fields from recorded metadata (only what is known).

    Camera label from ``Core-Camera``; model, serial, readout and gain mode, binning,
    temperature from the camera's properties (the adapter names rawsigma's
    `rawsigma.acquire.identity` also reads); ROI from MM's ``ROI`` key (else the
    full frame); the most frequent exposure.
    """
    if not frames:
        return {}
    props = frames[0].props
    cam = props.get("Core-Camera") or props.get("Camera") or ""

    def first(*names: str) -> str:
        for n in names:
            v = props.get(f"{cam}-{n}")
            if v not in (None, ""):
                return str(v)
        return ""

    out: dict[str, Any] = {"camera": cam or "recorded dataset"}
    if m := first("CameraName", "Camera Name", "Model", "CameraModel", "Description"):
        out["model"] = m
    if s := first("CameraID", "Serial", "SerialNumber", "Serial Number"):
        out["serial"] = s
    if r := first("ReadoutMode", "Readout Mode", "ScanMode", "ReadoutRate"):
        out["readout_mode"] = r
    if g := first("GainMode", "Gain Mode", "Gain", "PreAmpGain"):
        out["gain_mode"] = g
    b = to_float(first("Binning") or props.get("Binning"))
    if b:
        out["binning"] = int(b)
    t = to_float(first("CCDTemperature", "SensorTemperature", "Temperature"))
    if t is not None:
        out["temperature_c"] = t
    exps = [f.exposure_ms for f in frames if f.exposure_ms is not None]
    if exps:
        vals, counts = np.unique(np.round(exps, 6), return_counts=True)
        out["exposure_ms"] = float(vals[np.argmax(counts)])
    roi = _roi(props)
    h, w = shape
    if roi is None or roi[2:] != (w, h):
        roi = (0, 0, w, h)
    out["roi"] = roi
    out["sensor_shape"] = (roi[1] + h, roi[0] + w)
    if bit_depth:
        out["bit_depth"] = int(bit_depth)
    for s in (summary or {}).get("devices", []):
        if s.get("label") == cam and s.get("library"):
            out["vendor"] = str(s["library"])
    out["extra"] = {
        k.split("-", 1)[1]: str(v) for k, v in props.items() if cam and k.startswith(f"{cam}-")
    }
    return out
