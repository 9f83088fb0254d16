"""OME-XML for a stack of raw frames saved by `framesave.FrameWriter` (built with ome-types).

One ``Image`` with ``Pixels`` ``(T, Y, X)`` (``DimensionOrder="XYCZT"``, SizeT = number
of frames, uint16, ``SignificantBits`` = camera bit depth, ``PhysicalSizeX/Y`` = the
rig's pixel size when known), one ``Plane`` per frame with ``TheT``, ``DeltaT`` (s since
the first frame was requested) and ``ExposureTime`` (ms), and one ``TiffData`` per
frame. The camera is an ``Instrument/Detector`` (vendor, model, serial, bit depth, gain
mode) referenced by the channel's ``DetectorSettings``. Per-frame roles go into one
``MapAnnotation`` per plane (namespace ``rawsigma.frame``: ``kind`` dark/bright,
``level_index`` (−1 = shared darks), ``control`` = the light-source setting or exposure
that defined the level); the acquisition record (plan, identity) into an image-level
``MapAnnotation`` (namespace ``rawsigma.acquisition``).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["frames_ome_xml"]


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def frames_ome_xml(
    shape: tuple[int, int],
    rows: Sequence[tuple[int, str, int, float, float]],
    times: Sequence[float],
    *,
    bit_depth: int,
    pixel_size_um: float | None = None,
    detector: dict[str, Any] | None = None,
    name: str = "rawsigma frames",
    metadata: dict[str, Any] | None = None,
) -> str:
    """OME-XML (validated by ome-types' model) for ``len(rows)`` frames of ``shape``.

    ``rows`` are ``(frame, kind, level_index, exposure_ms, control)`` per frame and
    ``times`` the seconds since the start at which each frame arrived.
    """
    from ome_types import model as M
    from ome_types import to_xml

    det = dict(detector or {})
    n = len(rows)
    detector_obj = M.Detector(
        id="Detector:0",
        manufacturer=det.get("vendor") or None,
        model=det.get("model") or None,
        serial_number=det.get("serial") or None,
        type="CMOS" if "cmos" in str(det.get("model", "")).lower() else None,
    )
    settings = M.DetectorSettings(id="Detector:0")
    planes, tiffdata, annotations = _frame_planes(M, rows, times)
    annotations.append(_acquisition_annotation(M, metadata, det))
    refs = [M.AnnotationRef(id="Annotation:0")]
    size = {"physical_size_x": pixel_size_um, "physical_size_y": pixel_size_um}
    size = {k: v for k, v in size.items() if v}
    pixels = M.Pixels(
        id="Pixels:0",
        dimension_order="XYCZT",
        type="uint16",
        significant_bits=int(bit_depth),
        size_x=int(shape[1]),
        size_y=int(shape[0]),
        size_c=1,
        size_z=1,
        size_t=max(n, 1),
        channels=[M.Channel(id="Channel:0:0", samples_per_pixel=1, detector_settings=settings)],
        planes=planes,
        tiff_data_blocks=tiffdata,
        **size,
    )
    image = M.Image(
        id="Image:0",
        name=name,
        description="raw camera frames in acquisition order (darks, then levels)",
        instrument_ref=M.InstrumentRef(id="Instrument:0"),
        pixels=pixels,
        annotation_refs=refs,
    )
    ome = M.OME(
        creator="rawsigma",
        instruments=[M.Instrument(id="Instrument:0", detectors=[detector_obj])],
        images=[image],
        structured_annotations=M.StructuredAnnotations(map_annotations=annotations),
    )
    return to_xml(ome)


def _frame_planes(
    M: Any, rows: Sequence[tuple[int, str, int, float, float]], times: Sequence[float]
) -> tuple[list[Any], list[Any], list[Any]]:
    """One Plane, TiffData and MapAnnotation (kind, level, control) per frame."""
    planes, tiffdata, annotations = [], [], []
    for i, (row, t) in enumerate(zip(rows, times, strict=True)):
        _, kind, level, exp_ms, control = row
        ann_id = f"Annotation:{i + 1}"
        pairs = {"kind": str(kind), "level_index": str(int(level))}
        if _num(control) is not None:
            pairs["control"] = repr(float(control))
        annotations.append(
            M.MapAnnotation(
                id=ann_id,
                namespace="rawsigma.frame",
                value=M.Map(ms=[M.Map.M(k=k, value=v) for k, v in pairs.items()]),
            )
        )
        planes.append(
            M.Plane(
                the_z=0,
                the_c=0,
                the_t=i,
                delta_t=float(t),
                delta_t_unit="s",
                exposure_time=_num(exp_ms),
                exposure_time_unit="ms",
                annotation_refs=[M.AnnotationRef(id=ann_id)],
            )
        )
        tiffdata.append(M.TiffData(ifd=i, first_t=i, first_c=0, first_z=0, plane_count=1))
    return planes, tiffdata, annotations


def _acquisition_annotation(M: Any, metadata: dict[str, Any] | None, det: dict[str, Any]) -> Any:
    """The acquisition's metadata and detector settings as one MapAnnotation."""
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    for k in ("camera", "gain_mode", "readout_mode", "temperature_c"):
        if det.get(k) not in (None, ""):
            meta[f"detector.{k}"] = str(det[k])
    return M.MapAnnotation(
        id="Annotation:0",
        namespace="rawsigma.acquisition",
        value=M.Map(ms=[M.Map.M(k=k, value=v) for k, v in meta.items()]),
    )
