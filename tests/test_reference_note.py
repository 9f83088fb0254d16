"""The raw segmentation against the user's instance labels (``score --instances``)."""

from __future__ import annotations

import numpy as np
from rawsigma.analysis.scoring.runchecks import reference_note


def _squares(n: int, touching: bool) -> np.ndarray:
    """``n`` 10×10 squares in a row, touching or 5 px apart."""
    lab = np.zeros((20, 20 * n), np.int32)
    for i in range(n):
        x = i * (10 if touching else 15)
        lab[5:15, x : x + 10] = i + 1
    return lab


def test_perfect_segmentation_agrees():
    ref = _squares(4, touching=False)
    info, notes = reference_note(ref, ref, min_size=10)
    assert info["f1"] == 1.0 and info["tp"] == 4 and not info["poor"]
    assert info["n_merged"] == 0 and info["n_missed"] == 0
    assert len(notes) == 1 and notes[0].startswith("Agreement") and "F1 1.00" in notes[0]


def test_merged_touching_objects_warn_with_what_to_do():
    ref = _squares(4, touching=True)
    seg = (ref > 0).astype(np.int32)  # one connected component: the 4 objects merged
    info, notes = reference_note(seg, ref, min_size=10)
    assert info["tp"] == 0 and info["f1"] == 0.0 and info["poor"]
    assert info["n_merged"] == 4 and info["n_missed"] == 0
    (line,) = notes
    assert line.startswith("WARNING: poor agreement") and "F1 0.00" in line
    assert "4 labelled objects merged" in line and "--model" in line
    assert info["n_on_background"] == 0 and "--min-size" not in line  # no speck to drop


def test_missed_and_spurious_objects():
    ref = _squares(4, touching=False)
    seg = np.zeros_like(ref)
    seg[ref == 1] = 1  # one found, three missed, plus 5 specks
    for k in range(5):
        seg[0, 2 * k] = 2 + k
    info, notes = reference_note(seg, ref, min_size=1)
    assert info["tp"] == 1 and info["n_missed"] == 3 and info["n_merged"] == 0
    assert info["n_on_background"] == 5
    assert info["f1"] == 2 / (6 + 4) and info["poor"]
    assert "5 objects lie mostly on background: raise --min-size (now 1 px)" in notes[0]
    assert "add annotations" in notes[0]
