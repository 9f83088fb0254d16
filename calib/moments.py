"""Streaming per-pixel moments of integer frame stacks.

``PixelMoments`` folds frames into per-pixel sums without ever holding the stack.
Sums of ``d = x - shift`` and ``d**2`` are kept as exact int64 integers, where
``shift`` is the first frame (per pixel), so the mean and variance are exact up to
the final float64 division and do not suffer from cancellation. Higher sums (``d**3``,
``d**4``, for standard errors of variances) and the cross sum of ``d`` with the frame
mean (for flicker correction by regression) are float64.

Overflow bounds: inputs are integers with ``|x| <= 2**20`` (any uint8/uint16/int16
frame qualifies), so ``|d| <= 2**21``, ``d**2 <= 2**42`` and the int64 sum of ``d**2``
cannot overflow before ``2**21`` (2 million) frames; ``add`` refuses to go beyond.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .flicker_correction import scaled_var_correction
from .levelstats import LevelStats
from .moments_kernel import CHUNK, accumulate, frame_sums

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["PixelMoments"]

_MAX_ABS = 2**20
_MAX_FRAMES = 2**21
# frames of fewer pixels than this have their float64 d**3, d**4 sums added in groups
# of _BLOCK_ELEMS // pixels frames (the order of the former numpy blocks, kept exactly)
_BLOCK_ELEMS = 1 << 18


def _staggered(shape: tuple[int, int], dtypes: Sequence[type]) -> list[np.ndarray]:
    """Zeroed arrays of ``shape`` carved from one buffer, each starting at a different
    offset modulo 4 KiB (cache-line aligned), so that the accumulation kernel's streams
    do not alias in the cache (large allocations are page-aligned otherwise)."""
    npix = shape[0] * shape[1]
    sizes = [npix * np.dtype(d).itemsize for d in dtypes]
    step = 9 * 64  # 576 B: seven arrays land on distinct 4 KiB offsets
    offs, pos = [], 0
    for i, size in enumerate(sizes):
        pos = -(-pos // 4096) * 4096 + (i * step) % 4096
        offs.append(pos)
        pos += size
    buf = np.zeros(pos + 64, np.uint8)
    base = (-buf.ctypes.data) % 64
    return [
        buf[base + o : base + o + size].view(d).reshape(shape)
        for o, size, d in zip(offs, sizes, dtypes, strict=True)
    ]


class PixelMoments:
    """Streaming per-pixel moments of integer frames.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(H, W)``.
    higher : bool
        Also accumulate the float64 third and fourth power sums (needed for the
        standard error of the variance, :meth:`var_se`, and the kurtosis used to
        flag RTS pixels). Default True.
    flicker : bool
        Also accumulate the per-pixel cross sum with the frame mean (needed for
        regression flicker correction in :meth:`var_corrected`). Default True.
    track_min : bool
        Also keep the per-pixel minimum (``pixel_min``; None otherwise). Default False:
        the estimators only need the maximum, and each tracked extreme costs a pass.

    Attributes
    ----------
    n : int
        Number of frames added.
    frame_means : ndarray of float64, shape (n,)
        Exact mean of every frame (ADU).
    pixel_max : ndarray of int32, shape (H, W)
        Largest value seen per pixel (saturation detection).
    pixel_min : ndarray of int32, shape (H, W), or None
        Smallest value seen per pixel (only with ``track_min``).

    Notes
    -----
    Memory is ``O(H*W)``: 8 bytes x (2 + 2*higher + flicker) plus 8 (+4 with
    ``track_min``) bytes per pixel, plus 8 bytes per frame for ``frame_means``.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        higher: bool = True,
        flicker: bool = True,
        track_min: bool = False,
    ) -> None:
        dims = tuple(int(s) for s in shape)
        if len(dims) != 2 or min(dims) < 1:
            raise ValueError(f"PixelMoments shape must be (H, W) with H, W >= 1, got {dims}")
        shape = (dims[0], dims[1])
        self.shape: tuple[int, int] = shape
        self.higher = bool(higher)
        self.flicker = bool(flicker)
        self.n = 0
        higher, flicker = self.higher, self.flicker
        i32, i64, f64 = np.int32, np.int64, np.float64
        arrs = _staggered(
            shape,
            [i32, i64, i64, i32] + [f64, f64] * higher + [f64] * flicker + [i32] * bool(track_min),
        )
        self._shift, self._s1, self._s2, self.pixel_max = arrs[:4]
        self.pixel_max[...] = np.iinfo(np.int32).min
        rest = iter(arrs[4:])
        self._s3 = next(rest) if higher else None
        self._s4 = next(rest) if higher else None
        self._sdf = next(rest) if flicker else None
        self.pixel_min = next(rest) if track_min else None
        if self.pixel_min is not None:
            self.pixel_min[...] = np.iinfo(np.int32).max
        self._f0 = 0.0  # first frame mean, reference for the cross sum
        self._fm: list[float] = []
        # scratch of the kernel's d**3, d**4 group sums, reused by every add()
        self._t3 = np.zeros(CHUNK if self.higher else 0, np.float64)
        self._t4 = np.zeros_like(self._t3)

    # ------------------------------------------------------------------ input
    def add(self, frames: np.ndarray) -> None:
        """Fold one frame ``(H, W)`` or a chunk ``(k, H, W)`` of integer frames in.

        Raises
        ------
        TypeError
            If the frames are not of an integer dtype.
        ValueError
            If the frame shape differs from ``shape`` or values exceed ``2**20``.
        """
        a = np.asarray(frames)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[1:] != self.shape:
            raise ValueError(
                f"frames of shape {np.shape(frames)} do not match the accumulator "
                f"shape {self.shape} (expected (H, W) or (k, H, W))"
            )
        if a.dtype.kind not in "ui" or a.dtype == np.bool_:
            raise TypeError(
                f"frames must be integer camera data (uint8/uint16/...), got dtype {a.dtype}"
            )
        k = a.shape[0]
        if k == 0:
            return
        if a.dtype.itemsize > 2:
            lo, hi = int(a.min()), int(a.max())
            if max(abs(lo), abs(hi)) > _MAX_ABS:
                raise ValueError(f"frame values must lie within +-2**20, got [{lo}, {hi}]")
        if self.n + k > _MAX_FRAMES:
            raise ValueError(f"PixelMoments holds at most {_MAX_FRAMES} frames (int64 bound)")
        npix = self.shape[0] * self.shape[1]
        flat = np.ascontiguousarray(a).reshape(k, npix)
        fm = frame_sums(flat) / npix
        if self.n == 0:
            self._shift[...] = a[0]
            self._f0 = float(fm[0])
        # one compiled pass (`moments_kernel`), sums in the order of the former numpy
        # blocks: the float64 d**3, d**4 sums add groups of this many frames
        group = max(1, _BLOCK_ELEMS // npix)
        empty_i, empty_f = np.zeros(0, np.int32), np.zeros(0, np.float64)
        accumulate(
            flat,
            self._shift.reshape(-1),
            self._s1.reshape(-1),
            self._s2.reshape(-1),
            self.pixel_max.reshape(-1),
            empty_i if self.pixel_min is None else self.pixel_min.reshape(-1),
            np.ascontiguousarray(fm - self._f0, np.float64),
            empty_f if self._sdf is None else self._sdf.reshape(-1),
            empty_f if self._s3 is None else self._s3.reshape(-1),
            empty_f if self._s4 is None else self._s4.reshape(-1),
            group,
            self._t3,
            self._t4,
        )
        self._fm.extend(fm.tolist())
        self.n += k

    # ------------------------------------------------------------ statistics
    @property
    def frame_means(self) -> np.ndarray:
        """Exact per-frame mean (float64, ADU), one entry per frame added."""
        return np.asarray(self._fm, dtype=np.float64)

    def _need(self, m: int) -> None:
        if self.n < m:
            raise ValueError(f"need at least {m} frames, have {self.n}")

    def mean(self, rows: slice | None = None) -> np.ndarray:
        """Per-pixel mean (float64, ADU)."""
        self._need(1)
        r = slice(None) if rows is None else rows
        return self._shift[r] + self._s1[r] / self.n

    def _ss(self, r: slice) -> np.ndarray:
        """Per-pixel sum of squared deviations from the mean (float64)."""
        s1 = self._s1[r].astype(np.float64)
        return self._s2[r] - s1 * (s1 / self.n)

    def var(self, ddof: int = 1, rows: slice | None = None) -> np.ndarray:
        """Per-pixel temporal variance (float64, ADU^2)."""
        self._need(ddof + 1)
        r = slice(None) if rows is None else rows
        return self._ss(r) / (self.n - ddof)

    def _higher_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """The running sums of cubes and fourth powers (``higher=True`` only)."""
        if self._s3 is None or self._s4 is None:
            raise ValueError("higher moments were not accumulated (higher=False)")
        return self._s3, self._s4

    def _flicker_sum(self) -> np.ndarray:
        """The running frame-mean cross sum (``flicker=True`` only)."""
        if self._sdf is None:
            raise ValueError("the flicker sums were not accumulated (flicker=False)")
        return self._sdf

    def central_moment(self, order: int, rows: slice | None = None) -> np.ndarray:
        """Per-pixel biased central moment of order 2, 3 or 4 (float64)."""
        if order == 2:
            return self.var(ddof=0, rows=rows)
        if not self.higher:
            raise ValueError("higher moments were not accumulated (higher=False)")
        self._need(1)
        r = slice(None) if rows is None else rows
        n = self.n
        s3, s4 = self._higher_sums()
        m1 = self._s1[r] / n
        m2 = self._s2[r] / n
        m3 = s3[r] / n
        moment: np.ndarray
        if order == 3:
            moment = m3 - 3 * m1 * m2 + 2 * m1**3
            return moment
        if order == 4:
            m4 = s4[r] / n
            moment = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
            return moment
        raise ValueError(f"order must be 2, 3 or 4, got {order}")

    def var_se(self, rows: slice | None = None) -> np.ndarray:
        """Standard error of :meth:`var` (ddof=1) from the fourth central moment.

        ``SE(s^2) = sqrt((mu4 - sigma^4 (n-3)/(n-1)) / n)``, floored at the Gaussian
        value's 1/4 to avoid zero on quantised, nearly constant pixels.
        """
        self._need(4)
        n = self.n
        m2 = self.var(ddof=1, rows=rows)
        m4 = self.central_moment(4, rows=rows) * n / (n - 1)
        v = (m4 - m2**2 * (n - 3) / (n - 1)) / n
        gauss = 2 * m2**2 / (n - 1)
        return np.sqrt(np.maximum(v, 0.0625 * gauss))

    def excess_kurtosis(self, rows: slice | None = None) -> np.ndarray:
        """Per-pixel excess kurtosis ``mu4 / mu2**2 - 3`` (float64; NaN if constant)."""
        m2 = self.central_moment(2, rows=rows)
        m4 = self.central_moment(4, rows=rows)
        with np.errstate(divide="ignore", invalid="ignore"):
            kurtosis: np.ndarray = m4 / m2**2 - 3.0
        return kurtosis

    def frame_mean_var(self) -> float:
        """Variance (ddof=1) of the frame means (ADU^2)."""
        self._need(2)
        return float(np.var(self.frame_means, ddof=1))

    def flicker_var(self) -> float:
        """Excess variance of the frame means over what pixel noise explains (ADU^2).

        ``var(frame means) - mean(pixel variance) / (H*W)``; about zero for a stable
        source, ``(c * mean signal)**2`` for common-mode flicker of relative size c.
        """
        npix = self.shape[0] * self.shape[1]
        return self.frame_mean_var() - float(np.mean(self.var())) / npix

    def var_corrected(
        self,
        rows: slice | None = None,
        *,
        offset: np.ndarray | float | None = None,
        method: str = "auto",
    ) -> tuple[np.ndarray, int]:
        """Per-pixel variance with common-mode (light-source) fluctuations removed.

        Parameters
        ----------
        rows : slice, optional
            Row block to compute (default all).
        offset : ndarray or float, optional
            Dark offset (ADU), needed by ``method="scaled"`` to scale the frame-mean
            variance by each pixel's signal; default: no scaling.
        method : {"auto", "regression", "scaled"}
            ``regression``: residual variance of each pixel after regressing it on the
            frame mean (storm-analysis style, but per pixel; ``n - 2`` degrees of
            freedom; needs ``flicker=True`` and ``n >= 4``). ``scaled``: subtract the
            excess frame-mean variance scaled by ``(signal_i / mean signal)**2``; for
            a frame pair this is the EMVA 1288 R4 mean-difference term (eq. 18).
            ``auto``: regression when possible, else scaled.

        Returns
        -------
        var : ndarray of float64
            Corrected variance (ADU^2).
        dof : int
            Degrees of freedom of the estimate (for its standard error).
        """
        r = slice(None) if rows is None else rows
        if method == "auto":
            method = "regression" if (self._sdf is not None and self.n >= 4) else "scaled"
        if method == "regression":
            if self._sdf is None:
                raise ValueError("regression flicker correction needs flicker=True")
            self._need(4)
            fd = self.frame_means - self._f0
            ssf = float(np.sum((fd - fd.mean()) ** 2))
            if ssf <= 0:
                return self.var(rows=r), self.n - 1
            sp = self._sdf[r] - self._s1[r] * (fd.sum() / self.n)
            return (self._ss(r) - sp * sp / ssf) / (self.n - 2), self.n - 2
        if method == "scaled":
            self._need(2)
            return scaled_var_correction(self, r, offset)
        raise ValueError(f"unknown method {method!r}")

    def compact(self) -> LevelStats:
        """Frozen 14-byte-per-pixel summary of a finished level (see `LevelStats`)."""
        return LevelStats.from_moments(self)

    # ----------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: arrays and scalars (plain types, HDF5-friendly)."""
        st: dict[str, Any] = {
            "shape": np.asarray(self.shape, np.int64),
            "n": self.n,
            "higher": self.higher,
            "flicker": self.flicker,
            "f0": self._f0,
            "shift": self._shift.copy(),
            "s1": self._s1.copy(),
            "s2": self._s2.copy(),
            "pixel_max": self.pixel_max.copy(),
            "frame_means": self.frame_means,
        }
        if self.pixel_min is not None:
            st["pixel_min"] = self.pixel_min.copy()
        if self.higher:
            s3, s4 = self._higher_sums()
            st["s3"] = s3.copy()
            st["s4"] = s4.copy()
        if self.flicker:
            st["sdf"] = self._flicker_sum().copy()
        return st

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PixelMoments:
        """Rebuild an accumulator from :meth:`state_dict` output."""
        try:
            shape = tuple(int(s) for s in np.asarray(state["shape"]))
            pm = cls(
                shape,
                higher=bool(state["higher"]),
                flicker=bool(state["flicker"]),
                track_min="pixel_min" in state,
            )
            pm.n = int(state["n"])
            pm._f0 = float(state["f0"])
            for key, attr, dt in (
                ("shift", "_shift", np.int32),
                ("s1", "_s1", np.int64),
                ("s2", "_s2", np.int64),
                ("pixel_max", "pixel_max", np.int32),
            ):
                getattr(pm, attr)[...] = np.asarray(state[key], dt)
            if pm.higher:
                s3, s4 = pm._higher_sums()
                s3[...] = np.asarray(state["s3"], np.float64)
                s4[...] = np.asarray(state["s4"], np.float64)
            if pm.flicker:
                pm._flicker_sum()[...] = np.asarray(state["sdf"], np.float64)
            if pm.pixel_min is not None:
                pm.pixel_min[...] = np.asarray(state["pixel_min"], np.int32)
            pm._fm = [float(v) for v in np.asarray(state["frame_means"], np.float64)]
        except KeyError as e:
            raise ValueError(f"PixelMoments state is missing {e}") from None
        if len(pm._fm) != pm.n:
            raise ValueError(
                f"PixelMoments state is inconsistent: n={pm.n} but {len(pm._fm)} frame means"
            )
        return pm

    def merge(self, other: PixelMoments) -> PixelMoments:
        """Fold another accumulator of the same shape into this one (in place).

        Returns ``self``. Higher/flicker sums are kept only if both have them.
        """
        if other.shape != self.shape:
            raise ValueError(f"cannot merge shapes {other.shape} and {self.shape}")
        if other.n == 0:
            return self
        if self.n == 0:
            st = other.state_dict()
            new = PixelMoments.from_state(st)
            self.__dict__.update(new.__dict__)
            return self
        # re-express other's sums around self's shift: d' = d + delta
        delta = (other._shift.astype(np.int64) - self._shift).astype(np.int64)
        n = other.n
        o1, o2 = other._s1, other._s2
        s1n = o1 + n * delta
        s2n = o2 + 2 * delta * o1 + n * delta * delta
        if self.higher and other.higher:
            df = delta.astype(np.float64)
            o3, o4 = other._higher_sums()
            s3, s4 = self._higher_sums()
            f1, f2 = o1.astype(np.float64), o2.astype(np.float64)
            s4 += o4 + 4 * df * o3 + 6 * df**2 * f2 + 4 * df**3 * f1 + n * df**4
            s3 += o3 + 3 * df * f2 + 3 * df**2 * f1 + n * df**3
        else:
            self.higher, self._s3, self._s4 = False, None, None
        if self.flicker and other.flicker:
            sfo = float(np.sum(other.frame_means - other._f0))
            sdf = self._flicker_sum()
            sdf += (
                other._flicker_sum()
                + delta * sfo
                + (other._f0 - self._f0) * (o1 + n * delta).astype(np.float64)
            )
        else:
            self.flicker, self._sdf = False, None
        self._s1 += s1n
        self._s2 += s2n
        np.maximum(self.pixel_max, other.pixel_max, out=self.pixel_max)
        if self.pixel_min is not None and other.pixel_min is not None:
            np.minimum(self.pixel_min, other.pixel_min, out=self.pixel_min)
        else:
            self.pixel_min = None
        self._fm.extend(other._fm)
        self.n += n
        return self

    def __repr__(self) -> str:
        return f"PixelMoments(shape={self.shape}, n={self.n})"
