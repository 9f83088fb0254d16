"""The forest fit's CPU time against segmentation quality on the real images (issue 16).

For each real frame of the shared data folder (Usiigaci phase contrast, the three
BBBC039 fields), the ilastik classifier of ``score`` is trained on ``training_labels``
of the truth with the default sample (20 000 annotated pixels per class) and with
smaller ones: fewer pixels per class, or each tree's bootstrap drawing a fraction of the
sample (scikit-learn's ``max_samples``). Printed per variant: the forest fit's CPU
time (``RandomForestClassifier.fit`` alone, one thread), the mean leaves per tree,
the pixel F1 of the foreground (probability > 0.5) against the truth, the connected
components, and the fraction of pixels labelled as with the default.

    python benchmarks/bench_forest_fit.py
"""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VARIANTS: dict[str, dict] = {
    "default (20000/class)": {},
    "10000/class": {"cap": 10_000},
    "5000/class": {"cap": 5_000},
    "max_samples=0.5": {"max_samples": 0.5},
    "max_samples=0.25": {"max_samples": 0.25},
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _frames():
    import tifffile

    name = "usiigaci_phase_contrast_1fields"
    yield (
        "usiigaci",
        np.squeeze(tifffile.imread(DATA / f"{name}.tif")),
        np.squeeze(tifffile.imread(DATA / f"{name}_labels.tif")),
    )
    im = tifffile.imread(DATA / "bbbc039_u2os_hoechst_3fields.tif")
    lab = tifffile.imread(DATA / "bbbc039_u2os_hoechst_3fields_labels.tif")
    for i in range(im.shape[0]):
        yield f"bbbc039 field {i}", im[i], lab[i]


def main() -> None:
    from rawsigma.analysis.scoring.per_image import to_objects
    from rawsigma.analysis.segmentation.annotations import training_labels
    from rawsigma.analysis.segmentation.classifier import PixelClassifier
    from sklearn.ensemble import RandomForestClassifier

    fit_cpu: list[float] = []
    original = RandomForestClassifier.fit

    def timed_fit(self, *args, **kwargs):
        c = _cpu()
        out = original(self, *args, **kwargs)
        fit_cpu.append(_cpu() - c)
        return out

    RandomForestClassifier.fit = timed_fit  # type: ignore[method-assign]
    print("| image | variant | fit CPU s | leaves/tree | pixel F1 | components | same labels |")
    print("|---|---|---|---|---|---|---|")
    for name, img, truth in _frames():
        lab = training_labels(truth)
        ref = None
        for vname, v in VARIANTS.items():
            clf = PixelClassifier(
                "ilastik", random_state=1234, n_jobs=1, max_samples_per_class=v.get("cap", 20_000)
            )
            if "max_samples" in v:
                clf.rf_params["max_samples"] = v["max_samples"]
            clf.fit(img, lab)
            fg = clf.foreground_probability(img) > 0.5
            ref = fg if ref is None else ref
            tp = np.count_nonzero(fg & (truth > 0))
            f1 = 2 * tp / (np.count_nonzero(fg) + np.count_nonzero(truth))
            leaves = np.mean([e.tree_.n_leaves for e in clf.model_.estimators_])
            n_obj = int(to_objects(fg, 0.5).max())
            print(
                f"| {name} | {vname} | {fit_cpu[-1]:.2f} | {leaves:.0f} | {f1:.4f} | {n_obj} | "
                f"{np.mean(fg == ref):.5f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
