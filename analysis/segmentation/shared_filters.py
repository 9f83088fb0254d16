"""The scoring features of an image from the blocks of its segmentation pass.

The scoring step needs, for every version of an image (raw, replicas, decoded), the
scoring features of :func:`~rawsigma.analysis.segmentation.features.feature_maps_for_scoring`
(Gaussian smoothing, Laplacian of Gaussian, gradient magnitude and difference of
Gaussians at the ``score_sigmas``), and the classifier computes the ilastik bank of
the same image block by block. A scale that both use (1.0 with the defaults) is the
same filters on the same block: :func:`scoring_block` copies those channels from the
bank's block and computes only the other scales, on the same core with their own
halo. The values are those of ``feature_maps_for_scoring`` bit for bit (a block's core
does not depend on the halo once it covers the filters' support; test), so handing the
pass's blocks to :func:`scoring_block` replaces a second filtering of the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rawsigma.analysis.segmentation.features import (
    _TRUNCATE,
    SCORING_FEATURES,
    FeatureConfig,
    _compute_task,
    _order,
)
from rawsigma.analysis.segmentation.features_sets import _ILASTIK_MIN_SCALE

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

__all__ = ["ScoringChannels", "plan_scoring_channels", "scoring_block"]


@dataclass(frozen=True)
class ScoringChannels:
    """Where each scoring channel of a block comes from.

    Attributes
    ----------
    names : list of str
        Scoring channels, in ``feature_maps_for_scoring``'s order.
    cfg : FeatureConfig
        The scoring features' configuration (resolved).
    from_bank : tuple of (int, int)
        ``(scoring channel, bank channel)`` pairs copied from the bank's block.
    computed : tuple of float
        Scales whose channels are computed by :func:`scoring_block`.
    """

    names: list[str]
    cfg: FeatureConfig
    from_bank: tuple[tuple[int, int], ...]
    computed: tuple[float, ...]


def _shares(bank: FeatureConfig, sigma: float) -> bool:
    """Whether the bank computes scale ``sigma``'s scoring channels with the same filters."""
    return (
        bank.preset == "ilastik"
        and sigma in (bank.sigmas or ())
        and set(SCORING_FEATURES) <= set(bank.features or ())
        and bank.derivatives == "fd"
        and bank.truncate == _TRUNCATE
        and all(h == 1.0 for h in bank.spacing or ())
    )


def plan_scoring_channels(
    bank: FeatureConfig | None, sigmas: Sequence[float], ndim: int = 2
) -> ScoringChannels:
    """The scoring channels at ``sigmas`` and which of them ``bank``'s blocks hold.

    Parameters
    ----------
    bank : FeatureConfig or None
        The classifier's feature bank (None: nothing shared).
    sigmas : sequence of float
        Scoring scales (each >= 0.7).
    ndim : int
        Image dimensions.
    """
    if min(sigmas) < _ILASTIK_MIN_SCALE:
        raise ValueError(f"scoring feature scales must be >= {_ILASTIK_MIN_SCALE}, got {sigmas}")
    cfg = FeatureConfig("ilastik", tuple(sigmas), SCORING_FEATURES).resolved()
    names = _order(cfg, ndim)
    bank = None if bank is None else bank.resolved()
    shared = {s for s in cfg.sigmas or () if bank is not None and _shares(bank, s)}
    from_bank: list[tuple[int, int]] = []
    if bank is not None and shared:
        bank_index = {n: i for i, n in enumerate(_order(bank, ndim))}
        one = {
            s: set(_order(FeatureConfig("ilastik", (s,), SCORING_FEATURES).resolved(), ndim))
            for s in shared
        }
        from_bank = [
            (i, bank_index[n]) for i, n in enumerate(names) if any(n in one[s] for s in shared)
        ]
    computed = tuple(s for s in cfg.sigmas or () if s not in shared)
    return ScoringChannels(names, cfg, tuple(from_bank), computed)


def scoring_block(
    image: np.ndarray,
    core: tuple[slice, ...],
    channels: ScoringChannels,
    bank_block: np.ndarray | None,
    out: np.ndarray,
) -> np.ndarray:
    """Fill ``out`` (F, *core shape) float32 with the scoring channels of ``image[core]``.

    Channels of ``channels.from_bank`` are copied from ``bank_block`` (the bank's
    channel-first block of the same core), the others computed at their scales.
    """
    index = {n: i for i, n in enumerate(channels.names)}
    for i, j in channels.from_bank:
        assert bank_block is not None
        out[i] = bank_block[j]
    spacing = (1.0,) * image.ndim
    for sigma in channels.computed:
        for name, v in _compute_task(image, core, sigma, channels.cfg, spacing).items():
            out[index[name]] = v
    return out
