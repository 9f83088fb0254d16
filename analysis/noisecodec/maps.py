"""`CodecMaps`: the per-pixel offset and gain maps as the noise codec uses and stores them."""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass

import imagecodecs
import numpy as np


@functools.lru_cache(maxsize=4)
def _jitter(shape: tuple[int, int]) -> np.ndarray:
    j = np.random.default_rng(0x5EED).random(shape, dtype=np.float32) - np.float32(0.5)
    j.flags.writeable = False
    return j


@dataclass(frozen=True)
class CodecMaps:
    """Offset and gain maps as the codec uses them (quantised so they can travel).

    ``offset = offset0 + offset_q / 4`` ADU and ``gain = gain0 · (1 + gain_q / 2⁹)``
    ADU/e⁻ (errors ≤ 1/8 ADU and 0.1 %: the transform only needs the same maps on both
    sides, and these errors are far below the noise)
    float32 (H, W).
    """

    offset0: float
    gain0: float
    offset_q: np.ndarray
    gain_q: np.ndarray
    jitter: bool = False

    @classmethod
    def from_maps(
        cls,
        offset: np.ndarray,
        gain: np.ndarray,
        jitter: bool = True,
        base: tuple[float, float] | None = None,
    ) -> CodecMaps:
        """Quantised maps; ``jitter`` as in `uniform` (the 1/4-ADU offset steps would
        otherwise put pixels on a few shared ADU lattices and bias the dark levels).
        ``base``: the ``(offset0, gain0)`` the maps are quantised around (default: their
        medians)."""
        if base is None:
            o0, g0 = float(np.median(offset)), float(np.median(gain))
        else:
            o0, g0 = float(base[0]), float(base[1])
        oq = np.rint((np.asarray(offset, np.float64) - o0) * 4).astype(np.int32)
        gq = np.rint((np.asarray(gain, np.float64) / g0 - 1) * 512).astype(np.int32)
        return cls(o0, g0, oq, gq, bool(jitter))

    @classmethod
    def uniform(
        cls, shape: tuple[int, int], offset: float, gain: float, jitter: bool = True
    ) -> CodecMaps:
        """Global offset and gain. ``jitter`` adds a fixed pseudo-random offset in
        [−½, ½) ADU per pixel (regenerated, never stored) so that pixels do not share one
        ADU lattice: like per-pixel offsets, it keeps the quantiser unbiased."""
        return _uniform(tuple(int(v) for v in shape), float(offset), float(gain), bool(jitter))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.offset_q.shape)  # type: ignore[return-value]

    @functools.cached_property
    def is_uniform(self) -> bool:
        return not (self.offset_q.any() or self.gain_q.any())

    def offset(self) -> np.ndarray:
        """Offset map, float32 ADU (computed once, read-only)."""
        return self._offset

    def gain(self) -> np.ndarray:
        """Gain map, float32 ADU/e⁻ (computed once, read-only)."""
        return self._gain

    @functools.cached_property
    def _offset(self) -> np.ndarray:
        if self.is_uniform:  # same values, without the float64 temporaries
            o = np.full(self.shape, self.offset0, np.float32)
        else:
            o = (self.offset0 + self.offset_q / 4.0).astype(np.float32)
        if self.jitter:
            o += _jitter(self.shape)
        o.flags.writeable = False
        return o

    @functools.cached_property
    def _gain(self) -> np.ndarray:
        if self.is_uniform:
            g = np.full(self.shape, self.gain0, np.float32)
        else:
            g = (self.gain0 * (1.0 + self.gain_q / 512.0)).astype(np.float32)
        g.flags.writeable = False
        return g

    def digest(self) -> str:
        """Short SHA-1 of the maps (checked when maps are supplied at decoding)."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> str:
        h = hashlib.sha1()
        h.update(struct.pack("<dd?", self.offset0, self.gain0, self.jitter))
        h.update(np.ascontiguousarray(self.offset_q).tobytes())
        h.update(np.ascontiguousarray(self.gain_q).tobytes())
        return h.hexdigest()[:16]

    def to_bytes(self) -> bytes:
        """Both maps as the smallest integer type, byte-shuffled, zstd: ~10 bits/pixel for
        a typical sCMOS (the per-pixel noise of the maps is incompressible). Computed
        once per maps object (every stream of a codec embeds the same bytes)."""
        return self._bytes

    @functools.cached_property
    def _bytes(self) -> bytes:
        raw = np.stack([self.offset_q, self.gain_q])
        lo, hi = int(raw.min(initial=0)), int(raw.max(initial=0))
        dtype = (
            "<i1" if -128 <= lo and hi <= 127 else "<i2" if -32768 <= lo and hi <= 32767 else "<i4"
        )
        arr = raw.astype(dtype)
        shuffled = arr.view(np.uint8).reshape(-1, arr.itemsize).T.tobytes()
        return bytes([arr.itemsize]) + imagecodecs.zstd_encode(shuffled, level=9)

    @classmethod
    def from_bytes(
        cls, data: bytes, shape: tuple[int, int], offset0: float, gain0: float, jitter: bool
    ) -> CodecMaps:
        """Maps of `to_bytes`. The last few are cached (by content): decoding the frames
        of one camera rebuilds the same maps, their float maps and digest, once."""
        shape = (int(shape[0]), int(shape[1]))
        return _from_bytes(bytes(data), shape, float(offset0), float(gain0), bool(jitter))


@functools.lru_cache(maxsize=4)
def _from_bytes(
    data: bytes, shape: tuple[int, int], offset0: float, gain0: float, jitter: bool
) -> CodecMaps:
    size = data[0]
    planes = np.frombuffer(imagecodecs.zstd_decode(data[1:]), np.uint8).reshape(size, -1)
    arr = np.ascontiguousarray(planes.T).view({1: "<i1", 2: "<i2", 4: "<i4"}[size])
    arr = arr.reshape(2, *shape).astype(np.int32)
    arr.flags.writeable = False  # shared by the callers of the cache
    return CodecMaps(offset0, gain0, arr[0], arr[1], jitter)


@functools.lru_cache(maxsize=2)
def _uniform(shape: tuple[int, int], offset: float, gain: float, jitter: bool) -> CodecMaps:
    """`CodecMaps.uniform`, cached: decoding builds the maps of every stream from its
    header, and their float maps and digest are then computed once, not per frame."""
    z = np.zeros(shape, np.int32)
    z.flags.writeable = False
    return CodecMaps(offset, gain, z, z, jitter)
