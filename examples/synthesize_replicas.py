"""Load a camera profile and synthesise raw-equivalent replicas of an image.

Each replica redraws every pixel from the profile's noise model around its observed
value; the spread of the replicas is the camera's own noise. The per-pixel variance
over the replicas is compared with the model ``gain·(x − offset) + read_noise²``.

Run: ``python examples/synthesize_replicas.py`` (a few seconds).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from _scene import camera_profile, raw_image
from rawsigma.analysis import synthesize
from rawsigma.calib import load_profile, save_profile


def main() -> None:
    image, _ = raw_image()
    with tempfile.TemporaryDirectory() as tmp:
        path = save_profile(camera_profile(image.shape), Path(tmp) / "camera.h5")
        profile = load_profile(path)  # any profile written by `rawsigma calibrate`

    replicas = synthesize(image, profile, n=200, rng=0)
    print(
        f"{replicas.shape[0]} replicas of a {image.shape} {image.dtype} image, "
        f"dtype {replicas.dtype}"
    )

    x = image.astype(float)
    model = profile.gain * np.maximum(x - profile.offset, 0) + profile.read_noise**2
    ratio = replicas.astype(float).var(axis=0, ddof=1).mean() / model.mean()
    print(f"variance over replicas / model variance: {ratio:.3f} (1 expected)")
    assert 0.9 < ratio < 1.1


if __name__ == "__main__":
    main()
