"""A volume's replicas × codecs as one task graph: same numbers as in memory, resumable."""

from __future__ import annotations

import functools
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from rawsigma.analysis.scoring.volume import score_volume
from rawsigma.analysis.scoring.volume_graph import VolumeTasksFailedError, score_volume_tasks

SPACING = (1.0, 0.5, 0.5)


@pytest.fixture(scope="module")
def phantom():
    from rawsigma.analysis.phantoms import nuclei3d
    from rawsigma.analysis.segmentation.annotations import training_labels
    from rawsigma.calib.profile import CameraProfile

    shape = (10, 40, 40)
    bright, truth = nuclei3d(shape, SPACING, n_objects=10, touching_pairs=1, rng=3, n_beads=0)
    rng = np.random.default_rng(0)
    gain, offset, read = 2.0, 100.0, 2.0
    e = rng.poisson(30 + 600 * bright)
    vol = np.clip(np.rint(offset + gain * e + rng.normal(0, read, shape)), 0, 65535)
    prof = CameraProfile.uniform(shape[1:], gain, offset, read)
    return vol.astype(np.uint16), prof, training_labels(truth), truth


def _kw(phantom, codecs=("replica", "8bit", "jpeg@10")):
    vol, prof, lab, truth = phantom
    return dict(labels=lab, spacing=SPACING, reference=truth, codecs=list(codecs),
                n_replicas=3, n_estimators=10, workers=1, seed=5)  # fmt: skip


def _comparable(res) -> dict:
    d = res.to_dict()
    for k in ("timings_s", "notes"):
        d.pop(k)
    d["provenance"].pop("date_utc", None)
    return json.loads(json.dumps(d, default=str))


def _assert_same(a, b) -> None:
    assert _comparable(a) == _comparable(b)
    np.testing.assert_array_equal(a.raw_labels, b.raw_labels)
    for k in a.replica_values:
        np.testing.assert_array_equal(a.replica_values[k], b.replica_values[k])
    for ca, cb in zip(a.codecs, b.codecs, strict=True):
        np.testing.assert_array_equal(ca.labels, cb.labels)
        np.testing.assert_array_equal(ca.pixel_eps, cb.pixel_eps)
        assert ca.feature_eps.keys() == cb.feature_eps.keys()
        for k in ca.feature_eps:
            np.testing.assert_array_equal(ca.feature_eps[k], cb.feature_eps[k])
        assert ca.verdict == cb.verdict


@pytest.fixture(scope="module")
def in_memory(phantom):
    vol, prof, _, _ = phantom
    return score_volume(vol, prof, **_kw(phantom))


def test_graph_equals_in_memory_and_resumes(phantom, in_memory, tmp_path) -> None:
    vol, prof, _, _ = phantom
    seen: list[tuple[str, int, int]] = []
    res = score_volume_tasks(
        vol, prof, tmp_path, task_threads=2, progress=lambda *a: seen.append(a), **_kw(phantom)
    )
    assert in_memory.n_objects >= 5
    _assert_same(in_memory, res)
    names = sorted(p.name for p in (tmp_path / "tasks").iterdir())
    assert names == ["codec_00_replica", "codec_01_8bit", "codec_02_jpeg@10", "raw",
                     "replica_000", "replica_001", "replica_002"]  # fmt: skip
    assert ("tasks", 7, 7) in seen
    for n in names:  # every written result is complete
        assert {"labels.npy", "table.npz", "outcome.json", "features.npy"} <= {
            p.name for p in (tmp_path / "tasks" / n).iterdir()
        }
    # a re-run reuses every written result (same files, same numbers)
    stamp = (tmp_path / "tasks" / "replica_001" / "labels.npy").stat().st_mtime_ns
    again = score_volume_tasks(vol, prof, tmp_path, **_kw(phantom))
    assert (tmp_path / "tasks" / "replica_001" / "labels.npy").stat().st_mtime_ns == stamp
    assert any("7 of 7 task results reused" in n for n in again.notes)
    _assert_same(in_memory, again)


def test_failed_task_is_named_and_the_others_kept(phantom, in_memory, tmp_path) -> None:
    vol, prof, _, _ = phantom
    kw = _kw(phantom, codecs=("replica", "8bit", "bogus@3"))
    with pytest.raises(VolumeTasksFailedError, match="codec_02_bogus@3") as err:
        score_volume_tasks(vol, prof, tmp_path, **kw)
    assert list(err.value.failed) == ["codec_02_bogus@3"]
    done = sorted(p.name for p in (tmp_path / "tasks").iterdir())
    assert "codec_02_bogus@3" not in done and len(done) == 6
    assert not list((tmp_path / "tasks").glob(".*"))  # no temporary left
    # the written results are valid: a run without the bad codec reuses them all
    res = score_volume_tasks(vol, prof, tmp_path, **_kw(phantom, codecs=("replica", "8bit")))
    assert any("reused" in n for n in res.notes) is False  # another key: recomputed
    assert [c.spec for c in res.codecs] == ["replica", "8bit"]
    for a, b in zip(res.codecs, in_memory.codecs[:2], strict=True):
        assert a.verdict == b.verdict


def test_chunked_path_gives_the_same_objects_and_verdicts(phantom, in_memory, tmp_path) -> None:
    vol, prof, _, _ = phantom
    res = score_volume_tasks(vol, prof, tmp_path, chunks=(4, 16, 20), **_kw(phantom))
    np.testing.assert_array_equal(res.raw_labels, in_memory.raw_labels)
    a, b = _comparable(res), _comparable(in_memory)
    assert a["n_objects_raw"] == b["n_objects_raw"]
    for ca, cb in zip(res.codecs, in_memory.codecs, strict=True):
        np.testing.assert_array_equal(ca.labels, cb.labels)
        assert ca.verdict == cb.verdict
        assert ca.globals.keys() == cb.globals.keys()
        for k in ca.objects:
            assert ca.objects[k].robust == pytest.approx(cb.objects[k].robust, nan_ok=True)
        # feature ε chunk by chunk: the in-memory numbers and worst-channel map
        assert ca.features.keys() == cb.features.keys() and len(ca.features) == 12
        for n, v in cb.features.items():
            assert ca.features[n]["n_pixels"] == v["n_pixels"]
            for m in ("mean_epsilon", "mean_abs_epsilon", "rms_epsilon"):
                assert ca.features[n][m] == pytest.approx(v[m], rel=1e-5, abs=1e-6)
        assert ca.feature_eps.keys() == cb.feature_eps.keys()
        for n in cb.feature_eps:
            np.testing.assert_array_equal(np.asarray(ca.feature_eps[n][...]), cb.feature_eps[n])
    assert res.feature_names == in_memory.feature_names
    assert any("feature ε computed chunk by chunk" in n for n in res.notes)


def _segment_killing_once(marker: str, vol: np.ndarray) -> np.ndarray:
    """A plug-in segmenter that kills its worker process the first time it runs."""
    if not os.path.exists(marker):
        Path(marker).write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    return vol > np.percentile(vol, 90)


@pytest.mark.slow
def test_lost_worker_on_a_local_cluster(phantom, tmp_path) -> None:
    from rawsigma.analysis.outofcore.taskrun import connect

    vol, prof, _, _ = phantom
    seg = functools.partial(_segment_killing_once, str(tmp_path / "marker"))
    kw = dict(spacing=SPACING, model=seg, codecs=["replica", "8bit"], n_replicas=3, seed=5,
              min_size=3)  # fmt: skip
    with connect("local", workers=2) as client:
        res = score_volume_tasks(vol, prof, tmp_path / "work", client=client, **kw)
    assert (tmp_path / "marker").exists()  # a worker was killed
    ref = score_volume(vol, prof, **kw)  # the marker exists: nothing is killed now
    _assert_same(ref, res)
    assert not list((tmp_path / "work" / "tasks").glob(".*"))


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def vfiles(tmp_path_factory, phantom):
    import tifffile

    vol, prof, _, truth = phantom
    d = tmp_path_factory.mktemp("vgraph")
    tifffile.imwrite(d / "vol.tif", vol)
    tifffile.imwrite(d / "truth.tif", truth.astype(np.uint16))
    prof.save(d / "prof.h5")
    (d / "crashing.py").write_text(
        "import os\nimport numpy as np\n\n"
        "def segment(vol):\n"
        "    if os.environ.get('RAWSIGMA_TEST_CRASH') and np.unique(vol).size < 300:\n"
        "        raise RuntimeError('segmenter crashed on a coarse volume')\n"
        "    return vol > np.percentile(vol, 90)\n"
    )
    return d


def _cli(d, out, *extra):
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    args = [d / "vol.tif", "--profile", d / "prof.h5", "--spacing", "1,0.5,0.5",
            "--replicas", "3", "--codecs", "replica,8bit", "--out", out, *extra]  # fmt: skip
    return CliRunner().invoke(app, ["score", *map(str, args)])


def _results(out: Path) -> dict:
    d = json.loads((out / "results.json").read_text())
    for k in ("timings_s", "notes"):
        d.pop(k)
    d["provenance"].pop("date_utc")
    d["provenance"].pop("execution", None)
    return d


@pytest.mark.slow
def test_cli_chunks_path_equals_in_memory(vfiles) -> None:
    lab = ["--labels", vfiles / "truth.tif", "--instances", "--workers", "1"]
    r = _cli(vfiles, vfiles / "mem", *lab)
    assert r.exit_code == 0, r.output
    assert "path: in memory" in r.output
    r = _cli(vfiles, vfiles / "chunk", *lab, "--chunks", "4,16,20")
    assert r.exit_code == 0, r.output
    assert "path: task graph on 1 local threads, chunks 4,16,20" in r.output
    assert not (vfiles / "chunk" / "work").exists()  # removed once the report is written
    a, b = _results(vfiles / "chunk"), _results(vfiles / "mem")
    for ca, cb in zip(a.pop("codecs"), b.pop("codecs"), strict=True):
        fa, fb = ca.pop("features"), cb.pop("features")  # chunked: float64 sums of ε
        assert fa.keys() == fb.keys() and fb
        for n, v in fb.items():
            assert fa[n] == pytest.approx(v, rel=1e-5, abs=1e-6)
        assert ca == cb
    assert a == b
    import h5py

    with (
        h5py.File(vfiles / "mem" / "volumes.h5") as fm,
        h5py.File(vfiles / "chunk" / "volumes.h5") as fc,
    ):
        assert sorted(fm["feature_eps"]) == sorted(fc["feature_eps"]) == ["8bit", "replica"]
        for spec in fm["feature_eps"]:
            dm, dc = fm["feature_eps"][spec], fc["feature_eps"][spec]
            assert dm.attrs["feature"] == dc.attrs["feature"] and dm.dtype == np.float16
            np.testing.assert_array_equal(dm[()], dc[()])
    r = _cli(vfiles, vfiles / "bad", *lab, "--chunks", "4,0,20")
    assert r.exit_code == 2 and "three positive integers" in r.output
    r = _cli(vfiles, vfiles / "bad", "--model", f"{vfiles / 'crashing.py'}:segment",
             "--chunks", "4,16,20")  # fmt: skip
    assert r.exit_code == 2 and "needs --labels" in r.output


@pytest.mark.slow
def test_cli_scheduler_names_failed_tasks_and_resumes(vfiles, monkeypatch) -> None:
    out = vfiles / "sched"
    model = ["--model", f"{vfiles / 'crashing.py'}:segment", "--min-size", "3"]
    monkeypatch.setenv("RAWSIGMA_TEST_CRASH", "1")  # the workers inherit it
    r = _cli(vfiles, out, *model, "--scheduler", "local", "--workers", "2")
    assert r.exit_code == 1, r.output
    text = " ".join(r.output.split())
    assert "1 of 6 tasks failed (codec_01_8bit: RuntimeError: segmenter crashed" in text
    assert not (out / "results.json").exists() and not (out / "report.html").exists()
    kept = sorted(p.name for p in (out / "work" / "tasks").iterdir())
    assert kept == ["codec_00_replica", "raw", "replica_000", "replica_001", "replica_002"]
    monkeypatch.delenv("RAWSIGMA_TEST_CRASH")
    r = _cli(vfiles, out, *model, "--workers", "2", "--scheduler", "local")
    assert r.exit_code == 0, r.output
    assert (out / "report.html").exists() and not (out / "work").exists()
    assert "5 of 6 task results reused" in " ".join(_raw_notes(out))
    ref = vfiles / "sched_mem"
    assert _cli(vfiles, ref, *model, "--workers", "2").exit_code == 0
    assert _results(out) == _results(ref)


def _raw_notes(out: Path) -> list[str]:
    return json.loads((out / "results.json").read_text())["notes"]


def test_cli_mask_is_the_load_denominator(vfiles) -> None:
    import tifffile

    mask = np.zeros((10, 40, 40), np.uint8)
    mask[2:8] = 1  # six planes of tissue
    tifffile.imwrite(vfiles / "mask.tif", mask)
    tifffile.imwrite(vfiles / "mask_small.tif", mask[:, :30])
    lab = ["--labels", vfiles / "truth.tif", "--instances", "--workers", "1", "--replicas", "2"]
    r = _cli(vfiles, vfiles / "masked", *lab, "--mask", vfiles / "mask.tif")
    assert r.exit_code == 0, r.output
    d = json.loads((vfiles / "masked" / "results.json").read_text())
    assert d["volume"]["tissue"]["n_voxels"] == 6 * 40 * 40
    assert d["volume"]["tissue"]["volume"] == pytest.approx(6 * 40 * 40 * 0.25)
    g = d["raw_globals"]
    assert g["load"] == pytest.approx(g["total_volume"] / (6 * 40 * 40 * 0.25))
    assert d["provenance"]["mask_file"] == str(vfiles / "mask.tif")
    r = _cli(vfiles, vfiles / "bad", *lab, "--mask", vfiles / "mask_small.tif")
    assert r.exit_code == 1 and "differs from the volume's" in " ".join(r.output.split())
    assert not (vfiles / "bad").exists()


def test_volume_beyond_the_memory_budget_takes_the_chunked_path(monkeypatch) -> None:
    from rawsigma.analysis.scoring.plans import ScorePlan
    from rawsigma.cli import score_volume_cmd as cmd

    vol = np.zeros((40, 300, 200), np.uint16)  # 4.8 MB
    plan = ScorePlan(codecs=["8bit"], n_replicas=10)
    need = vol.nbytes * 12 + vol.size * cmd.IN_MEMORY_BYTES_PER_VOXEL
    assert cmd.available_memory() > 1 << 20  # MemAvailable of this machine
    monkeypatch.setattr(cmd, "available_memory", lambda: 2 * need)
    assert cmd.choose_chunks(None, vol, plan) is None  # fits in half the memory
    monkeypatch.setattr(cmd, "available_memory", lambda: 2 * need - 2)
    assert cmd.choose_chunks(None, vol, plan) == (32, 256, 200)
    assert cmd.choose_chunks("8,64,64", vol, plan) == (8, 64, 64)
