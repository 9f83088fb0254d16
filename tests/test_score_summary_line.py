"""The per-codec summary line of ``rawsigma score`` (QA pass, session 7)."""

from __future__ import annotations

from types import SimpleNamespace

from rawsigma.cli.score_cmd import _print_summary
from rich.console import Console


def _codec(spec: str, n_matched: int) -> SimpleNamespace:
    verdict = {"within_noise": True, "worst": ["area", 0.0], "worst_p_fw": 1.0,
               "paper": {"worst": ["", 0.0]}}  # fmt: skip
    return SimpleNamespace(spec=spec, ratio=2.2, verdict=verdict, quantisation=None,
                           match={"n_matched": n_matched})  # fmt: skip


def test_lossless_codec_is_not_said_to_have_no_matched_object():
    """zstd on BBBC039: 48 of 48 objects matched, every ε 0; the line said
    "paper: no matched object to score"."""
    result = SimpleNamespace(notes=[], objects_info={"min_size": 10}, n_objects=48,
                             codecs=[_codec("zstd", 48), _codec("jpeg@100", 0)],
                             tolerance={})  # fmt: skip
    con = Console(record=True, width=200)
    _print_summary(result, con)
    lines = con.export_text().splitlines()
    zstd = next(ln for ln in lines if "zstd" in ln)
    jpeg = next(ln for ln in lines if "jpeg@100" in ln)
    assert "paper: every mean ε 0.00" in zstd and "no matched object" not in zstd
    assert "paper: no matched object to score" in jpeg


def test_summary_lines_not_wrapped_at_80_columns():
    """QA session 11: piped to a log (80 columns), the object-count line and the 8-bit
    step note of BBBC039 broke mid-sentence over 3-4 lines (warnings were one line
    each since session 9); every summary line is now one line."""
    source = ("default: 0.2 × the median object size implied by the 86 annotated foreground "
              "regions (707 px; a region implies max(its area, the disc spanned by its "
              "extent)) = 141 px")  # fmt: skip
    note = ("8bit: 8-bit step 3.0 ADU = 0.26 σ at the objects (median raw σ 11.5 ADU there, "
            "4.1 ADU in the background; rounding error step/√12 = 0.08 σ rms)")  # fmt: skip
    c = _codec("8bit", 57)
    c.quantisation = {"text": note}
    agree = {"poor": False, "f1": 0.69, "tp": 49, "n_reference": 86}
    result = SimpleNamespace(notes=[], n_objects=57, codecs=[c], tolerance={},
                             objects_info={"min_size": 141, "min_size_source": source,
                                           "reference_agreement": agree})  # fmt: skip
    con = Console(record=True, width=80)
    _print_summary(result, con)
    lines = con.export_text().splitlines()
    assert any(ln.startswith("  57 objects (min size 141 px: ") and ln.endswith("= 141 px)")
               for ln in lines), lines  # fmt: skip
    assert any(ln.strip() == note for ln in lines), lines
