"""`NoiseNumcodec`: the noise codec as a numcodecs codec (zarr v2 compressor).

Codec id ``rawsigma_noise`` (registered on import and through the ``numcodecs.codecs``
entry point, so zarr finds it without an explicit import of rawsigma). Each chunk
becomes one self-describing noise-codec stream. With the default ``maps="global"`` any
chunk shape works and nothing per pixel is stored; with ``maps="pixel"`` the chunks must
span whole frames and each chunk embeds the maps.

The contract of numcodecs holds: ``encode`` takes any buffer (numpy uint16 arrays, or
bytes-like objects read as little-endian uint16), ``decode`` returns an ndarray or fills
``out`` (any writable buffer of the right size); object buffers raise `TypeError`, and
so does every dtype other than uint16 (raw camera counts: int16, float, … are refused,
never silently reinterpreted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray, ndarray_copy
from numcodecs.registry import register_codec
from rawsigma.errors import InputFileError

from .maps import CodecMaps
from .stream import EFFORTS, StreamParams, decode_frames, encode_frames

if TYPE_CHECKING:
    from .codec import NoiseCodec

__all__ = ["NoiseNumcodec"]


def _as_uint16(buf: Any) -> np.ndarray:
    """The input of `NoiseNumcodec.encode` as a uint16 array (TypeError otherwise)."""
    if isinstance(buf, np.ndarray):
        if buf.dtype == object:
            raise TypeError("rawsigma_noise cannot encode an object array")
        if buf.dtype.kind != "u" or buf.dtype.itemsize != 2:
            raise TypeError(
                f"rawsigma_noise encodes raw camera counts (uint16) only, got {buf.dtype}; "
                "signed or floating-point data would be corrupted"
            )
        return np.ascontiguousarray(buf, dtype="=u2")
    mv = memoryview(buf)
    if mv.format not in ("B", "b", "c", "H", "<H"):
        raise TypeError(
            f"rawsigma_noise encodes raw camera counts (uint16) only, got buffer format "
            f"{mv.format!r}"
        )
    raw = ensure_contiguous_ndarray(buf).view(np.uint8).reshape(-1)
    if raw.size % 2:
        raise ValueError(f"rawsigma_noise: {raw.size} bytes is not a whole number of uint16")
    return raw.view("<u2").astype("=u2")


class NoiseNumcodec(Codec):
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
        if maps not in ("global", "pixel"):
            raise ValueError(f"maps must be 'global' or 'pixel', got {maps!r}")
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
        """JSON-able configuration (``id`` + constructor arguments)."""
        keys = ("step", "dither", "max_error", "seed", "sigma_e", "gain", "offset")
        keys += ("max_adu", "profile_id", "maps", "effort", "knee")
        return {"id": self.codec_id, **{k: getattr(self, k) for k in keys}}

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
        """Encode a uint16 chunk (any shape; 1-D and bytes-like as one row)."""
        arr = _as_uint16(buf)
        if arr.ndim < 2:
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

    def decode(self, buf: Any, out: Any = None) -> Any:
        """Decode a stream to a uint16 array, or into ``out`` (any writable buffer)."""
        if isinstance(buf, np.ndarray) and buf.dtype == object:
            raise TypeError("rawsigma_noise cannot decode from an object array")
        if isinstance(out, np.ndarray) and out.dtype == object:
            raise TypeError("rawsigma_noise cannot decode into an object array")
        data = ensure_contiguous_ndarray(buf).view(np.uint8).tobytes()
        arr = decode_frames(data, None, source="rawsigma_noise chunk")
        if out is None:
            return arr
        return ndarray_copy(arr, out)


register_codec(NoiseNumcodec)
