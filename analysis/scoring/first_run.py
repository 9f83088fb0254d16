"""Compile (or load from the cache) the scoring's numba kernels, announced.

Scoring calls numba kernels besides the codec's: the forest inference
(`segmentation.forest_infer`, bit-mask kernel), the outline/hull/Feret measurement
(`measurement.outline_kernel`), the per-object sums, size filter and overlaps
(`measurement.moments_kernel`), the Welford fold of the replicas' feature σ
(`scoring.welford_kernel`) and the replica draws (`noisemodel.replica_kernel`).
Compiled code is cached per machine (`rawsigma.jitcache`), so only the first run on a
machine compiles them (≈ 3–5 s CPU, see
benchmarks/RESULTS.md). `warm_up` compiles them under the progress stage `STAGE` by
calling each once on tiny inputs of the argument types scoring passes, and returns at
once when nothing needs compiling; without it the wait would fall, unannounced, inside
the training and replica stages. The forests' traversal kernel (trees of more than 64
leaves, rare with the presets) compiles on its first use, during segmentation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from rawsigma import jitcache

STAGE = "compiling scoring kernels (first run only)…"
Progress = Callable[[str, int, int], None]


def _outline() -> None:
    from rawsigma.analysis.measurement import moments_kernel, outline_kernel

    lab = np.zeros((3, 3), np.int32)  # as `morphometry.measure` passes it
    lab[1, 1] = 1
    one = np.ones(2, np.int64)
    outline_kernel.shape_params(lab, one[:1].copy(), one, one, one, one)
    moments_kernel.label_moments(lab, 1)
    moments_kernel.size_relabel(lab.copy(), 2)
    moments_kernel.overlap_runs(lab.ravel(), lab.ravel(), 1, 1)


def _replicas() -> None:
    from rawsigma.analysis.noisemodel import replica_kernel

    f32 = np.zeros((1, 2), np.float32)  # as `synthesis.redraw` passes them
    replica_kernel.redraw_rows(
        np.array([[0.0, 20.0]]), f32, f32 + 1, f32, np.zeros((1, 2), np.uint8),
        np.float32(10), np.zeros(3, np.uint64), np.zeros((1, 1, 2), np.uint16), 0, 1,
    )  # fmt: skip


def _forest() -> None:
    from rawsigma.analysis.segmentation import forest_infer as fi

    one = np.zeros(1, np.int64)  # one tree, one internal node: `flatten`'s dtypes
    masks = fi.MaskForest(
        node_start=np.array([0, 1], np.int64),
        feature=one,
        threshold=np.zeros(1, np.float32),
        clear=np.zeros(1, np.uint64),
        leaf_start=one.copy(),
        leaf_value=np.full((2, 2), 0.5),
    )
    forest = fi.FlatForest(
        roots=one, depth=one, kids=np.zeros(2, np.int32), feature=np.zeros(1, np.int32),
        threshold=np.zeros(1), value=np.full((1, 2), 0.5), n_features=1, masks=masks,
    )  # fmt: skip
    fi.predict_proba_channels(forest, np.zeros((1, 3), np.float32))


def _welford() -> None:
    from rawsigma.analysis.scoring import welford_kernel

    welford_kernel.fold(np.zeros(4), np.zeros(4), np.zeros(4, np.float32), 1)


#: tiny calls of each kernel, with the argument types scoring passes (what `warm_up` runs)
STEPS = (_forest, _outline, _welford, _replicas)


def _kernels() -> list:
    from rawsigma.analysis.measurement import moments_kernel as mk
    from rawsigma.analysis.measurement import outline_kernel
    from rawsigma.analysis.noisemodel import replica_kernel
    from rawsigma.analysis.scoring import welford_kernel
    from rawsigma.analysis.segmentation import forest_infer

    return [
        forest_infer.KERNELS["mask"], outline_kernel.shape_params, welford_kernel.fold,
        mk.label_moments, mk.size_relabel, mk.overlap_runs, replica_kernel.redraw_rows,
    ]  # fmt: skip


def pending() -> list[str]:
    """Names of the scoring kernels that the next score would compile first."""
    return jitcache.pending(_kernels())


def warm_up(progress: Progress | None = None) -> float:
    """Compile the scoring kernels if needed (nothing when compiled or cached already).

    Parameters
    ----------
    progress : callable(stage, done, total), optional
        Told ``(STAGE, i, n)`` before each of the ``n`` steps and ``(STAGE, n, n)`` at
        the end, only
        when there is something to compile.

    Returns
    -------
    float
        Seconds spent (0 when nothing needed compiling).
    """
    if not pending():
        return 0.0
    t0 = time.perf_counter()
    steps = STEPS
    for i, step in enumerate(steps):
        if progress is not None:
            progress(STAGE, i, len(steps))
        step()
    if progress is not None:
        progress(STAGE, len(steps), len(steps))
    return time.perf_counter() - t0
