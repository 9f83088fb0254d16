"""The pieces the 2D, 3D and tomography pipelines share: reference, records, tables, checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from rawsigma.analysis.measurement.matching import match_objects
from rawsigma.analysis.reporting import tables
from rawsigma.analysis.scoring import nullstats as ns
from rawsigma.analysis.scoring.inputs import check_raw_image
from rawsigma.analysis.scoring.reference import replica_reference, score_version
from rawsigma.analysis.scoring.volume import check_raw_volume
from rawsigma.errors import ImageMismatchError


@dataclass
class _Outcome:
    labels: np.ndarray
    table: dict
    globals: dict


def _outcome(x: np.ndarray, area: np.ndarray) -> _Outcome:
    table = {"label": np.arange(1, x.size + 1), "x": x, "y": np.zeros(x.size), "area": area}
    return _Outcome(np.zeros((2, 2), np.int32), table, {"count": float(x.size)})


def _match(raw: _Outcome):
    def match(o: _Outcome):
        c = np.column_stack([raw.table["y"], raw.table["x"]])
        d = np.column_stack([o.table["y"], o.table["x"]])
        return match_objects(c, d, 2.0)

    return match


def test_replica_reference_matches_reindexes_and_scores():
    raw = _outcome(np.array([0.0, 10.0, 20.0]), np.array([100.0, 200.0, 300.0]))
    rng = np.random.default_rng(0)
    # replicas list their objects in reverse order; the third object is lost in one
    reps = []
    for k in range(5):
        area = raw.table["area"] + rng.normal(0, 5, 3)
        rep = _outcome(raw.table["x"][::-1].copy(), area[::-1].copy())
        if k == 4:
            rep = _outcome(np.array([10.0, 0.0]), area[1::-1].copy())
        reps.append(rep)
    ref = replica_reference(raw, reps, ["area", "x"], _match(raw), lambda p, t: np.ones(3))
    assert ref.n_objects == 3 and ref.params == ["area", "x"]
    # values are re-indexed onto the raw objects, NaN where unmatched
    assert ref.values["area"][0] == pytest.approx(reps[0].table["area"][::-1])
    assert np.isnan(ref.values["area"][4, 2]) and np.isfinite(ref.values["area"][4, :2]).all()
    assert ref.unmatched_null == [0, 0, 0, 0, 1]
    assert [m["n_matched"] for m in ref.matches] == [3, 3, 3, 3, 2]
    assert set(ref.nulls) == {"area", "x"}  # >= 3 replicas: a leave-one-out null each
    fields = ref.result_fields()
    assert fields["replica_globals"] == [r.globals for r in reps]
    # a version equal to raw is within noise; one that loses two objects is not
    same = score_version(ref, raw, _match(raw)(raw))
    assert same.verdict["within_noise"]
    assert same.matched["area"] == pytest.approx(raw.table["area"])
    # one object lost (d = 1: inside the replicas' null) and one area 12 σ off: fails on area
    off = _outcome(np.array([0.0, 10.0]), np.array([100.0, 260.0]))
    worse = score_version(ref, off, _match(raw)(off))
    assert worse.match["n_unmatched_ref"] == 1 and worse.matched["area"][1] == 260.0
    assert not worse.verdict["within_noise"] and worse.verdict["failing"] == ["area"]
    test = ns.codec_matching_test(worse.match, ref.unmatched_null, 3, worse.objects)
    assert worse.verdict["matching"] == test and test["d"] == 1 and not test["exceeds"]


def test_replica_reference_without_objects_has_no_null():
    raw = _outcome(np.zeros(0), np.zeros(0))
    reps = [_outcome(np.array([1.0]), np.array([9.0])) for _ in range(3)]
    ref = replica_reference(raw, reps, ["area"], _match(raw), lambda p, t: np.ones(0))
    assert ref.n_objects == 0 and ref.nulls == {} and ref.quanta == {}
    assert ref.unmatched_null == [1, 1, 1]


def test_html_table_columns_lead_rows_and_row_class():
    cols = [("a &lt; b", lambda r: f"<td>{r[0]}</td>"), ("n", lambda r: f"<td>{r[1]}</td>")]
    out = tables.html_table(cols, [("x", 1), ("y", 2)], lead=["<tr><td>ref</td></tr>"],
                            row_class=lambda r: "ok" if r[1] == 1 else "bad")  # fmt: skip
    assert out == (
        "<table><tr><th>a &lt; b</th><th>n</th></tr><tr><td>ref</td></tr>"
        "<tr class='ok'><td>x</td><td>1</td></tr><tr class='bad'><td>y</td><td>2</td></tr></table>"
    )
    assert tables.fmt(float("inf")) == "+∞" and tables.fmt(None) == "–"
    assert tables.fmt(1.23456, 3) == "1.235" and tables.fmt("<b>") == "&lt;b&gt;"


def test_notes_warn_rule():
    notes = ["WARNING: estimated profile", "Warning: no voxel size", "plain"]
    strict = tables.notes_html(notes)
    assert strict.count("class='warn'") == 1 and strict.count("class='note'") == 2
    assert tables.notes_html(notes, ignore_case=True).count("class='warn'") == 2


@pytest.mark.parametrize(
    ("check", "shape", "word"),
    [(check_raw_image, (4, 4), "pixel values; not a raw image"),
     (check_raw_volume, (2, 4, 4), "voxel values; not a raw volume")],
)  # fmt: skip
def test_raw_counts_signed_input(check, shape, word):
    a = np.full(shape, 7, np.int32)
    a.flat[-1] = 8  # not constant (a constant image is refused, QA session 11)
    out = check(a, None)
    assert out.dtype == np.uint16 and (out == a).all()
    big = a.copy()
    big[0, 0] = 70000
    assert check(big, None).dtype == np.uint32
    a[0, 0] = -1
    with pytest.raises(ImageMismatchError, match=f"negative {word}"):
        check(a, None)
