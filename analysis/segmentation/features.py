"""Pixel feature banks for the random-forest classifier, 2D and 3D.

Two presets:

``"ilastik"`` (default scales 0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
    ``GaussianSmoothing`` (every scale), and from scale 0.7 up (ilastik's minimum):
    ``LaplacianOfGaussian``, ``GaussianGradientMagnitude``, ``DifferenceOfGaussians``
    (G_s - G_0.66s), ``StructureTensorEigenvalues`` (inner scale s, outer s/2) and
    ``HessianOfGaussianEigenvalues``; eigenvalues in descending order.  49 channels in
    2D, 61 in 3D.  Derivatives are central finite differences of the Gaussian-smoothed
    image (``derivatives="fd"``, the fast default, as ``skimage.feature`` does) or
    exact Gaussian-derivative filters (``derivatives="gaussian"``).  ilastik's
    pre-smoothing quirk (effective scale ~sqrt(2)*s for s <= 1) is not reproduced.
``"weka"`` (default sigmas 1, 2, 4, 8, 16; Gaussian actually applied 0.4*sigma, edges
    extended with the nearest pixel, as Trainable Weka Segmentation)
    the original image, ``Gaussian_blur``, ``Sobel_filter`` (3x3 Sobel magnitude of
    the blurred image, also at sigma 0), ``Hessian`` (8 channels per sigma, also at 0:
    module, trace, determinant, eigenvalues 1 and 2, orientation, gamma-normalised
    square eigenvalue difference, square of the gamma-normalised eigenvalue
    difference; second derivatives are Sobel-of-Sobel, gamma t = 1) and
    ``Difference_of_gaussians`` for every pair: 70 channels in 2D (the paper's set:
    Weka defaults without membrane projections).  In 3D the Hessian gives module,
    trace, determinant and the three eigenvalues (6 channels per sigma).

Everything is float32 in the image's own units (no rescaling of integer images).
Features are computed block-wise: each block is read with a halo equal to the
filters' total support for each scale separately, so the result equals the
whole-image result (to float rounding) while memory stays bounded, and blocks run on
threads (scipy.ndimage and numpy release the GIL).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from rawsigma.analysis.segmentation.features_math import gaussian_radius
from rawsigma.analysis.segmentation.features_sets import (
    _ILASTIK_MIN_SCALE,
    _WEKA_BLUR,
    _WEKA_HESSIAN_2D,
    _WEKA_HESSIAN_3D,
    _ilastik_group,
    _weka_group,
)

if TYPE_CHECKING:
    from rawsigma.analysis.segmentation.scratch import ScratchPool

__all__ = [
    "ILASTIK_SIGMAS",
    "WEKA_SIGMAS",
    "ILASTIK_FEATURES",
    "SCORING_FEATURES",
    "SCORING_SIGMAS",
    "FeatureConfig",
    "feature_bank",
    "feature_names",
    "feature_maps_for_scoring",
    "iter_feature_blocks",
    "map_feature_blocks",
    "map_feature_blocks_many",
]

ILASTIK_SIGMAS: tuple[float, ...] = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
WEKA_SIGMAS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
ILASTIK_FEATURES: tuple[str, ...] = (
    "GaussianSmoothing",
    "LaplacianOfGaussian",
    "GaussianGradientMagnitude",
    "DifferenceOfGaussians",
    "StructureTensorEigenvalues",
    "HessianOfGaussianEigenvalues",
)
#: The per-pixel epsilon maps of the scoring step use these.
SCORING_FEATURES: tuple[str, ...] = ILASTIK_FEATURES[:4]
#: Their default scales: the ilastik bank's scales in [1, 4] (1.0, 1.6, 3.5), so that with
#: the default classifier the scored features are the model's own input channels.
SCORING_SIGMAS: tuple[float, ...] = tuple(s for s in ILASTIK_SIGMAS if 1.0 <= s <= 4.0)
_TRUNCATE = 3.5
#: Target working memory per worker thread for automatic block sizes (bytes).
BLOCK_MEMORY = 512 * 2**20
#: The same for `map_feature_blocks` (features consumed in the thread: smaller blocks).
MAP_BLOCK_MEMORY = 128 * 2**20


@dataclass(frozen=True)
class FeatureConfig:
    """Declarative description of a feature bank (saved with a classifier).

    Parameters
    ----------
    preset : {"ilastik", "weka"}
    sigmas : tuple of float, optional
        Scales in pixels (physical units when ``spacing`` is given); preset default.
    features : tuple of str, optional
        ilastik preset only: subset of :data:`ILASTIK_FEATURES` (default all).
    derivatives : {"fd", "gaussian"}
        ilastik preset only: finite differences of the smoothed image or exact
        Gaussian-derivative filters.
    spacing : tuple of float, optional
        Pixel / voxel size per axis (sigmas are then in the same units).
    truncate : float
        Gaussian kernels are cut at ``truncate`` standard deviations.
    """

    preset: str = "ilastik"
    sigmas: tuple[float, ...] | None = None
    features: tuple[str, ...] | None = None
    derivatives: str = "fd"
    spacing: tuple[float, ...] | None = None
    truncate: float = _TRUNCATE
    _resolved: bool = field(default=False, repr=False, compare=False)

    def resolved(self) -> FeatureConfig:
        """Return a copy with defaults filled in and the values validated."""
        preset = str(self.preset).lower()
        if preset not in ("ilastik", "weka"):
            raise ValueError(f"feature preset must be 'ilastik' or 'weka', got {self.preset!r}")
        default = ILASTIK_SIGMAS if preset == "ilastik" else WEKA_SIGMAS
        sigmas = tuple(float(s) for s in (self.sigmas if self.sigmas is not None else default))
        if not sigmas or min(sigmas) <= 0:
            raise ValueError(f"sigmas must be positive numbers, got {self.sigmas}")
        sigmas = tuple(sorted(set(sigmas)))
        feats = self.features
        if preset == "ilastik":
            feats = tuple(feats) if feats is not None else ILASTIK_FEATURES
            bad = [f for f in feats if f not in ILASTIK_FEATURES]
            if bad or not feats:
                raise ValueError(f"unknown ilastik features {bad}; choose from {ILASTIK_FEATURES}")
            feats = tuple(f for f in ILASTIK_FEATURES if f in feats)
        elif feats is not None:
            raise ValueError("the weka preset has a fixed feature set; leave features=None")
        if self.derivatives not in ("fd", "gaussian"):
            raise ValueError(f"derivatives must be 'fd' or 'gaussian', got {self.derivatives!r}")
        spacing = None if self.spacing is None else tuple(float(s) for s in self.spacing)
        return FeatureConfig(preset, sigmas, feats, self.derivatives, spacing, self.truncate, True)

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        c = self.resolved()
        return {
            "preset": c.preset,
            "sigmas": list(c.sigmas or ()),
            "features": None if c.features is None else list(c.features),
            "derivatives": c.derivatives,
            "spacing": None if c.spacing is None else list(c.spacing),
            "truncate": c.truncate,
        }

    @classmethod
    def from_dict(cls, d: dict) -> FeatureConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(
            preset=d["preset"],
            sigmas=tuple(d["sigmas"]),
            features=None if d.get("features") is None else tuple(d["features"]),
            derivatives=d.get("derivatives", "fd"),
            spacing=None if d.get("spacing") is None else tuple(d["spacing"]),
            truncate=d.get("truncate", _TRUNCATE),
        ).resolved()


# --------------------------------------------------------------------------- plans
def _fmt(s: float) -> str:
    return f"{s:g}"


def _ilastik_channels(cfg: FeatureConfig, ndim: int, sigma: float) -> list[str]:
    names = []
    for f in cfg.features or ():
        if f != "GaussianSmoothing" and sigma < _ILASTIK_MIN_SCALE:
            continue
        if f in ("StructureTensorEigenvalues", "HessianOfGaussianEigenvalues"):
            names += [f"{f}_s{_fmt(sigma)}_e{i}" for i in range(ndim)]
        else:
            names.append(f"{f}_s{_fmt(sigma)}")
    return names


def _weka_groups(cfg: FeatureConfig, ndim: int) -> list[tuple[float, list[str]]]:
    hess = _WEKA_HESSIAN_2D if ndim == 2 else _WEKA_HESSIAN_3D
    sig = cfg.sigmas or ()
    groups = [(0.0, ["original", "Sobel_filter_0"] + [f"{h}_0" for h in hess])]
    for s in sig:
        names = [f"Gaussian_blur_{_fmt(s)}", f"Sobel_filter_{_fmt(s)}"]
        names += [f"{h}_{_fmt(s)}" for h in hess]
        names += [f"Difference_of_gaussians_{_fmt(a)}_{_fmt(s)}" for a in sig if a < s]
        groups.append((s, names))
    return groups


def _groups(cfg: FeatureConfig, ndim: int) -> list[tuple[float, list[str]]]:
    if cfg.preset == "weka":
        return _weka_groups(cfg, ndim)
    return [(s, _ilastik_channels(cfg, ndim, s)) for s in cfg.sigmas or ()]


def _order(cfg: FeatureConfig, ndim: int) -> list[str]:
    """Output channel order: ilastik by feature then scale; weka as its FeatureStack."""
    groups = _groups(cfg, ndim)
    if cfg.preset == "ilastik":
        out = []
        for f in cfg.features or ():
            for _, names in groups:
                out += [n for n in names if n.split("_s")[0] == f]
        return out
    order = ["original"]
    order += [n for _, ns in groups for n in ns if n.startswith("Gaussian_blur")]
    order += [n for _, ns in groups for n in ns if n.startswith("Sobel")]
    order += [n for _, ns in groups for n in ns if n.startswith("Hessian")]
    order += [n for _, ns in groups for n in ns if n.startswith("Difference")]
    return order


def feature_names(
    ndim: int = 2,
    preset: str = "ilastik",
    sigmas: Sequence[float] | None = None,
    features: Sequence[str] | None = None,
) -> list[str]:
    """Channel names of :func:`feature_bank` without computing anything."""
    cfg = FeatureConfig(preset, None if sigmas is None else tuple(sigmas), features).resolved()
    return _order(cfg, ndim)


def _halo(cfg: FeatureConfig, sigma: float, spacing: tuple[float, ...]) -> tuple[int, ...]:
    """Total filter support (pixels per axis) of one scale group."""
    out = []
    for h in spacing:
        if cfg.preset == "weka":
            r = gaussian_radius(_WEKA_BLUR * sigma / h, cfg.truncate) if sigma > 0 else 0
            out.append(r + 2)  # Sobel of Sobel
            continue
        s = sigma / h
        r = gaussian_radius(s, cfg.truncate)
        if sigma < _ILASTIK_MIN_SCALE:
            out.append(r)
            continue
        fd = 1 if cfg.derivatives == "fd" else 0
        extra = 2 * fd  # Hessian by two finite differences
        if "StructureTensorEigenvalues" in (cfg.features or ()):
            extra = max(extra, fd + gaussian_radius(s / 2, cfg.truncate))
        r = max(r, 2)  # derivative kernels are at least 5 taps
        out.append(r + extra)
    return tuple(out)


def max_halo(cfg: FeatureConfig, ndim: int) -> tuple[int, ...]:
    """Largest filter support over all scales of ``cfg`` (pixels per axis).

    A block read with this halo on every side gives the same features in its core
    as the whole image (the block-wise and dask paths both rely on it).
    """
    cfg = cfg.resolved()
    sp = cfg.spacing or (1.0,) * ndim
    return tuple(
        max(hs) for hs in zip(*(_halo(cfg, s, sp) for s, _ in _groups(cfg, ndim)), strict=True)
    )


# --------------------------------------------------------------------------- blocks
def check_image(shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Raise ValueError unless ``shape``/``dtype`` describe a non-empty numeric 2D/3D image."""
    if len(shape) not in (2, 3):
        raise ValueError(f"image must be 2D (Y, X) or 3D (Z, Y, X), got shape {shape}")
    if not (np.issubdtype(dtype, np.number) or np.dtype(dtype) == np.bool_):
        raise ValueError(f"image must be numeric, got dtype {dtype}")
    if min(shape) < 1:
        raise ValueError(f"image is empty: shape {shape}")


def _as_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    check_image(arr.shape, arr.dtype)
    return arr


def _block_starts(shape: tuple[int, ...], block: tuple[int, ...]) -> list[tuple[slice, ...]]:
    ranges = [
        [slice(a, min(a + b, n)) for a in range(0, n, b)] for n, b in zip(shape, block, strict=True)
    ]
    return [tuple(p) for p in itertools.product(*ranges)]


def _auto_block(
    shape: tuple[int, ...],
    halo: tuple[int, ...],
    nfeat: int,
    workers: int,
    memory: int | None = None,
) -> tuple[int, ...]:
    """Largest blocks whose working set fits ``memory`` (default :data:`BLOCK_MEMORY`).

    Working set = the channel-first block buffer + ~24 (2D) / 36 (3D) float32
    temporaries of the halo-padded block.  Blocks are halved along their longest
    axis until they fit and there are at least ``workers`` of them.
    """
    ntemp = 24 if len(shape) == 2 else 36
    b = list(shape)

    def cost(bb: list[int]) -> int:
        padded = int(np.prod([min(n, x + 2 * h) for n, x, h in zip(shape, bb, halo, strict=True)]))
        return 4 * (ntemp * padded + nfeat * int(np.prod(bb)))

    def nblocks(bb: list[int]) -> int:
        return int(np.prod([-(-n // x) for n, x in zip(shape, bb, strict=True)]))

    limit = BLOCK_MEMORY if memory is None else memory
    while max(b) > 16 and (cost(b) > limit or nblocks(b) < workers):
        i = int(np.argmax(b))
        b[i] = -(-b[i] // 2)
    return tuple(b)


def _resolve_block(
    block: int | Sequence[int] | None,
    shape: tuple[int, ...],
    cfg: FeatureConfig | None = None,
    workers: int = 1,
    memory: int | None = None,
) -> tuple[int, ...]:
    if block is None:
        if cfg is None:
            return tuple(min(1024, n) for n in shape)
        nfeat = len(_order(cfg, len(shape)))
        return _auto_block(shape, max_halo(cfg, len(shape)), nfeat, workers, memory)
    if np.isscalar(block):
        return tuple(min(int(block), n) for n in shape)  # type: ignore[arg-type]
    bt = tuple(int(b) for b in block)  # type: ignore[union-attr]
    if len(bt) != len(shape) or min(bt) < 1:
        raise ValueError(f"block must be a positive int or one per axis, got {block}")
    return tuple(min(b, n) for b, n in zip(bt, shape, strict=True))


def _compute_task(
    image: np.ndarray,
    core: tuple[slice, ...],
    sigma: float,
    cfg: FeatureConfig,
    spacing: tuple[float, ...],
) -> dict[str, np.ndarray]:
    halo = _halo(cfg, sigma, spacing)
    outer = tuple(
        slice(max(0, c.start - h), min(n, c.stop + h))
        for c, h, n in zip(core, halo, image.shape, strict=True)
    )
    sub = np.asarray(image[outer], dtype=np.float32)
    fn = _weka_group if cfg.preset == "weka" else _ilastik_group
    res = fn(sub, sigma, cfg, spacing)
    inner = tuple(
        slice(c.start - o.start, c.stop - o.start) for c, o in zip(core, outer, strict=True)
    )
    return {k: v[inner] for k, v in res.items()}


def _compute_block(
    image: np.ndarray,
    core: tuple[slice, ...],
    cfg: FeatureConfig,
    spacing: tuple[float, ...],
    index: dict[str, int],
    buf: np.ndarray | None = None,
) -> np.ndarray:
    """All channels of one block, channel-first (F, *block) float32.

    ``buf`` (F, *at least the block shape) is reused if given, which saves the page
    faults of a fresh allocation per block.
    """
    shape = tuple(c.stop - c.start for c in core)
    if buf is None:
        buf = np.empty((len(index),) + shape, np.float32)
    else:
        buf = buf[(slice(None),) + tuple(slice(0, n) for n in shape)]
    for sigma, _ in sorted(_groups(cfg, image.ndim), key=lambda g: -g[0]):
        for k, v in _compute_task(image, core, sigma, cfg, spacing).items():
            buf[index[k]] = v
    return buf


def _store_channels_last(dst: np.ndarray, buf: np.ndarray, rows: int = 8) -> None:
    """``dst[...] = moveaxis(buf, 0, -1)`` in small tiles (cache-friendly transpose)."""
    for r in range(0, buf.shape[1], rows):
        dst[r : r + rows] = np.moveaxis(buf[:, r : r + rows], 0, -1)


def iter_feature_blocks(
    image: np.ndarray,
    preset: str | FeatureConfig = "ilastik",
    sigmas: Sequence[float] | None = None,
    block: int | Sequence[int] | None = None,
    *,
    skip: Callable[[tuple[slice, ...]], bool] | None = None,
    n_workers: int = 1,
    **options,
) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """Yield ``(core_slices, features)`` block by block, in raster order.

    ``features`` has shape ``image[core_slices].shape + (F,)``, float32, channels in
    :func:`feature_names` order.  Use this to stream features through a model so
    that only a few blocks of features are ever in memory (at most ``n_workers``
    blocks are computed ahead, on threads).  ``skip(core)`` returning True leaves a
    block out (e.g. blocks without annotations).
    """
    arr = _as_image(image)
    cfg = _config(preset, sigmas, options)
    spacing = cfg.spacing or (1.0,) * arr.ndim
    names = _order(cfg, arr.ndim)
    index = {n: i for i, n in enumerate(names)}
    cores = [
        c
        for c in _block_starts(arr.shape, _resolve_block(block, arr.shape, cfg, n_workers))
        if not (skip and skip(c))
    ]

    def compute(core: tuple[slice, ...]) -> np.ndarray:
        buf = _compute_block(arr, core, cfg, spacing, index)
        feats = np.empty(buf.shape[1:] + (buf.shape[0],), np.float32)
        _store_channels_last(feats, buf)
        return feats

    if n_workers <= 1:
        for core in cores:
            yield core, compute(core)
        return
    with ThreadPoolExecutor(n_workers) as pool:
        pending: deque = deque()
        it = iter(cores)
        for core in itertools.islice(it, n_workers):
            pending.append((core, pool.submit(compute, core)))
        while pending:
            core, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(compute, nxt)))
            yield core, fut.result()


def map_feature_blocks(
    image: np.ndarray,
    preset: str | FeatureConfig,
    fn: Callable[[tuple[slice, ...], np.ndarray], None],
    block: int | Sequence[int] | None = None,
    *,
    n_workers: int = 1,
    skip: Callable[[tuple[slice, ...]], bool] | None = None,
) -> None:
    """Call ``fn(core_slices, features)`` for every block, in the thread that computed it.

    ``features`` is channel-first, ``(F,) + image[core_slices].shape``, float32, channels
    in :func:`feature_names` order, C-contiguous, in a buffer that the thread reuses for
    its next block (copy what you keep). Consuming each block where it is computed (e.g.
    a classifier's inference) means that at most ``n_workers`` blocks of features exist
    at any time, and no channels-last copy is made; automatic blocks are sized for
    :data:`MAP_BLOCK_MEMORY` per thread. ``fn`` runs on worker threads when
    ``n_workers`` > 1 (it must be thread-safe; writing disjoint ``core_slices`` of one
    output array is). ``skip(core)`` returning True leaves a block out.
    """
    map_feature_blocks_many(
        [image], preset, lambda _i, core, feats: fn(core, feats), block, n_workers=n_workers,
        skip=skip,
    )  # fmt: skip


def map_feature_blocks_many(
    images: Sequence[np.ndarray],
    preset: str | FeatureConfig,
    fn: Callable[[int, tuple[slice, ...], np.ndarray], None],
    block: int | Sequence[int] | None = None,
    *,
    n_workers: int = 1,
    skip: Callable[[tuple[slice, ...]], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cached: Callable[[int, tuple[slice, ...]], np.ndarray | None] | None = None,
    scratch: ScratchPool | None = None,
) -> None:
    """`map_feature_blocks` over several images of one shape, block by block.

    For every block (blocks on the worker threads), the features of ``images[0]``,
    ``images[1]``, … at that block are computed in turn, each handed to
    ``fn(i, core_slices, features)`` before the next is computed (in the same reused
    buffer): the calls for one block run in image order in one thread, so ``fn`` can
    combine the images of a block (e.g. a statistic over replicas) once it has seen
    the last one. ``progress(done, total)`` is called as blocks are finished.
    ``cached(i, core)`` may return the features of image ``i`` at ``core`` computed
    before (the same values, e.g. kept from training): they are handed to ``fn``
    instead of being computed again; None computes them. ``scratch``: the pool the
    threads' block buffers are taken from and given back to (kept across passes).
    """
    arrs = [_as_image(im) for im in images]
    if any(a.shape != arrs[0].shape for a in arrs):
        raise ValueError("map_feature_blocks_many: the images differ in shape")
    arr = arrs[0]
    cfg = _config(preset, None, {})
    spacing = cfg.spacing or (1.0,) * arr.ndim
    names = _order(cfg, arr.ndim)
    index = {n: i for i, n in enumerate(names)}
    workers = max(1, int(n_workers))
    bshape = _resolve_block(block, arr.shape, cfg, workers, MAP_BLOCK_MEMORY)
    tasks = [c for c in _block_starts(arr.shape, bshape) if not (skip and skip(c))]
    local = threading.local()

    def run(core: tuple[slice, ...]) -> None:
        if scratch is not None:
            with scratch.buffer(len(names) * int(np.prod(bshape))) as flat:
                run_in(core, flat)
            return
        if getattr(local, "flat", None) is None:
            local.flat = np.empty(len(names) * int(np.prod(bshape)), np.float32)
        run_in(core, local.flat)

    def run_in(core: tuple[slice, ...], flat: np.ndarray) -> None:
        shape = (len(names),) + tuple(c.stop - c.start for c in core)
        buf = flat[: int(np.prod(shape))].reshape(shape)
        for i, a in enumerate(arrs):
            kept = None if cached is None else cached(i, core)
            fn(i, core, _compute_block(a, core, cfg, spacing, index, buf) if kept is None else kept)

    if workers == 1 or len(tasks) == 1:
        for done, t in enumerate(tasks, 1):
            run(t)
            if progress is not None:
                progress(done, len(tasks))
        return
    with ThreadPoolExecutor(workers) as pool:
        for done, _ in enumerate(pool.map(run, tasks), 1):
            if progress is not None:
                progress(done, len(tasks))


def _config(preset: str | FeatureConfig, sigmas, options: dict) -> FeatureConfig:
    if isinstance(preset, FeatureConfig):
        if sigmas is not None or options:
            raise ValueError("pass either a FeatureConfig or preset/sigmas/options, not both")
        return preset.resolved()
    return FeatureConfig(
        preset=preset,
        sigmas=None if sigmas is None else tuple(sigmas),
        features=None if options.get("features") is None else tuple(options["features"]),
        derivatives=options.get("derivatives", "fd"),
        spacing=None if options.get("spacing") is None else tuple(options["spacing"]),
        truncate=options.get("truncate", _TRUNCATE),
    ).resolved()


def _bank_config(
    preset: str | FeatureConfig, sigmas, nd: int, **options
) -> tuple[FeatureConfig, tuple[float, ...]]:
    """`_config` for the feature-bank entry points (options ignored with a FeatureConfig),
    plus the per-axis spacing, checked against ``nd`` dimensions."""
    cfg = _config(preset, sigmas, {} if isinstance(preset, FeatureConfig) else options)
    sp = cfg.spacing or (1.0,) * nd
    if len(sp) != nd or min(sp) <= 0:
        raise ValueError(f"spacing must have {nd} positive values, got {cfg.spacing}")
    return cfg, sp


def feature_bank(
    image: np.ndarray,
    preset: str | FeatureConfig = "ilastik",
    sigmas: Sequence[float] | None = None,
    block: int | Sequence[int] | None = None,
    *,
    features: Sequence[str] | None = None,
    derivatives: str = "fd",
    spacing: Sequence[float] | None = None,
    truncate: float = _TRUNCATE,
    n_workers: int | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Compute a pixel feature bank.

    Parameters
    ----------
    image : ndarray, (Y, X) or (Z, Y, X)
        Any numeric dtype; computed in float32 in the image's own units.
    preset : {"ilastik", "weka"} or FeatureConfig
        Feature set (see the module docstring).
    sigmas : sequence of float, optional
        Scales in pixels (or in ``spacing`` units); default the preset's.
    block : int or sequence of int, optional
        Core block size per axis.  Default: the largest blocks whose working set
        (block buffer + halo-padded temporaries) stays within :data:`BLOCK_MEMORY`
        (512 MiB) per thread, at least one block per thread.  Each block is read with
        a per-scale halo covering the filters' support, so the result does not depend
        on the block size.
    features : sequence of str, optional
        ilastik preset only: subset of :data:`ILASTIK_FEATURES`.
    derivatives : {"fd", "gaussian"}
        ilastik preset only: finite differences of the smoothed image (fast) or
        Gaussian-derivative filters (exact, ~2x slower).
    spacing : sequence of float, optional
        Pixel / voxel size per axis, for anisotropic 3D data.
    truncate : float
        Gaussian kernels cut at this many standard deviations (default 3.5).
    n_workers : int, optional
        Threads over (block, scale) tasks; default ``os.cpu_count()``.
    out : ndarray, optional
        Preallocated float32 array ``image.shape + (F,)`` (e.g. a ``np.memmap``).

    Returns
    -------
    features : ndarray of float32, ``image.shape + (F,)``
    names : list of str
        One name per channel, e.g. ``"HessianOfGaussianEigenvalues_s1.6_e0"``.
    """
    arr = _as_image(image)
    cfg, sp = _bank_config(
        preset,
        sigmas,
        arr.ndim,
        features=features,
        derivatives=derivatives,
        spacing=spacing,
        truncate=truncate,
    )
    names = _order(cfg, arr.ndim)
    index = {n: i for i, n in enumerate(names)}
    shape = arr.shape + (len(names),)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be float32 with shape {shape}, got {out.dtype} {out.shape}")
    workers = max(1, n_workers or os.cpu_count() or 1)
    bshape = _resolve_block(block, arr.shape, cfg, workers)
    tasks = _block_starts(arr.shape, bshape)
    local = threading.local()

    def run(core: tuple[slice, ...]) -> None:
        if getattr(local, "buf", None) is None:
            local.buf = np.empty((len(names),) + bshape, np.float32)
        _store_channels_last(out[core], _compute_block(arr, core, cfg, sp, index, local.buf))

    if workers == 1 or len(tasks) == 1:
        for t in tasks:
            run(t)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, tasks))
    return out, names


def feature_maps_for_scoring(
    image: np.ndarray,
    sigmas: Sequence[float] = SCORING_SIGMAS,
    block: int | Sequence[int] | None = None,
    n_workers: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Feature maps for the per-pixel epsilon of the scoring step.

    Gaussian smoothing, Laplacian of Gaussian, Gaussian gradient magnitude and
    difference of Gaussians (ilastik definitions) at each scale in ``sigmas``
    (pixels; each must be >= 0.7; default :data:`SCORING_SIGMAS`, the ilastik bank's
    scales in [1, 4]: these channels are then the bank's own).

    Blocks default to :data:`MAP_BLOCK_MEMORY` of working memory per thread (the
    result does not depend on the block).

    Returns
    -------
    maps : ndarray of float32, ``image.shape + (4 * len(sigmas),)``
    names : list of str
    """
    if min(sigmas) < _ILASTIK_MIN_SCALE:
        raise ValueError(f"scoring feature scales must be >= {_ILASTIK_MIN_SCALE}, got {sigmas}")
    if block is None:  # small blocks: score computes these maps on several threads at once
        arr = _as_image(image)
        cfg = FeatureConfig("ilastik", tuple(sigmas), SCORING_FEATURES).resolved()
        workers = max(1, n_workers or os.cpu_count() or 1)
        block = _resolve_block(None, arr.shape, cfg, workers, MAP_BLOCK_MEMORY)
    return feature_bank(
        image,
        "ilastik",
        sigmas=sigmas,
        block=block,
        features=SCORING_FEATURES,
        n_workers=n_workers,
    )
