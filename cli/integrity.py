"""Checks that keep ``compress`` honest: the profile it uses and the file it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "LOSSY_NOTE",
    "at_exposure",
    "check_profile_defects",
    "lossy_derived",
    "n_frames",
    "verify_written",
]


#: What `compress` and `score` say about an input `lossy_derived` recognises.
LOSSY_NOTE = (
    "{image} was decoded from the noise codec (lossy-derived), not raw frames: {consequence}"
)


def lossy_derived(path: str | Path) -> bool:
    """True for frames that went through the noise codec already.

    A TIFF that `decompress` wrote (description ``rawsigma.lossy_derived``), or a zarr
    store coded with ``rawsigma_noise`` (it decodes transparently, so `imread` reads it
    as frames). ``FILE:NAME`` specs are looked up by their file.
    """
    import json

    p = Path(str(path))
    if not p.exists() and ":" in str(path):
        p = Path(str(path).rsplit(":", 1)[0])
    if p.is_dir():
        metas = [*p.rglob("zarr.json"), *p.rglob(".zarray")]
        return any("rawsigma_noise" in m.read_text(errors="replace") for m in metas[:64])
    if p.suffix.lower() not in (".tif", ".tiff"):
        return False
    import tifffile

    try:
        with tifffile.TiffFile(p) as tf:
            rec = json.loads(getattr(tf.pages[0], "description", "") or "{}")
    except (OSError, ValueError, IndexError, tifffile.TiffFileError):
        return False
    own = rec.get("rawsigma") if isinstance(rec, dict) else None
    # other writers (tomo simulate before session 10) stored a string under "rawsigma"
    return isinstance(own, dict) and bool(own.get("lossy_derived"))


def at_exposure(prof: Any, exposure_ms: float | None, name: str | Path) -> Any:
    """``prof`` at ``--exposure`` (ms), saying on stderr when that changes nothing.

    A profile without a dark current (calibrated without ``--dark-exposures``, or
    estimated) is the same at every exposure: the option was silently a no-op before.
    """
    if exposure_ms is None:
        return prof
    if prof.dark_current is None:
        import typer

        typer.echo(
            f"warning: --exposure {exposure_ms:g} ms has no effect: profile {name} has no "
            "dark current (calibrate with --dark-exposures); its offset and noise are used "
            "as they are",
            err=True,
        )
        return prof
    return prof.at_exposure(exposure_ms / 1000.0)


def n_frames(img: Any) -> int:
    """Frames in an ``(H, W)`` image (1) or an ``(N, H, W)`` stack (N)."""
    return int(img.shape[0]) if img.ndim == 3 else 1


def check_profile_defects(prof: Any, name: str | Path) -> None:
    """Refuse a mostly defective profile (> 50 % of pixels), warn on stderr above 5 %.

    Raises
    ------
    rawsigma.errors.ProfileError
        See `rawsigma.calib.profile_check.check_defect_fraction`.
    """
    from rawsigma.calib.profile_check import check_defect_fraction
    from rich.console import Console

    warn = check_defect_fraction(prof, str(name))
    if warn:
        Console(stderr=True).print(
            f"[bold yellow]warning:[/] {warn}", highlight=False, soft_wrap=True
        )


def verify_written(
    out: Path, fmt: str, img: Any, codec: Any = None, meta: dict | None = None
) -> None:
    """Decode the file just written and check what ``compress`` promises.

    The decoded frames must be uint16, of the input's shape, none lost (not masked),
    every pixel within the codec's documented error bound of the input
    (`rawsigma.analysis.noisecodec.codec.error_ratio`; skipped when ``codec`` is None),
    and the container must give back the ``meta`` (axes, voxel size) it was given. A
    file that fails is removed (an output is complete and correct, or absent).

    Raises
    ------
    rawsigma.errors.RawsigmaError
        The file is unreadable, or holds other frames or metadata than those written.
    """
    from rawsigma.errors import RawsigmaError

    try:
        problem = _written_problem(out, fmt, img, codec, meta)
    except RawsigmaError as exc:
        problem = f"unreadable ({exc})"
    if problem is not None:
        _remove(out)
        raise RawsigmaError(
            f"{out}: written file failed verification: {n_frames(img)} frame(s) of shape "
            f"{img.shape} in, {problem}; removed it"
        )


#: float32 rounding allowed on `error_ratio` before a written file is refused
_RATIO_SLACK = 1e-5


def _written_problem(out: Path, fmt: str, img: Any, codec: Any, meta: dict | None) -> str | None:
    """What `verify_written` finds wrong with ``out`` (None: nothing)."""
    import numpy as np
    from rawsigma.analysis.noisecodec.codec import error_ratio
    from rawsigma.analysis.noisecodec.containers import check_meta, read_compressed, read_meta

    dec = read_compressed(out, fmt)
    found = f"{n_frames(dec)} frame(s), shape {dec.shape}, {dec.dtype}"
    if isinstance(dec, np.ma.MaskedArray) or dec.shape != img.shape or dec.dtype != np.uint16:
        return found + " out"
    # the bound is evaluated in float32 (`error_ratio`): 1e-5 of it (below 0.01 ADU at
    # the bounds of EMCCD gains, where hrev measured 0.9999) is rounding, not a fault
    if codec is not None and (worst := error_ratio(codec, img, dec)) > 1.0 + _RATIO_SLACK:
        return f"decoded pixels up to {worst:.3g}x the codec's error bound from the input"
    want = check_meta(meta, img.shape) if fmt != "rsnc" else {}
    if (got := read_meta(out, fmt)) != want:
        return f"metadata {got or 'none'} read back, {want or 'none'} written"
    return None


def _remove(out: Path) -> None:
    import shutil

    if out.is_dir():
        shutil.rmtree(out, ignore_errors=True)
    else:
        out.unlink(missing_ok=True)
