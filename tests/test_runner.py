"""score_image on the simulated camera imaging a known phantom.

One scoring run (module fixture) with a held-out replica, 8-bit, JPEG 100:1 and the
noise codec at step 1; assertions on its ε. Bad-input cases run on tiny images.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rawsigma.analysis.scoring.plans import ScorePlan
from rawsigma.errors import ImageMismatchError, InputFileError, OutputExistsError


@pytest.fixture(scope="module")
def scene():
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.phantoms import nuclei2d
    from rawsigma.analysis.segmentation.annotations import training_labels

    model = SensorModel.preset("scmos", (160, 160), seed=3)
    bright, truth = nuclei2d((160, 160), n_objects=18, rng=5)
    img = model.expose(40 + 900 * bright, 0.01, np.random.default_rng(7))
    return img, model.true_profile(), training_labels(truth), truth


@pytest.fixture(scope="module")
def result(scene):
    from rawsigma.analysis.scoring.runner import score_image

    img, prof, lab, _ = scene
    codecs = ["replica", "8bit", "jpeg@100", "noise:step=1"]
    return score_image(img, prof, labels=lab, codecs=codecs, n_replicas=10, seed=1, min_size=5)


def _codec(result, spec):
    return next(c for c in result.codecs if c.spec == spec)


def test_segmentation_finds_the_phantom(result, scene):
    truth = scene[3]
    assert abs(result.n_objects - truth.max()) <= 2
    assert result.raw_objects["area"].size == result.n_objects
    assert len(result.replica_globals) == 10
    # every raw object found again in (nearly) every replica
    assert min(m["n_matched"] for m in result.replica_match) >= result.n_objects - 1


def test_held_out_replica_is_within_noise(result):
    c = _codec(result, "replica")
    for p, s in c.objects.items():
        assert abs(s.mean) < 1, (p, s.mean)
    # globals are single draws (and carry the observed-centre synthesis bias): only
    # checked for being finite numbers here
    assert all(math.isfinite(g["epsilon"]) for g in c.globals.values())
    assert c.verdict["within_noise"]
    # calibrated: every parameter tested against its leave-one-out null, inside it
    assert c.verdict["rule"] == "calibrated" and c.verdict["paper"]["within_noise"]
    for p, s in c.objects.items():
        t = s.test
        assert t["calibrated"] and not t["exceeds"] and t["limit"] >= 1, (p, t)
        assert 0 <= t["null_quantile"] <= 1 and abs(s.robust) < t["limit"]
    assert not c.verdict["matching"]["exceeds"]
    assert set(result.null) == set(c.objects) and len(result.null["area"].t_loo) == 10
    # its ΔA looks like the replicas' own ΔA distribution
    assert abs(c.objects["area"].summary()["delta"]["mu"]) < 2


@pytest.mark.parametrize("spec", ["8bit", "jpeg@100"])
def test_8bit_and_jpeg100_exceed_noise_on_area(result, spec):
    c = _codec(result, spec)
    area_like = ("area", "perimeter", "major", "minor", "feret", "min_feret")
    worst = max(abs(c.objects[p].mean) for p in area_like)
    # per-object area-like means, or the global total area (JPEG 100:1 loses most objects,
    # so its per-object mean is over a few survivors)
    assert worst > 1, (worst, c.globals)
    assert abs(c.globals["total_area"]["epsilon"]) > 3
    assert not c.verdict["within_noise"] and c.verdict["rule"] == "calibrated"
    assert c.verdict["worst_p_fw"] < 0.05
    if spec == "8bit":  # the paper's signature: ΔA shifted by pixels, replicas near 0
        q = c.quantisation
        assert q["step_over_sigma"] > 1
        assert ("far above" if q["step_over_sigma"] > 12**0.5 else "comparable") in q["text"]
        assert abs(c.objects["area"].summary()["delta"]["mu"]) > 1
        assert abs(result.replica_delta["area"]["mu"]) < 1


def test_noise_codec_step1_within_noise(result):
    c = _codec(result, "noise:step=1")
    assert c.ratio > 1.5
    for p, s in c.objects.items():
        assert abs(s.mean) < 1, (p, s.mean)
    assert c.verdict["within_noise"]


def test_results_json_and_report(result, tmp_path):
    from rawsigma.analysis.reporting.report import write_report

    out = tmp_path / "r"
    html = write_report(result, out)
    text = html.read_text()
    assert "data:image/png;base64," in text and "Round = 1/AR" in text
    assert "observed" in text  # synthesis centre stated
    assert "leave-one-out" in text and "8-bit step" in text and "minimum size 5 px" in text
    data = json.loads((out / "results.json").read_text())
    prov = data["provenance"]
    assert prov["profile_id"] and prov["synthesis_centre"] == "observed" and "plan" in prov
    assert data["replicas"]["n"] == 10
    assert data["objects_info"]["min_size"] == 5 and "given" in data["objects_info"][
        "min_size_source"]  # fmt: skip
    assert data["codecs"][0]["objects"]["area"]["test"]["calibrated"]
    assert len(data["null"]["area"]["t_loo"]) == 10
    lo, hi = data["replicas"]["ci_factors_95"]
    assert 0.5 < lo < 0.6 and 1.4 < hi < 1.5
    lines = (out / "objects.csv").read_text().splitlines()
    assert lines[0].startswith("# rawsigma") and "profile_id" in lines[0]
    assert len(lines) == 2 + 19 * result.n_objects
    from PIL import Image

    assert "profile_id" in Image.open(out / "figures" / "overlays.png").text["rawsigma:provenance"]
    assert (out / "figures" / "delta_area.png").stat().st_size > 1000
    with pytest.raises(OutputExistsError):
        write_report(result, out)
    write_report(result, out, force=True)


def test_plug_in_model_and_no_objects(scene, tmp_path):
    from rawsigma.analysis.reporting.report import write_report
    from rawsigma.analysis.scoring.runner import score_image

    img, prof, _, truth = scene
    r = score_image(img[:64, :64], prof.crop((0, 0, 64, 64)), model=lambda im: np.zeros(
        im.shape, np.int32), codecs=["replica"], n_replicas=3)  # fmt: skip
    assert r.n_objects == 0 and r.codecs[0].objects == {}
    assert any("no objects" in n for n in r.notes)
    assert r.codecs[0].globals["count"]["epsilon"] == 0
    html = write_report(r, tmp_path / "empty").read_text()
    assert "no objects" in html.lower()
    # a plug-in returning the truth instances: nothing changes, all ε = 0
    r2 = score_image(img, prof, model=lambda im: truth, codecs=["replica"], n_replicas=3)
    assert r2.n_objects == truth.max()
    assert all(s.mean == 0 for s in r2.codecs[0].objects.values())
    assert r2.plan.min_size == 0 and "plug-in" in r2.objects_info["min_size_source"]


def test_default_min_size_and_speckle_warning(scene):
    """Annotations imply the minimum size; a speckled segmentation is warned about."""
    from rawsigma.analysis.scoring.runner import score_image

    img, prof, lab, truth = scene
    rng = np.random.default_rng(0)

    def speckle(im):  # the truth plus 60 single-pixel "objects"
        out = (truth > 0).astype(np.int32)
        ys, xs = rng.integers(0, im.shape[0], 60), rng.integers(0, im.shape[1], 60)
        out[ys, xs] = 1
        return out

    r = score_image(img, prof, labels=lab, codecs=["replica"], n_replicas=3, n_estimators=5)
    info = r.objects_info
    assert info["min_size"] > 5 and "median object size" in info["min_size_source"]
    assert info["sizes"]["min"] >= info["min_size"]
    r = score_image(img, prof, model=speckle, codecs=["replica"], n_replicas=3, min_size=5)
    assert r.objects_info["warnings"] and r.notes[0].startswith("WARNING")


def test_bad_inputs(scene):
    from rawsigma.analysis.scoring.runner import score_image

    img, prof, lab, _ = scene
    kw = {"codecs": ["replica"], "n_replicas": 2}
    with pytest.raises(ImageMismatchError, match="floating-point"):
        score_image(img.astype(np.float32), prof, labels=lab, **kw)
    with pytest.raises(ImageMismatchError, match="8-bit|uint8"):
        score_image((img // 256).astype(np.uint8), prof, labels=lab, **kw)
    with pytest.raises(ImageMismatchError):
        score_image(img[:100], prof, labels=lab[:100], **kw)  # does not match the profile
    with pytest.raises(ImageMismatchError, match="shape"):
        score_image(img, prof, labels=lab[:, :100], **kw)
    with pytest.raises(InputFileError, match="empty annotations"):
        score_image(img, prof, labels=np.zeros_like(lab), **kw)
    with pytest.raises(InputFileError, match="only class"):
        score_image(img, prof, labels=(lab == 2).astype(np.uint8) * 2, **kw)
    with pytest.raises(InputFileError, match="foreground class 2"):
        score_image(img, prof, labels=np.where(lab == 2, 3, lab), **kw)
    with pytest.raises(InputFileError, match="exactly one"):
        score_image(img, prof, **kw)
    with pytest.raises(ValueError):
        ScorePlan(tolerance_search=["nonsense"])


def test_foreground_class_option(scene, result):
    from rawsigma.analysis.scoring.runner import score_image

    img, prof, lab, _ = scene
    swapped = np.choose(lab, [0, 2, 1]).astype(np.uint8)  # 1 = objects, 2 = background
    r = score_image(img, prof, labels=swapped, foreground_class=1, codecs=["replica"],
                    n_replicas=2, seed=1, min_size=5)  # fmt: skip
    assert abs(r.n_objects - result.n_objects) <= 1


def test_plan_round_trips():
    p = ScorePlan(codecs=["8bit", "jpeg@10"], n_replicas=5, tolerance_search=["jpeg"])
    assert ScorePlan.model_validate_json(p.model_dump_json()) == p
    assert not math.isnan(p.max_distance)


def test_tolerance_search_noise(scene, tmp_path):
    from rawsigma.analysis.reporting.report import write_report
    from rawsigma.analysis.scoring.runner import score_image

    img, prof, lab, _ = scene
    r = score_image(img, prof, labels=lab, codecs=["replica"], n_replicas=5, seed=2,
                    min_size=5, tolerance_search=["noise"])  # fmt: skip
    t = r.tolerance["noise"]
    pts = [p for p in t["points"] if "ratio" in p]
    assert len(pts) >= 2
    ratios = [p["ratio"] for p in pts]
    assert ratios[:4] == sorted(ratios[:4])  # coarser step, higher ratio
    assert pts[0]["within_noise"]  # step 0.5 σ is within noise
    best = t["best"]
    assert best is not None and best["within_noise"]
    assert best["ratio"] == max(p["ratio"] for p in pts if p["within_noise"])
    # the sweep stops after two failures in a row
    fails = [not p["within_noise"] for p in pts]
    assert not any(a and b for a, b in zip(fails[:-2], fails[1:-1], strict=True))
    html = write_report(r, tmp_path / "tol").read_text()
    assert "Tolerance search" in html


def test_estimated_profile_warning_is_a_banner(scene):
    """A profile whose offset/read noise were assumed: the warning heads the notes."""
    import copy

    from rawsigma.analysis.scoring.runner import score_image

    img, prof, _, truth = scene
    p2 = copy.deepcopy(prof)
    p2.provenance["estimate"] = {"identifiable": False, "warning": "offset assumed"}
    r = score_image(img, p2, model=lambda im: truth, codecs=["replica"], n_replicas=3)
    assert r.notes[0] == "WARNING: estimated profile: offset assumed"


def _objects_csv_rows_by_definition(result) -> list[list]:
    """``objects.csv``'s rows as the per-cell loop wrote them before (session 8)."""
    rows = []
    labels = result.raw_objects.get("label")
    for p, rep in result.replica_values.items():
        raw = result.raw_objects[p]
        for i in range(raw.size):
            col = rep[:, i]
            ok = np.isfinite(col)
            row = [int(labels[i]), p, f"{raw[i]:.6g}",
                   f"{col[ok].mean():.6g}" if ok.any() else "", "", int(ok.sum())]  # fmt: skip
            sig = None
            for c in result.codecs:
                os_ = c.objects.get(p)
                if os_ is not None and sig is None:
                    sig = os_.sigma_raw[i]
                v = c.values.get(p, np.full(raw.size, np.nan))[i]
                e = os_.eps[i] if os_ is not None else np.nan
                row += [f"{v:.6g}" if np.isfinite(v) else "", f"{e:.4g}"]
            row[4] = f"{sig:.6g}" if sig is not None and np.isfinite(sig) else ""
            rows.append(row)
    return rows


def test_objects_csv_rows_equal_the_per_cell_definition(result, tmp_path):
    """The column-wise writer gives the same bytes as formatting cell by cell, with
    unmatched objects (NaN values, ∞ ε) and missing replica values."""
    import copy
    import csv
    import io

    from rawsigma.analysis.reporting.report import write_objects_csv

    res = copy.deepcopy(result)
    res.replica_values["area"][:4, 0] = np.nan  # an object unmatched in 4 replicas
    res.replica_values["area"][:, 1] = np.nan  # and one in every replica
    c0 = res.codecs[1]
    c0.values["area"] = np.array(c0.values["area"], np.float64)
    c0.values["area"][2] = np.nan
    c0.objects["area"].eps[3] = np.inf
    path = write_objects_csv(res, tmp_path / "objects.csv")
    body = path.read_bytes().decode("utf-8").split("\n", 1)[1]
    want = io.StringIO(newline="")
    w = csv.writer(want)
    w.writerow(next(csv.reader(io.StringIO(body))))
    w.writerows(_objects_csv_rows_by_definition(res))
    assert body == want.getvalue()
