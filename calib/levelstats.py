"""Compact, frozen summary of a finished sweep level.

A finished light level needs far less than its live accumulator: the estimators only
read the per-pixel mean, the variance (plain and flicker-corrected), the maximum and the
frame means. :class:`LevelStats` holds those in 14 bytes per pixel (float32 mean and
variances, uint16 maximum for 8/16-bit data) instead of 32, so a sweep of many
1024x1024 or 2048x2048 levels stays small. It reads like a
:class:`~rawsigma.calib.moments.PixelMoments` (``n``, ``shape``, ``frame_means``,
``mean``, ``var``, ``var_corrected``, ``flicker_var``, ``pixel_max``) but cannot grow.
float32 keeps the mean to 4e-3 ADU at 65535, far below its standard error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .flicker_correction import scaled_var_correction

if TYPE_CHECKING:
    from .moments import PixelMoments

__all__ = ["LevelStats"]


class LevelStats:
    """Read-only per-pixel statistics of a finished level (see module docstring).

    Build with :meth:`PixelMoments.compact` or :meth:`from_moments`.
    """

    higher = False

    def __init__(
        self,
        n: int,
        frame_means: np.ndarray,
        mean: np.ndarray,
        var: np.ndarray,
        pixel_max: np.ndarray,
        var_reg: np.ndarray | None = None,
        dof_reg: int = 0,
    ) -> None:
        self.n = int(n)
        self.shape: tuple[int, int] = tuple(int(s) for s in mean.shape)  # type: ignore[assignment]
        self._fm = np.asarray(frame_means, np.float64)
        self._mean = np.asarray(mean, np.float32)
        self._var = np.asarray(var, np.float32)
        self.pixel_max = pixel_max
        self._var_reg = None if var_reg is None else np.asarray(var_reg, np.float32)
        self._dof_reg = int(dof_reg)
        if self._fm.shape != (self.n,):
            raise ValueError(f"LevelStats: {self._fm.size} frame means for n={self.n}")
        for name, a in (("var", self._var), ("pixel_max", pixel_max)):
            if a.shape != self.shape:
                raise ValueError(f"LevelStats: {name} has shape {a.shape}, mean {self.shape}")

    @classmethod
    def from_moments(cls, pm: PixelMoments) -> LevelStats:
        """Summarise a finished accumulator (needs at least 2 frames)."""
        if pm.n < 2:
            raise ValueError(f"need at least 2 frames to summarise a level, have {pm.n}")
        pmax = pm.pixel_max
        if pmax.min() >= 0 and pmax.max() <= np.iinfo(np.uint16).max:
            pmax = pmax.astype(np.uint16)
        var_reg, dof = None, 0
        if pm.flicker and pm.n >= 4:
            var_reg, dof = pm.var_corrected(method="regression")
        return cls(pm.n, pm.frame_means, pm.mean(), pm.var(), pmax.copy(), var_reg, dof)

    @property
    def frame_means(self) -> np.ndarray:
        """Per-frame mean (float64, ADU)."""
        return self._fm

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays, bytes."""
        arrs: list[np.ndarray] = [self._fm, self._mean, self._var, self.pixel_max]
        if self._var_reg is not None:
            arrs.append(self._var_reg)
        return int(sum(a.nbytes for a in arrs))

    def mean(self, rows: slice | None = None) -> np.ndarray:
        """Per-pixel mean (float64, ADU)."""
        return self._mean[slice(None) if rows is None else rows].astype(np.float64)

    def var(self, ddof: int = 1, rows: slice | None = None) -> np.ndarray:
        """Per-pixel temporal variance (float64, ADU^2)."""
        if self.n - ddof < 1:
            raise ValueError(f"need at least {ddof + 1} frames, have {self.n}")
        v = self._var[slice(None) if rows is None else rows].astype(np.float64)
        return v * ((self.n - 1) / (self.n - ddof)) if ddof != 1 else v

    def frame_mean_var(self) -> float:
        """Variance (ddof=1) of the frame means (ADU^2)."""
        return float(np.var(self._fm, ddof=1))

    def flicker_var(self) -> float:
        """Excess frame-mean variance over pixel noise (ADU^2), as in PixelMoments."""
        npix = self.shape[0] * self.shape[1]
        return self.frame_mean_var() - float(np.mean(self._var, dtype=np.float64)) / npix

    def var_corrected(
        self,
        rows: slice | None = None,
        *,
        offset: np.ndarray | float | None = None,
        method: str = "auto",
    ) -> tuple[np.ndarray, int]:
        """Flicker-corrected variance; same contract as `PixelMoments.var_corrected`."""
        r = slice(None) if rows is None else rows
        if method == "auto":
            method = "regression" if self._var_reg is not None else "scaled"
        if method == "regression":
            if self._var_reg is None:
                raise ValueError("this level was summarised without the regression variance")
            return self._var_reg[r].astype(np.float64), self._dof_reg
        if method == "scaled":
            return scaled_var_correction(self, r, offset)
        raise ValueError(f"unknown method {method!r}")

    def state_dict(self) -> dict[str, Any]:
        """Arrays and scalars for saving (HDF5-friendly)."""
        st: dict[str, Any] = {
            "kind": "LevelStats",
            "n": self.n,
            "frame_means": self._fm,
            "mean": self._mean,
            "var": self._var,
            "pixel_max": self.pixel_max,
            "dof_reg": self._dof_reg,
        }
        if self._var_reg is not None:
            st["var_reg"] = self._var_reg
        return st

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LevelStats:
        """Inverse of :meth:`state_dict`."""
        try:
            return cls(
                int(state["n"]),
                np.asarray(state["frame_means"]),
                np.asarray(state["mean"]),
                np.asarray(state["var"]),
                np.asarray(state["pixel_max"]),
                None if state.get("var_reg") is None else np.asarray(state["var_reg"]),
                int(state.get("dof_reg", 0)),
            )
        except KeyError as e:
            raise ValueError(f"LevelStats state is missing {e}") from None

    def __repr__(self) -> str:
        return f"LevelStats(shape={self.shape}, n={self.n})"
