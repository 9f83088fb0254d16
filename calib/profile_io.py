"""HDF5 file format of :class:`~rawsigma.calib.profile.CameraProfile`, schema version 1.

Layout (all names fixed; ``docs/profile_format.md`` is the same text for users)::

    /                               root
      attrs  format          str    "rawsigma.camera_profile"   (identifies the file)
             schema_version  int64  1
             profile_id      str    12 hex digits, checked against the maps on load
             software_version str   rawsigma version that wrote the file
             emva            str    JSON object, global EMVA 1288 R4 numbers
             plan            str    JSON object, the acquisition plan
             provenance      str    JSON object, how the profile was made
             meta_crc32      int64  CRC-32 of emva, plan, provenance, software_version,
                                    /dark_current@info and /ptc (optional: since session 12)
    /identity                group
      attrs  camera, model, serial, vendor, readout_mode, gain_mode   str
             bit_depth, binning                                       int64
             roi             int64[4]   x, y, width, height (binned sensor px,
                                        0-based, top-left origin, exclusive end)
             sensor_shape    int64[2]   rows, cols of the full binned sensor
             exposure_ms, temperature_c float64 (NaN = unknown)
             extra           str    JSON object of str -> str
    /maps                    group, every dataset (H, W), attr "units"
      offset          float32  ADU                    required
      gain            float32  ADU / photo-electron   required
      read_noise      float32  ADU rms                required
      offset_se, gain_se, read_noise_se  float32      optional, NaN = not estimated
      prnu            float32  relative (mean 1)      optional
      defects         uint8    bitmask DEFECT_*       optional
    /ptc                     group, optional
      attrs  columns  str     JSON list of column names, in order
      <column>        1-D, all the same length (one row per light level)
    /dark_current            group, optional (ignored by readers that predate it)
      attrs  info     str     JSON object: reference_exposure_s, exposures_s, frames,
                              temperature_c, units "ADU/s", medians, hot_pixels
      rate            float32 (H, W)  ADU/s
      rate_se         float32 (H, W)  ADU/s, optional

Maps are chunked and compressed (gzip level 4 + shuffle by default, or lzf) with h5py's
built-in filters, so any HDF5 reader can open them.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from rawsigma import __version__
from rawsigma.calib.profile_fields import MAP_NAMES, REQUIRED_MAPS, CameraIdentity, to_json
from rawsigma.errors import ProfileError
from rawsigma.fileio import atomic_write
from rawsigma.h5probe import check_hdf5
from rawsigma.metacrc import META_CRC_KEY, meta_crc

if TYPE_CHECKING:
    import os

    from rawsigma.calib.profile import CameraProfile

P = TypeVar("P", bound="CameraProfile")

FORMAT_NAME = "rawsigma.camera_profile"
SCHEMA_VERSION = 1

MAP_UNITS = {
    "offset": "ADU",
    "gain": "ADU/e-",
    "read_noise": "ADU rms",
    "offset_se": "ADU",
    "gain_se": "ADU/e-",
    "read_noise_se": "ADU rms",
    "prnu": "1",
    "defects": "bitmask",
}
_STR_FIELDS = ("camera", "model", "serial", "vendor", "readout_mode", "gain_mode")
_FLOAT_FIELDS = ("exposure_ms", "temperature_c")


def save_profile(
    profile: CameraProfile,
    path: str | os.PathLike[str],
    force: bool = False,
    compression: str | None = "gzip",
) -> Path:
    """Write ``profile`` to ``path`` (HDF5, schema 1) atomically.

    Parameters
    ----------
    profile : CameraProfile
    path : path-like
        Output file, conventionally ``<vendor>_<model>_<serial>_<mode>.h5``.
    force : bool
        Replace an existing file.
    compression : {"gzip", "lzf", None}
        HDF5 filter for the maps.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is False (nothing is written).
    """
    import h5py

    if compression not in ("gzip", "lzf", None):
        raise ValueError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")
    path = Path(path)
    with atomic_write(path, force=force) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
            f.attrs["profile_id"] = profile.profile_id
            f.attrs["software_version"] = __version__
            f.attrs["emva"] = to_json(profile.emva)
            f.attrs["plan"] = to_json(profile.plan)
            f.attrs["provenance"] = to_json(profile.provenance)
            _write_identity(f.create_group("identity"), profile.identity)
            maps = f.create_group("maps")
            for name in MAP_NAMES:
                arr = getattr(profile, name)
                if arr is None:
                    continue
                ds = maps.create_dataset(name, data=arr, **_compression(arr, compression))
                ds.attrs["units"] = MAP_UNITS[name]
            if profile.dark_current is not None:
                _write_dark(f.create_group("dark_current"), profile, compression)
            if profile.ptc:
                g = f.create_group("ptc")
                g.attrs["columns"] = json.dumps(list(profile.ptc))
                for name, col in profile.ptc.items():
                    g.create_dataset(name, data=np.asarray(col))
            f.attrs[META_CRC_KEY] = np.int64(_notes_crc(f))
    return path


def _notes_crc(f: Any) -> int:
    """CRC-32 of what `profile_id` leaves out (the root attribute ``meta_crc32``).

    The root attributes ``emva``, ``plan``, ``provenance`` and ``software_version``,
    ``/dark_current@info`` (its reference exposure sets the offset at ``--exposure``)
    and the PTC (columns and values).
    """
    rec: dict[str, Any] = {
        n: f.attrs.get(n) for n in ("emva", "plan", "provenance", "software_version")
    }
    if "dark_current" in f:
        rec["dark_current/info"] = f["dark_current"].attrs.get("info")
    if "ptc" in f:
        g = f["ptc"]
        rec["ptc/columns"] = g.attrs.get("columns")
        rec["ptc"] = {
            k: [g[k].dtype.str, g[k].shape, zlib.crc32(np.ascontiguousarray(g[k][()]).data)]
            for k in sorted(g)
        }
    return meta_crc(rec)


def _check_notes(f: Any, path: Path) -> None:
    """Refuse a profile whose `_notes_crc` is not the stored one.

    Files written before session 12 have none and are read as before.
    """
    stored = f.attrs.get(META_CRC_KEY)
    if stored is None:
        return
    v = np.asarray(stored)
    if v.shape != () or not np.issubdtype(v.dtype, np.integer) or int(v) != _notes_crc(f):
        raise ProfileError(
            f"{path}: the profile's notes (emva, plan, provenance, dark-current info or "
            f"PTC) do not match their checksum ({META_CRC_KEY}): the file was modified or "
            "corrupted"
        )


def _compression(arr: np.ndarray, compression: str | None) -> dict[str, Any]:
    """h5py dataset options for one map (small maps stay uncompressed)."""
    if compression is None or arr.size < 64:
        return {}
    kw: dict[str, Any] = {"compression": compression, "shuffle": True, "chunks": True}
    if compression == "gzip":
        kw["compression_opts"] = 4
    return kw


def _write_dark(g: Any, profile: CameraProfile, compression: str | None) -> None:
    g.attrs["info"] = to_json(profile.dark_info)
    for key, name in (("rate", "dark_current"), ("rate_se", "dark_current_se")):
        arr = getattr(profile, name)
        if arr is None:
            continue
        ds = g.create_dataset(key, data=arr, **_compression(arr, compression))
        ds.attrs["units"] = "ADU/s"


def _read_dark(f: Any, path: Path) -> dict[str, Any]:
    if "dark_current" not in f:
        return {}
    g = f["dark_current"]
    if "rate" not in g:
        raise ProfileError(f"{path}: group '/dark_current' has no dataset 'rate'")
    out: dict[str, Any] = {"dark_info": _attr_json(g.attrs, "info", "/dark_current/")}
    for key, name in (("rate", "dark_current"), ("rate_se", "dark_current_se")):
        if key in g:
            ds = g[key]
            if ds.dtype != np.float32 or ds.ndim != 2:
                raise ProfileError(
                    f"{path}: '/dark_current/{key}' must be 2-D float32, got {ds.dtype} {ds.shape}"
                )
            out[name] = ds[()]
    if "reference_exposure_s" not in out["dark_info"]:
        raise ProfileError(f"{path}: '/dark_current' info lacks 'reference_exposure_s'")
    return out


def _write_identity(g: Any, ident: CameraIdentity) -> None:
    for name in _STR_FIELDS:
        g.attrs[name] = str(getattr(ident, name))
    g.attrs["bit_depth"] = np.int64(ident.bit_depth)
    g.attrs["binning"] = np.int64(ident.binning)
    g.attrs["roi"] = np.asarray(ident.roi, dtype=np.int64)
    g.attrs["sensor_shape"] = np.asarray(ident.sensor_shape, dtype=np.int64)
    for name in _FLOAT_FIELDS:
        v = getattr(ident, name)
        g.attrs[name] = np.float64(math.nan if v is None else v)
    g.attrs["extra"] = to_json({str(k): str(v) for k, v in ident.extra.items()})


def read_profile(path: str | os.PathLike[str], profile_class: type[P]) -> P:
    """Read and validate a schema-1 profile into ``profile_class`` (`CameraProfile`).

    The class is passed in, so that this module need not import it
    (:mod:`rawsigma.calib.profile` imports this one).

    Raises
    ------
    ProfileError
        Naming ``path`` and the problem: missing file, not HDF5 or truncated,
        foreign HDF5 (no rawsigma format attribute), unknown schema version,
        missing or mis-typed datasets, shapes disagreeing with each other or with
        the identity ROI, non-finite values where not allowed, or maps whose hash
        disagrees with the stored ``profile_id`` (modified or corrupted file).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: no such profile file")
    check_hdf5(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        kind = "truncated or not an HDF5 file"
        raise ProfileError(f"{path}: cannot open as a camera profile ({kind}): {exc}") from None
    try:
        with f:
            return _read(f, path, profile_class)
    except ProfileError as exc:
        msg = str(exc)
        if msg.startswith("profile: "):
            msg = msg[len("profile: ") :]
        if msg.startswith(f"{path}: "):
            raise
        raise ProfileError(f"{path}: {msg}") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ProfileError(f"{path}: unreadable or corrupted profile ({exc})") from None


def _attr_str(attrs: Any, name: str, where: str) -> str:
    if name not in attrs:
        raise ProfileError(f"missing attribute '{where}{name}'")
    v = attrs[name]
    if isinstance(v, bytes):
        v = v.decode()
    if not isinstance(v, str):
        raise ProfileError(f"attribute '{where}{name}' must be a string, got {type(v).__name__}")
    return v


def _attr_json(attrs: Any, name: str, where: str = "/") -> Any:
    text = _attr_str(attrs, name, where)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"attribute '{where}{name}' is not valid JSON: {exc}") from None


def _attr_int(attrs: Any, name: str, where: str) -> int:
    if name not in attrs:
        raise ProfileError(f"missing attribute '{where}{name}'")
    v = np.asarray(attrs[name])
    if v.shape != () or not np.issubdtype(v.dtype, np.integer):
        raise ProfileError(f"attribute '{where}{name}' must be an integer, got {v!r}")
    return int(v)


def _read(f: Any, path: Path, profile_class: type[P]) -> P:
    import h5py

    if f.attrs.get("format") is None and "schema_version" not in f.attrs:
        raise ProfileError(
            f"{path}: HDF5 file is not a rawsigma camera profile "
            f"(no 'format' = {FORMAT_NAME!r} root attribute; top-level items: "
            f"{sorted(f.keys())[:8]})"
        )
    fmt = _attr_str(f.attrs, "format", "/")
    if fmt != FORMAT_NAME:
        raise ProfileError(
            f"{path}: HDF5 file has format {fmt!r}, not a rawsigma camera profile ({FORMAT_NAME!r})"
        )
    version = _attr_int(f.attrs, "schema_version", "/")
    if version != SCHEMA_VERSION:
        newer = " (written by a newer rawsigma?)" if version > SCHEMA_VERSION else ""
        raise ProfileError(
            f"{path}: unsupported profile schema version {version}{newer}; "
            f"this rawsigma reads version {SCHEMA_VERSION}"
        )
    if "identity" not in f or not isinstance(f["identity"], h5py.Group):
        raise ProfileError(f"{path}: missing group '/identity'")
    if "maps" not in f or not isinstance(f["maps"], h5py.Group):
        raise ProfileError(f"{path}: missing group '/maps'")
    identity = _read_identity(f["identity"])
    maps: dict[str, np.ndarray | None] = {}
    g = f["maps"]
    unknown = sorted(set(g.keys()) - set(MAP_NAMES))
    if unknown:
        raise ProfileError(f"{path}: unknown map(s) in '/maps': {unknown}")
    for name in MAP_NAMES:
        if name not in g:
            if name in REQUIRED_MAPS:
                raise ProfileError(f"{path}: missing required map '/maps/{name}'")
            maps[name] = None
            continue
        ds = g[name]
        if not isinstance(ds, h5py.Dataset):
            raise ProfileError(f"{path}: '/maps/{name}' is not a dataset")
        want = np.dtype(np.uint8) if name == "defects" else np.dtype(np.float32)
        if ds.dtype != want:
            raise ProfileError(f"{path}: map '/maps/{name}' has dtype {ds.dtype}, expected {want}")
        if ds.ndim != 2:
            raise ProfileError(f"{path}: map '/maps/{name}' has shape {ds.shape}, expected 2-D")
        maps[name] = ds[()]
    shapes = {n: a.shape for n, a in maps.items() if a is not None}
    if len(set(shapes.values())) > 1:
        raise ProfileError(f"{path}: map shapes disagree: {shapes}")
    for name in ("offset_se", "gain_se", "read_noise_se", "prnu"):
        arr = maps[name]
        if arr is not None and np.isinf(arr).any():
            raise ProfileError(f"{path}: map '/maps/{name}' contains infinite values")
        if name.endswith("_se") and arr is not None and (arr < 0).any():
            raise ProfileError(f"{path}: map '/maps/{name}' has negative standard errors")
    ptc: dict[str, np.ndarray] = {}
    if "ptc" in f:
        pg = f["ptc"]
        cols = _attr_json(pg.attrs, "columns", "/ptc/") if "columns" in pg.attrs else list(pg)
        for name in cols:
            if name not in pg:
                raise ProfileError(f"{path}: PTC column '/ptc/{name}' listed but missing")
            ptc[name] = pg[name][()]
    stored_id = _attr_str(f.attrs, "profile_id", "/")
    profile = profile_class(
        identity=identity,
        emva=_attr_json(f.attrs, "emva"),
        plan=_attr_json(f.attrs, "plan"),
        provenance=_attr_json(f.attrs, "provenance"),
        ptc=ptc,
        **_read_dark(f, path),
        **maps,  # type: ignore[arg-type]
    )
    if profile.profile_id != stored_id:
        raise ProfileError(
            f"{path}: stored profile_id {stored_id} does not match the file's maps and "
            f"identity ({profile.profile_id}); the file was modified or corrupted"
        )
    _check_notes(f, path)
    return profile


def _read_identity(g: Any) -> CameraIdentity:
    where = "/identity/"
    kw: dict[str, Any] = {n: _attr_str(g.attrs, n, where) for n in _STR_FIELDS}
    kw["bit_depth"] = _attr_int(g.attrs, "bit_depth", where)
    kw["binning"] = _attr_int(g.attrs, "binning", where)
    for name, n in (("roi", 4), ("sensor_shape", 2)):
        if name not in g.attrs:
            raise ProfileError(f"missing attribute '{where}{name}'")
        v = np.asarray(g.attrs[name])
        if v.shape != (n,) or not np.issubdtype(v.dtype, np.integer):
            raise ProfileError(f"attribute '{where}{name}' must be {n} integers, got {v!r}")
        kw[name] = tuple(int(x) for x in v)
    for name in _FLOAT_FIELDS:
        if name not in g.attrs:
            raise ProfileError(f"missing attribute '{where}{name}'")
        value = float(np.asarray(g.attrs[name]))
        kw[name] = None if math.isnan(value) else value
    extra = _attr_json(g.attrs, "extra", where)
    if not isinstance(extra, dict):
        raise ProfileError(f"attribute '{where}extra' must be a JSON object")
    kw["extra"] = {str(k): str(v) for k, v in extra.items()}
    return CameraIdentity(**kw)
