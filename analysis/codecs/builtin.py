"""Built-in codecs: ImageJ 8-bit, JPEG, JPEG XL, JPEG 2000, JPEG-LS, LERC, zstd, noise.

All but ``noise`` go through :mod:`imagecodecs`; each checks that its encoder is
available (``imagecodecs.JPEGXL.available`` ...) and raises
:class:`~rawsigma.analysis.codecs.registry.CodecUnavailableError` otherwise. Stacks
(Z, H, W) are coded plane by plane (one knob for the whole stack).

8-bit conversion (``8bit`` and the input of ``jpeg``) follows ImageJ's
``TypeConverter`` for 16→8 bit with "scale when converting": with a range
``[lo, hi]``, ``k = floor((max(v - lo, 0)) · 256/(hi - lo + 1) + 0.5)`` clipped to
255. ``range=minmax`` (default) takes ``lo, hi`` = image min and max (ImageJ's
range right after opening a 16-bit image); ``range=display`` takes the range
ImageJ's *Enhance Contrast* (``saturated=0.35`` % by default, half at each end)
would set, so values outside it clip; ``range=fixed,min=A,max=B`` a given range (e.g.
the display range of a stack's first slice, which ImageJ applies to every slice when it
converts a 16-bit stack), values outside it clip; ``range=first`` takes that first
frame's range itself: plane 0 of a (Z, H, W) stack, or the frame given to
``fit_stack(stack)`` by a caller that codes a stack frame by frame (tomography). For
analysis the codes are mapped back to the original scale at the bin centres,
``v = lo + k·(hi - lo + 1)/256``, rounded, in the original dtype; ``lo`` and ``hi``
travel in the payload.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from rawsigma.analysis.codecs.base import (
    Codec,
    CodecError,
    CodecNeedsProfileError,
    CodecUnavailableError,
    Param,
    _pack,
    register_codec,
    search_knob,
)

if TYPE_CHECKING:
    from rawsigma.calib.profile import CameraProfile

_LIBS = {
    "8bit": None,
    "jpeg": "JPEG8",
    "jpegxl": "JPEGXL",
    "jpeg2000": "JPEG2K",
    "jpegls": "JPEGLS",
    "lerc": "LERC",
    "zstd": "ZSTD",
}


def library_available(name: str) -> bool:
    """True if the library behind codec ``name`` can encode here."""
    if name == "noise":
        try:
            from rawsigma.analysis.noisecodec import NoiseCodec  # noqa: F401
        except ImportError:
            return False
        return True
    attr = _LIBS.get(name)
    if attr is None:
        return name in _LIBS
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(getattr(getattr(imagecodecs, attr, None), "available", False))


def _require(name: str) -> Any:
    if not library_available(name):
        raise CodecUnavailableError(
            f"codec {name!r} is not available: the installed imagecodecs has no "
            f"{_LIBS.get(name)} encoder (imagecodecs.{_LIBS.get(name)}.available is False)"
        )
    import imagecodecs

    return imagecodecs


def _planes(image: np.ndarray) -> list[np.ndarray]:
    return [image] if image.ndim == 2 else [np.ascontiguousarray(p) for p in image]


def _stack(planes: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    return planes[0] if len(shape) == 2 else np.stack(planes)


# ----------------------------------------------------------------------------- 8-bit
_RANGE_PARAMS = (
    Param(
        "range",
        str,
        "minmax",
        "8-bit range: minmax, display, full (the dtype's whole range, ImageJ's 16-bit range), "
        "first (the first frame's min..max for every frame, ImageJ's stack conversion) "
        "or fixed (min..max)",
        choices=("minmax", "display", "full", "first", "fixed"),
    ),
    Param("saturated", float, 0.35, "percent clipped by range=display", lo=0.0, hi=50.0),
    Param("min", int, 0, "range=fixed: value of code 0", lo=0, hi=65535),
    Param("max", int, 65535, "range=fixed: value of code 255 (clips above)", lo=1, hi=65535),
)


class _EightBit(Codec):
    """Shared ImageJ 16→8-bit conversion (see module notes)."""

    def _validate(self) -> None:
        p = self.params
        if p["range"] != "fixed" and (p["min"] != 0 or p["max"] != 65535):
            raise CodecError(f"codec {self.name!r}: min/max apply to range=fixed only")
        if p["max"] <= p["min"]:
            raise CodecError(f"codec {self.name!r}: max={p['max']} must exceed min={p['min']}")

    def fit_stack(self, stack: np.ndarray) -> None:
        """Remember the stack's first frame for ``range=first`` (frames coded one by one)."""
        if self.params["range"] == "first":
            first = np.asarray(stack[0])
            self._first = (int(first.min()), int(first.max()))

    def eight_bit_range(self, image: np.ndarray) -> tuple[int, int]:
        if self.params["range"] == "fixed":
            return self.params["min"], self.params["max"]
        if self.params["range"] == "first":
            first = getattr(self, "_first", None)
            if first is not None:
                return first
            plane = image[0] if image.ndim == 3 else image
            return int(plane.min()), int(plane.max())
        if self.params["range"] == "minmax":
            return int(image.min()), int(image.max())
        if self.params["range"] == "full":
            return 0, int(np.iinfo(image.dtype).max)
        half = self.params["saturated"] / 2
        lo, hi = np.percentile(image, [half, 100 - half])
        lo, hi = int(math.floor(lo)), int(math.ceil(hi))
        return lo, max(hi, lo)

    @staticmethod
    def to8(image: np.ndarray, lo: int, hi: int) -> np.ndarray:
        scale = 256.0 / (hi - lo + 1)
        v = np.maximum(image.astype(np.float64) - lo, 0) * scale + 0.5
        return np.minimum(np.floor(v), 255).astype(np.uint8)

    @staticmethod
    def from8(codes: np.ndarray, lo: int, hi: int, dtype: np.dtype) -> np.ndarray:
        v = lo + codes.astype(np.float64) * ((hi - lo + 1) / 256.0)
        info = np.iinfo(dtype)
        return np.clip(np.rint(v), info.min, info.max).astype(dtype)

    def _range_text(self) -> str:
        if self.params["range"] == "minmax":
            return "ImageJ 16->8-bit linear scaling between image min and max"
        if self.params["range"] == "full":
            return "ImageJ 16->8-bit linear scaling over the dtype's full range (16-bit range)"
        if self.params["range"] == "fixed":
            lo, hi = self.params["min"], self.params["max"]
            return f"ImageJ 16->8-bit linear scaling over the fixed range {lo}..{hi}"
        if self.params["range"] == "first":
            return (
                "ImageJ 16->8-bit conversion of a stack: the first frame's min..max "
                "for every frame (brighter values clip)"
            )
        return (
            "ImageJ 16->8-bit linear scaling over the display range "
            f"(Enhance Contrast, {self.params['saturated']:g} % saturated)"
        )

    def _reported(self) -> tuple[str, ...]:
        return ("lo", "hi", "quality")


class EightBitCodec(_EightBit):
    """ImageJ 16->8-bit conversion, mapped back to the original scale."""

    name = "8bit"
    PARAMS = _RANGE_PARAMS

    def _describe(self) -> str:
        return f"8-bit: {self._range_text()}, decoded to the original scale (bin centres)"

    def _encode(self, image: np.ndarray) -> tuple[list[bytes], dict[str, Any]]:
        lo, hi = self.eight_bit_range(image)
        return [self.to8(image, lo, hi).tobytes()], {"lo": lo, "hi": hi}

    def _decode(self, bodies, meta, shape, dtype):  # type: ignore[no-untyped-def]
        codes = np.frombuffer(bodies[0], np.uint8).reshape(shape)
        return self.from8(codes, meta["lo"], meta["hi"], dtype)


class JpegCodec(_EightBit):
    """8-bit (ImageJ scaling) JPEG; quality set or found by bisection for a ratio."""

    name = "jpeg"
    ratio_param = "ratio"
    DEFAULT_QUALITY = 85  # ImageJ's default JPEG quality
    PARAMS = (
        Param("ratio", float, None, "target ratio vs raw 16-bit, jpeg@R", lo=1.0),
        Param("q", int, None, "JPEG quality 1-100 (default 85)", lo=1, hi=100),
        *_RANGE_PARAMS,
    )

    def _validate(self) -> None:
        if self.params["ratio"] is not None and self.params["q"] is not None:
            raise CodecError(
                "codec 'jpeg': give either a ratio (jpeg@R) or a quality (q=), not both"
            )
        _require(self.name)

    def _describe(self) -> str:
        r, q = self.params["ratio"], self.params["q"]
        how = (
            f"quality by bisection for {r:g}:1 vs raw 16-bit"
            if r is not None
            else f"quality {q or self.DEFAULT_QUALITY}"
        )
        return f"JPEG (libjpeg) of the 8-bit image ({self._range_text()}), {how}"

    def _encode(self, image):  # type: ignore[no-untyped-def]
        ic = _require(self.name)
        lo, hi = self.eight_bit_range(image)
        planes = [self.to8(p, lo, hi) for p in _planes(image)]

        def bodies(q: float) -> list[bytes]:
            return [bytes(ic.jpeg8_encode(p, level=int(q))) for p in planes]

        meta: dict[str, Any] = {"lo": lo, "hi": hi}
        if self.params["ratio"] is None:
            q = self.params["q"] or self.DEFAULT_QUALITY
        else:
            target = image.size * 2 / self.params["ratio"]

            def size(q: float) -> int:
                return len(_pack(self, image, bodies(q), {**meta, "quality": int(q)}))

            q, _ = search_knob(size, target, 1, 100, integer=True, increasing=True)
        meta["quality"] = int(q)
        return bodies(q), meta

    def _decode(self, bodies, meta, shape, dtype):  # type: ignore[no-untyped-def]
        ic = _require(self.name)
        planes = [np.asarray(ic.jpeg8_decode(b)) for b in bodies]
        return self.from8(_stack(planes, shape), meta["lo"], meta["hi"], dtype)


# ----------------------------------------------------------------------------- 16-bit
class JpegXLCodec(Codec):
    """JPEG XL (libjxl) on the 16-bit data: lossless, distance=, or @ratio by bisection."""

    name = "jpegxl"
    ratio_param = "ratio"
    PARAMS = (
        Param("ratio", float, None, "target ratio vs raw 16-bit, jpegxl@R", lo=1.0),
        Param("distance", float, None, "butteraugli distance, 0 = lossless", lo=0.0, hi=25.0),
        Param("effort", int, 3, "encoder effort 1-9", lo=1, hi=9),
    )

    def _validate(self) -> None:
        if self.params["ratio"] is not None and self.params["distance"] is not None:
            raise CodecError("codec 'jpegxl': give either a ratio or a distance, not both")
        _require(self.name)

    @property
    def lossless(self) -> bool:
        """Whether decoding gives back the input exactly."""
        return self.params["ratio"] is None and not self.params["distance"]

    def _describe(self) -> str:
        e = self.params["effort"]
        if self.lossless:
            return f"JPEG XL lossless on 16-bit data (effort {e})"
        if self.params["ratio"] is not None:
            return (
                f"JPEG XL lossy on 16-bit data, distance by bisection for "
                f"{self.params['ratio']:g}:1 vs raw 16-bit (effort {e})"
            )
        return f"JPEG XL lossy on 16-bit data, distance {self.params['distance']:g} (effort {e})"

    def _reported(self) -> tuple[str, ...]:
        return ("distance",)

    def _encode(self, image):  # type: ignore[no-untyped-def]
        ic = _require(self.name)
        planes = _planes(image)
        eff = self.params["effort"]

        def bodies(d: float) -> list[bytes]:
            if d <= 0:
                return [bytes(ic.jpegxl_encode(p, lossless=True, effort=eff)) for p in planes]
            return [
                bytes(ic.jpegxl_encode(p, distance=d, effort=eff, numthreads=1)) for p in planes
            ]

        if self.params["ratio"] is not None:
            target = image.size * 2 / self.params["ratio"]

            def size(d: float) -> int:
                return len(_pack(self, image, bodies(d), {"distance": round(d, 4)}))

            d, _ = search_knob(size, target, 0.01, 25.0, integer=False, increasing=False, log=True)
        else:
            d = self.params["distance"] or 0.0
        return bodies(d), {"distance": round(d, 4)}

    def _decode(self, bodies, meta, shape, dtype):  # type: ignore[no-untyped-def]
        ic = _require(self.name)
        return _stack([np.asarray(ic.jpegxl_decode(b)) for b in bodies], shape)


class Jpeg2000Codec(Codec):
    """JPEG 2000 (OpenJPEG) on the 16-bit data: lossless, psnr=, or @ratio by bisection."""

    name = "jpeg2000"
    ratio_param = "ratio"
    PARAMS = (
        Param("ratio", float, None, "target ratio vs raw 16-bit, jpeg2000@R", lo=1.0),
        Param("psnr", float, None, "target PSNR in dB (OpenJPEG quality layer)", lo=1.0),
    )

    def _validate(self) -> None:
        if self.params["ratio"] is not None and self.params["psnr"] is not None:
            raise CodecError("codec 'jpeg2000': give either a ratio or a psnr, not both")
        _require(self.name)

    @property
    def lossless(self) -> bool:
        """Whether decoding gives back the input exactly."""
        return self.params["ratio"] is None and self.params["psnr"] is None

    def _describe(self) -> str:
        if self.lossless:
            return "JPEG 2000 reversible (lossless) on 16-bit data"
        if self.params["ratio"] is not None:
            return (
                "JPEG 2000 irreversible on 16-bit data, PSNR layer by bisection for "
                f"{self.params['ratio']:g}:1 vs raw 16-bit"
            )
        return f"JPEG 2000 irreversible on 16-bit data, PSNR {self.params['psnr']:g} dB"

    def _reported(self) -> tuple[str, ...]:
        return ("psnr",)

    def _encode(self, image):  # type: ignore[no-untyped-def]
        ic = _require(self.name)
        planes = _planes(image)

        def bodies(psnr: float | None) -> list[bytes]:
            if psnr is None:
                return [bytes(ic.jpeg2k_encode(p, reversible=True, numthreads=1)) for p in planes]
            return [bytes(ic.jpeg2k_encode(p, level=psnr, numthreads=1)) for p in planes]

        if self.params["ratio"] is not None:
            target = image.size * 2 / self.params["ratio"]

            def size(ps: float) -> int:
                return len(_pack(self, image, bodies(ps), {"psnr": round(ps, 3)}))

            psnr, _ = search_knob(size, target, 20.0, 110.0, integer=False, increasing=True)
        else:
            psnr = self.params["psnr"]
        return bodies(psnr), {"psnr": None if psnr is None else round(psnr, 3)}

    def _decode(self, bodies, meta, shape, dtype):  # type: ignore[no-untyped-def]
        ic = _require(self.name)
        return _stack([np.asarray(ic.jpeg2k_decode(b)) for b in bodies], shape)


class JpegLSCodec(Codec):
    """JPEG-LS (CharLS) on the 16-bit data; near=N bounds the error to N ADU (0 = lossless)."""

    name = "jpegls"
    PARAMS = (Param("near", int, 0, "max absolute error in ADU, 0 = lossless", lo=0, hi=255),)

    def _validate(self) -> None:
        _require(self.name)

    @property
    def lossless(self) -> bool:
        """Whether decoding gives back the input exactly."""
        return self.params["near"] == 0

    def _describe(self) -> str:
        n = self.params["near"]
        return "JPEG-LS lossless" if n == 0 else f"JPEG-LS near-lossless, |error| <= {n} ADU"

    def _encode(self, image):  # type: ignore[no-untyped-def]
        ic = _require(self.name)
        n = self.params["near"]
        return [bytes(ic.jpegls_encode(p, level=n)) for p in _planes(image)], {}

    def _decode(self, bodies, meta, shape, dtype):  # type: ignore[no-untyped-def]
        ic = _require(self.name)
        return _stack([np.asarray(ic.jpegls_decode(b)) for b in bodies], shape)


class LercCodec(Codec):
    """LERC on the 16-bit data; maxerr=E bounds the error to E ADU (0 = lossless)."""

    name = "lerc"
    PARAMS = (Param("maxerr", float, 0.0, "max absolute error in ADU, 0 = lossless", lo=0.0),)

    def _validate(self) -> None:
        _require(self.name)

    @property
    def lossless(self) -> bool:
        """Whether decoding gives back the input exactly."""
        return self.params["maxerr"] < 0.5  # integer data: below half an ADU is exact

    def _describe(self) -> str:
        e = self.params["maxerr"]
        return "LERC lossless" if self.lossless else f"LERC, |error| <= {e:g} ADU"

    def _encode(self, image):  # type: ignore[no-untyped-def]
        ic = _require(self.name)
        e = self.params["maxerr"]
        return [bytes(ic.lerc_encode(p, level=e)) for p in _planes(image)], {}

    def _decode(self, bodies, meta, shape, dtype):  # type: ignore[no-untyped-def]
        ic = _require(self.name)
        planes = []
        for b in bodies:
            out = ic.lerc_decode(b)
            planes.append(np.asarray(out[0] if isinstance(out, tuple) else out))
        return _stack(planes, shape)


class ZstdCodec(Codec):
    """Zstandard on the raw pixel bytes (lossless)."""

    name = "zstd"
    PARAMS = (Param("level", int, 3, "zstd level 1-22", lo=1, hi=22),)

    def _validate(self) -> None:
        _require(self.name)

    @property
    def lossless(self) -> bool:
        """Whether decoding gives back the input exactly."""
        return True

    def _describe(self) -> str:
        return f"zstd level {self.params['level']} on the raw bytes (lossless)"

    def _encode(self, image):  # type: ignore[no-untyped-def]
        ic = _require(self.name)
        le = image.astype(image.dtype.newbyteorder("<"), copy=False)
        return [bytes(ic.zstd_encode(le.tobytes(), level=self.params["level"]))], {}

    def _decode(self, bodies, meta, shape, dtype):  # type: ignore[no-untyped-def]
        ic = _require(self.name)
        raw = bytes(ic.zstd_decode(bodies[0]))
        return np.frombuffer(raw, dtype.newbyteorder("<")).reshape(shape).astype(dtype)


# ----------------------------------------------------------------------------- noise
class NoiseCodecAdapter(Codec):
    """Noise-calibrated codec (VST with the profile, step S·sigma, lossless codes)."""

    name = "noise"
    PARAMS = (
        # limits: noisecodec.codec.MIN_STEP, MAX_STEP (kept literal: noisecodec imports numba)
        Param(
            "step",
            float,
            2.0,
            "quantisation step in units of sigma, in [0.01, 2.5]",
            lo=0.01,
            hi=2.5,
            show=True,
        ),
        Param("dither", bool, False, "subtractive dither 0/1"),
        Param("maxerr", float, None, "hard bound on |error| in units of sigma", lo=1e-3),
        Param(
            "effort",
            str,
            "pyramid",
            "back end: pyramid, best or fast (as rawsigma compress --effort)",
            choices=("pyramid", "best", "fast"),
        ),
    )

    def __init__(self, profile: CameraProfile | None = None, **params: Any) -> None:
        super().__init__(**params)  # bad parameters first: they need no profile
        if self.params["dither"] and self.params["maxerr"] is not None:
            raise CodecError(
                f"codec {self.spec!r}: a hard error bound (maxerr) and subtractive dither "
                "cannot be combined"
            )
        if profile is None:
            raise CodecNeedsProfileError(
                "codec 'noise' (noise-calibrated) needs a camera profile: pass profile= "
                "to parse_codecs (CLI: --profile P.h5 or --estimate-profile)"
            )
        try:
            from rawsigma.analysis.noisecodec import NoiseCodec
        except ImportError as exc:
            raise CodecUnavailableError(
                f"codec 'noise' is not available: rawsigma.analysis.noisecodec failed to "
                f"import ({exc})"
            ) from exc
        self.profile = profile
        try:
            self.inner = NoiseCodec(
                profile,
                step=self.params["step"],
                dither=self.params["dither"],
                max_error=self.params["maxerr"],
                # only when not the default, so stand-ins without ``effort`` still work
                **({} if self.params["effort"] == "pyramid" else {"effort": self.params["effort"]}),
            )
        except CodecError:
            raise
        except ValueError as exc:
            raise CodecError(f"codec {self.spec!r}: {exc}") from exc

    @classmethod
    def from_params(cls, params: dict[str, str], profile: CameraProfile | None = None) -> Codec:
        """The wrapped codec named by ``params`` (``inner@...``), with the profile."""
        params = dict(params)
        if "@" in params:
            raise CodecError(
                "codec 'noise' has no ratio search; use noise:step=S (S in units of sigma)"
            )
        return cls(profile, **params)

    def _describe(self) -> str:
        inner = getattr(self.inner, "description", None)
        if isinstance(inner, str) and inner:
            return inner
        d = ", subtractive dither" if self.params["dither"] else ""
        return (
            f"noise-calibrated: VST with the profile's gain/offset and global read noise, "
            f"step {self.params['step']:g} sigma{d}, lossless coding, unbiased decoding "
            f"(profile {self.profile.profile_id})"
        )

    def prepare(self, progress: Any = None) -> None:
        """Compile the back end's kernels if this machine never did.

        Announced through ``progress(stage, done, total)``; see `noisecodec.warmup`.
        """
        params = getattr(self.inner, "params", None)
        if params is not None:
            from rawsigma.analysis.noisecodec.warmup import warm_up

            warm_up(params, progress)

    def _encode(self, image):  # type: ignore[no-untyped-def]
        return [bytes(self.inner.encode(p)) for p in _planes(image)], {
            "profile_id": self.profile.profile_id
        }

    def _decode(self, bodies, meta, shape, dtype):  # type: ignore[no-untyped-def]
        planes = [np.asarray(self.inner.decode(b)) for b in bodies]
        return _stack(planes, shape)


for _cls, _aliases in (
    (EightBitCodec, ("8-bit", "imagej8")),
    (JpegCodec, ("jpg",)),
    (JpegXLCodec, ("jxl",)),
    (Jpeg2000Codec, ("j2k", "jp2", "jpeg2k")),
    (JpegLSCodec, ("jls",)),
    (LercCodec, ()),
    (ZstdCodec, ()),
    (NoiseCodecAdapter, ()),
):
    register_codec(_cls.name, _cls, aliases=_aliases, replace=True)
