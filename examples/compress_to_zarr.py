"""Compress raw frames within the camera noise into a zarr store, and read them back.

The noise-calibrated codec quantises each pixel in steps of its own noise σ (here
``step=2``), so the decoded frames differ from the raw ones by at most about one σ.
With rawsigma installed, zarr opens the store through the codec's entry point.

Run: ``python examples/compress_to_zarr.py [frames.zarr]`` (a few seconds).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import zarr
from _scene import camera_profile, raw_image
from rawsigma.analysis.noisecodec import NoiseCodec, read_compressed, write_compressed


def main(out: Path) -> None:
    frames = np.stack([raw_image(seed=s)[0] for s in range(3)])  # (3, 96, 96) uint16
    profile = camera_profile(frames.shape[1:])
    codec = NoiseCodec(profile, step=2)
    write_compressed(out, frames, codec)
    stored = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(
        f"{frames.nbytes} raw bytes -> {stored} bytes in {out.name} "
        f"({frames.nbytes / stored:.1f}:1)"
    )

    decoded = read_compressed(out)  # no profile needed: the stream describes itself
    also = zarr.open_array(out, mode="r")[...]  # plain zarr, through the entry point
    assert np.array_equal(decoded, also)

    sigma = np.sqrt(profile.gain * np.maximum(frames - profile.offset, 0) + profile.read_noise**2)
    err = (decoded.astype(float) - frames) / sigma
    print(
        f"decoded - raw, in units of the pixel's noise σ: mean {err.mean():+.3f}, "
        f"rms {err.std():.3f}, max |.| {np.abs(err).max():.2f}"
    )
    assert abs(err.mean()) < 0.05 and err.std() < 1.0


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "frames.zarr")
