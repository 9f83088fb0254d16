"""ImageJ / BioVoxxel morphometry against the table in segmentation-anchors.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rawsigma.analysis.measurement.morphometry import (
    PARAMETERS,
    global_params,
    measure,
    traced_outline,
    traced_perimeter,
)
from rawsigma.errors import InputFileError
from skimage.draw import disk, ellipse
from skimage.measure import regionprops


def _single(shape, rr, cc):
    m = np.zeros(shape, bool)
    m[rr, cc] = True
    return m


def _pixel():
    return _single((9, 9), 4, 4)


def _square2():
    m = np.zeros((9, 9), bool)
    m[4:6, 4:6] = True
    return m


def _rect():
    m = np.zeros((12, 16), bool)
    m[4:8, 3:13] = True  # 10 wide, 4 high
    return m


def _disk():
    m = np.zeros((30, 30), bool)
    m[disk((15, 15), 10)] = True  # x² + y² < 100: 305 px
    return m


def _ellipse():
    m = np.zeros((80, 80), bool)
    m[ellipse(40, 40, 8, 25, rotation=np.pi / 6)] = True  # 50 x 16, rotated 30°
    return m


# Shape -> (Perim, Feret, MinFeret, Solidity, Major) from the anchors table (ImageJ column)
TABLE = [
    (_pixel, 1, 2.828, 1.414, 1.0, 1.0, 1.128),
    (_square2, 4, 5.657, 2.828, 2.0, 1.0, 2.257),
    (_rect, 40, 25.657, 10.770, 4.0, 1.0, 11.284),
    (_disk, 305, 63.698, 21.213, 19.0, 0.950, 19.706),
    (_ellipse, 635, 116.95, 50.774, 17.15, 0.926, 50.19),
]


@pytest.mark.parametrize("make,area,perim,feret,minf,solidity,major", TABLE)
def test_anchor_table(make, area, perim, feret, minf, solidity, major):
    m = measure(make())
    assert m["label"].tolist() == [1]
    assert m["area"][0] == area
    assert m["perimeter"][0] == pytest.approx(perim, abs=6e-3)
    assert m["feret"][0] == pytest.approx(feret, abs=6e-4)
    assert m["min_feret"][0] == pytest.approx(minf, abs=6e-3)
    assert m["solidity"][0] == pytest.approx(solidity, abs=6e-4)
    assert m["major"][0] == pytest.approx(major, abs=6e-3)


def test_exact_small_shapes():
    m = measure(_pixel())
    assert m["perimeter"][0] == pytest.approx(4 - 2 * (2 - math.sqrt(2)))
    assert m["major"][0] == pytest.approx(2 / math.sqrt(math.pi), rel=1e-7)
    assert (m["x"][0], m["y"][0]) == (4.5, 4.5)
    m = measure(_square2())
    assert m["perimeter"][0] == pytest.approx(8 - 4 * (2 - math.sqrt(2)))
    assert m["feret"][0] == pytest.approx(2 * math.sqrt(2))


def test_rectangle_all_parameters():
    m = {k: v[0] for k, v in measure(_rect()).items()}
    assert (m["x"], m["y"]) == (8.0, 6.0)
    assert m["angle"] == 0.0
    assert m["aspect_ratio"] == pytest.approx(2.5, abs=1e-6)
    assert m["roundness"] == pytest.approx(0.4, abs=1e-6)
    assert m["compactness"] == pytest.approx(0.632, abs=1e-3)
    assert m["extent"] == 1.0
    assert m["feret_ar"] == pytest.approx(10.770 / 4.0, abs=1e-3)
    # ImageJ's hull order (top-left start, CCW on screen) picks this diagonal
    assert m["feret_angle"] == pytest.approx(180 - math.degrees(math.atan2(4, 10)))
    assert (m["feret_x"], m["feret_y"]) == (3.0, 4.0)
    assert m["circularity"] == pytest.approx(4 * math.pi * 40 / 25.657**2, abs=1e-3)
    assert math.pi * m["major"] * m["minor"] / 4 == pytest.approx(40)


def test_ellipse_angles_and_identities():
    img = _ellipse()
    m = {k: v[0] for k, v in measure(img).items()}
    assert m["aspect_ratio"] == pytest.approx(3.116, abs=1e-3)
    assert m["roundness"] == pytest.approx(0.321, abs=1e-3)
    assert m["compactness"] == pytest.approx(0.567, abs=1e-3)
    assert m["roundness"] == pytest.approx(1 / m["aspect_ratio"])
    assert m["compactness"] == pytest.approx(math.sqrt(m["roundness"]))
    # skimage orientation converts as Angle = (deg(orientation) + 90) mod 180
    rp = regionprops(img.astype(np.uint8))[0]
    assert m["angle"] == pytest.approx((math.degrees(rp.orientation) + 90) % 180, abs=0.05)
    assert m["angle"] == pytest.approx(30.0, abs=0.5)
    assert m["feret_angle"] == pytest.approx(30.0, abs=3.0)


def test_several_objects_ordered_by_label_and_circularity_clamped():
    lab = np.zeros((40, 40), np.int32)
    lab[2:6, 2:6] = 7
    lab[20:30, 10:14] = 3
    lab[35, 35] = 5
    m = measure(lab)
    assert m["label"].tolist() == [3, 5, 7]
    assert m["area"].tolist() == [40, 1, 16]
    assert np.all(m["circularity"] <= 1.0)
    assert set(PARAMETERS) <= set(m)
    assert all(len(m[k]) == 3 for k in PARAMETERS)
    g = global_params(lab)
    assert g == {"count": 3.0, "total_area": 57.0}


def test_boolean_mask_is_8_connected():
    m = np.zeros((10, 10), bool)
    m[2, 2] = m[3, 3] = m[4, 4] = True  # diagonal: one 8-connected object
    m[8, 1] = True
    res = measure(m)
    assert res["area"].tolist() == [3, 1]
    # traced diagonal line: 12 unit edges, 12 vertices
    xs, ys = traced_outline(m[:6, :6])
    assert len(xs) == 12
    assert traced_perimeter(xs, ys) > 0


def test_holes_excluded_from_area_not_outline():
    m = np.zeros((12, 12), bool)
    m[2:9, 2:9] = True
    m[5, 5] = False
    r = measure(m)
    assert r["area"][0] == 48
    assert r["perimeter"][0] == pytest.approx(28 - 4 * (2 - math.sqrt(2)))
    assert r["solidity"][0] == pytest.approx(48 / 49)


def test_empty_and_bad_input():
    m = measure(np.zeros((5, 5), np.uint16))
    assert all(len(v) == 0 for v in m.values())
    assert global_params(np.zeros((5, 5), bool)) == {"count": 0.0, "total_area": 0.0}
    with pytest.raises(InputFileError, match="dtype"):
        measure(np.zeros((5, 5), np.float32))
    with pytest.raises(InputFileError, match="2D"):
        measure(np.zeros((2, 5, 5), np.int32))
    with pytest.raises(InputFileError, match="negative"):
        measure(-np.ones((5, 5), np.int32))


def test_many_objects_matches_regionprops_basics():
    rng = np.random.default_rng(0)
    from skimage.measure import label

    img = label(rng.random((128, 128)) > 0.7, connectivity=2)
    m = measure(img)
    props = regionprops(img)
    assert len(props) == len(m["label"])
    np.testing.assert_array_equal(m["area"], [p.area for p in props])
    np.testing.assert_allclose(m["y"], [p.centroid[0] + 0.5 for p in props])
    np.testing.assert_allclose(m["x"], [p.centroid[1] + 0.5 for p in props])
    assert np.all(m["solidity"] <= 1 + 1e-12)
    assert np.all(m["min_feret"] <= m["feret"] + 1e-12)
    assert np.all(m["extent"] <= 1)


def _python_shape_values(lab: np.ndarray) -> np.ndarray:
    """Perimeter, Feret values and hull area of every object by the Python definitions."""
    from rawsigma.analysis.measurement import morphometry as m
    from scipy import ndimage as ndi

    rows = []
    for i, sl in enumerate(ndi.find_objects(lab), 1):
        if sl is None:
            continue
        obj = lab[sl] == i
        hull = m.corner_hull(obj)
        f, a, mf, x1, y1 = m._feret(hull)
        per = m.traced_perimeter(*m.traced_outline(obj))
        rows.append((per, f, a, mf, x1 + sl[1].start, y1 + sl[0].start, m._shoelace(hull)))
    return np.array(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_outline_and_hull_equal_the_python_definitions(seed):
    """`measure`'s compiled kernel (outline_kernel) gives the Python functions' values
    bit for bit: random blobs with holes, touching and one-pixel objects."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    blobs = ndi.gaussian_filter(rng.random((160, 170)), 1.5 + seed) > 0.5
    noise = rng.random((40, 50)) > 0.55  # tiny, diagonal-touching objects
    for mask in (blobs, noise):
        lab = ndi.label(mask, structure=np.ones((3, 3)))[0]
        if seed == 2:
            lab = lab.astype(np.uint16)  # another dtype, same values
        ref = _python_shape_values(np.asarray(lab))
        tab = measure(lab)
        assert len(ref) == len(tab["label"]) > 5
        for col, key in enumerate(["perimeter", "feret", "feret_angle", "min_feret"]):
            np.testing.assert_array_equal(tab[key], ref[:, col], err_msg=key)
        np.testing.assert_array_equal(tab["feret_x"], ref[:, 4])
        np.testing.assert_array_equal(tab["feret_y"], ref[:, 5])
        np.testing.assert_array_equal(tab["solidity"], tab["area"] / ref[:, 6])
