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

import re
from typing import TYPE_CHECKING

# builtin registers the built-in codecs on import; base holds the mechanism
from rawsigma.analysis.codecs.base import (
    _ALIASES,
    _REGISTRY,
    MAGIC,
    Codec,
    CodecError,
    CodecNeedsProfileError,
    CodecUnavailableError,
    Param,
    compression_ratio,
    register_codec,
    search_knob,
)
from rawsigma.analysis.codecs.builtin import library_available

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rawsigma.calib.profile import CameraProfile

__all__ = [
    "MAGIC",
    "Codec",
    "CodecError",
    "CodecNeedsProfileError",
    "CodecUnavailableError",
    "Param",
    "available_codecs",
    "check_codec_specs",
    "codec_available",
    "compression_ratio",
    "parse_codecs",
    "register_codec",
    "search_knob",
    "split_codec_specs",
]


def available_codecs() -> dict[str, str]:
    """Registered codec names and their one-line descriptions."""
    return {k: d for k, (_, d) in sorted(_REGISTRY.items())}


def codec_available(name: str) -> bool:
    """True if ``name`` is registered and its library can encode here."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY:
        return False
    return library_available(key)


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


def check_codec_specs(spec: str | Sequence[str]) -> list[str]:
    """Split a codec list and check every codec's name and parameters, no profile needed.

    What only the camera profile can tell (e.g. whether ``noise`` can bound its error
    with this profile) is checked later, by :func:`parse_codecs` with the profile.
    ``replica`` (the held-out raw-equivalent control of a scoring run) is accepted.

    Parameters
    ----------
    spec : str or sequence of str
        Comma-separated specs, e.g. ``"8bit,jpeg@10,noise:step=2,dither=1"``.

    Returns
    -------
    list of str
        One spec per codec, as :func:`split_codec_specs` gives them.

    Raises
    ------
    CodecError
        Empty list, bad syntax, unknown codec (the message lists the valid names) or
        a bad parameter (the message gives its valid range or choices).
    """
    specs = split_codec_specs(spec)
    if not specs:
        raise CodecError(f"no codec given; {_valid_names()}")
    for s in specs:
        if s == "replica":
            continue
        try:
            parse_codecs(s)
        except CodecNeedsProfileError:
            pass
        except CodecUnavailableError:
            pass  # reported where the codec is built for real, with the profile
    return specs


def _valid_names() -> str:
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
