"""Forest inference: compiled (`rawsigma.analysis.segmentation.forest_infer`) vs scikit-learn.

The ``score`` workload: the synthetic sCMOS phantom of bench_score.py at ``--size``²,
the ilastik preset trained on its sparse labels, then every feature block of the image
classified by both, same forest, same features, same threads (sklearn: ``n_jobs``; ours:
threads over row blocks), interleaved, best of ``--repeat``. Prints wall and process CPU
time (the steadier figure on a shared machine), the ratios, the load, and checks that
the probabilities are identical. Then one full segmentation pass (feature bank +
inference, ``PixelClassifier.predict_proba``) both ways.

    python benchmarks/bench_forest.py [--size 2048] [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def _scene(size: int):
    from rawsigma.acquire.sensor_model import SensorModel
    from rawsigma.analysis.phantoms import nuclei2d
    from rawsigma.analysis.segmentation.annotations import training_labels

    model = SensorModel.preset("scmos", (size, size), seed=0)
    bright, truth = nuclei2d((size, size), n_objects=int(40 * (size / 256) ** 2), rng=0)
    img = model.expose(40 + 900 * bright, 0.01, np.random.default_rng(1))
    return img, training_labels(truth)


def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


def main() -> None:
    warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed")
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from rawsigma.analysis.segmentation import forest_infer as FI
    from rawsigma.analysis.segmentation.classifier import PixelClassifier
    from rawsigma.analysis.segmentation.features import iter_feature_blocks

    img, lab = _scene(a.size)
    clf = PixelClassifier("ilastik", n_jobs=a.threads)
    w, c, _ = _timed(lambda: clf.fit(img, lab))
    forest = FI.flatten(clf.model_)
    print(f"{a.size}², ilastik preset, {a.threads} threads; load {os.getloadavg()}")
    print(f"fit {w:.1f} s wall {c:.1f} s CPU; forest: {forest.roots.size} trees, "
          f"{forest.feature.size} nodes, depth mean {forest.depth.mean():.1f} max "
          f"{forest.depth.max()}")  # fmt: skip
    FI.predict_proba(forest, np.zeros((1, forest.n_features), np.float32))  # compile/load
    chunk = 1 << 16
    best = {"sklearn": [np.inf, np.inf], "compiled": [np.inf, np.inf]}
    same = True
    for _ in range(a.repeat):
        tot = {"sklearn": [0.0, 0.0], "compiled": [0.0, 0.0]}
        for _core, feats in iter_feature_blocks(img, clf.features, n_workers=a.threads):
            x = feats.reshape(-1, feats.shape[-1])
            for i in range(0, x.shape[0], chunk):
                xi = x[i : i + chunk]
                ws, cs, ref = _timed(lambda xi=xi: clf.model_.predict_proba(xi))
                wf, cf, got = _timed(lambda xi=xi: FI.predict_proba(forest, xi, a.threads))
                tot["sklearn"][0] += ws
                tot["sklearn"][1] += cs
                tot["compiled"][0] += wf
                tot["compiled"][1] += cf
                same &= bool((ref.argmax(1) == got.argmax(1)).all())
                same &= bool(np.allclose(ref, got, rtol=0, atol=1e-12))
        for k in best:
            best[k] = [min(best[k][0], tot[k][0]), min(best[k][1], tot[k][1])]
    s, f = best["sklearn"], best["compiled"]
    print(f"inference sklearn {s[0]:.2f} s wall {s[1]:.2f} s CPU; compiled {f[0]:.2f} s "
          f"wall {f[1]:.2f} s CPU")  # fmt: skip
    print(f"ratio sklearn/compiled: wall {s[0] / f[0]:.2f}x, CPU {s[1] / f[1]:.2f}x "
          f"(target >= 3x); identical labels and probabilities: {same}")  # fmt: skip
    passes = {}
    for name, compiled in (("sklearn", False), ("compiled", True), ("sklearn", False)):
        clf.compiled_inference = compiled
        w, c, _ = _timed(lambda: clf.predict_proba(img))
        old = passes.get(name, (np.inf, np.inf))
        passes[name] = (min(old[0], w), min(old[1], c))
    s, f = passes["sklearn"], passes["compiled"]
    print(f"one segmentation pass (features + inference): sklearn {s[0]:.1f} s wall "
          f"{s[1]:.1f} s CPU, compiled {f[0]:.1f} s wall {f[1]:.1f} s CPU: "
          f"{s[0] / f[0]:.2f}x wall, {s[1] / f[1]:.2f}x CPU; load {os.getloadavg()}")  # fmt: skip


if __name__ == "__main__":
    main()
