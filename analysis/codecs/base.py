"""The codec mechanism: base class, parameters, payload, knob search, registration.

The `Codec` base class, its parameters, the payload container, the knob search and
the registration of codec names.

:mod:`.builtin` defines the built-in codecs on top of it and :mod:`.registry` turns
spec strings into codecs; both import this module, which imports neither.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from rawsigma.errors import ImageMismatchError, InputFileError, RawsigmaError

if TYPE_CHECKING:
    from rawsigma.calib.profile import CameraProfile

__all__ = [
    "MAGIC",
    "Codec",
    "CodecError",
    "CodecFactory",
    "CodecNeedsProfileError",
    "CodecUnavailableError",
    "Param",
    "compression_ratio",
    "register_codec",
    "search_knob",
]

MAGIC = b"RSC1"


class CodecError(RawsigmaError, ValueError):
    """Bad codec spec (unknown name, bad parameter) or a payload that is not ours."""


class CodecUnavailableError(CodecError):
    """The codec's library (an imagecodecs encoder) is not available here."""


class CodecNeedsProfileError(CodecError):
    """A profile-based codec (``noise``) was built without a camera profile.

    Raised only after its parameters were checked, so a spec can be validated
    before the profile is loaded.
    """


def compression_ratio(image: np.ndarray, data: bytes | int) -> float:
    """Raw 16-bit size of ``image`` divided by the encoded size.

    Parameters
    ----------
    image : ndarray
        The image that was encoded (any dtype; only its number of pixels counts).
    data : bytes or int
        The payload, or its length in bytes.

    Returns
    -------
    float
        ``image.size * 2 / len(data)``: always against 16 bits per pixel.
    """
    n = data if isinstance(data, int) else len(data)
    if n <= 0:
        raise ValueError("compression_ratio: empty payload")
    return np.asarray(image).size * 2 / n


# ----------------------------------------------------------------------------- params
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Param:
    """One codec parameter: name, type, default, allowed range or choices, help."""

    name: str
    kind: type
    default: Any
    doc: str = ""
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    show: bool = False  # always written in the canonical spec, even at its default

    def convert(self, codec: str, value: Any) -> Any:
        """Convert a string (or value) to this parameter's type, checking its range."""
        text = str(value).strip()
        try:
            if self.kind is bool:
                if isinstance(value, bool):
                    v: Any = value
                elif text.lower() in _TRUE:
                    v = True
                elif text.lower() in _FALSE:
                    v = False
                else:
                    raise ValueError(text)
            elif self.kind is int:
                f = float(text)
                if f != int(f):
                    raise ValueError(text)
                v = int(f)
            elif self.kind is float:
                v = float(text)
                if not math.isfinite(v):
                    raise ValueError(text)
            else:
                v = text
        except ValueError:
            raise CodecError(
                f"codec {codec!r}: parameter {self.name}={text!r} is not a valid "
                f"{self.kind.__name__} ({self.doc})"
            ) from None
        if self.choices is not None and v not in self.choices:
            raise CodecError(
                f"codec {codec!r}: {self.name}={v!r} is not one of {', '.join(self.choices)}"
            )
        if self.lo is not None and v < self.lo or self.hi is not None and v > self.hi:
            raise CodecError(f"codec {codec!r}: {self.name}={v} is outside [{self.lo}, {self.hi}]")
        return v

    def format(self, value: Any) -> str:
        """Canonical text of a value (``%g`` for floats, 0/1 for booleans)."""
        if self.kind is bool:
            return "1" if value else "0"
        if self.kind is float:
            return f"{value:g}"
        return str(value)


# ----------------------------------------------------------------------------- base
class Codec:
    """A named, parameterised codec: ``encode(image) -> bytes``, ``decode(bytes)``.

    Subclasses set ``name``, ``PARAMS`` (tuple of :class:`Param`) and implement
    :meth:`_encode` and :meth:`_decode`; they may set ``ratio_param`` to the name
    of the parameter that ``name@R`` fills.

    Attributes
    ----------
    name : str
        Registry name (``"jpeg"``).
    params : dict
        All parameter values, defaults included.
    spec : str
        Canonical spec string (non-default parameters only).
    description : str
        One line for reports; after an encode it also says what the codec found
        (e.g. the JPEG quality and the achieved ratio).
    lossless : bool
        True if decode(encode(x)) == x exactly.
    """

    name: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    ratio_param: ClassVar[str | None] = None

    def __init__(self, **params: Any) -> None:
        known = {p.name: p for p in self.PARAMS}
        bad = sorted(set(params) - set(known))
        if bad:
            raise CodecError(self._bad_param_message(bad))
        self.params: dict[str, Any] = {}
        for p in self.PARAMS:
            v = params.get(p.name, p.default)
            self.params[p.name] = None if v is None else p.convert(self.name, v)
        self.last_info: dict[str, Any] = {}
        self._validate()

    # -- construction from spec strings
    @classmethod
    def valid_params(cls) -> str:
        """Human-readable list of this codec's parameters."""
        valid = ", ".join(f"{p.name} ({p.doc})" for p in cls.PARAMS) or "none"
        extra = f"; or {cls.name}@RATIO" if cls.ratio_param else ""
        return f"valid parameters: {valid}{extra}"

    @classmethod
    def _bad_param_message(cls, bad: Iterable[str]) -> str:
        return (
            f"codec {cls.name!r}: unknown parameter(s) {', '.join(sorted(bad))}; "
            + cls.valid_params()
        )

    @classmethod
    def from_params(cls, params: dict[str, str], profile: CameraProfile | None = None) -> Codec:
        """Build from string parameters (``profile`` is ignored by most codecs).

        The key ``"@"`` holds the ``name@R`` ratio and maps to ``ratio_param``.
        """
        params = dict(params)
        if "@" in params:
            r = params.pop("@")
            if cls.ratio_param is None:
                raise CodecError(
                    f"codec {cls.name!r} has no ratio search ({cls.name}@R); " + cls.valid_params()
                )
            if cls.ratio_param in params:
                raise CodecError(f"codec {cls.name!r}: ratio given twice")
            params[cls.ratio_param] = r
        return cls(**params)

    def _validate(self) -> None:
        """Check parameter combinations (subclasses)."""

    # -- identity
    @property
    def spec(self) -> str:
        """Canonical spec: ``name[@ratio][:k=v,...]`` with defaults omitted."""
        out = self.name
        items = []
        for p in self.PARAMS:
            v = self.params[p.name]
            if v is None or (v == p.default and not p.show):
                continue
            if p.name == self.ratio_param:
                out += f"@{p.format(v)}"
            else:
                items.append(f"{p.name}={p.format(v)}")
        return out + (":" + ",".join(items) if items else "")

    @property
    def lossless(self) -> bool:
        """Whether decoding gives back the input exactly."""
        return False

    @property
    def description(self) -> str:
        """One line saying what the codec does, with its last run's settings."""
        base = self._describe()
        info = self.last_info
        if info:
            found = ", ".join(f"{k} {v}" for k, v in info.items() if k != "ratio")
            base += f" [last image: ratio {info.get('ratio', float('nan')):.3g}:1"
            base += f", {found}]" if found else "]"
        return base

    def _describe(self) -> str:
        return self.spec

    def __repr__(self) -> str:  # noqa: D105
        return f"<Codec {self.spec}>"

    # -- encode / decode
    def encode(self, image: np.ndarray) -> bytes:
        """Encode a raw image.

        Parameters
        ----------
        image : (H, W) or (Z, H, W) ndarray, unsigned integer (uint8/uint16)

        Returns
        -------
        bytes
            Self-describing payload (see module notes).
        """
        img = _check_image(image, self.name)
        bodies, meta = self._encode(img)
        data = _pack(self, img, bodies, meta)
        info = {k: v for k, v in meta.items() if k in self._reported()}
        info["ratio"] = round(compression_ratio(img, data), 3)
        self.last_info = info
        return data

    def decode(self, data: bytes) -> np.ndarray:
        """Decode a payload made by :meth:`encode`: original dtype and shape."""
        header, bodies = _unpack(data)
        if header["name"] != self.name:
            raise CodecError(
                f"codec {self.spec!r}: payload was written by codec {header['codec']!r}"
            )
        shape = tuple(header["shape"])
        dtype = np.dtype(header["dtype"])
        out = self._decode(bodies, header["meta"], shape, dtype)
        out = np.asarray(out)
        if out.shape != shape:
            out = out.reshape(shape)
        if out.dtype != dtype:
            info = np.iinfo(dtype)
            out = np.clip(np.rint(out), info.min, info.max).astype(dtype)
        return out

    def info(self, data: bytes) -> dict[str, Any]:
        """Header of a payload: codec spec, shape, dtype, what the codec found, ratio."""
        header, _ = _unpack(data)
        out = {"codec": header["codec"], "shape": header["shape"], "dtype": header["dtype"]}
        out.update(header["meta"])
        out["ratio"] = np.prod(header["shape"]) * 2 / len(data)
        return out

    def _reported(self) -> tuple[str, ...]:
        """Meta keys worth showing in the description (subclasses)."""
        return ()

    def _encode(self, image: np.ndarray) -> tuple[list[bytes], dict[str, Any]]:
        raise NotImplementedError

    def _decode(
        self, bodies: list[bytes], meta: dict[str, Any], shape: tuple[int, ...], dtype: np.dtype
    ) -> np.ndarray:
        raise NotImplementedError


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype.kind != "u" or img.dtype.itemsize > 2:
        raise ImageMismatchError(
            f"codec {name!r}: expected a raw unsigned 8- or 16-bit image, got {img.dtype}"
        )
    if img.ndim not in (2, 3) or min(img.shape) < 1:
        raise ImageMismatchError(
            f"codec {name!r}: expected an (H, W) or (Z, H, W) image, got shape {img.shape}"
        )
    return np.ascontiguousarray(img)


def _pack(codec: Codec, img: np.ndarray, bodies: list[bytes], meta: dict[str, Any]) -> bytes:
    header = {
        "codec": codec.spec,
        "name": codec.name,
        "shape": list(img.shape),
        "dtype": img.dtype.str,
        "lens": [len(b) for b in bodies],
        "meta": meta,
    }
    h = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<I", len(h)), h, *bodies])


def _unpack(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    data = bytes(data)
    if len(data) < 8 or data[:4] != MAGIC:
        raise CodecError("not a rawsigma codec payload (bad magic)")
    (n,) = struct.unpack("<I", data[4:8])
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError:
        raise InputFileError("rawsigma codec payload: corrupt header") from None
    bodies, pos = [], 8 + n
    for ln in header["lens"]:
        bodies.append(data[pos : pos + ln])
        pos += ln
    if pos != len(data):
        raise InputFileError(f"rawsigma codec payload: {len(data) - pos:+d} bytes of trailing data")
    return header, bodies


# ----------------------------------------------------------------------------- search
def search_knob(
    size_of: Callable[[float], int],
    target: float,
    lo: float,
    hi: float,
    *,
    integer: bool,
    increasing: bool,
    log: bool = False,
    max_iter: int = 14,
    rel_tol: float = 0.02,
) -> tuple[float, int]:
    """Find the knob value whose encoded size is closest to ``target`` bytes.

    Bisection (integer knobs) or Illinois regula falsi on ``log(size)`` (continuous
    knobs) over a monotone (approximately) size-versus-knob curve; the result is the
    evaluated knob with the smallest ``|log(size / target)|``.

    Parameters
    ----------
    size_of : callable
        Knob → payload size in bytes.
    target : float
        Wanted size, bytes.
    lo, hi : float
        Knob range.
    integer : bool
        Integer knob (e.g. JPEG quality).
    increasing : bool
        True if the size grows with the knob.
    log : bool
        Bisect in log space (positive knobs spanning decades).

    Returns
    -------
    knob, size
    """
    tried: dict[float, int] = {}

    def ev(k: float) -> int:
        k = int(round(k)) if integer else float(k)
        if k not in tried:
            tried[k] = size_of(k)
        return tried[k]

    if integer:
        a, b = lo, hi
        for _ in range(max_iter):
            if b - a <= 1:
                break
            mid = int(round((a + b) / 2))
            s = ev(mid)
            if abs(math.log(s / target)) < rel_tol:
                break
            if (s > target) == increasing:
                b = mid
            else:
                a = mid
        for k in (a, b):
            ev(k)
    else:
        # Illinois regula falsi on f(t) = log(size / target), t = knob or log(knob):
        # log-size is smooth in these knobs, so this needs ~5 encodes, not ~14.
        tr = math.log if log else (lambda v: v)
        inv = math.exp if log else (lambda v: v)
        ta, tb = tr(lo), tr(hi)
        fa = math.log(ev(inv(ta)) / target)
        fb = math.log(ev(inv(tb)) / target)
        for _ in range(max_iter):
            if fa * fb > 0 or min(abs(fa), abs(fb)) < rel_tol:
                break  # target outside the reachable range, or already hit
            t = (ta * fb - tb * fa) / (fb - fa)
            # safeguard: stay off the bracket ends (plateaus make pure regula falsi crawl)
            lo_t, hi_t = min(ta, tb), max(ta, tb)
            t = min(max(t, lo_t + 0.15 * (hi_t - lo_t)), hi_t - 0.15 * (hi_t - lo_t))
            ft = math.log(ev(inv(t)) / target)
            if abs(ft) < rel_tol:
                break
            if ft * fb < 0:
                ta, fa = tb, fb
            else:
                fa /= 2  # Illinois: the retained end keeps a halved weight
            tb, fb = t, ft
    best = min(tried, key=lambda k: abs(math.log(tried[k] / target)))
    return best, tried[best]


# ----------------------------------------------------------------------------- registry
CodecFactory = Callable[[dict[str, str], "CameraProfile | None"], Codec]
_REGISTRY: dict[str, tuple[CodecFactory, str]] = {}
_ALIASES: dict[str, str] = {}


def register_codec(
    name: str,
    factory: CodecFactory | type[Codec],
    *,
    description: str = "",
    aliases: Sequence[str] = (),
    replace: bool = False,
) -> None:
    """Make a codec available to :func:`parse_codecs` under ``name``.

    Parameters
    ----------
    name : str
        Lower-case name used in specs (letters, digits, ``_``, ``-``).
    factory : callable or Codec subclass
        ``factory(params: dict[str, str], profile) -> Codec``; a Codec subclass
        uses its ``from_params``. Import heavy dependencies inside the factory.
    description : str
        One line for listings (``rawsigma codecs``).
    aliases : sequence of str
        Other accepted names.
    replace : bool
        Allow replacing an existing registration.
    """
    key = name.lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_\-]*", key):
        raise ValueError(f"register_codec: invalid codec name {name!r}")
    if key in _REGISTRY and not replace:
        raise ValueError(f"register_codec: codec {key!r} already registered")
    if isinstance(factory, type) and issubclass(factory, Codec):
        desc = description or (factory.__doc__ or "").strip().splitlines()[0]
        fac: CodecFactory = factory.from_params
    else:
        desc = description
        fac = factory  # type: ignore[assignment]
    _REGISTRY[key] = (fac, desc)
    for a in aliases:
        _ALIASES[a.lower()] = key
