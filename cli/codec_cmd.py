"""``rawsigma compress`` / ``rawsigma decompress``: the noise-calibrated codec on files."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from .console import outputs_complete, user_errors
from .integrity import (
    at_exposure,
    check_profile_defects,
    lossy_derived,
    n_frames,
    verify_written,
)
from .params import choice, number


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """`console.user_errors`, bad parameters (the codec's ValueError) included."""
    from rawsigma.errors import RawsigmaError

    with user_errors():
        try:
            yield
        except RawsigmaError:
            raise  # already typed (a UsageError exits 2, input errors 1)
        except ValueError as exc:
            raise RawsigmaError(str(exc)) from None


@contextlib.contextmanager
def _interruptible(out: Path) -> Iterator[None]:
    """Ctrl-C: remove what the writer left, say what is on disk, exit 130."""
    from .console import kept_after_interrupt, raise_swallowed_interrupt, snapshot

    before = snapshot(out)
    try:
        raise_swallowed_interrupt()
        yield
        raise_swallowed_interrupt()
    except KeyboardInterrupt:
        import time

        from rawsigma.fileio import clean_stale_temporaries, output_lock

        from .console import print_interrupted, quiet_after_interrupt

        quiet_after_interrupt()  # zarr's event-loop thread reports its cancelled tasks
        with contextlib.suppress(Exception), output_lock(out):
            for _ in range(20):  # zarr's loop thread may still be writing chunks
                if not clean_stale_temporaries(out):
                    break
                time.sleep(0.05)
        nothing = f"{out} unchanged" if before[out] is not None else f"nothing written to {out}"
        raise typer.Exit(print_interrupted(kept_after_interrupt(before, nothing))) from None


#: Output suffixes of each container, and of the decoded frames.
_CONTAINER_SUFFIXES = {
    "rsnc": (".rsnc",),
    "tiff": (".tif", ".tiff"),
    "h5": (".h5", ".hdf5", ".hdf"),
    "zarr": (".zarr",),
}
_DECODED_SUFFIXES = (".tif", ".tiff", ".npy")


def _out_container(out: Path, fmt: str | None) -> str:
    """The container to write: ``--format``, else the one OUT's name says.

    A name that says another container (or none) is refused rather than written
    under a wrong name.
    """
    from rawsigma.errors import UsageError

    name = str(out).lower().rstrip("/")
    named = next((f for f, sfx in _CONTAINER_SUFFIXES.items() if name.endswith(sfx)), None)
    if fmt is None and named is None:
        raise UsageError(
            f"--out {out}: unknown container; name it .rsnc, .tif, .h5 or .zarr (or give --format)"
        )
    if fmt is not None and named is not None and named != fmt:
        raise UsageError(f"--out {out} names a {named} file but --format is {fmt}")
    return fmt or str(named)


def _read_raw(path: Path):  # type: ignore[no-untyped-def]
    """Raw uint16 frames ``(H, W)`` or ``(N, H, W)`` (any format `rawsigma.imread` reads)."""
    from rawsigma.errors import InputFileError
    from rawsigma.imread import imread

    img, info = imread(path, what="raw frame")
    if img.dtype.name != "uint16":
        raise InputFileError(
            f"{path}: {img.dtype} pixels ({info.layout}); the noise codec takes raw uint16 "
            "camera frames as recorded"
        )
    return img


def _volume_meta(image: Path, img: Any) -> dict[str, Any]:
    """Axes and voxel size of a (Z, Y, X) volume the input declares, for the container.

    A stack of frames (no ``Z`` axis declared) has none: its frames stay frames.
    """
    from rawsigma.errors import RawsigmaError
    from rawsigma.volread import declared_axes, open_volume

    if img.ndim != 3 or "Z" not in declared_axes(image):
        return {}
    try:
        _, info = open_volume(image)
    except RawsigmaError:
        return {"axes": "ZYX"}
    return {"axes": "ZYX", **({"spacing_zyx": list(info.spacing)} if info.spacing else {})}


def _describe_meta(meta: dict[str, Any]) -> str:
    """``axes ZYX, voxel 1.75 x 0.8 x 0.8 µm`` (empty without metadata)."""
    if not meta:
        return ""
    sp = meta.get("spacing_zyx")
    voxel = f", voxel {' x '.join(f'{v:g}' for v in sp)} µm" if sp else ""
    return f"axes {meta['axes']}{voxel}"


def _warm_up(params) -> None:  # type: ignore[no-untyped-def]
    """Compile the codec's kernels if this machine never did, saying so on stderr."""
    from rawsigma.analysis.noisecodec.warmup import warm_up

    def say(stage: str, done: int, total: int) -> None:
        if done == 0:
            typer.echo(stage, err=True)

    seconds = warm_up(params, say)
    if seconds:
        typer.echo(f"  compiled in {seconds:.0f} s (cached for the next runs)", err=True)


def compress(
    image: Path = typer.Argument(
        ...,
        help="Raw uint16 frame(s), (H, W) or (N, H, W): TIFF/OME-TIFF, HDF5 "
        "(FILE.h5[:DATASET]), zarr or .npy.",
    ),
    profile: Path = typer.Option(..., "--profile", "-p", help="Camera profile (HDF5)."),
    step: float = typer.Option(
        2.0,
        "--step",
        help="Quantisation step in units of the noise sigma, 0.01 to 2.5 (unbiased up to 2.5).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (.rsnc, .tif, .h5, .zarr)."),
    fmt: str = typer.Option(
        None,
        "--format",
        callback=choice(("rsnc", "tiff", "h5", "zarr")),
        help="Container: rsnc, tiff, h5 or zarr (default: from --out).",
    ),
    dither: bool = typer.Option(False, "--dither", help="Subtractive dither (seeded)."),
    max_error: float = typer.Option(
        None,
        "--max-error",
        callback=number(0, 1000, lo_open=True, what="units of the noise sigma"),
        help="Hard bound |decoded - raw| <= K sigma per pixel (0 < K <= 1000).",
    ),
    maps: str = typer.Option(
        "global",
        "--maps",
        callback=choice(("global", "pixel")),
        help="global: global gain/offset (best for few frames); pixel: per-pixel maps, "
        "stored once per file (pays off for long stacks).",
    ),
    effort: str = typer.Option(
        "pyramid",
        "--effort",
        callback=choice(("pyramid", "best", "fast")),
        help="pyramid: hierarchical prediction, highest ratio and fastest (default); best, "
        "fast: the causal back ends of format 2 (slower; fast has ~15 % lower ratio). "
        "Same fidelity for all.",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Dither seed (>= 0)."),
    exposure: float | None = typer.Option(
        None,
        "--exposure",
        callback=number(0, None, what="ms"),
        help="Image exposure, ms (profile offset + dark current x exposure).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT."),
) -> None:
    """Compress raw frames within the camera noise (noise-calibrated codec)."""
    with _user_errors():
        from rawsigma.analysis.noisecodec import NoiseCodec
        from rawsigma.analysis.noisecodec.codec import check_step, fine_step_warning
        from rawsigma.analysis.noisecodec.containers import FORMATS, write_compressed
        from rawsigma.calib.profile import CameraProfile
        from rawsigma.errors import ImageMismatchError, UsageError
        from rawsigma.fileio import check_not_input, check_output, output_lock

        try:
            check_step(step, "--step")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        zarr_out = fmt == "zarr" or (fmt is None and str(out).lower().endswith(".zarr"))
        check_output(out, force, allow_dir=zarr_out)  # `-`, a directory: said first
        check_not_input(out, image, profile)
        fmt = _out_container(out, fmt)
        if fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        prof = at_exposure(CameraProfile.load(profile), exposure, profile)
        img = _read_raw(image)
        if lossy_derived(image):
            typer.echo(
                f"warning: {image} was decoded from the noise codec (lossy-derived), not raw "
                "frames: compressing it again adds a second quantisation",
                err=True,
            )
        if img.shape[-2:] != tuple(prof.shape):
            raise ImageMismatchError(
                f"{image}: frame shape {img.shape[-2:]} does not match profile {profile} "
                f"shape {tuple(prof.shape)}"
            )
        check_profile_defects(prof, profile)
        codec = NoiseCodec(
            prof,
            step=step,
            dither=dither,
            max_error=max_error,
            maps=maps,
            seed=seed,
            effort=effort,
        )
        codec._check(img)
        if (fine := fine_step_warning(prof, codec.step, img)) is not None:
            typer.echo(f"warning: {fine}", err=True)
        meta = _volume_meta(image, img)
        if meta and fmt == "rsnc":
            typer.echo(
                f"warning: a .rsnc stream keeps no image metadata: {image}'s "
                f"{_describe_meta(meta)} will not be in {out} (use .tif, .h5 or .zarr)",
                err=True,
            )
            meta = {}
        _warm_up(codec.params)
        check_output(out, force, need_bytes=img.nbytes, allow_dir=fmt == "zarr")
        with _interruptible(out), output_lock(out):  # Ctrl-C while verifying: said so
            path = write_compressed(out, img, codec, fmt=fmt, force=force, meta=meta)
            verify_written(path, fmt, img, codec, meta)
        size = (
            sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            if path.is_dir()
            else path.stat().st_size
        )
        outputs_complete()
        n = f"{n_frames(img)} frame" + ("s" if n_frames(img) != 1 else "")
        typer.echo(
            f"{out}: {n} {img.shape[-2:]}, {codec.spec} ({fmt}), {img.size * 2 / size:.2f}:1 "
            f"against raw 16-bit, profile {prof.profile_id}"
            + (f"; {_describe_meta(meta)} kept" if meta else "")
        )


def decompress(
    data: Path = typer.Argument(..., help="Noise-codec file (.rsnc, .tif, .h5, .zarr)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output uint16 TIFF (or .npy)."),
    fmt: str = typer.Option(None, "--format", help="Container (default: from the name)."),
    allow_missing: bool = typer.Option(
        False,
        "--allow-missing",
        help="Decode what is intact when frames/chunks are missing or corrupt: those are "
        "written as 0 and listed in a mask file OUT.mask.tif (1 = lost), with a warning. "
        "Without it, a lost frame or chunk is an error.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT."),
) -> None:
    """Decode a noise-codec file back to uint16 frames (no profile needed).

    The output TIFF records in its description that its values are lossy-derived
    (decoded from the noise codec), with the codec's source file.
    """
    with _user_errors():
        import warnings

        import numpy as np
        from rawsigma.analysis.noisecodec import StreamParams, warmup
        from rawsigma.analysis.noisecodec.containers import read_compressed, read_meta
        from rawsigma.errors import UsageError
        from rawsigma.fileio import atomic_write, check_not_input, check_output, output_lock

        check_output(out, force)
        if not str(out).lower().endswith(_DECODED_SUFFIXES):
            raise UsageError(f"--out {out}: decoded frames are written as .tif or .npy")
        from rawsigma.analysis.noisecodec.containers import FORMATS

        if fmt is not None and fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        check_not_input(out, data)
        mpath = _mask_path(out)
        if allow_missing:
            check_output(mpath, force)
            check_not_input(mpath, data)
        if warmup.pending(StreamParams(), encode=False):  # the default back end's decoder
            typer.echo(warmup.STAGE, err=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with _interruptible(out):
                img = read_compressed(data, fmt, allow_missing=allow_missing)
        mask = np.ma.getmask(img) if isinstance(img, np.ma.MaskedArray) else None
        img = np.ma.getdata(img)
        meta, npy_note = _decoded_meta(read_meta(data, fmt), img, data, out)
        record = {
            **meta,
            "rawsigma": {
                "lossy_derived": True,
                "decoded_from": str(data),
                "note": "decoded from the rawsigma noise codec: not the raw camera values",
                "frames_shape": list(img.shape),
                "masked_frames": bool(mask is not None and mask.any()),
            },
        }
        check_output(out, force, need_bytes=img.nbytes)
        lost = mask is not None and bool(mask.any())
        replacing = out.exists()
        with _interruptible(out), output_lock(out), contextlib.ExitStack() as stack:
            if lost:  # renamed into place right after OUT; a failure keeps neither
                _write_mask(stack.enter_context(atomic_write(mpath, force)), mask)
            _write_decoded(out, img, record, force)
            if not lost and replacing and mpath.is_file():
                mpath.unlink()  # the replaced OUT's mask: it does not describe this one
        if lost:
            for w in caught:
                typer.echo(f"warning: {w.message}", err=True)
            typer.echo(f"warning: lost regions written as 0, mask in {mpath}", err=True)
        if npy_note:
            typer.echo(f"warning: {npy_note}", err=True)
        outputs_complete()
        typer.echo(f"{out}: {img.shape} uint16 (lossy-derived)")


def _decoded_meta(
    meta: dict[str, Any], img: Any, data: Path, out: Path
) -> tuple[dict[str, Any], str | None]:
    """The decoded TIFF's description keys for the container's axes and voxel size.

    Those are the keys `rawsigma.volread` reads (``axes``, ``voxel_size_um_zyx``). A
    ``.npy`` holds none of them, nor the lossy-derived mark that makes `compress`,
    `score` and `profile estimate` warn: the second value is the warning that says so.
    """
    meta = meta if meta and len(meta["axes"]) == img.ndim else {}
    if out.suffix.lower() == ".npy":
        kept = f", nor {data}'s {_describe_meta(meta)}" if meta else ""
        return {}, (
            f"{out}: a .npy file cannot record that its values are decoded from the noise "
            f"codec (lossy-derived){kept}: rawsigma will read it as raw frames; write a .tif "
            "to keep that"
        )
    rec = {"axes": meta["axes"]} if meta else {}
    if "spacing_zyx" in meta:
        rec["voxel_size_um_zyx"] = meta["spacing_zyx"]
    return rec, None


def _mask_path(out: Path) -> Path:
    """``OUT.mask.tif``: the lost-region mask written beside decoded frames ``OUT``."""
    return out.with_name(out.name[: -len(out.suffix)] + ".mask.tif")


def _write_mask(tmp: Path, mask: Any) -> None:
    import numpy as np
    import tifffile

    tifffile.imwrite(
        tmp, mask.astype(np.uint8), compression="zlib", photometric="minisblack", metadata=None
    )


def _write_decoded(out: Path, img: Any, record: dict, force: bool) -> None:
    """Decoded frames as ``.npy`` or a zlib TIFF whose description says lossy-derived."""
    import json

    import numpy as np
    from rawsigma.fileio import atomic_write

    with atomic_write(out, force) as tmp:
        if out.suffix.lower() == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, img)
        else:
            import tifffile

            tifffile.imwrite(
                tmp,
                img,
                compression="zlib",
                photometric="minisblack",  # a 3-frame stack is not an RGB image
                description=json.dumps(record),
                metadata=None,
            )


def register(app: typer.Typer) -> None:
    """Add ``compress`` and ``decompress`` to the root ``rawsigma`` app."""
    app.command("compress")(compress)
    app.command("decompress")(decompress)
