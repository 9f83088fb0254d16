"""Acceptance: ``noise:step=2`` stays within noise (every |mean ε| < 1) on crops of the
shared real images, scored by the offline pipeline with an estimated profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

DATA = Path(__file__).parents[1].parent / "shared" / "data"

CASES = [
    ("bbbc039_u2os_hoechst_3fields.tif", "bbbc039_u2os_hoechst_3fields_labels.tif", 1, 12),
    ("usiigaci_phase_contrast_1fields.tif", "usiigaci_phase_contrast_1fields_labels.tif", 0, 16),
]


@pytest.mark.slow
@pytest.mark.parametrize(("image", "labels", "field", "bits"), CASES)
def test_noise_step2_within_noise_on_real_crop(image, labels, field, bits):
    if not (DATA / image).exists():
        pytest.skip(f"{DATA / image} not available")
    from rawsigma.analysis.noisemodel.estimate import estimate_profile
    from rawsigma.analysis.scoring.runner import score_image
    from rawsigma.analysis.segmentation.classifier import training_labels_from_instances

    img = tifffile.imread(DATA / image)
    lab = tifffile.imread(DATA / labels)
    img = img.reshape(-1, *img.shape[-2:])[field]
    lab = lab.reshape(-1, *lab.shape[-2:])[field]
    crop = np.ascontiguousarray(img[:256, :256])
    prof = estimate_profile(crop, bit_depth=bits, tile=32)
    res = score_image(
        crop,
        prof,
        labels=training_labels_from_instances(lab[:256, :256]),
        codecs=["noise:step=2"],
        n_replicas=10,
        seed=0,
    )
    assert res.n_objects >= 5
    (c,) = res.codecs
    assert c.ratio > 4
    assert c.verdict["within_noise"], c.verdict
