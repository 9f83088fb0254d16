"""The lazy driver of ``rawsigma score VOLUME --chunks``: the volume is never read whole."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from pathlib import Path

SPACING = (1.0, 0.5, 0.5)


@pytest.fixture(scope="module")
def phantom():
    from rawsigma.analysis.phantoms import nuclei3d
    from rawsigma.analysis.segmentation.annotations import training_labels
    from rawsigma.calib.profile import CameraProfile

    shape = (10, 40, 40)
    bright, truth = nuclei3d(shape, SPACING, n_objects=10, touching_pairs=1, rng=3, n_beads=0)
    rng = np.random.default_rng(0)
    e = rng.poisson(30 + 600 * bright)
    vol = np.clip(np.rint(100.0 + 2.0 * e + rng.normal(0, 2.0, shape)), 0, 65535)
    prof = CameraProfile.uniform(shape[1:], 2.0, 100.0, 2.0)
    return vol.astype(np.uint16), prof, training_labels(truth).astype(np.uint8), truth


def _zarr(path: Path, a: np.ndarray, chunks=(4, 16, 16)) -> Path:
    import zarr

    z = zarr.create_array(str(path), shape=a.shape, chunks=chunks, dtype=a.dtype,
                          overwrite=True, config={"write_empty_chunks": True})  # fmt: skip
    z[...] = a
    return path


@pytest.fixture
def small_slabs(monkeypatch):
    """Slabs of 4 planes of the test volume: every slab-wise step runs several slabs."""
    from rawsigma.analysis.scoring import volume_source

    monkeypatch.setattr(volume_source, "SLAB_BYTES", 4 * 40 * 40 * 2)


# ----------------------------------------------------------------------------- reader
def test_open_volume_reads_blocks_of_every_format(tmp_path, phantom) -> None:
    import pickle

    import h5py
    import tifffile
    from rawsigma.volread import open_volume

    vol = phantom[0]
    tifffile.imwrite(tmp_path / "v.tif", vol, metadata={"axes": "ZYX"})
    _zarr(tmp_path / "v.zarr", vol)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["v"] = vol[None]
    np.save(tmp_path / "v.npy", vol)
    for name, axes in (("v.tif", None), ("v.zarr", None), ("v.h5", "CZYX"), ("v.npy", None)):
        src, info = open_volume(tmp_path / name, axes=axes)
        src = pickle.loads(pickle.dumps(src))  # travels to the workers
        assert src.shape == vol.shape == info.shape
        np.testing.assert_array_equal(src[2:7, 5:31, 9:10], vol[2:7, 5:31, 9:10])


def _cli(args: list) -> object:
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    return CliRunner().invoke(app, ["score", *map(str, args)])


def test_missing_chunk_and_truncated_hdf5_are_one_line_errors(tmp_path, phantom) -> None:
    import h5py

    vol, prof, ann, _ = phantom
    prof.save(tmp_path / "p.h5")
    _zarr(tmp_path / "ann.zarr", ann)
    z = _zarr(tmp_path / "v.zarr", vol)
    next(p for p in sorted((z / "c").rglob("*")) if p.is_file()).unlink()
    common = ["--profile", tmp_path / "p.h5", "--labels", tmp_path / "ann.zarr",
              "--chunks", "4,16,20", "--driver", "lazy", "--out", tmp_path / "o"]  # fmt: skip
    r = _cli([z, *common])
    assert r.exit_code == 1, r.output
    msg = " ".join(r.output.split())
    assert "1 of 27 chunks of array" in msg and "missing" in msg and "fill value" in msg
    assert "Traceback" not in r.output
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("v", data=vol, chunks=(2, 40, 40))
        f["v"].attrs["axes"] = "ZYX"
    size = (tmp_path / "t.h5").stat().st_size
    with open(tmp_path / "t.h5", "r+b") as fh:
        fh.truncate(size // 2)
    r = _cli([tmp_path / "t.h5", *common])
    assert r.exit_code == 1 and "truncated file" in " ".join(r.output.split()), r.output
    assert not (tmp_path / "o" / "results.json").exists()


# ----------------------------------------------------------------------------- steps
def test_tissue_and_training_equal_the_in_memory_ones(tmp_path, phantom, small_slabs) -> None:
    from rawsigma.analysis.scoring.volume import TISSUE_SMOOTHING, tissue_mask
    from rawsigma.analysis.scoring.volume_source import (
        annotation_region_sizes,
        fit_lazy,
        stage_annotations,
        stage_raw,
        tissue_voxels,
    )
    from rawsigma.analysis.scoring.volume_steps import _rel_spacing
    from rawsigma.analysis.segmentation.classifier import PixelClassifier
    from rawsigma.analysis.segmentation.features import FeatureConfig
    from rawsigma.volread import open_volume
    from scipy import ndimage as ndi

    vol, prof, ann, _ = phantom
    src, _ = open_volume(_zarr(tmp_path / "v.zarr", vol))
    stats = stage_raw(src, tmp_path / "raw.zarr", (4, 16, 20), prof)
    assert (stats.vmin, stats.vmax) == (vol.min(), vol.max())
    assert stats.percentile(0.175) == np.percentile(vol, 0.175)
    lab_src, _ = open_volume(_zarr(tmp_path / "a.zarr", ann))
    a = stage_annotations(lab_src, tmp_path / "ann.zarr", (4, 16, 20), vol.shape, 2)
    sizes = annotation_region_sizes(a, tmp_path / "regions")
    regions = ndi.label(ann == 2, np.ones((3, 3, 3)))[0]
    assert sorted(sizes) == sorted(np.bincount(regions.ravel())[1:])
    for sp in (SPACING, (2.0, 1.0, 1.0)):
        sig = tuple(TISSUE_SMOOTHING / r for r in _rel_spacing(sp))
        assert tissue_voxels(stats.path, sig) == np.count_nonzero(tissue_mask(vol, sp))
    cfg = FeatureConfig("ilastik", sigmas=(0.7, 1.6), spacing=_rel_spacing(SPACING))
    kw = dict(features=cfg, random_state=4, n_estimators=8, n_jobs=1, max_samples_per_class=300)
    ref = PixelClassifier("ilastik", **kw).fit(vol, ann)
    lazy = fit_lazy(PixelClassifier("ilastik", **kw), stats.path, a)
    np.testing.assert_array_equal(lazy.predict_proba(vol), ref.predict_proba(vol))


def test_slab_wise_codecs_equal_whole_volume_encoding(tmp_path, phantom, small_slabs) -> None:
    import zarr
    from rawsigma.analysis.codecs.registry import compression_ratio, parse_codecs
    from rawsigma.analysis.scoring.volume_source import stage_raw
    from rawsigma.analysis.scoring.volume_versions import eight_bit_range, write_codec
    from rawsigma.volread import open_volume

    vol, prof, _, _ = phantom
    vol = vol.copy()
    vol[7, 3, 3] = 9000  # the range is set by one bright voxel outside the first slab
    src, _ = open_volume(_zarr(tmp_path / "v.zarr", vol))
    stats = stage_raw(src, tmp_path / "raw.zarr", (4, 16, 20), prof)
    for spec in ("8bit", "8bit:range=display", "jpeg@10", "jpeg:q=60"):
        codec = parse_codecs(spec, profile=prof)[0]
        data = codec.encode(vol)
        meta = write_codec(stats.path, tmp_path / "d.zarr", spec, prof,
                           eight_bit_range(parse_codecs(spec, profile=prof)[0], stats))  # fmt: skip
        dec = zarr.open_array(str(tmp_path / "d.zarr"), mode="r")[...]
        np.testing.assert_array_equal(dec, codec.decode(data), err_msg=spec)
        assert meta["n_bytes"] == len(data) and meta["size_of_whole_payload"], spec
        assert meta["ratio"] == pytest.approx(compression_ratio(vol, data), rel=1e-12)


def test_replicas_are_reproducible_per_plane(tmp_path, phantom, small_slabs) -> None:
    import zarr
    from rawsigma.analysis.scoring.volume_source import stage_raw
    from rawsigma.analysis.scoring.volume_versions import write_replica
    from rawsigma.volread import open_volume

    vol, prof, _, _ = phantom
    src, _ = open_volume(_zarr(tmp_path / "v.zarr", vol))
    seed = np.random.SeedSequence(5).spawn(3)[0]
    reps = []
    for chunks in ((4, 16, 20), (3, 40, 40)):
        stats = stage_raw(src, tmp_path / f"raw{chunks[0]}.zarr", chunks, prof)
        write_replica(stats.path, tmp_path / f"r{chunks[0]}.zarr", prof, seed, 1, "observed")
        reps.append(zarr.open_array(str(tmp_path / f"r{chunks[0]}.zarr"), mode="r")[...])
    np.testing.assert_array_equal(reps[0], reps[1])  # whatever the chunks
    d = reps[0].astype(float) - vol
    assert 0.8 < d.std() / np.sqrt(2 * (vol.mean() - 100) + 4) < 1.2  # raw-equivalent noise
    write_replica(stats.path, tmp_path / "r0.zarr", prof, seed, 0, "observed")
    assert not np.array_equal(zarr.open_array(str(tmp_path / "r0.zarr"), mode="r")[...], reps[0])


def test_split_merge_from_stores_equals_in_memory(tmp_path, small_slabs) -> None:
    from rawsigma.analysis.measurement.matching import split_merge_counts
    from rawsigma.analysis.scoring.volume_versions import split_merge

    rng = np.random.default_rng(2)
    a = np.zeros((10, 40, 40), np.uint32)
    b = np.zeros_like(a)
    for i in range(1, 30):
        z, y, x = rng.integers(0, [7, 34, 34])
        a[z : z + 3, y : y + 6, x : x + 6] = i
        b[z : z + 3, y : y + 3, x : x + 6] = 2 * i
        b[z : z + 3, y + 3 : y + 6, x : x + 6] = 2 * i + (i % 3 == 0)
    expect = split_merge_counts(a, b)
    assert expect[0] > 0
    got = split_merge(str(_zarr(tmp_path / "a.zarr", a)), str(_zarr(tmp_path / "b.zarr", b)))
    assert got == expect


# ----------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_lazy_path_equals_the_chunked_path(tmp_path, phantom, small_slabs) -> None:
    import h5py
    from rawsigma.analysis.scoring.plans import ScorePlan
    from rawsigma.analysis.scoring.volume_graph import score_volume_tasks

    vol, prof, ann, _ = phantom
    prof.save(tmp_path / "p.h5")
    out = tmp_path / "out"
    r = _cli([_zarr(tmp_path / "v.zarr", vol), "--profile", tmp_path / "p.h5",
              "--labels", _zarr(tmp_path / "ann.zarr", ann), "--spacing", "1,0.5,0.5",
              "--replicas", "3", "--codecs", "replica,8bit,jpeg@10", "--workers", "1",
              "--chunks", "4,16,20", "--driver", "lazy", "--out", out])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "lazy driver" in r.output and "driver: lazy, peak RSS" in r.output
    res = json.loads((out / "results.json").read_text())
    ex = res["provenance"]["execution"]
    assert ex["driver"] == "lazy" and ex["chunks"] == [4, 16, 20] and ex["driver_peak_rss_mb"] > 0
    plan = ScorePlan(**{**res["provenance"]["plan"], "min_size": None})
    old = score_volume_tasks(vol, prof, tmp_path / "old", labels=ann, spacing=SPACING,
                             plan=plan, chunks=(4, 16, 20))  # fmt: skip
    old_d = old.to_dict()
    assert res["volume"]["tissue"]["n_voxels"] == old_d["volume"]["tissue"]["n_voxels"]
    assert res["objects_info"] == old_d["objects_info"]
    assert res["raw_globals"] == old_d["raw_globals"]
    with h5py.File(out / "volumes.h5") as f:
        np.testing.assert_array_equal(f["raw"][()], vol)
        np.testing.assert_array_equal(f["labels/raw"][()], old.raw_labels)
        for c_new, c_old in zip(res["codecs"], old.codecs, strict=True):
            if c_old.spec == "replica":  # replicas: another random stream (per plane)
                continue
            np.testing.assert_array_equal(f[f"labels/{c_old.spec}"][()], c_old.labels)
            assert c_new["match"] == c_old.match
            assert c_new["compression_ratio"] == c_old.ratio
            for k, g in c_old.globals.items():
                assert c_new["globals"][k]["value"] == g["value"], (c_old.spec, k)
            pe = c_old.pixel_eps[np.isfinite(c_old.pixel_eps)]
            assert c_new["pixel_epsilon"]["rms"] == pytest.approx(
                np.sqrt(np.mean(pe.astype(float) ** 2))
            )
        for c_new, c_old in zip(res["codecs"], old.codecs, strict=True):
            # feature ε on the lazy path too (values: the feature ε test below)
            assert c_new["features"].keys() == c_old.features.keys() and c_new["features"]
            assert all(np.isfinite(v["mean_abs_epsilon"]) for v in c_new["features"].values())
            (name,) = c_old.feature_eps
            assert f["feature_eps/" + c_new["spec"]].shape == vol.shape
    from rawsigma.analysis.reporting.report import write_objects_csv

    write_objects_csv(old, tmp_path / "old.csv", force=True)

    def raw_columns(path: Path) -> list[list[str]]:  # object, parameter, raw value
        rows = [ln.split(",")[:3] for ln in path.read_text().splitlines()]
        return [r for r in rows if not r[0].startswith("#")]

    assert raw_columns(out / "objects.csv") == raw_columns(tmp_path / "old.csv")
    assert len(raw_columns(out / "objects.csv")) > len(old.raw_objects["label"]) > 0
    assert not (out / "work").exists()


@pytest.mark.slow
def test_cli_interrupted_leaves_no_results_and_resumes(tmp_path, phantom, monkeypatch) -> None:
    from rawsigma.analysis.scoring import volume_lazy

    vol, prof, ann, _ = phantom
    prof.save(tmp_path / "p.h5")
    out = tmp_path / "out"
    args = [_zarr(tmp_path / "v.zarr", vol), "--profile", tmp_path / "p.h5",
            "--labels", _zarr(tmp_path / "ann.zarr", ann), "--spacing", "1,0.5,0.5",
            "--replicas", "2", "--codecs", "8bit", "--workers", "1", "--chunks", "5,20,20",
            "--driver", "lazy", "--out", out]  # fmt: skip
    reduce = volume_lazy._reduce

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(volume_lazy, "_reduce", interrupted)  # Ctrl-C once every task ended
    r = _cli(args)
    assert r.exit_code == 130, r.output
    assert sorted(p.name for p in out.iterdir()) == ["work"]  # no result file, half or whole
    tasks = sorted(p.name for p in (out / "work" / "tasks").iterdir())
    assert tasks == ["codec_00_8bit", "raw", "replica_000", "replica_001"]
    monkeypatch.setattr(volume_lazy, "_reduce", reduce)
    r = _cli(args)
    assert r.exit_code == 0, r.output
    notes = json.loads((out / "results.json").read_text())["notes"]
    assert any("4 of 4 task results reused" in n for n in notes)


def test_driver_choice_auto_lazy_memory(monkeypatch) -> None:
    from rawsigma.cli import score_volume_cmd as cmd
    from rawsigma.errors import UsageError

    monkeypatch.setattr(cmd, "available_memory", lambda: 8 * 2**30)
    small, big, chunks = 2**28, 2**31, (4, 64, 64)
    assert "fits in memory" in cmd.choose_driver("auto", chunks, small, None)
    assert cmd.choose_driver("auto", chunks, big, None) is None  # larger than 1/8: lazy
    assert cmd.choose_driver("auto", chunks, big, "--instances x") == "--instances x"
    assert cmd.choose_driver("auto", None, big, None) == "no chunks"
    assert cmd.choose_driver("lazy", chunks, small, None) is None
    assert cmd.choose_driver("memory", chunks, big, None) == "--driver memory"
    with pytest.raises(UsageError, match="--driver lazy: --instances x"):
        cmd.choose_driver("lazy", chunks, small, "--instances x")
    with pytest.raises(UsageError, match="give --chunks"):
        cmd.choose_driver("lazy", None, small, None)
    with pytest.raises(UsageError, match="auto, lazy or memory"):
        cmd.choose_driver("fast", chunks, small, None)


# ------------------------------------------------------------------- feature ε (lazy)
# The lazy driver draws its replicas from per-plane random streams, so its feature ε
# cannot be compared with the in-memory driver's; the check is on the same versions,
# remade from the driver's seeds and pushed through the in-memory feature code.
CODECS = ["replica", "8bit", "noise:step=2"]


def _read(path) -> np.ndarray:
    import zarr

    return zarr.open_array(str(path), mode="r")[...]


def _versions(tmp, raw_zarr, prof, plan):
    """The lazy driver's replicas and codec volumes, remade from its seeds."""
    from rawsigma.analysis.scoring.volume_versions import write_codec, write_replica

    synthesis, control, _ = np.random.SeedSequence(plan.seed).spawn(3)
    reps = []
    for i in range(plan.n_replicas):
        write_replica(raw_zarr, tmp / f"r{i}.zarr", prof, synthesis, i, plan.centre)
        reps.append(_read(tmp / f"r{i}.zarr"))
    write_replica(raw_zarr, tmp / "control.zarr", prof, control, None, plan.centre)
    codecs = {"replica": _read(tmp / "control.zarr")}
    write_codec(raw_zarr, tmp / "noise.zarr", "noise:step=2", prof, None)
    codecs["noise:step=2"] = _read(tmp / "noise.zarr")
    return reps, codecs


@pytest.mark.slow
def test_lazy_feature_epsilon_equals_in_memory_on_its_versions(
    tmp_path, phantom, volume_feature_epsilon
) -> None:
    from rawsigma.analysis.scoring.volume_lazy import LazyInputs, score_volume_lazy
    from rawsigma.volread import open_volume

    vol, prof, ann, _ = phantom
    src, _ = open_volume(_zarr(tmp_path / "v.zarr", vol))
    lab, _ = open_volume(_zarr(tmp_path / "a.zarr", ann), integer=True)
    work = tmp_path / "work"
    res = score_volume_lazy(LazyInputs(src, lab, None, SPACING, "given"), prof, work,
                            chunks=(4, 16, 20), n_replicas=3, codecs=CODECS, n_estimators=10,
                            workers=1)  # fmt: skip
    raw_zarr = str(work / "inputs" / "raw.zarr")
    np.testing.assert_array_equal(_read(raw_zarr), vol)
    reps, codecs = _versions(tmp_path, raw_zarr, prof, res.plan)
    codecs["8bit"] = _read(work / "tasks" / "codec_01_8bit" / "version.zarr")  # kept
    names, want = volume_feature_epsilon(vol, reps, codecs, res.plan.score_sigmas, SPACING)
    assert res.feature_names == names
    got = {c.spec: c for c in res.codecs}
    assert set(got) == set(CODECS)
    for spec, (fe, worst) in want.items():
        c = got[spec]
        assert c.features.keys() == fe.keys()
        for n in names:
            for k in ("mean_epsilon", "mean_abs_epsilon", "rms_epsilon"):
                assert c.features[n][k] == pytest.approx(fe[n][k], rel=1e-5, abs=1e-7), (spec, n)
            assert c.features[n]["n_pixels"] == fe[n]["n_pixels"]
        assert c.feature_eps.keys() == worst.keys() and len(worst) == 1, spec
        (n,) = worst
        np.testing.assert_array_equal(np.asarray(c.feature_eps[n][...]), worst[n])
    # the held-out control is a whole independent noise draw (|ε| about √2 × the
    # spread, inflated by σ from 3 replicas); noise:step=2 moves values by less than
    # the noise, and this volume's 8-bit step (≈ 5 ADU) is far below its noise
    worst_abs = {s: max(v["mean_abs_epsilon"] for v in got[s].features.values()) for s in got}
    assert 1.0 < worst_abs["replica"] < 2.5
    assert worst_abs["8bit"] < worst_abs["noise:step=2"] < worst_abs["replica"]
    # only the 8-bit store is kept (the quantisation note reads it); the result is reused
    kept = sorted(p.parent.name for p in (work / "tasks").glob("*/version.zarr"))
    assert kept == ["codec_01_8bit"]
    assert json.loads((work / "features" / "codecs" / "result.json").read_text())["names"] == names
    again = score_volume_lazy(LazyInputs(src, lab, None, SPACING, "given"), prof, work,
                              chunks=(4, 16, 20), n_replicas=3, codecs=CODECS, n_estimators=10,
                              workers=1)  # fmt: skip
    for c in again.codecs:
        assert c.features == got[c.spec].features
        (n,) = c.feature_eps
        np.testing.assert_array_equal(np.asarray(c.feature_eps[n][...]),
                                      np.asarray(got[c.spec].feature_eps[n][...]))  # fmt: skip
