"""Parameter domains checked at the CLI edge, with the valid range in the message.

Typer's ``min=``/``max=`` catch most out-of-range numbers; these callbacks add what
they miss (``nan``/``inf``, open intervals, choices spelled case-insensitively) and
give every message the same shape: ``Invalid value for '--x': 0 is outside (0, 100]``.
A `typer.BadParameter` is a usage error: click prints it with the usage line and
exits with status 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import typer

__all__ = [
    "MIN_VIEWS_FRACTION",
    "check_codecs",
    "check_score_options",
    "choice",
    "codec_list",
    "codec_option",
    "options_error",
    "number",
    "validate",
    "view_floor",
]

_HINT = "'--codecs'"


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return (
        f"{left}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}{right}"
    )


def number(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    what: str = "",
) -> Callable[[Any], Any]:
    """Callback accepting a finite number in the interval (``None`` passes through).

    Parameters
    ----------
    lo, hi : float, optional
        Bounds (None: unbounded).
    lo_open, hi_open : bool
        Exclude the bound itself.
    what : str
        Extra words after the range in the message (units, meaning).
    """

    def check(value: Any) -> Any:
        if value is None:
            return value
        v = float(value)
        ok = math.isfinite(v)
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
        if not ok:
            rng = _interval(lo, hi, lo_open, hi_open)
            raise typer.BadParameter(f"{value} is outside {rng}" + (f" ({what})" if what else ""))
        return value

    return check


def choice(options: Sequence[str]) -> Callable[[Any], Any]:
    """Callback accepting one of ``options`` (case-insensitive; returns the canonical one)."""
    canon = {o.lower(): o for o in options}

    def check(value: Any) -> Any:
        if value is None:
            return value
        key = str(value).strip().lower()
        if key not in canon:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(options)}")
        return canon[key]

    return check


def codec_list(value: str) -> list[str]:
    """Split a ``--codecs`` value into one spec per codec, checking names and parameters.

    ``key=value`` tokens continue the previous codec (``noise:step=2,dither=1`` is one
    codec). What needs the camera profile is checked later, once it is loaded (see
    :func:`rawsigma.analysis.codecs.registry.parse_codecs`).

    Raises
    ------
    typer.BadParameter
        Empty list, a token that is not a codec spec, an unknown codec name (the
        message lists the valid ones), a bad parameter (the message gives its range).
    """
    from rawsigma.analysis.codecs.registry import (
        CodecError,
        available_codecs,
        check_codec_specs,
        split_codec_specs,
    )

    try:
        specs = split_codec_specs(value)
        if not specs:
            raise CodecError("no codec given (e.g. --codecs 8bit,jpeg@10,noise:step=2)")
        known = set(available_codecs()) | {"replica"}
        for s in specs:
            name = s.split("@")[0].split(":")[0]
            if name not in known and not _alias(name):
                raise CodecError(
                    f"unknown codec {name!r}; valid codecs: {', '.join(sorted(known))}"
                )
        check_codec_specs(specs)
    except CodecError as exc:
        raise typer.BadParameter(str(exc), param_hint=_HINT) from None
    return specs


def codec_option(value: str | None) -> str | None:
    """Typer callback of every ``--codecs`` option: the whole list is checked at parse time.

    A bad spec is then a usage error (exit 2) before any file is read.
    """
    if value is not None:
        codec_list(value)
    return value


def _alias(name: str) -> bool:
    from rawsigma.analysis.codecs import registry as codecs

    return name in getattr(codecs, "_ALIASES", {})


def check_codecs(specs: list[str], profile: Any, image: Any = None) -> None:
    """Build every codec once with the loaded profile: bad parameters fail here, early.

    Raises
    ------
    typer.BadParameter
        Out-of-range or unknown parameters (the message gives the valid range), an
        unavailable codec library.
    """
    from rawsigma.analysis.codecs.registry import CodecError, parse_codecs

    for s in specs:
        if s == "replica":
            continue
        try:
            codecs = parse_codecs(s, profile=profile)
        except CodecError as exc:
            raise typer.BadParameter(str(exc), param_hint=_HINT) from None
        _warn_fine_step(codecs, profile, image)


def _warn_fine_step(codecs: list[Any], profile: Any, image: Any = None) -> None:
    """One warning line per noise codec whose step is too fine to pay (for ``image``)."""
    for c in codecs:
        inner = getattr(c, "inner", None)
        if inner is None:  # not a noise codec: its package need not be imported
            continue
        from rawsigma.analysis.noisecodec.codec import NoiseCodec, fine_step_warning

        if isinstance(inner, NoiseCodec) and (w := fine_step_warning(profile, inner.step, image)):
            typer.echo(f"warning: {w}", err=True)


def validate(option: str, value: Any, check: Callable[[Any], Any]) -> Any:
    """Run a `number`/`choice` check on a value inside a command body.

    The `typer.BadParameter` then names ``option`` like a callback's would.
    """
    try:
        return check(value)
    except typer.BadParameter as exc:
        raise typer.BadParameter(exc.message, param_hint=f"'{option}'") from None


def check_scheduler(scheduler: str | None) -> None:
    """Refuse a ``--scheduler`` that is neither ``local`` nor a dask scheduler address.

    Raises
    ------
    UsageError
        E.g. ``bogus`` (no port): before, an "internal error" once the volume was read.
    """
    if scheduler is None or scheduler == "local":
        return
    from rawsigma.errors import UsageError

    try:
        from distributed.comm.addressing import parse_address, parse_host_port
    except ImportError:
        return  # `connect` says which extra is missing
    try:
        kind, loc = parse_address(scheduler)
        if kind != "inproc":
            parse_host_port(loc)
    except ValueError as exc:
        raise UsageError(
            f"--scheduler {scheduler!r}: not 'local' or a scheduler address such as "
            f"tcp://host:8786 ({exc})"
        ) from None


def check_profile_choice(profile: Any, estimate_profile: bool) -> None:
    """Exactly one of ``--profile`` and ``--estimate-profile`` (`UsageError`, exit 2)."""
    from rawsigma.errors import UsageError

    if profile is not None and estimate_profile:
        raise UsageError(
            "--profile and --estimate-profile exclude each other: give the calibration "
            "(--profile), or --estimate-profile when none exists"
        )
    if profile is None and not estimate_profile:
        raise UsageError("give --profile P.h5, or --estimate-profile when no calibration exists")


def estimate_advice(
    text: str, image: Any, own: tuple[str, ...] = (), frame: int | None = None
) -> str:
    """``text`` (an estimate's error or warning) with a pointer to ``profile estimate``.

    The estimator advises ``--offset``, ``--read-noise``, ``--gain`` and ``--camera``: options of
    ``rawsigma profile estimate``, not of ``score``/``tomo score --estimate-profile``
    (``own``: those the command has). ``frame``: the one frame of ``image`` the command
    used (``score --index``), given as ``--frame``.
    """
    flags = ("--offset", "--read-noise", "--gain", "--camera")
    missing = [f for f in flags if f in text and f not in own]
    if not missing:
        return text
    sel = "" if frame is None else f" --frame {frame}"
    return (
        f"{text} ({', '.join(missing)}: options of `rawsigma profile estimate {image}{sel} --out "
        "P.h5`; then pass --profile P.h5)"
    )


def advise_estimate_warning(
    prof: Any, image: Any, own: tuple[str, ...] = (), frame: int | None = None
) -> None:
    """Add `estimate_advice`'s pointer to the estimated profile's warning.

    The warning is shown in the terminal and in the report; ``own`` and ``frame`` as
    in `estimate_advice`.
    """
    est = prof.provenance.get("estimate")
    if isinstance(est, dict) and est.get("warning"):
        est["warning"] = estimate_advice(str(est["warning"]), image, own, frame)


def check_score_options(index: Any, centre: Any, max_distance: Any, min_size: Any) -> None:
    """Ranges of ``score`` options declared without typer bounds."""
    validate("--index", index, number(0, what="0-based frame index"))
    validate("--centre", centre, choice(("observed", "denoised")))
    validate("--max-distance", max_distance, number(0, 1000, lo_open=True, what="pixels"))
    validate("--min-size", min_size, number(0, what="pixels"))


def options_error(exc: ValueError, what: str = "options", as_flags: bool = True) -> Exception:
    """One-line usage error for a plan that refused the options.

    A pydantic ``ValidationError`` (a ``ValueError``) prints several lines and a URL;
    here each failed field becomes ``--field-name: message`` (``as_flags``: the
    plan's field names are the option names) or ``field_name: message``.
    """
    from rawsigma.errors import UsageError

    errors = getattr(exc, "errors", None)
    parts = []
    if callable(errors):
        for e in errors():
            loc = ".".join(str(x) for x in e.get("loc", ()))
            msg = str(e.get("msg", "")).removeprefix("Value error, ")
            name = f"--{loc.replace('_', '-')}" if as_flags else loc
            parts.append(f"{name}: {msg}" if loc else msg)
    text = "; ".join(parts) or " ".join(str(exc).split())
    return UsageError(f"invalid {what}: {text}")


#: below this fraction of the π/2 · n_det views FBP needs (Crowther) the reconstruction
#: is mostly streaks: its plaques mean nothing, and a full-size run takes hours
MIN_VIEWS_FRACTION = 0.1


def view_floor(n_det: int) -> tuple[float, int]:
    """Views FBP needs for ``n_det`` detector pixels (π/2·n_det), and the floor.

    Below the floor (:data:`MIN_VIEWS_FRACTION` of the need) the reconstruction is
    mostly streaks.
    """
    need = math.pi / 2 * n_det
    return need, math.ceil(MIN_VIEWS_FRACTION * need)
