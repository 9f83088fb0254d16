"""Stream raw frames to disk as they arrive (never holding a stack in memory).

`FrameWriter` writes OME-TIFF (ONE OME image, a ``(T, Y, X)`` series of every frame in
acquisition order, see `ome_metadata`: per-plane exposure time, DeltaT and a
MapAnnotation with the frame's role and light-source setting; the rig's pixel size and
the camera as OME Detector) or HDF5 (one resizable ``frames`` dataset, chunked per
frame, the same per-frame columns as datasets) plus a CSV sidecar
``<name>.csv`` with one row per frame (``frame, kind, level_index, exposure_ms,
control``), the layout `rawsigma.calib.stacks.calibrate_from_stacks` reads, so a
saved sweep can be re-calibrated offline with ``rawsigma calibrate --from-stacks``.
Files are written to a temporary name and renamed on `close`, so an interrupted
run leaves a complete, readable file of the frames taken so far.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from rawsigma.fileio import check_output

if TYPE_CHECKING:
    from .protocols import MMCore

__all__ = ["FrameWriter", "frame_context", "frames_format"]


def frame_context(core: MMCore, identity: Any) -> dict[str, Any]:
    """``pixel_size_um`` and ``detector`` keyword arguments of `FrameWriter` from a core
    (its current pixel-size preset) and a `CameraIdentity`.
    """
    try:
        px = float(core.getPixelSizeUm())
    except Exception:  # noqa: BLE001 - no pixel-size preset / bridge without it
        px = 0.0
    keys = ("camera", "vendor", "model", "serial", "gain_mode", "readout_mode", "temperature_c")
    det = {k: getattr(identity, k, None) for k in keys}
    return {"pixel_size_um": px or None, "detector": det}


def frames_format(path: str | os.PathLike) -> Literal["ome-tiff", "hdf5"]:
    """Format implied by a file name (``.h5``/``.hdf5`` → HDF5, else OME-TIFF)."""
    return "hdf5" if Path(path).suffix.lower() in (".h5", ".hdf5") else "ome-tiff"


class FrameWriter:
    """Append frames to an OME-TIFF or HDF5 file plus a CSV frame table.

    Parameters
    ----------
    path : path-like
        Output file; ``.h5``/``.hdf5`` selects HDF5 unless ``fmt`` is given.
    shape : (int, int)
        Frame shape (H, W).
    bit_depth : int
        Significant bits of the camera (recorded in the file).
    fmt : {"ome-tiff", "hdf5"}, optional
    force : bool
        Replace an existing file.
    metadata : dict, optional
        JSON-able record (plan, identity) stored as HDF5 attributes and in the OME
        image's MapAnnotation.
    pixel_size_um : float, optional
        The rig's pixel size at the sample (``core.getPixelSizeUm()``; 0 or None: unknown).
    detector : dict, optional
        Camera description for OME ``Detector`` (keys ``vendor``, ``model``, ``serial``,
        ``camera`` (label), ``gain_mode``, ``readout_mode``, ``temperature_c``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape: tuple[int, int],
        bit_depth: int,
        fmt: Literal["ome-tiff", "hdf5"] | None = None,
        *,
        force: bool = False,
        metadata: dict[str, Any] | None = None,
        pixel_size_um: float | None = None,
        detector: dict[str, Any] | None = None,
    ) -> None:
        self.path = check_output(path, force)
        self.csv_path = self.path.with_name(self.path.name.split(".")[0] + ".csv")
        check_output(self.csv_path, force)
        self.fmt = fmt or frames_format(self.path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.bit_depth = int(bit_depth)
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self._rows: list[tuple[int, str, int, float, float]] = []
        self._times: list[float] = []
        self._t0 = time.monotonic()
        self._meta = dict(metadata or {})
        self.pixel_size_um = float(pixel_size_um) if pixel_size_um else None
        self.detector = dict(detector or {})
        self._n = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "hdf5":
            import h5py

            self._h5 = h5py.File(self._tmp, "w")
            self._ds = self._h5.create_dataset(
                "frames",
                shape=(0, *self.shape),
                maxshape=(None, *self.shape),
                dtype=np.uint16,
                chunks=(1, *self.shape),
            )
            self._ds.attrs["bit_depth"] = self.bit_depth
            for k, v in (metadata or {}).items():
                self._h5.attrs[k] = v if isinstance(v, (int, float, str)) else str(v)
        else:
            import tifffile

            self._tw = tifffile.TiffWriter(self._tmp, bigtiff=True)

    @property
    def n_frames(self) -> int:
        """Frames written so far."""
        return self._n

    def write(
        self,
        frame: np.ndarray,
        kind: Literal["dark", "bright"],
        level_index: int,
        exposure_ms: float = float("nan"),
        control: float = float("nan"),
    ) -> None:
        """Append one uint16 frame with its role (``level_index`` −1 = shared dark)."""
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} != {self.shape}")
        if self.fmt == "hdf5":
            try:
                self._ds.resize(self._n + 1, axis=0)
                self._ds[self._n] = frame
            except RuntimeError as exc:
                # h5py reports some failed writes (a full disk among them) as
                # RuntimeError; an OSError makes the runners abandon the file unclosed
                # (closing such a file can crash the HDF5 library)
                code = errno.ENOSPC if "space" in str(exc).lower() else errno.EIO
                raise OSError(code, f"HDF5 write failed: {exc}", str(self._tmp)) from exc
        else:
            # one contiguous series; the OME-XML (all planes) is written by close()
            self._tw.write(
                np.asarray(frame, dtype=np.uint16),
                contiguous=True,
                description="rawsigma frames (OME-XML written at close)" if self._n == 0 else None,
                metadata=None,
                software="rawsigma",
            )
        self._times.append(time.monotonic() - self._t0)
        self._rows.append((self._n, kind, int(level_index), float(exposure_ms), float(control)))
        self._n += 1

    def close(self) -> None:
        """Finish the file and the CSV (atomic renames)."""
        if self.fmt == "hdf5":
            kinds = np.array([r[1] for r in self._rows], dtype="S6")
            self._h5.create_dataset("kind", data=kinds)
            self._h5.create_dataset("level_index", data=np.array([r[2] for r in self._rows]))
            self._h5.create_dataset("exposure_ms", data=np.array([r[3] for r in self._rows]))
            self._h5.create_dataset("control", data=np.array([r[4] for r in self._rows]))
            self._h5.create_dataset("delta_t_s", data=np.array(self._times))
            if self.pixel_size_um:
                self._ds.attrs["pixel_size_um"] = self.pixel_size_um
            self._h5.close()
        else:
            import tifffile

            self._tw.close()
            if self._n:
                tifffile.tiffcomment(self._tmp, self.ome_xml().encode())
        os.replace(self._tmp, self.path)
        tmp_csv = self.csv_path.with_name(f".{self.csv_path.name}.partial")
        with open(tmp_csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["frame", "kind", "level_index", "exposure_ms", "control"])
            w.writerows(self._rows)
        os.replace(tmp_csv, self.csv_path)

    def ome_xml(self) -> str:
        """The OME-XML of the frames written so far (see `ome_metadata`)."""
        from .ome_metadata import frames_ome_xml

        return frames_ome_xml(
            self.shape,
            self._rows,
            self._times,
            bit_depth=self.bit_depth,
            pixel_size_um=self.pixel_size_um,
            detector=self.detector,
            name=self.path.name,
            metadata=self._meta,
        )

    def abort(self) -> None:
        """Discard the file being written."""
        with contextlib.suppress(Exception):
            self._h5.close() if self.fmt == "hdf5" else self._tw.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
