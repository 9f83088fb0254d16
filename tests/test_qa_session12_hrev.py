"""QA session 12 (hrev): review of the session's merged changes."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from rawsigma.calib.profile import CameraProfile
from test_cli_score_fields import plate as plate_fixture


def _calibrated(shape=(32, 48)) -> CameraProfile:
    """A profile as `build_profile` makes them: per-pixel gain, defects, an EMVA K that
    is not the median of the per-pixel gains."""
    rng = np.random.default_rng(3)
    defects = np.zeros(shape, np.uint8)
    defects[3, 5] = defects[20, 40] = 1
    return CameraProfile(
        offset=100 + rng.normal(0, 1, shape),
        gain=0.5 + rng.normal(0, 0.02, shape),
        read_noise=1.6 + rng.normal(0, 0.05, shape),
        defects=defects,
        emva={"K": 0.53},
        provenance={"gain_map": "per-pixel"},
    )


def test_payload_of_the_previous_release_still_decodes(monkeypatch):
    """`gain_global` became the EMVA K (session 12), and the codec's per-pixel maps put
    it on the defect pixels: a payload `NoiseCodec.encode` wrote before (maps by
    reference, the default) with the same calibrated profile was refused by `decode`
    ("the supplied profile maps ... are not the ones the stream was encoded with")."""
    from rawsigma.analysis.noisecodec.codec import NoiseCodec

    prof = _calibrated()
    median = float(np.median(prof.gain[prof.good]))
    assert abs(prof.gain_global - 0.53) < 1e-12 and abs(median - 0.53) > 0.01
    rng = np.random.default_rng(0)
    img = (prof.offset + prof.gain * rng.poisson(300, prof.shape)).astype(np.uint16)
    with monkeypatch.context() as m:  # the previous release: the median of the gains
        m.setattr(CameraProfile, "gain_global", property(lambda p: median))
        old = NoiseCodec(prof, 2.0)
        data = old.encode(img)
        want = old.decode(data)
    np.testing.assert_array_equal(NoiseCodec(prof, 2.0).decode(data), want)


def test_resume_of_a_partial_without_recorded_exposure_is_one_line(tmp_path):
    """A partial file whose identity has no exposure (a camera whose exposure could not
    be read) resumed on a camera that has one: the refusal's new ``--exposure`` hint
    formatted None, a TypeError traceback instead of the one-line InputFileError."""
    import test_acquire_sweep as T
    from rawsigma.acquire.partial import read_partial, write_partial
    from rawsigma.errors import InputFileError

    plan = T._plan(dark_frames=8, n_levels=3, frames_per_level=8, saturation_levels=0)
    part = tmp_path / "p.h5"
    T._cancelled_partial(plan, part, at=0)
    data = read_partial(part)
    part.unlink()
    ident = {**data["identity"], "exposure_ms": None}
    write_partial(
        part, plan=data["plan"], identity=ident, state=data["state"], groups=data["groups"]
    )
    with pytest.raises(InputFileError, match=r"exposure_ms = None, but the camera now has 10"):
        T.SweepRunner(T._core(), plan, part).run(resume=True)


plate = plate_fixture  # the many-field tests' plate (module-scoped fixture)


def test_another_run_after_an_interrupted_one_is_refused(plate, monkeypatch):
    """The many-field check that refuses another run's OUT read the record from
    ``summary.json``, written at the end: after a run interrupted past its first field
    (no summary yet), another run (other codecs) kept that field from the earlier run
    and wrote a summary mixing both, exit 0. The record is now written first."""
    import rawsigma.analysis.outofcore.taskrun as taskrun
    from test_cli_score_fields import COMMON, _run

    out = plate / "interrupted"
    args = [plate / "stack.tif", "-p", plate / "prof.h5", "--labels", plate / "stack_labels.tif"]
    real = taskrun.run_tasks

    def interrupted(tasks, *a, **k):  # Ctrl-C once the first field is written
        real(dict(list(tasks.items())[:1]), *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(taskrun, "run_tasks", interrupted)
    r = _run(*args, "--all-fields", *COMMON, "-o", out)
    assert r.exit_code == 130 and not (out / "summary.json").exists(), r.output
    assert [p.name for p in (out / "fields").iterdir()] == ["stack_f000"]
    monkeypatch.setattr(taskrun, "run_tasks", real)
    other = ["--instances", "--codecs", "zstd", *COMMON[3:]]
    r = _run(*args, "--all-fields", *other, "-o", out)
    assert r.exit_code == 1 and "another run" in r.output and "codecs" in r.output, r.output
    r = _run(*args, "--all-fields", *COMMON, "-o", out)  # the same command: resumed
    assert r.exit_code == 0 and "stack_f000: kept from an earlier run" in r.output, r.output


@pytest.mark.parametrize("fmt", ["h5", "zarr"])
def test_container_annotated_by_another_tool_still_reads(tmp_path, fmt):
    """The metadata checksum covered every attribute of the HDF5 dataset and zarr array:
    an attribute another tool added (a user's annotation, which rawsigma does not read)
    made the whole file unreadable ("metadata checksum mismatch: the container's shape,
    axes, voxel size or format record were altered"). It now covers the attributes
    rawsigma writes; altering one of those is still refused."""
    import h5py
    import zarr
    from rawsigma.analysis.noisecodec import containers as C
    from rawsigma.analysis.noisecodec.codec import NoiseCodec
    from rawsigma.errors import InputFileError
    from rawsigma.metacrc import HDF5_ATTRS, META_CRC_KEY, ZARR_ATTRS

    prof = CameraProfile.uniform((24, 20), gain=0.5, offset=100, read_noise=2.0)
    rng = np.random.default_rng(1)
    img = (100 + 0.5 * rng.poisson(200, (3, 24, 20))).astype(np.uint16)
    meta = {"axes": "ZYX", "spacing_zyx": [2.0, 0.65, 0.65]}
    p = C.write_compressed(tmp_path / f"x.{fmt}", img, NoiseCodec(prof, maps="pixel"), meta=meta)
    want = C.read_compressed(p)

    def attrs(mode):
        if fmt == "h5":
            f = h5py.File(p, mode)
            return f, f["rsnc"].attrs
        a = zarr.open_array(str(p), mode=mode)
        return contextlib.nullcontext(), a.attrs

    f, a = attrs("r")
    with f:
        written = set(a) - {META_CRC_KEY}
    assert written <= set(HDF5_ATTRS if fmt == "h5" else ZARR_ATTRS), written
    f, a = attrs("r+")
    with f:
        a["sample"] = "embryo 3"
    np.testing.assert_array_equal(C.read_compressed(p), want)
    assert C.read_meta(p) == meta
    f, a = attrs("r+")
    with f:
        a["axes"] = "TYX"
    with pytest.raises(InputFileError, match="metadata checksum mismatch"):
        C.read_compressed(p)


@pytest.mark.parametrize("spec", [".seg:predict", "..seg:predict", ":predict"])
def test_model_relative_or_empty_module_is_one_line(spec):
    """``--model .seg:predict`` (a relative module) or ``:predict``: importlib raised
    TypeError / ValueError, reported as an internal error, after synthesis and encoding."""
    from rawsigma.analysis.segmentation.classifier import load_model
    from rawsigma.errors import InputFileError

    with pytest.raises(InputFileError, match="must be a full module name"):
        load_model(spec)
