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
