"""Registry of named, parameterised image codecs (encode → bytes → decode).

A codec is written as a spec string, several separated by commas::

    8bit,jpeg@10,jpeg@100,jpegxl@20,jpeg2000@10,jpegls:near=2,lerc:maxerr=2,zstd,noise:step=2

``name@R`` asks for a compression ratio ``R`` (against the raw 16-bit size) and
lets the codec search its quality knob by bisection; ``name:key=value,key=value``
sets parameters (further ``key=value`` items after a comma belong to the codec
before them, so ``noise:step=2,dither=1`` is one codec). :func:`parse_codecs`
turns a spec string into :class:`Codec` objects; ``Codec.spec`` is the canonical
string (defaults omitted), stable enough to key results on.

Every codec's payload is a small self-describing container (magic ``RSC1``,
a JSON header with codec spec, shape, dtype and what the codec found, e.g. the
JPEG quality, then the codec's bytes); :func:`compression_ratio` counts the whole
payload and always divides the raw **16-bit** size ``H·W·2`` bytes (per plane) by
it, whatever the image's dtype, as in the paper.

Built-in codecs live in :mod:`rawsigma.analysis.codecs.builtin`; the
noise-calibrated codec (``noise``) is imported lazily from
:mod:`rawsigma.analysis.noisecodec` and needs a camera profile.
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
    "Codec",
    "CodecError",
    "CodecUnavailableError",
    "Param",
    "available_codecs",
    "codec_available",
    "compression_ratio",
    "parse_codecs",
    "split_codec_specs",
    "register_codec",
]

MAGIC = b"RSC1"


class CodecError(RawsigmaError, ValueError):
    """Bad codec spec (unknown name, bad parameter) or a payload that is not ours."""


class CodecUnavailableError(CodecError):
    """The codec's library (an imagecodecs encoder) is not available here."""


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
        return False

    @property
    def description(self) -> str:
        base = self._describe()
        info = self.last_info
        if info:
            found = ", ".join(f"{k} {v}" for k, v in info.items() if k != "ratio")
            base += f" [last image: ratio {info.get('ratio', float('nan')):.3g}:1"
            base += f", {found}]" if found else "]"
        return base

    def _describe(self) -> str:
        return self.spec

    def __repr__(self) -> str:
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


def available_codecs() -> dict[str, str]:
    """Registered codec names and their one-line descriptions."""
    _ensure_builtins()
    return {k: d for k, (_, d) in sorted(_REGISTRY.items())}


def codec_available(name: str) -> bool:
    """True if ``name`` is registered and its library can encode here."""
    _ensure_builtins()
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY:
        return False
    from rawsigma.analysis.codecs.builtin import library_available

    return library_available(key)


def _ensure_builtins() -> None:
    if "zstd" not in _REGISTRY:
        from rawsigma.analysis.codecs import builtin as codecs_builtin  # noqa: F401  (registers)


_TOKEN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_\-]*)(?:@(?P<ratio>[^:]*))?(?::(?P<rest>.*))?$"
)
_CONT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")


def _split(spec: str | Sequence[str]) -> list[tuple[str, str | None, list[str]]]:
    text = spec if isinstance(spec, str) else ",".join(spec)
    items: list[tuple[str, str | None, list[str]]] = []
    for raw in re.split(r"[,;]", text):
        tok = raw.strip()
        if not tok:
            continue
        if _CONT.match(tok) and ":" not in tok and "@" not in tok:
            if not items:
                raise CodecError(f"codec spec {text!r}: parameter {tok!r} before any codec name")
            items[-1][2].append(tok)
            continue
        m = _TOKEN.match(tok)
        if not m:
            raise CodecError(f"codec spec {text!r}: cannot parse {tok!r}; {_valid_names()}")
        kv = [s for s in (m["rest"] or "").split(":") if s.strip()]
        items.append((m["name"].lower(), m["ratio"], kv))
    return items


def split_codec_specs(spec: str | Sequence[str]) -> list[str]:
    """Split a comma-separated codec list into one spec string per codec.

    A token with ``=`` but no ``:`` or ``@`` continues the previous codec's
    parameters, so ``"8bit,noise:step=2,dither=1"`` gives
    ``["8bit", "noise:step=2,dither=1"]`` (not three codecs). Only the syntax is
    checked here; :func:`parse_codecs` checks names and parameters.

    Raises
    ------
    CodecError
        A parameter before any codec name, or a token that is not a codec spec.
    """
    out = []
    for name, ratio, kvs in _split(spec):
        text = name + (f"@{ratio}" if ratio is not None else "")
        if kvs:
            text += ":" + ",".join(kv.strip() for kv in kvs)
        out.append(text)
    return out


def _valid_names() -> str:
    _ensure_builtins()
    return "valid codecs: " + ", ".join(sorted(_REGISTRY))


def parse_codecs(spec: str | Sequence[str], profile: CameraProfile | None = None) -> list[Codec]:
    """Parse a codec spec string into codec objects.

    Parameters
    ----------
    spec : str or sequence of str
        Comma-separated specs, e.g. ``"8bit,jpeg@10,jpegls:near=2,noise:step=2,dither=1"``.
    profile : CameraProfile, optional
        Needed by profile-based codecs (``noise``).

    Returns
    -------
    list of Codec

    Raises
    ------
    CodecError (a ValueError)
        Unknown codec (the message lists the valid names), bad or unknown
        parameter (the message lists the codec's parameters), ``@R`` on a codec
        without a ratio search, a profile-based codec without a profile, or an
        unavailable library (:class:`CodecUnavailableError`).
    """
    _ensure_builtins()
    out: list[Codec] = []
    for name, ratio, kvs in _split(spec):
        key = _ALIASES.get(name, name)
        if key not in _REGISTRY:
            raise CodecError(f"unknown codec {name!r}; {_valid_names()}")
        params: dict[str, str] = {}
        for kv in kvs:
            if "=" not in kv:
                raise CodecError(f"codec {name!r}: parameter {kv!r} is not key=value")
            k, v = (s.strip() for s in kv.split("=", 1))
            if k.lower() in params:
                raise CodecError(f"codec {name!r}: parameter {k!r} given twice")
            params[k.lower()] = v
        if ratio is not None:
            if not ratio.strip():
                raise CodecError(f"codec {name!r}: empty ratio after '@'")
            params["@"] = ratio.strip()
        factory, _ = _REGISTRY[key]
        out.append(factory(params, profile))
    if not out:
        raise CodecError(f"empty codec spec {spec!r}; {_valid_names()}")
    return out
