"""``rawsigma profile``: show, compare and estimate camera profiles."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from .console import user_errors

profile_app = typer.Typer(
    name="profile",
    help="Inspect, compare and estimate per-pixel camera noise profiles (HDF5).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``profile`` sub-command group to the root ``rawsigma`` app."""
    app.add_typer(profile_app, name="profile")


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return str(v)


def _fmt_rel(d: dict) -> str:
    """The relative change B/A − 1; A = 0 has none ("—"), or none to show (+0.00 %)."""
    rel = d["rel"]
    if math.isnan(rel):
        return "+0.00%" if d["a"] == d["b"] else "—"
    return f"{rel:+.2%}"


def _kv_table(title: str, items: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    for k, v in items.items():
        t.add_row(str(k), _fmt(v))
    return t


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


@profile_app.command("show")
def show(
    path: Path = typer.Argument(..., help="Profile file (.h5)."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG: PTC and maps."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --plot file."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summary of a profile: identity, EMVA numbers, map statistics, defects."""
    with user_errors():
        from rawsigma.calib.profile import CameraProfile
        from rich.console import Console
        from rich.table import Table

        prof = CameraProfile.load(path)
        s = prof.summary()
        if plot is not None:
            from rawsigma.fileio import check_not_input, check_output

            check_output(plot, force)
            check_not_input(plot, path)
        console = Console()
        if as_json:
            typer.echo(json.dumps(s, indent=2, default=_json_default))
        else:
            kind = "estimated from an image" if s["estimated"] else "calibrated"
            console.print(f"[bold]{path}[/]  profile [cyan]{s['profile_id']}[/] ({kind})")
            est = prof.provenance.get("estimate")
            if isinstance(est, dict) and est.get("identifiable") is False:
                console.print(
                    f"[bold yellow]warning:[/] {est.get('warning', '')}",
                    highlight=False,
                    soft_wrap=True,
                )
            if warning := offset_warning(prof):
                console.print(
                    f"[bold yellow]warning:[/] {warning}",
                    highlight=False,
                    soft_wrap=True,
                )
            console.print(_kv_table("identity", s["identity"]))
            g = s["global"]
            console.print(
                _kv_table(
                    "global (median over good pixels)",
                    {
                        "gain (ADU/e-)": g["gain"],
                        "offset (ADU)": g["offset"],
                        "read noise (ADU rms)": g["read_noise"],
                        "read noise (e- rms)": g["read_noise"] / g["gain"] if g["gain"] else None,
                        "max ADU": s["max_adu"],
                        "PTC levels": s["ptc_levels"],
                    },
                )
            )
            _show_emva(console, prof, s["emva"])
            t = Table(title="maps over good pixels", title_justify="left")
            cols = ("median", "mad", "p1", "p5", "p95", "p99")
            t.add_column("map", style="bold", no_wrap=True)
            for c in cols:
                t.add_column(c.upper() if c == "mad" else c, justify="right")
            for name, st in s["maps"].items():
                t.add_row(name, *(_fmt(st[c]) for c in cols))
            console.print(t)
            console.print(_kv_table("defect pixels", s["defects"]))
            if s["provenance"]:
                console.print(_kv_table("provenance", s["provenance"]))
        if plot is not None:
            from rawsigma.calib.plot import save_profile_plot

            save_profile_plot(prof, plot, force=force)
            Console(stderr=True, soft_wrap=True).print(f"wrote {plot}")


def _show_emva(console: Any, prof: Any, emva: dict) -> None:
    """EMVA data sheet rows (same as ``profile report``), raw numbers, what is missing."""
    from rawsigma.calib.datasheet import datasheet_rows, format_row
    from rawsigma.calib.emva import not_estimated_by_reason
    from rich.table import Table

    if not emva:  # estimated profiles and profiles made without a photon transfer
        return
    t = Table(title="EMVA 1288 data sheet", title_justify="left")
    for col in ("quantity", "symbol", "value ± SE", "unit", "note"):
        t.add_column(col, justify="right" if col == "value ± SE" else "left")
    for r in datasheet_rows(prof):
        t.add_row(r.quantity, r.symbol, format_row(r), r.unit, r.note)
    console.print(t)
    raw = {k: v for k, v in emva.items() if k != "not_estimated"}
    if raw:
        console.print(_kv_table("EMVA 1288 numbers (all)", raw))
    missing = not_estimated_by_reason(emva)
    if missing:
        console.print(_kv_table("not estimated", {", ".join(k): why for why, k in missing.items()}))


@profile_app.command("report")
def report(
    path: Path = typer.Argument(..., help="Profile file (.h5)."),
    out: Path = typer.Option(..., "--out", "-o", help="Data sheet to write (.html)."),
    png_dir: Path | None = typer.Option(
        None, "--png-dir", help="Also save each figure as a PNG in this folder."
    ),
    pdf: Path | None = typer.Option(None, "--pdf", help="Also write the figures as a PDF."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
) -> None:
    """EMVA 1288 data sheet of a profile: summary table, PTC/SNR/linearity, spectrograms,
    defect histograms and per-pixel maps, in one self-contained HTML file.
    """
    with user_errors():
        from rawsigma.calib.profile import CameraProfile
        from rawsigma.calib.sheet import write_datasheet
        from rawsigma.fileio import check_distinct_outputs, check_not_input
        from rich.console import Console

        check_distinct_outputs(out=out, png_dir=png_dir, pdf=pdf)
        for target in (out, pdf):
            if target is not None:
                check_not_input(target, path)
        prof = CameraProfile.load(path)
        res = write_datasheet(prof, out, png_dir=png_dir, pdf=pdf, force=force, source=path.name)
        msg = f"wrote {res['html']}"
        if res["pngs"]:
            msg += f" and {len(res['pngs'])} PNGs in {png_dir}"
        if res["pdf"]:
            msg += f" and {res['pdf']}"
        Console(stderr=True).print(msg)


@profile_app.command("compare")
def compare(
    a: Path = typer.Argument(..., help="Reference profile (e.g. the older calibration)."),
    b: Path = typer.Argument(..., help="Profile to compare with it (e.g. the newer one)."),
    k: float = typer.Option(3.0, "--k", help="Significance threshold in combined SEs."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG of difference maps."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --plot file."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """How a camera changed between two calibrations (B − A)."""
    with user_errors():
        from rawsigma.calib.compare import compare_profiles
        from rawsigma.calib.profile import CameraProfile
        from rich.console import Console
        from rich.table import Table

        pa, pb = CameraProfile.load(a), CameraProfile.load(b)
        if plot is not None:
            from rawsigma.fileio import check_not_input, check_output

            check_output(plot, force)
            check_not_input(plot, a, b)
        c = compare_profiles(pa, pb, k=k)
        console = Console()
        if as_json:
            typer.echo(json.dumps(c, indent=2, default=_json_default))
        else:
            console.print(f"A = [bold]{a}[/] ({c['ids'][0]}), B = [bold]{b}[/] ({c['ids'][1]})")
            if c["identity"]:
                t = Table(title="identity differences", title_justify="left")
                t.add_column("field", style="bold")
                t.add_column("A")
                t.add_column("B")
                for f, (va, vb) in c["identity"].items():
                    t.add_row(f, _fmt(va), _fmt(vb))
                console.print(t)
            else:
                console.print("identity: same camera, mode and ROI")
            t = Table(title="global medians", title_justify="left")
            for col in ("", "A", "B", "B − A", "relative"):
                t.add_column(col, justify="right")
            for name, d in c["global"].items():
                t.add_row(name, _fmt(d["a"]), _fmt(d["b"]), _fmt(d["diff"]), _fmt_rel(d))
            for name, d in c["emva"].items():
                t.add_row(f"EMVA {name}", _fmt(d["a"]), _fmt(d["b"]), "", _fmt_rel(d))
            console.print(t)
            if not c["comparable"]:
                console.print(f"[yellow]{c['reason']}[/]")
            else:
                t = Table(
                    title=f"per-pixel B − A on ROI {tuple(c['roi'])} (good in both)",
                    title_justify="left",
                )
                for col in ("map", "median", "MAD", "p1", "p99", f"> {k:g}×SE", "z std"):
                    t.add_column(col, justify="right")
                for name, st in c["maps"].items():
                    sig = (
                        f"{st['n_significant']} ({st['frac_significant']:.2%})"
                        if "n_significant" in st
                        else "no SE"
                    )
                    t.add_row(
                        name,
                        _fmt(st["median"]),
                        _fmt(st["mad"]),
                        _fmt(st["p1"]),
                        _fmt(st["p99"]),
                        sig,
                        _fmt(st.get("z_std")),
                    )
                console.print(t)
                d = c["defects"]
                console.print(
                    f"defect pixels: {d['new']} new, {d['gone']} gone, {d['both']} in both"
                )
        if plot is not None:
            from rawsigma.calib.plot import save_comparison_plot

            save_comparison_plot(pa, pb, c, plot, force=force)
            Console(stderr=True, soft_wrap=True).print(f"wrote {plot}")


def _read_image(path: Path, frame: int | None) -> Any:
    """A 2-D image or a stack (`rawsigma.imread`); ``frame`` selects one frame."""
    from rawsigma.errors import InputFileError
    from rawsigma.imread import imread

    img, info = imread(path)
    if img.ndim == 3 and frame is not None:
        if not -img.shape[0] <= frame < img.shape[0]:
            raise InputFileError(
                f"{path}: frame {frame} out of range (stack of {img.shape[0]}, {info.layout})"
            )
        img = img[frame]
    return img


def _print_presets() -> None:
    from rawsigma.analysis.noisemodel.camera_presets import list_presets

    for p in list_presets():
        off = "from the image" if p.offset is None else f"{p.offset:g} ADU"
        typer.echo(
            f"{p.name}: {p.camera}, {p.mode}; gain {p.gain:.3g} ADU/e-, read noise "
            f"{p.read_noise:.3g} ADU, offset {off} ({p.values}; {p.source})"
        )


def offset_warning(prof: Any) -> str:
    """The estimate's warning that a given offset does not fit the image ("" if none)."""
    est = prof.provenance.get("estimate")
    check = est.get("offset_check") if isinstance(est, dict) else None
    return str(check.get("warning", "")) if isinstance(check, dict) else ""


def _check_options(
    tile: int | None, read_noise: float | None, offset: float | None, gain: float | None
) -> None:
    """Static ranges of the numeric options (image-dependent ranges: `estimate_profile`)."""
    from rawsigma.errors import UsageError

    if tile is not None and tile < 16:
        raise UsageError(
            f"--tile must be >= 16 pixels (at most a fraction of the image), got {tile}"
        )
    if read_noise is not None and not (math.isfinite(read_noise) and read_noise >= 0):
        raise UsageError(f"--read-noise must be a finite value >= 0 ADU rms, got {read_noise}")
    if offset is not None and not (math.isfinite(offset) and offset >= 0):
        raise UsageError(f"--offset must be a finite value >= 0 ADU, got {offset}")
    if gain is not None and not (math.isfinite(gain) and gain > 0):
        raise UsageError(f"--gain must be a finite value > 0 ADU/e-, got {gain}")


def _lossy_source(image: Path, prof: Any) -> str:
    """The warning for an image decoded from the noise codec ("" otherwise), recorded
    in the profile's provenance (``source_lossy_derived``).

    The codec's quantisation adds about S²/12 of the noise variance (a third at S = 2),
    so a profile estimated from decoded frames overstates the camera's noise (BBBC039
    through a .zarr at S = 2: gain 0.49 ADU/e⁻ and read noise 3.9 ADU for 0.37 and 3.4
    from the raw frames), and scores made with it call codecs within noise too easily.
    """
    from .integrity import LOSSY_NOTE, lossy_derived

    if not lossy_derived(image):
        return ""
    prof.provenance["source_lossy_derived"] = True
    return LOSSY_NOTE.format(
        image=image,
        consequence="the codec's quantisation noise is in the estimate, which overstates "
        "the camera's noise; estimate from the raw frames",
    )


@profile_app.command("estimate")
def estimate(
    image: Path = typer.Argument(
        None, help="Raw image or stack: TIFF/OME-TIFF, HDF5 (FILE.h5[:NAME]), zarr or .npy."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Output profile (.h5)."),
    read_noise: float | None = typer.Option(
        None, "--read-noise", help="Known read noise (ADU rms, data sheet); else assumed."
    ),
    offset: float | None = typer.Option(
        None,
        "--offset",
        help="Known offset (ADU, e.g. from the data sheet or a dark frame); estimated if "
        "omitted. Images without dark areas cannot separate offset from read noise.",
    ),
    gain: float | None = typer.Option(
        None, "--gain", help="Known gain (ADU/e-, data sheet); fitted if omitted."
    ),
    camera: str | None = typer.Option(
        None,
        "--camera",
        help="Camera preset (data-sheet offset, read noise, gain); 'list' prints them.",
    ),
    frame: int | None = typer.Option(
        None, "--frame", help="Use only this frame of a stack (default: all frames)."
    ),
    bit_depth: int | None = typer.Option(
        None, "--bit-depth", help="ADC bit depth (default: the preset's, else the dtype's)."
    ),
    tile: int | None = typer.Option(
        None,
        "--tile",
        help="Block size in pixels (default 64; 32 under 256 px a side, less if needed).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out file."),
) -> None:
    """Estimate a uniform noise profile from raw image(s) alone (no calibration data).

    Without --offset, --read-noise or --camera, one image cannot separate the offset from
    the read noise: the profile then holds stated assumptions (a warning is printed and
    recorded in the profile's provenance["estimate"]["identifiable"/"assumed"]).
    """
    with user_errors():
        from rawsigma.errors import UsageError

        if camera is not None and camera.strip().lower() == "list":
            _print_presets()
            return
        if image is None or out is None:
            raise UsageError("give an IMAGE and --out (or --camera list)")
        from rawsigma.fileio import check_not_input, check_output, output_lock

        _check_options(tile, read_noise, offset, gain)
        check_output(out, force)
        check_not_input(out, image)
        img = _read_image(image, frame)
        check_output(out, force, need_bytes=64 * img.shape[-1] * img.shape[-2])
        from rawsigma.analysis.noisemodel.estimate import estimate_profile

        kw: dict[str, Any] = {}
        if gain is not None:
            kw["gain"] = gain
        if camera is not None:
            kw["camera"] = camera
        prof = estimate_profile(
            img,
            read_noise=read_noise,
            offset=offset,
            tile=tile,
            bit_depth=bit_depth,
            source=str(image),
            **kw,
        )
        prof.provenance.setdefault("estimated", True)
        prof.provenance.setdefault("source_image", str(image))
        lossy = _lossy_source(image, prof)
        with output_lock(out):
            prof.save(out, force=force)
        typer.echo(
            f"wrote {out}: profile {prof.profile_id}, gain {prof.gain_global:.4g} ADU/e-, "
            f"offset {prof.offset_global:.4g} ADU, read noise {prof.read_noise_global:.4g} ADU"
        )
        if lossy:
            typer.echo(f"warning: {lossy}", err=True)
        est = prof.provenance.get("estimate", {})
        if isinstance(est, dict) and est.get("identifiable") is False:
            from rich.console import Console

            Console(stderr=True, soft_wrap=True).print(
                f"[bold yellow]warning:[/] {est.get('warning', '')}", highlight=False
            )
        if warning := offset_warning(prof):
            typer.echo(f"warning: {warning}", err=True)
