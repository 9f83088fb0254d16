"""Forest inference and one segmentation pass: compiled (`forest_infer`) vs scikit-learn.

The ``score`` workload: the synthetic sCMOS phantom of bench_score.py at ``--size``²,
the ilastik preset trained on its sparse labels, then every feature block of the image
classified by sklearn's ``predict_proba``, by the traversal kernel (main before the
bit-mask kernel) and by the default compiled forest (bit masks when every tree has
≤ 64 leaves): same forest, same features, same threads (sklearn: ``n_jobs``; ours:
threads over row blocks), interleaved, best of ``--repeat``. Prints wall and process
CPU time (the steadier figure on a shared machine), the ratios, the load, and checks
that the probabilities are identical. Then one full segmentation pass
(``PixelClassifier.predict_proba``: feature bank + inference) three ways, with the
peak of traced (numpy) memory of each: "sklearn" (channels-last feature blocks +
sklearn, the path before issue 16), "rows" (the same blocks + the traversal kernel)
and "fused" (channel-first blocks classified in the thread that computed them).

    python benchmarks/bench_forest.py [--size 2048] [--threads 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
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


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def _inference(clf, img, a, forests) -> None:
    """Every feature block classified by sklearn and by each compiled forest."""
    from rawsigma.analysis.segmentation import forest_infer as FI
    from rawsigma.analysis.segmentation.features import iter_feature_blocks

    names = ["sklearn", *forests]
    best = {k: [np.inf, np.inf] for k in names}
    same = True
    chunk = 1 << 16
    for _ in range(a.repeat):
        tot = {k: [0.0, 0.0] for k in names}
        for _core, feats in iter_feature_blocks(img, clf.features, n_workers=a.threads):
            x = feats.reshape(-1, feats.shape[-1])
            for i in range(0, x.shape[0], chunk):
                xi = x[i : i + chunk]
                w, c, ref = _timed(lambda xi=xi: clf.model_.predict_proba(xi))
                tot["sklearn"][0] += w
                tot["sklearn"][1] += c
                for k, f in forests.items():
                    w, c, got = _timed(lambda xi=xi, f=f: FI.predict_proba(f, xi, a.threads))
                    tot[k][0] += w
                    tot[k][1] += c
                    same &= bool((ref.argmax(1) == got.argmax(1)).all())
                    same &= bool(np.array_equal(ref, got))
        for k in names:
            best[k] = [min(best[k][0], tot[k][0]), min(best[k][1], tot[k][1])]
    s = best["sklearn"]
    print(f"inference, {a.threads} threads (best of {a.repeat}; load {_load()}):")
    for k in names:
        w, c = best[k]
        print(f"  {k:10s} {w:7.2f} s wall {c:7.2f} s CPU   sklearn/{k}: wall "
              f"{s[0] / w:.2f}x CPU {s[1] / c:.2f}x")  # fmt: skip
    print(f"  identical labels and probabilities (array-equal): {same}")


def _passes(clf, img, a) -> None:
    """One segmentation pass three ways, interleaved; then the traced peak of each."""
    from rawsigma.analysis.segmentation import forest_infer as FI

    ways = {  # (compiled_inference, fused_inference, bit masks)
        "sklearn": (False, False, True),
        "rows": (True, False, False),
        "fused": (True, True, True),
    }

    def run(name: str):
        comp, fused, masks = ways[name]
        clf.compiled_inference, clf.fused_inference = comp, fused
        clf._flat = (clf.model_, FI.flatten(clf.model_, masks=masks))
        return clf.predict_proba(img)

    best = {k: [np.inf, np.inf] for k in ways}
    outs = {}
    for _ in range(a.repeat):
        for k in ways:
            w, c, outs[k] = _timed(lambda k=k: run(k))
            best[k] = [min(best[k][0], w), min(best[k][1], c)]
    same = all(np.array_equal(outs["sklearn"], o) for o in outs.values())
    peak = {}
    for k in ways:
        tracemalloc.start()
        run(k)
        peak[k] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    full = img.size * clf.model_.n_features_in_ * 4 / 2**20
    s = best["sklearn"]
    print(f"one segmentation pass {a.size}², {a.threads} threads (best of {a.repeat}; "
          f"load {_load()}); a full-size bank is {full:.0f} MiB:")  # fmt: skip
    for k in ways:
        w, c = best[k]
        print(f"  {k:8s} {w:7.2f} s wall {c:7.2f} s CPU  sklearn/{k}: wall {s[0] / w:.2f}x "
              f"CPU {s[1] / c:.2f}x  rows/{k}: CPU {best['rows'][1] / c:.2f}x  "
              f"peak traced {peak[k]:.0f} MiB")  # fmt: skip
    print(f"  identical probabilities, every pixel: {same}")


def main() -> None:
    warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed")
    warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--part", default="inference,pass")
    a = ap.parse_args()
    from rawsigma.analysis.segmentation import forest_infer as FI
    from rawsigma.analysis.segmentation.classifier import PixelClassifier

    img, lab = _scene(a.size)
    clf = PixelClassifier("ilastik", n_jobs=a.threads)
    w, c, _ = _timed(lambda: clf.fit(img, lab))
    forests = {"traversal": FI.flatten(clf.model_, masks=False), "compiled": FI.flatten(clf.model_)}
    f = forests["traversal"]
    print(f"{a.size}², ilastik preset, {a.threads} threads; load {_load()}")
    print(f"fit {w:.1f} s wall {c:.1f} s CPU; forest: {f.roots.size} trees, "
          f"{f.feature.size} nodes, depth mean {f.depth.mean():.1f} max {f.depth.max()}; "
          f"bit-mask kernel: {forests['compiled'].masks is not None}")  # fmt: skip
    for f in forests.values():  # compile / load the kernels
        FI.predict_proba(f, np.zeros((1, f.n_features), np.float32))
    if "inference" in a.part:
        _inference(clf, img, a, forests)
    if "pass" in a.part:
        _passes(clf, img, a)


if __name__ == "__main__":
    main()
