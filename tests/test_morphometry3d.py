"""3D morphometry: volume, mesh surface area, centroid, globals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rawsigma.analysis.measurement.morphometry3d import global_params3d, measure3d
from rawsigma.errors import InputFileError


def _ball(r, shape=40, centre=20):
    z, y, x = np.ogrid[:shape, :shape, :shape]
    return (z - centre) ** 2 + (y - centre) ** 2 + (x - centre) ** 2 <= r * r


def test_ball_volume_surface_centroid():
    m = measure3d(_ball(10))
    assert m["volume"][0] == np.count_nonzero(_ball(10))
    assert m["volume"][0] == pytest.approx(4 / 3 * math.pi * 1000, rel=0.02)
    assert 1.05 < m["surface_area"][0] / (4 * math.pi * 100) < 1.12  # documented bias
    assert (m["z"][0], m["y"][0], m["x"][0]) == (20.5, 20.5, 20.5)


def test_spacing_and_cube():
    cube = np.zeros((8, 8, 8), bool)
    cube[2:6, 2:6, 2:6] = True
    m = measure3d(cube, spacing=(2.0, 1.0, 1.0))
    assert m["volume"][0] == 128.0
    assert m["z"][0] == pytest.approx(4.0 * 2)
    # marching cubes bevels the 12 edges and 8 corners of a cube: below the face area
    faces = 2 * (4 * 4) + 4 * (8 * 4)  # z extent 8, y and x extent 4
    assert 0.8 * faces < m["surface_area"][0] < faces


def test_globals_and_load():
    lab = np.zeros((20, 20, 20), np.int32)
    lab[1:4, 1:4, 1:4] = 1
    lab[10:12, 10:12, 10:12] = 2
    g = global_params3d(lab)
    assert g["count"] == 2
    assert g["total_volume"] == 35
    assert g["mean_volume"] == 17.5
    assert g["load"] == pytest.approx(35 / 8000)
    ref = np.zeros_like(lab, bool)
    ref[:10] = True
    assert global_params3d(lab, reference_mask=ref)["load"] == pytest.approx(35 / 4000)
    assert g["total_surface"] == pytest.approx(measure3d(lab)["surface_area"].sum())
    e = global_params3d(np.zeros((4, 4, 4), bool))
    assert e["count"] == 0 and e["mean_volume"] == 0


def test_bad_input():
    with pytest.raises(InputFileError):
        measure3d(np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError):
        measure3d(np.zeros((4, 4, 4), np.int32), spacing=(1, 1))
