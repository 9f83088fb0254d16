"""Per-pixel ε of the scoring features of a processed image, one scale at a time.

`codec_feature_epsilon` gives what `standard_score.feature_epsilon` and
`standard_score.worst_feature_map` give for a processed image's full scoring-feature
stack, without holding that stack: the image's features are computed one scale at a
time (4 channels instead of 12; a scale's channels do not depend on the other scales,
each is computed with its own halo), each channel is scored with the same float32
operations as `feature_epsilon`, and only the ε map of the channel(s) scoring worst so
far is kept. The results are identical (test), the memory is a third of the stack.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from rawsigma.analysis.segmentation.scratch import ScratchPool

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["channel_epsilon", "codec_feature_epsilon"]


def channel_epsilon(raw: np.ndarray, sigma: np.ndarray, other: np.ndarray) -> dict:
    """`standard_score.feature_epsilon`'s entry for one channel (same values).

    ``raw``, ``sigma`` and ``other`` are one channel's maps (any layout); the
    temporaries are reused in place (the same float32 operations).
    """
    return _channel_scores(raw, sigma, other)[0]


def _channel_scores(
    raw: np.ndarray,
    sigma: np.ndarray,
    other: np.ndarray,
    e_buf: np.ndarray | None = None,
    tmp_buf: np.ndarray | None = None,
) -> tuple[dict, np.ndarray | None]:
    """`channel_epsilon`'s entry and, when every σ > 0, the ε map itself.

    The map ``(raw − other) / σ`` (float32, ``raw``'s shape) is then `_eps_map`'s
    values (the same two float32 operations, no NaN to place): a caller keeping the
    worst channel's map need not compute it again. ``e_buf`` and ``tmp_buf`` (float32,
    ``raw``'s size, contiguous) are written instead of new temporaries.
    """
    if np.size(sigma) and np.min(sigma) > 0:  # every σ > 0 (a NaN fails too): no gathers
        shape = np.shape(raw)
        e2d = np.subtract(raw, other, out=None if e_buf is None else e_buf.reshape(shape))
        e2d /= sigma
        e = e2d.ravel()
    else:
        ok = sigma > 0
        e2d = None
        e = raw[ok]
        e -= other[ok]
        e /= sigma[ok]
    if not e.size:
        nan = math.nan
        return {"mean_epsilon": nan, "mean_abs_epsilon": nan, "rms_epsilon": nan,
                "n_pixels": 0}, None  # fmt: skip
    mean = float(e.mean())
    tmp = np.abs(e, out=None if tmp_buf is None or e2d is None else tmp_buf[: e.size])
    mean_abs = float(tmp.mean())
    np.multiply(e, e, out=tmp)
    rms = float(np.sqrt(np.mean(tmp)))
    return {"mean_epsilon": mean, "mean_abs_epsilon": mean_abs, "rms_epsilon": rms,
            "n_pixels": int(e.size)}, e2d  # fmt: skip


def _eps_map(raw: np.ndarray, sigma: np.ndarray, other: np.ndarray) -> np.ndarray:
    """`standard_score.worst_feature_map`'s map of one channel (float32, NaN at σ = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(sigma > 0, (raw - other) / sigma, np.nan)
    return e.astype(np.float32)


def codec_feature_epsilon(
    raw: np.ndarray,
    sigma: np.ndarray,
    image: np.ndarray,
    names: Sequence[str],
    sigmas: Sequence[float],
    features: Mapping[str, np.ndarray] | None = None,
    channels_first: bool = False,
    scratch: ScratchPool | None = None,
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Feature ε of ``image`` against the raw image's features: ``(feature_eps, worst)``.

    Parameters
    ----------
    raw, sigma : ndarray, (H, W, F) or (F, H, W) float32
        The raw image's scoring features and their replica σ, channels ``names``
        (channel-first with ``channels_first``: each channel is then read contiguously).
    image : ndarray, (H, W)
        The processed (decoded) image.
    names : sequence of str
        Channel names of ``raw`` (`feature_names` of the scoring features at ``sigmas``).
    sigmas : sequence of float
        The scoring feature scales.
    features : mapping of str to ndarray (H, W) float32, optional
        Channels of ``image``'s scoring features already computed (e.g. by its
        segmentation pass, `per_image.SharedPass.with_bank_channels`); the scales not
        all in it are computed here, one scale at a time. A ``dict`` is emptied of the
        channels it used (so they are freed as soon as they are scored).
    channels_first : bool
        ``raw`` and ``sigma`` are (F, H, W) (same values).
    scratch : ScratchPool, optional
        Scratch buffers shared by the calls of a run: taken from it instead of new
        arrays and the ones not returned given back, so that a run scoring several
        images faults their memory in once. Every element is written before it is read
        (same values); the worst map returned is never given back.

    Returns
    -------
    feature_eps : dict
        ``{name: {"mean_epsilon", "mean_abs_epsilon", "rms_epsilon", "n_pixels"}}`` in
        ``names`` order, as `standard_score.feature_epsilon`.
    worst : dict
        ``{name: ε map}`` of the channel with the largest mean |ε|, as
        `standard_score.worst_feature_map`.
    """
    from rawsigma.analysis.segmentation.features import (
        SCORING_FEATURES,
        feature_maps_for_scoring,
        feature_names,
    )

    def chan(a: np.ndarray, c: int) -> np.ndarray:
        return a[c] if channels_first else a[..., c]

    index = {n: i for i, n in enumerate(names)}
    stats: dict[str, dict] = {}
    kept: dict[str, np.ndarray] = {}  # maps of the channels at the running maximum
    best = -math.inf
    size = int(np.prod(image.shape))
    pool = ScratchPool(keep=0) if scratch is None else scratch
    e_buf: np.ndarray | None = None  # one channel's ε, handed to ``kept`` if it is worst
    tmp_buf = pool.take(size)
    for s in sigmas:
        scale_names = feature_names(image.ndim, "ilastik", [s], SCORING_FEATURES)
        if features is not None and all(n in features for n in scale_names):
            chans = [features[n] for n in scale_names]
            if isinstance(features, dict):  # the caller's channels freed once used
                for n in scale_names:
                    del features[n]
        else:
            scale, scale_names = feature_maps_for_scoring(image, sigmas=[s], n_workers=1)
            chans = [scale[..., j] for j in range(len(scale_names))]
            del scale
        for name, other in zip(scale_names, chans, strict=True):
            c = index[name]
            if e_buf is None:
                e_buf = pool.take(size)
            st, e_map = _channel_scores(chan(raw, c), chan(sigma, c), other, e_buf, tmp_buf)
            stats[name] = st
            v = st["mean_abs_epsilon"]
            if math.isfinite(v) and v >= best:
                if v > best:
                    _give_all(pool, kept)
                best = v
                if e_map is None:  # some σ = 0: the map has NaN there
                    kept[name] = _eps_map(chan(raw, c), chan(sigma, c), other)
                else:  # the ε just computed is the map: kept, a new buffer next time
                    kept[name], e_buf = e_map, None
        del chans
    pool.give(tmp_buf)
    if e_buf is not None:
        pool.give(e_buf)
    feature_eps = {n: stats[n] for n in names}
    finite = {n: v["mean_abs_epsilon"] for n, v in feature_eps.items()}
    finite = {n: v for n, v in finite.items() if math.isfinite(v)}
    if not finite:
        _give_all(pool, kept)
        return feature_eps, {}
    worst = max(finite, key=finite.__getitem__)  # worst_feature_map's rule (first maximum)
    worst_map = kept.pop(worst)  # returned to the caller: never given back
    _give_all(pool, kept)
    return feature_eps, {worst: worst_map}


def _give_all(pool: ScratchPool, kept: dict[str, np.ndarray]) -> None:
    """Empty ``kept``; the memory of its maps goes back to ``pool``."""
    for m in kept.values():
        pool.give(m)
    kept.clear()
