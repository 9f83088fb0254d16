"""HTML parts shared by the 2D, 3D and tomography reports.

One table builder (:func:`html_table`: a column is a header and a cell function), the
version columns the 2D and 3D verdict tables share, the report's notes, figures,
provenance and timings, the result directory's check and its figure files.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rawsigma.analysis.scoring.score_maps import clean_nonfinite
from rawsigma.errors import OutputExistsError
from rawsigma.fileio import atomic_write

if TYPE_CHECKING:
    import os

__all__ = [
    "CSS",
    "MATCH_COLUMNS",
    "VERDICT_COLUMNS",
    "VERSION_COLUMNS",
    "Column",
    "fmt",
    "figures_html",
    "flags_column",
    "global_epsilon_column",
    "html_table",
    "notes_html",
    "object_table",
    "prepare_out_dir",
    "provenance_html",
    "quantisation_html",
    "timings_text",
    "write_figures",
]

#: A table column: the header's HTML, and the cell function (item → ``<td>…</td>``).
Column = tuple[str, Callable[[Any], str]]

CSS = """body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #bbb;
padding:3px 6px;text-align:left}th{background:#eee}.ok{background:#e3f6e3}.bad{background:#fbe0e0}
.ref{background:#f4f4ff}img{max-width:100%}figure{margin:1em 0}figcaption{font-size:12px;color:#555}
.note{background:#fffbe6;padding:.5em;border-left:4px solid #e6c200}
.warn{background:#fde2e2;padding:.5em;border-left:6px solid #c00;font-weight:bold}
code{font-size:12px}"""


def fmt(x: Any, nd: int = 2) -> str:
    """A number for the report: ``nd`` decimals, ``–`` for None, ∞ and nan spelt out."""
    if x is None:
        return "–"
    if isinstance(x, str):
        return html.escape(x)
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("+∞" if x > 0 else "−∞")
    return f"{x:.{nd}f}"


def html_table(
    columns: Sequence[Column],
    items: Iterable[Any],
    lead: Sequence[str] = (),
    row_class: Callable[[Any], str] | None = None,
) -> str:
    """A ``<table>``: the header row, the ``lead`` rows as given, then one row per item.

    Parameters
    ----------
    columns : sequence of (header HTML, cell function)
        The cell function returns the whole ``<td>…</td>`` of an item.
    items : iterable
        One row each.
    lead : sequence of str
        Whole ``<tr>…</tr>`` rows put before the items' rows (e.g. a reference row).
    row_class : callable(item) → str, optional
        The ``class`` of each item's row.
    """
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h, _ in columns) + "</tr>", *lead]
    for item in items:
        attr = f" class='{row_class(item)}'" if row_class is not None else ""
        rows.append(f"<tr{attr}>" + "".join(cell(item) for _, cell in columns) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _verdict(c: Any) -> str:
    ok = c.verdict["within_noise"]
    return f"<td class='{'ok' if ok else 'bad'}'>{'within noise' if ok else 'exceeds noise'}</td>"


def _paper_worst(c: Any) -> str:
    pw = c.verdict.get("paper", {}).get("worst", ["", math.nan])
    return f"<td>{html.escape(str(pw[0]))} ({fmt(pw[1])})</td>"


#: Version, description and compression ratio of a scored version (2D and 3D).
VERSION_COLUMNS: list[Column] = [
    ("version", lambda c: f"<td><b>{html.escape(c.spec)}</b></td>"),
    ("description", lambda c: f"<td>{html.escape(c.description)}</td>"),
    ("ratio", lambda c: f"<td>{c.ratio:.1f}:1</td>"),
]
#: The calibrated verdict, its worst parameter and p, and the paper's worst |mean ε|.
VERDICT_COLUMNS: list[Column] = [
    ("verdict", _verdict),
    ("worst", lambda c: f"<td>{html.escape(str(c.verdict['worst'][0]))} "
                        f"({fmt(c.verdict['worst'][1])})</td>"),
    ("p (family-wise)", lambda c: f"<td>{fmt(c.verdict.get('worst_p_fw'), 3)}</td>"),
    ("paper: worst |mean ε|", _paper_worst),
]  # fmt: skip
#: Objects matched to raw, unmatched on each side, split and merged.
MATCH_COLUMNS: list[Column] = [
    ("matched / raw", lambda c: f"<td>{c.match['n_matched']} / {c.match['n_ref']}</td>"),
    ("unmatched (raw/other)",
     lambda c: f"<td>{c.match['n_unmatched_ref']} / {c.match['n_unmatched_other']}</td>"),
    ("split / merged", lambda c: f"<td>{c.match['n_split']} / {c.match['n_merged']}</td>"),
]  # fmt: skip


def flags_column() -> Column:
    """The global parameters flagged beyond a raw-equivalent version (`score_globals`)."""
    return (
        "global flags (beyond raw-equivalent)",
        lambda c: f"<td>{html.escape(', '.join(c.verdict.get('global_flags', [])) or '–')}</td>",
    )


def global_epsilon_column(header: str, name: str) -> Column:
    """The ε of the global parameter ``name``."""
    return header, lambda c: f"<td>{fmt(c.globals.get(name, {}).get('epsilon'))}</td>"


def _object_cell(c: Any, p: str) -> str:
    s = c.objects[p]
    t = s.test or {}
    bad = t["exceeds"] if t else abs(s.mean) >= 1
    extra = f" ({s.n_inf} ∞)" if s.n_inf else ""
    med = s.summary()["median_epsilon"]
    cal = (
        f"<b>{fmt(t.get('t'))}</b> / {fmt(t.get('limit'))}, p {fmt(t.get('p_fw'), 3)}, "
        f"q {fmt(t.get('null_quantile'), 3)}<br>"
        if t
        else ""
    )
    return (
        f"<td class='{'bad' if bad else 'ok'}'>{cal}<small>{fmt(s.mean)} ± "
        f"{fmt(s.std)}{extra} (median {fmt(med)})</small></td>"
    )


def object_table(result: Any) -> str:
    """Per-object scores: a row per parameter, a column per version (2D and 3D)."""
    codecs = [c for c in result.codecs if c.objects]
    if not codecs:
        return "<p>No objects were segmented in the raw image: no per-object scores.</p>"
    columns: list[Column] = [("parameter", lambda p: f"<td>{html.escape(p)}</td>")]
    columns += [
        (
            f"{html.escape(c.spec)}<br>robust ε / limit, p<sub>fw</sub>, null quantile"
            "<br><small>paper: mean ε ± std (median)</small>",
            partial(_object_cell, c),
        )
        for c in codecs
    ]
    return html_table(columns, list(codecs[0].objects))


def notes_html(notes: Iterable[str], ignore_case: bool = False) -> str:
    """The run's notes; those starting with WARNING (any case if ``ignore_case``) stand out."""

    def warn(n: str) -> bool:
        return (n.upper() if ignore_case else n).startswith("WARNING")

    return "".join(
        f"<p class='{'warn' if warn(n) else 'note'}'>{html.escape(n)}</p>" for n in notes
    )


def quantisation_html(codecs: Iterable[Any]) -> str:
    """The versions' quantisation notes: 8-bit step against σ, systematic shifts."""
    out = []
    for c in codecs:
        if getattr(c, "quantisation", None):
            out.append(f"<p class='note'>{html.escape(c.quantisation['text'])}</p>")
        note = (getattr(c, "verdict", None) or {}).get("systematic_note")
        if note:
            out.append(f"<p class='warn'>{html.escape(note)}</p>")
    return "".join(out)


def figures_html(figs: Iterable[tuple[str, bytes, str]]) -> str:
    """The figures inlined as base64 PNG with their captions."""
    out = []
    for _, png, alt in figs:
        b64 = base64.b64encode(png).decode("ascii")
        out.append(
            f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"/>'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>"
        )
    return "".join(out)


def provenance_html(provenance: dict) -> str:
    """The provenance section."""
    text = json.dumps(clean_nonfinite(provenance), indent=1, default=str)
    return f"<h2>Provenance</h2><pre>{html.escape(text)}</pre>"


def timings_text(timings: dict[str, float]) -> str:
    """``stage seconds, …`` (HTML-escaped)."""
    return html.escape(", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def prepare_out_dir(out_dir: str | os.PathLike, files: Sequence[str], force: bool) -> Path:
    """Create ``out_dir`` and its ``figures/``, or refuse one that holds results already.

    Raises
    ------
    OutputExistsError
        If one of ``files`` exists in ``out_dir`` and ``force`` is False.
    """
    out = Path(out_dir)
    existing = [f for f in files if (out / f).exists()]
    if existing and not force:
        raise OutputExistsError(
            f"{out}: already holds results ({', '.join(existing)}); use --force to overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    return out


def png_with_text(png: bytes, text: str) -> bytes:
    """Add the provenance as a PNG tEXt chunk (key ``rawsigma:provenance``)."""
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("rawsigma:provenance", text)
    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def write_figures(out: Path, figs: Iterable[tuple[str, bytes, str]], provenance: dict) -> None:
    """Write each (name, png, caption) as ``figures/<name>.png`` with the provenance text."""
    prov_text = json.dumps(clean_nonfinite(provenance), default=str, ensure_ascii=False)
    for name, png, _ in figs:
        with atomic_write(out / "figures" / f"{name}.png", force=True) as tmp:
            tmp.write_bytes(png_with_text(png, prov_text))
