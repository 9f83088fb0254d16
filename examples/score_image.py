"""Score codecs on one raw image against the camera's raw noise.

A pixel classifier is trained on sparse annotations of the raw image, segments the raw
image, its replicas and every decoded version; each object parameter χ gives
``ε = (χ_raw − χ_codec) / σ_raw``, ``|ε| < 1`` meaning within the raw noise.

Run: ``python examples/score_image.py [out_dir]`` (about 15 s; with ``out_dir`` the
HTML report is written there).
"""

from __future__ import annotations

import sys

from _scene import camera_profile, raw_image
from rawsigma.analysis import score_image, training_labels, write_report


def main(out: str | None = None) -> None:
    image, truth = raw_image()
    labels = training_labels(truth)  # sparse annotations: 1 background, 2 nuclei
    result = score_image(
        image,
        camera_profile(image.shape),
        labels=labels,
        codecs=["8bit", "jpeg@10", "noise:step=2"],
        n_replicas=6,
        seed=0,
    )
    print(f"{result.n_objects} objects in the raw segmentation")
    for codec in result.codecs:
        area = codec.objects["area"]
        print(
            f"{codec.spec:>14}: ratio {codec.ratio:5.1f}:1, "
            f"area ε mean {area.mean:+.2f}, within noise: {codec.verdict['within_noise']}"
        )
    if out:
        print("report:", write_report(result, out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
