"""The ``scaled`` flicker correction, shared by `PixelMoments` and `LevelStats`.

Its own module so that :mod:`.moments` can import :mod:`.levelstats` (for
`PixelMoments.compact`) and both can import this without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .levelstats import LevelStats
    from .moments import PixelMoments

__all__ = ["scaled_var_correction"]


def scaled_var_correction(
    acc: PixelMoments | LevelStats, rows: slice, offset: np.ndarray | float | None
) -> tuple[np.ndarray, int]:
    """The ``method="scaled"`` flicker correction of :meth:`PixelMoments.var_corrected`.

    Shared with :class:`~rawsigma.calib.levelstats.LevelStats`; ``acc`` needs ``n``,
    ``frame_means``, ``mean``, ``var`` and ``flicker_var``. Returns the corrected
    variance (float64, ADU^2) of ``rows`` and its degrees of freedom, ``n - 1``.
    """
    v = acc.var(rows=rows)
    fv = acc.flicker_var()
    if offset is None:
        return v - fv, acc.n - 1
    m = acc.mean(rows) - (offset[rows] if isinstance(offset, np.ndarray) else offset)
    full = acc.frame_means.mean() - float(np.mean(offset))
    scale = (m / full) ** 2 if full > 0 else 1.0
    return v - fv * scale, acc.n - 1
