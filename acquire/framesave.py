"""Stream raw frames to disk as they arrive (never holding a stack in memory).

`FrameWriter` writes OME-TIFF (one OME image per frame, ``SignificantBits`` set)
or HDF5 (one resizable ``frames`` dataset, chunked per frame) plus a CSV sidecar
``<name>.csv`` with one row per frame (``frame, kind, level_index, exposure_ms,
control``), the layout `rawsigma.calib.stacks.calibrate_from_stacks` reads, so a
saved sweep can be re-calibrated offline with ``rawsigma calibrate --from-stacks``.
Files are written to a temporary name and renamed on `close`, so an interrupted
run leaves a complete, readable file of the frames taken so far.
"""

from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rawsigma.fileio import check_output

__all__ = ["FrameWriter", "frames_format"]


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
        JSON-able record (plan, identity) stored as HDF5 attributes.
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
    ) -> None:
        self.path = check_output(path, force)
        self.csv_path = self.path.with_name(self.path.name.split(".")[0] + ".csv")
        check_output(self.csv_path, force)
        self.fmt = fmt or frames_format(self.path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.bit_depth = int(bit_depth)
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self._rows: list[tuple[int, str, int, float, float]] = []
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

            self._tw = tifffile.TiffWriter(self._tmp, bigtiff=True, ome=True)

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
            self._ds.resize(self._n + 1, axis=0)
            self._ds[self._n] = frame
        else:
            self._tw.write(
                np.asarray(frame, dtype=np.uint16),
                metadata={"SignificantBits": self.bit_depth, "Name": f"{kind} {level_index}"},
            )
        self._rows.append((self._n, kind, int(level_index), float(exposure_ms), float(control)))
        self._n += 1

    def close(self) -> None:
        """Finish the file and the CSV (atomic renames)."""
        if self.fmt == "hdf5":
            kinds = np.array([r[1] for r in self._rows], dtype="S6")
            self._h5.create_dataset("kind", data=kinds)
            self._h5.create_dataset("level_index", data=np.array([r[2] for r in self._rows]))
            self._h5.close()
        else:
            self._tw.close()
        os.replace(self._tmp, self.path)
        tmp_csv = self.csv_path.with_name(f".{self.csv_path.name}.partial")
        with open(tmp_csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["frame", "kind", "level_index", "exposure_ms", "control"])
            w.writerows(self._rows)
        os.replace(tmp_csv, self.csv_path)

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
