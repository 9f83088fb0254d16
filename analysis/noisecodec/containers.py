"""Noise-codec data in standard containers: zarr (numcodecs, v2 and v3), TIFF and HDF5.

Every container decodes with rawsigma alone, without the camera profile:

* **zarr**: `NoiseNumcodec` (codec id ``rawsigma_noise``; zarr v3 name
  ``numcodecs.rawsigma_noise``) maps each chunk to one self-describing stream. With the
  default ``maps="global"`` any chunk shape works and nothing per pixel is stored; with
  ``maps="pixel"`` the chunks must span whole frames and each chunk embeds the maps
  (use chunks of many frames). Importing this module registers the codec.
* **TIFF** (`write_tiff` / `read_tiff`): one page per frame; the page image is a
  16×-binned uint16 preview (viewable anywhere); the stream is in private tag 65000, the
  quantised maps once in tag 65001 of the first page, a JSON record in ImageDescription.
* **HDF5** (`write_hdf5` / `read_hdf5`): the integer codes (the square-root-domain
  image, uint8/uint16) in a dataset with standard filters (shuffle, deflate, Fletcher-32
  checksum), decoding parameters as attributes, the maps as two int32 datasets; any HDF5
  reader sees the codes, rawsigma turns them back into ADU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numcodecs.abc import Codec as _NumCodec
from numcodecs.registry import register_codec as _nc_register
from rawsigma.errors import InputFileError
from rawsigma.fileio import atomic_write

from .kernels import NO_KNEE
from .stream import (
    EFFORTS,
    READ_VERSIONS,
    VERSION,
    CodecMaps,
    StreamParams,
    decode_frames,
    dequantise_frames,
    encode_frames,
    quantise_frames_knee,
    read_header,
)

if TYPE_CHECKING:
    from .codec import NoiseCodec

__all__ = [
    "NoiseNumcodec",
    "read_compressed",
    "read_hdf5",
    "read_tiff",
    "write_compressed",
    "write_hdf5",
    "write_tiff",
]

TAG_STREAM = 65000
TAG_MAPS = 65001
PREVIEW_BIN = 16
FORMAT_NAME = "rawsigma-noisecodec"


# ---------------------------------------------------------------- zarr / numcodecs
class NoiseNumcodec(_NumCodec):
    """numcodecs codec: uint16 chunk ↔ noise-codec stream.

    Parameters
    ----------
    step, dither, max_error, seed : see `NoiseCodec`
    sigma_e : float
        Global read noise, e⁻ rms.
    gain, offset : float
        Global gain (ADU/e⁻) and offset (ADU), used with ``maps="global"``.
    max_adu : int
        ADC maximum.
    profile_id : str
        Id of the profile the parameters come from (recorded in every chunk).
    maps : {"global", "pixel"}
        ``"pixel"`` needs the maps (`from_codec`); decoding never does.
    effort : {"pyramid", "best", "fast"}
        Back end (see `NoiseCodec`); decoding reads it from each chunk.
    knee : float, optional
        Knee of the transform (e⁻², `StreamParams.knee`); default ``sigma_e²`` (configs
        written before format 4 have none).
    """

    codec_id = "rawsigma_noise"

    def __init__(
        self,
        step: float = 2.0,
        dither: bool = False,
        max_error: float | None = None,
        seed: int = 0,
        sigma_e: float = 1.0,
        gain: float = 1.0,
        offset: float = 0.0,
        max_adu: int = 65535,
        profile_id: str = "",
        maps: str = "global",
        effort: str = "pyramid",
        knee: float | None = None,
    ) -> None:
        if effort not in EFFORTS:
            raise ValueError(f"effort must be one of {', '.join(EFFORTS)}, got {effort!r}")
        self.effort = str(effort)
        self.step = float(step)
        self.dither = bool(dither)
        self.max_error = None if max_error is None else float(max_error)
        self.seed = int(seed)
        self.sigma_e = float(sigma_e)
        self.gain = float(gain)
        self.offset = float(offset)
        self.max_adu = int(max_adu)
        self.profile_id = str(profile_id)
        self.maps = str(maps)
        self.knee = float(sigma_e) ** 2 if knee is None else float(knee)
        self._pixel_maps: CodecMaps | None = None

    @classmethod
    def from_codec(cls, codec: NoiseCodec, maps: str = "global") -> NoiseNumcodec:
        """The zarr codec equivalent of a `NoiseCodec` (global or per-pixel maps)."""
        p = codec.params
        self = cls(
            step=p.step,
            dither=p.dither,
            max_error=p.max_error,
            seed=p.seed,
            sigma_e=p.sigma_e,
            gain=float(codec.profile.gain_global),
            offset=float(codec.profile.offset_global),
            max_adu=p.max_adu,
            profile_id=p.profile_id,
            maps=maps,
            effort=p.effort,
            knee=p.knee,
        )
        if maps == "pixel":
            self._pixel_maps = codec.maps if codec.maps_mode == "pixel" else None
        return self

    def get_config(self) -> dict[str, Any]:
        return {
            "id": self.codec_id,
            "step": self.step,
            "dither": self.dither,
            "max_error": self.max_error,
            "seed": self.seed,
            "sigma_e": self.sigma_e,
            "gain": self.gain,
            "offset": self.offset,
            "max_adu": self.max_adu,
            "profile_id": self.profile_id,
            "maps": self.maps,
            "effort": self.effort,
            "knee": self.knee,
        }

    def _params(self) -> StreamParams:
        return StreamParams(
            step=self.step,
            dither=self.dither,
            max_error=self.max_error,
            sigma_e=self.sigma_e,
            seed=self.seed,
            max_adu=self.max_adu,
            profile_id=self.profile_id,
            effort=self.effort,
            knee=self.knee,
        )

    def encode(self, buf: Any) -> bytes:
        arr = np.asarray(buf)
        if arr.dtype != np.uint16:
            arr = arr.view(np.uint16) if arr.dtype.itemsize == 2 else arr
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if self.maps == "pixel":
            if self._pixel_maps is None:
                raise InputFileError(
                    "rawsigma_noise: per-pixel maps are not available in this codec instance "
                    "(build it with NoiseNumcodec.from_codec(codec, maps='pixel'))"
                )
            maps = self._pixel_maps
        else:
            maps = CodecMaps.uniform(arr.shape[-2:], self.offset, self.gain, jitter=True)
        return encode_frames(arr, maps, self._params(), embed_maps=True)

    def decode(self, buf: Any, out: Any = None) -> np.ndarray:
        data = bytes(memoryview(buf).cast("B")) if not isinstance(buf, bytes) else buf
        arr = decode_frames(data, None, source="zarr chunk")
        if out is not None:
            o = np.asarray(out)
            o.reshape(-1)[:] = arr.reshape(-1).view(o.dtype) if o.dtype.itemsize == 2 else arr
            return out
        return arr


_nc_register(NoiseNumcodec)


def _register_zarr3() -> None:
    try:
        from zarr.codecs.numcodecs._codecs import _NumcodecsArrayBytesCodec
        from zarr.registry import register_codec
    except ImportError:  # zarr < 3 or no zarr: numcodecs (zarr v2) registration suffices
        return

    class RawsigmaNoise(_NumcodecsArrayBytesCodec, codec_name="rawsigma_noise"):
        """zarr v3 array→bytes wrapper of `NoiseNumcodec`."""

    RawsigmaNoise.__module__ = __name__
    globals()["RawsigmaNoiseZarr3"] = RawsigmaNoise
    register_codec("numcodecs.rawsigma_noise", RawsigmaNoise)


_register_zarr3()


def zarr3_codec(codec: NoiseNumcodec) -> Any:
    """zarr v3 codec object (use as ``serializer=`` of ``zarr.create_array``)."""
    import warnings

    cls = globals()["RawsigmaNoiseZarr3"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "numcodecs codecs are not in the v3 spec"
        obj = cls(**{k: v for k, v in codec.get_config().items() if k != "id"})
    if codec._pixel_maps is not None:
        obj._codec._pixel_maps = codec._pixel_maps
    return obj


# ---------------------------------------------------------------- TIFF
def _preview(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape
    hb, wb = max(1, h // PREVIEW_BIN), max(1, w // PREVIEW_BIN)
    cut = frame[: hb * PREVIEW_BIN, : wb * PREVIEW_BIN] if h >= PREVIEW_BIN <= w else frame
    if cut.shape[0] < PREVIEW_BIN or cut.shape[1] < PREVIEW_BIN:
        return frame[:1, :1].copy()
    return cut.reshape(hb, PREVIEW_BIN, wb, PREVIEW_BIN).mean((1, 3)).astype(np.uint16)


def write_tiff(
    path: str | os.PathLike, frames: np.ndarray, codec: NoiseCodec, force: bool = False
) -> Path:
    """Write ``(H, W)`` or ``(N, H, W)`` uint16 frames as a noise-codec TIFF."""
    import tifffile

    frames = np.asarray(frames)
    stack = frames.reshape(-1, *frames.shape[-2:])
    maps = codec.maps
    desc = {
        "format": FORMAT_NAME,
        "version": VERSION,
        "shape": list(frames.shape),
        "profile_id": codec.profile.profile_id,
        "spec": codec.spec,
        "offset0": maps.offset0,
        "gain0": maps.gain0,
        "jitter": bool(maps.jitter),
        "preview_binning": PREVIEW_BIN,
    }
    streams = [encode_frames(f, maps, codec.params, embed_maps=False) for f in stack]
    with atomic_write(path, force) as tmp, tifffile.TiffWriter(tmp) as tw:
        for i, (f, s) in enumerate(zip(stack, streams, strict=True)):
            extra = [(TAG_STREAM, 7, len(s), s, True)]
            if i == 0 and not maps.is_uniform:
                mb = maps.to_bytes()
                extra.append((TAG_MAPS, 7, len(mb), mb, True))
            tw.write(
                _preview(f),
                compression="zlib",
                description=json.dumps(desc) if i == 0 else None,
                extratags=extra,
                metadata=None,
            )
    return Path(path)


def read_tiff(path: str | os.PathLike) -> np.ndarray:
    """Read a noise-codec TIFF back to uint16 frames (no profile needed)."""
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tf:
            pages = list(tf.pages)
            desc = json.loads(pages[0].description or "{}")
            if desc.get("format") != FORMAT_NAME:
                raise InputFileError(f"{path}: not a rawsigma noise-codec TIFF")
            if desc.get("version") not in READ_VERSIONS:
                raise InputFileError(
                    f"{path}: unknown noise-codec format version {desc.get('version')} "
                    f"(this rawsigma reads versions {', '.join(map(str, READ_VERSIONS))})"
                )
            mtag = pages[0].tags.get(TAG_MAPS)
            mbytes = None if mtag is None else bytes(mtag.value)
            streams = [bytes(p.tags[TAG_STREAM].value) for p in pages]
    except InputFileError:
        raise
    except (OSError, ValueError, KeyError, tifffile.TiffFileError) as exc:
        raise InputFileError(f"{path}: unreadable noise-codec TIFF ({exc})") from None
    shape = tuple(desc["shape"])
    maps = None
    if mbytes is not None:
        maps = CodecMaps.from_bytes(
            mbytes, tuple(shape[-2:]), desc["offset0"], desc["gain0"], desc.get("jitter", False)
        )
    frames = [decode_frames(s, maps, source=f"{path} page {i}") for i, s in enumerate(streams)]
    return np.stack(frames).reshape(shape)


# ---------------------------------------------------------------- HDF5
def write_hdf5(
    path: str | os.PathLike,
    frames: np.ndarray,
    codec: NoiseCodec,
    force: bool = False,
    dataset: str = "codes",
) -> Path:
    """Write frames as an HDF5 file of codes with standard filters and attributes."""
    import h5py

    frames = np.asarray(frames)
    codes, recon, mode, kp = quantise_frames_knee(frames, codec.maps, codec.params)
    ctype = np.uint8 if codes.max(initial=0) < 256 else np.uint16
    h, w = codes.shape[-2:]
    chunks = (1,) * (codes.ndim - 2) + (min(h, 512), min(w, 512))
    maps = codec.maps
    with atomic_write(path, force) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset(
            dataset,
            data=codes.astype(ctype),
            chunks=chunks,
            shuffle=ctype == np.uint16,
            compression="gzip",
            compression_opts=6,
            fletcher32=True,
        )
        p = codec.params
        attrs = {
            "format": FORMAT_NAME,
            "version": VERSION if kp[0] > 0 else 3,  # 4: with the transform's knee
            "mode": mode,
            "step": p.step,
            "max_error": -1.0 if p.max_error is None else p.max_error,
            "sigma_e": p.sigma_e,
            "seed": p.seed,
            "max_adu": p.max_adu,
            "profile_id": p.profile_id,
            "spec": codec.spec,
            "offset0": maps.offset0,
            "gain0": maps.gain0,
            "maps_digest": maps.digest(),
            "jitter": bool(maps.jitter),
            "description": (
                "noise-codec codes: ADU = offset + gain * recon[code] (dither: analytic, "
                "see rawsigma.analysis.noisecodec); read with rawsigma decompress"
            ),
        }
        for k, v in attrs.items():
            ds.attrs[k] = v
        ds.attrs["recon"] = recon
        if kp[0] > 0:
            ds.attrs["knee"] = kp
        g = f.create_group(f"{dataset}_maps")
        g.create_dataset("offset_q", data=maps.offset_q, compression="gzip", fletcher32=True)
        g.create_dataset("gain_q", data=maps.gain_q, compression="gzip", fletcher32=True)
    return Path(path)


def read_hdf5(path: str | os.PathLike, dataset: str = "codes") -> np.ndarray:
    """Read a noise-codec HDF5 file back to uint16 frames (no profile needed)."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise InputFileError(f"{path}: no dataset {dataset!r}")
            ds = f[dataset]
            a = dict(ds.attrs)
            if a.get("format") != FORMAT_NAME:
                raise InputFileError(f"{path}: {dataset!r} is not a rawsigma noise-codec dataset")
            if int(a.get("version", -1)) not in READ_VERSIONS:
                raise InputFileError(
                    f"{path}: unknown noise-codec format version {a.get('version')} "
                    f"(this rawsigma reads versions {', '.join(map(str, READ_VERSIONS))})"
                )
            codes = ds[()]
            g = f[f"{dataset}_maps"]
            maps = CodecMaps(
                float(a["offset0"]),
                float(a["gain0"]),
                g["offset_q"][()],
                g["gain_q"][()],
                bool(a.get("jitter", False)),
            )
    except InputFileError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise InputFileError(f"{path}: unreadable or corrupted noise-codec HDF5 ({exc})") from None
    if maps.digest() != a["maps_digest"]:
        raise InputFileError(f"{path}: the stored maps do not match their digest (altered)")
    return dequantise_frames(
        codes.astype(np.int32),
        maps,
        np.asarray(a["recon"], np.float64),
        str(a["mode"]),
        float(a["step"]),
        float(a["sigma_e"]),
        int(a["seed"]),
        int(a["max_adu"]),
        kp=np.asarray(a.get("knee", NO_KNEE), np.float64),
    )


# ---------------------------------------------------------------- dispatch
FORMATS = ("rsnc", "zarr", "tiff", "h5")


def guess_format(path: str | os.PathLike) -> str:
    """Container format from a file name (``.rsnc``, ``.zarr``, ``.tif(f)``, ``.h5``)."""
    s = str(path).lower().rstrip("/")
    if s.endswith(".zarr"):
        return "zarr"
    if s.endswith((".tif", ".tiff")):
        return "tiff"
    if s.endswith((".h5", ".hdf5", ".hdf")):
        return "h5"
    return "rsnc"


def write_compressed(
    path: str | os.PathLike,
    frames: np.ndarray,
    codec: NoiseCodec,
    fmt: str | None = None,
    force: bool = False,
) -> Path:
    """Write frames compressed with ``codec`` in container ``fmt`` (default: from name)."""
    fmt = fmt or guess_format(path)
    path = Path(path)
    if fmt == "tiff":
        return write_tiff(path, frames, codec, force)
    if fmt == "h5":
        return write_hdf5(path, frames, codec, force)
    if fmt == "rsnc":
        data = encode_frames(frames, codec.maps, codec.params, embed_maps=True)
        with atomic_write(path, force) as tmp:
            tmp.write_bytes(data)
        return path
    if fmt == "zarr":
        return _write_zarr(path, frames, codec, force)
    raise ValueError(f"unknown container format {fmt!r}; use one of {', '.join(FORMATS)}")


def _write_zarr(path: Path, frames: np.ndarray, codec: NoiseCodec, force: bool) -> Path:
    import shutil

    import zarr

    frames = np.asarray(frames)
    if path.exists():
        if not force:
            from rawsigma.errors import OutputExistsError

            raise OutputExistsError(f"{path}: exists; use --force to overwrite it")
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    nc = NoiseNumcodec.from_codec(codec, maps="pixel" if codec.maps_mode == "pixel" else "global")
    chunks = (1,) * (frames.ndim - 2) + tuple(frames.shape[-2:])
    arr = zarr.create_array(
        store=str(tmp),
        shape=frames.shape,
        dtype="uint16",
        chunks=chunks,
        serializer=zarr3_codec(nc),
        compressors=None,
        zarr_format=3,
    )
    arr[...] = frames
    arr.attrs.update({"format": FORMAT_NAME, "profile_id": codec.profile.profile_id})
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def read_compressed(path: str | os.PathLike, fmt: str | None = None) -> np.ndarray:
    """Read any noise-codec container back to uint16 frames (no profile needed)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    fmt = fmt or guess_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown container format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "tiff":
        return read_tiff(path)
    if fmt == "h5":
        return read_hdf5(path)
    if fmt == "zarr":
        import warnings

        import zarr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "numcodecs codecs are not in the v3 spec"
            return np.asarray(zarr.open_array(str(path), mode="r")[...])
    data = path.read_bytes()
    read_header(data, str(path))
    return decode_frames(data, None, source=str(path))
