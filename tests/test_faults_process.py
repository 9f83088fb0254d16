"""Standing fault suite, process safety (issue 10).

Every case runs the ``rawsigma`` command the way a user does and checks: the
documented exit status (0 ok, 1 runtime/input error, 2 usage, 130 interrupted), one
error line and no traceback, nothing overwritten or half-written, no temporaries
left, file modes that follow the umask, a second writer refused with the holder's
PID. Signals and concurrent writers use subprocesses on a tiny simulated sensor.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from rawsigma.cli.main import main

SMALL = ["-p", "Camera.SensorWidth=16", "-p", "Camera.SensorHeight=16", "-q"]
SWEEP = ["--levels", "2", "--saturation-levels", "0", "--frames", "10", "--dark", "10"]


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _leftovers(d: Path) -> list[str]:
    """Temporaries and lock files rawsigma might leave in ``d`` (recursively)."""
    names = []
    for p in d.rglob(".*"):
        if p.name.endswith((".tmp", ".partial", ".lock")) or ".rawsigma-probe" in p.name:
            names.append(str(p.relative_to(d)))
    return names


def _main(capsys, *args: object) -> tuple[int, str]:
    """Run ``rawsigma ARGS`` in-process through the real entry point."""
    with pytest.raises(SystemExit) as ex:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    return int(ex.value.code), cap.out + cap.err


def _cli(*args: object, env: dict | None = None, **kw) -> subprocess.Popen:
    e = {**os.environ, "COLUMNS": "200", **(env or {})}
    # set by pymmcore-plus in this process once a GUI test made a Qt app: a CLI child
    # has none, and warned about the backend on stderr (the one-line checks failed when
    # a test_gui_* file ran before this one)
    e.pop("PYMM_SIGNALS_BACKEND", None)
    return subprocess.Popen(
        [sys.executable, "-m", "rawsigma.cli.main", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=e,
        **kw,
    )


def _wait_for(pred, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    t_end = time.monotonic() + timeout
    while not pred():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.communicate()}")
        if time.monotonic() > t_end:
            raise AssertionError("timed out")
        time.sleep(0.02)


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 64×64 raw frame, its profile and a compressed copy."""
    from rawsigma.acquire.sensor_model import SensorModel

    d = tmp_path_factory.mktemp("faults")
    model = SensorModel.preset("scmos", (64, 64), seed=2)
    img = model.expose(np.full((64, 64), 300.0), 0.01, np.random.default_rng(0))
    tifffile.imwrite(d / "img.tif", img)
    model.true_profile().save(d / "prof.h5")
    return d


# ---------------------------------------------------------------- file modes, temporaries
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_outputs_follow_umask(tmp_path, data, capsys, mask):
    old = os.umask(mask)
    try:
        out = tmp_path / "c.rsnc"
        code, text = _main(capsys, "compress", data / "img.tif", "-p", data / "prof.h5",
                           "--out", out)  # fmt: skip
        assert code == 0, text
        assert out.stat().st_mode & 0o777 == 0o666 & ~mask
        dec = tmp_path / "d.tif"
        assert _main(capsys, "decompress", out, "--out", dec)[0] == 0
        assert dec.stat().st_mode & 0o777 == 0o666 & ~mask
    finally:
        os.umask(old)
    assert _leftovers(tmp_path) == []


def test_atomic_write_failure_keeps_previous_and_no_temporary(tmp_path):
    from rawsigma.errors import OutputError
    from rawsigma.fileio import atomic_write

    out = tmp_path / "x.bin"
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match="disk full; previous file kept"):
        with atomic_write(out, force=True) as tmp:
            tmp.write_bytes(b"new, half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert out.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["x.bin"]
    with pytest.raises(KeyboardInterrupt), atomic_write(tmp_path / "y.bin") as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == ["x.bin"]


def test_stale_temporaries_removed_under_lock(tmp_path):
    from rawsigma.fileio import output_lock

    out = tmp_path / "cam.h5"
    stale = [".cam.h5.a1B2c3_d.tmp", ".cam.h5.tmp", ".cam.h5.partial"]
    keep = ["cam.h5.partial.h5", ".cam.h5.partial.h5.tmp", ".other.h5.tmp", "cam.h5.tmp"]
    for n in stale + keep:
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / ".cam.h5.zarr.tmp").mkdir()  # another output's store: kept
    with output_lock(out):
        assert (tmp_path / ".cam.h5.lock").read_text().split()[0] == str(os.getpid())
        with output_lock(out):  # re-entrant in one process
            pass
    left = sorted(os.listdir(tmp_path))
    assert left == sorted([*keep, ".cam.h5.zarr.tmp"])


# ---------------------------------------------------------------- bad outputs: one line, exit 1
def _bad_out_cases(d: Path, tmp: Path) -> list[tuple[str, list, str]]:
    afile = tmp / "afile"
    afile.write_text("x")
    adir = tmp / "adir"
    adir.mkdir()
    img, prof = d / "img.tif", d / "prof.h5"
    comp = ["compress", img, "-p", prof]
    score = ["score", img, "-p", prof, "--model", "x:y", "--codecs", "8bit", "--replicas", "2"]
    return [
        ("compress-stdout", [*comp, "--out", "-"], "standard output"),
        ("compress-out-dir", [*comp, "--out", adir], "is a directory"),
        ("compress-parent-file", [*comp, "--out", afile / "c.rsnc"], "is a file"),
        ("decompress-out-dir", ["decompress", d / "c.rsnc", "--out", adir], "is a directory"),
        ("score-out-file", [*score, "--out", afile], "is a file"),
        ("score-out-stdout", [*score, "--out", "-"], "standard output"),
        ("estimate-out-dir", ["profile", "estimate", img, "--out", adir], "is a directory"),
        ("calibrate-out-dir", ["calibrate", "--out", adir, *SWEEP, *SMALL], "is a directory"),
        ("calibrate-parent-file", ["calibrate", "--out", afile / "p.h5", *SMALL], "is a file"),
        ("stack-out-stdout", ["acquire", "stack", "--out", "-", *SMALL], "standard output"),
        (
            "stack-frames-dir",
            ["acquire", "stack", "--out", tmp / "s.h5", "--save-frames", adir, *SMALL],
            "is a directory",
        ),  # fmt: skip
    ]


def test_bad_outputs_one_line_exit_1(tmp_path, data, capsys):
    from rawsigma.analysis.noisecodec import NoiseCodec
    from rawsigma.analysis.noisecodec.containers import write_compressed
    from rawsigma.calib.profile import CameraProfile

    if not (data / "c.rsnc").exists():
        codec = NoiseCodec(CameraProfile.load(data / "prof.h5"))
        write_compressed(data / "c.rsnc", tifffile.imread(data / "img.tif"), codec)
    for name, args, msg in _bad_out_cases(data, tmp_path):
        t0 = time.perf_counter()
        code, text = _main(capsys, *args)
        assert code == 1, (name, text)
        assert msg in text and text.count("error:") == 1, (name, text)
        _no_traceback(text)
        assert time.perf_counter() - t0 < 20, name  # refused before the long work
    assert not (tmp_path / "-").exists() and not Path("-").exists()
    assert sorted(os.listdir(tmp_path)) == ["adir", "afile"] and not os.listdir(tmp_path / "adir")


def _read_only_dir(tmp_path: Path) -> Path:
    """A directory the test process cannot write into (skip if impossible)."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        return d
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(d)],
                       capture_output=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"root cannot be denied a directory without mount: {r.stderr!r}")
    return d


def _umount(d: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["umount", str(d)], capture_output=True)
    else:
        d.chmod(0o755)


def test_read_only_output_dir(tmp_path, data, capsys):
    ro = _read_only_dir(tmp_path)
    try:
        cases = [
            ["compress", data / "img.tif", "-p", data / "prof.h5", "--out", ro / "c.rsnc"],
            [
                "score",
                data / "img.tif",
                "-p",
                data / "prof.h5",
                "--model",
                "x:y",
                "--out",
                ro / "rep",
            ],  # fmt: skip
            ["calibrate", "--out", ro / "p.h5", *SWEEP, *SMALL],
            ["acquire", "stack", "--out", ro / "s.h5", "--frames", "5", *SMALL],
            ["profile", "estimate", data / "img.tif", "--out", ro / "e.h5"],
        ]
        for args in cases:
            code, text = _main(capsys, *args)
            assert code == 1 and "cannot write in" in text, text
            assert "read-only" in text or "permission denied" in text, text
            _no_traceback(text)
        assert os.listdir(ro) == []
    finally:
        _umount(ro)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root) — or skip when mounting is not permitted."""
    d = tmp_path / "small"
    d.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)],
                       capture_output=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"mount not permitted: {r.stderr!r}")
    yield d
    subprocess.run(["umount", str(d)], capture_output=True)


def test_full_disk_refused_before_work(small_disk, data, capsys):
    big = small_disk.parent / "big.tif"
    tifffile.imwrite(big, np.zeros((40, 64, 64), np.uint16) + 400)  # 330 kB raw
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 1_700_000)
    code, text = _main(capsys, "compress", big, "-p", data / "prof.h5", "--out",
                       small_disk / "c.h5")  # fmt: skip
    assert code == 1 and "not enough free space" in text, text
    _no_traceback(text)
    assert sorted(os.listdir(small_disk)) == ["filler"]


def test_disk_full_while_writing(small_disk, data, capsys):
    """The space estimate passes, then the disk fills up during the write."""
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 400_000)
    out = small_disk / "d.tif"
    (small_disk / "hog").write_bytes(b"")
    from rawsigma.analysis.noisecodec import NoiseCodec
    from rawsigma.analysis.noisecodec.containers import write_compressed
    from rawsigma.calib.profile import CameraProfile

    frames = np.stack([tifffile.imread(data / "img.tif")] * 40)
    comp = small_disk.parent / "c.rsnc"
    write_compressed(comp, frames, NoiseCodec(CameraProfile.load(data / "prof.h5")), force=True)
    import rawsigma.fileio as fio

    real = fio.check_output

    def lying_check(path, force=False, need_bytes=0, allow_dir=False):  # passes, then fill
        p = real(path, force, 0, allow_dir)
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        with open(small_disk / "hog", "ab") as fh:
            fh.write(b"\0" * max(free - 100_000, 0))
        return p

    fio.check_output = lying_check
    try:
        code, text = _main(capsys, "decompress", comp, "--out", out)
    finally:
        fio.check_output = real
    assert code == 1 and "disk full" in text and "nothing written" in text, text
    _no_traceback(text)
    assert sorted(os.listdir(small_disk)) == ["filler", "hog"]


# ---------------------------------------------------------------- exit codes, --debug, gui
def test_exit_codes_and_debug(tmp_path, data, capsys):
    code, text = _main(capsys, "score", data / "img.tif", "-p", data / "prof.h5",
                       "--out", tmp_path / "r")  # fmt: skip
    assert code == 2 and "--labels or --model" in text  # usage: contradictory options
    assert _main(capsys, "compress", "--nope")[0] == 2  # click usage error
    code, text = _main(capsys, "compress", tmp_path / "none.tif", "-p", data / "prof.h5",
                       "--out", tmp_path / "c.rsnc")  # fmt: skip
    assert code == 1 and "error:" in text
    _no_traceback(text)
    with pytest.raises(Exception, match="none.tif"):  # --debug: the exception propagates
        main(["--debug", "compress", str(tmp_path / "none.tif"), "-p", str(data / "prof.h5"),
              "--out", str(tmp_path / "c.rsnc")])  # fmt: skip
    from rawsigma.cli.console import set_debug

    set_debug(False)


def test_internal_error_is_one_line(monkeypatch, tmp_path, data, capsys):
    import rawsigma.analysis.noisecodec as nc

    def boom(*a, **k):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(nc, "NoiseCodec", boom)
    code, text = _main(capsys, "compress", data / "img.tif", "-p", data / "prof.h5",
                       "--out", tmp_path / "c.rsnc")  # fmt: skip
    assert code == 1 and "internal error: ZeroDivisionError: simulated bug" in text
    assert "--debug" in text
    _no_traceback(text)


def test_gui_without_display(monkeypatch, capsys):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    if not sys.platform.startswith("linux"):
        pytest.skip("display detection is for X11/Wayland")
    code, text = _main(capsys, "gui")
    assert code == 1 and "QT_QPA_PLATFORM=offscreen" in text
    _no_traceback(text)


# ---------------------------------------------------------------- locks, signals
def test_second_writer_refused_with_pid(tmp_path):
    """Two calibrations on one --out: the second (even with --force) is refused."""
    out = tmp_path / "cam.h5"
    first = _cli("calibrate", "--out", out, "--levels", "2", "--frames", "400", "--dark",
                 "400", *SMALL)  # fmt: skip
    try:
        _wait_for(lambda: (tmp_path / "cam.h5.partial.h5").exists(), proc=first)
        # paused while the second runs: under load the first could otherwise finish (and
        # release its lock) before the second has started (seen in session 11)
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = _cli("calibrate", "--out", out, *SWEEP, *SMALL, "--force")
            _, err = second.communicate(timeout=60)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert second.returncode == 1, err
        assert f"another rawsigma (PID {first.pid}) is writing" in err, err
        _no_traceback(err)
        out_, err = first.communicate(timeout=120)
        assert first.returncode == 0, err  # the first run is untouched
    finally:
        first.kill()
    from rawsigma.calib.profile import CameraProfile

    assert CameraProfile.load(out).shape == (16, 16)
    assert _leftovers(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["cam.h5"]


def _interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=60)


def test_ctrl_c_calibrate_truthful(tmp_path):
    out = tmp_path / "p.h5"
    partial = tmp_path / "p.h5.partial.h5"
    # during the darks: nothing is kept, and it says so
    p = _cli("calibrate", "--out", out, "--dark", "100000", *SMALL)
    _wait_for(lambda: (tmp_path / ".p.h5.lock").exists(), proc=p)
    time.sleep(0.5)
    _, err = _interrupt(p)
    assert p.returncode == 130, err
    assert "no partial file" in err and not partial.exists(), err
    assert len(err.strip().splitlines()) == 1, err
    assert os.listdir(tmp_path) == []
    # after a checkpoint: the partial file is kept, named, and resumable
    p = _cli("calibrate", "--out", out, "--levels", "3", "--frames", "20000", "--dark", "10",
             "--seed", "1", *SMALL)  # fmt: skip
    _wait_for(partial.exists, proc=p)
    _, err = _interrupt(p)
    assert p.returncode == 130 and str(partial) in err and "--resume" in err, err
    _no_traceback(err)
    assert _leftovers(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["p.h5.partial.h5"]


def test_ctrl_c_acquire_stack_writes_nothing(tmp_path):
    out, frames = tmp_path / "s.h5", tmp_path / "f.ome.tif"
    args = ["acquire", "stack", "--out", out, "--save-frames", frames, *SMALL]
    args += ["-p", "LED.Intensity=30"]  # a light stack (at 0 the CLI warns: a dark stack)
    p = _cli(*args, "--frames", "1000000")
    _wait_for(lambda: (tmp_path / ".f.ome.tif.partial").exists(), proc=p)
    _, err = _interrupt(p)
    assert p.returncode == 130 and "nothing written" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert os.listdir(tmp_path) == []
    p = _cli(*args, "--frames", "20")  # the rerun is not blocked
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert sorted(os.listdir(tmp_path)) == ["f.csv", "f.ome.tif", "s.h5"]


def test_ctrl_c_zarr_compression_is_quiet(tmp_path, data):
    frames = np.stack([tifffile.imread(data / "img.tif")] * 4000)
    src = tmp_path / "big.npy"
    np.save(src, frames)
    out = tmp_path / "c.zarr"
    p = _cli("compress", src, "-p", data / "prof.h5", "--out", out)
    _wait_for(lambda: (tmp_path / ".c.zarr.tmp").exists(), proc=p)
    time.sleep(0.3)
    _, err = _interrupt(p)
    assert p.returncode == 130, err
    assert "nothing written" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["big.npy"]


def test_sweep_disk_error_discards_frames_and_keeps_checkpoint(tmp_path, monkeypatch):
    """A checkpoint that cannot be written: one OutputError, the earlier one kept."""
    import rawsigma.acquire.sweep as sweep
    from rawsigma.acquire.core import close_core, open_core
    from rawsigma.acquire.partial import read_partial
    from rawsigma.acquire.plans import SweepPlan
    from rawsigma.errors import OutputError

    real = sweep.write_partial
    calls = []

    def failing(path, **kw):
        calls.append(path)
        if len(calls) > 2:  # dark and auto-range written, then the disk is full
            raise OutputError(f"cannot write checkpoint: {path}: disk full")
        real(path, **kw)

    monkeypatch.setattr(sweep, "write_partial", failing)
    core = open_core(properties={"Camera.SensorWidth": 16, "Camera.SensorHeight": 16})
    plan = SweepPlan(dark_frames=5, n_levels=2, frames_per_level=5, seed=1, save_frames="hdf5")
    partial = tmp_path / "p.h5.partial.h5"
    runner = sweep.SweepRunner(core, plan, partial, frames_path=tmp_path / "fr.h5")
    try:
        with pytest.raises(OutputError, match="disk full"):
            runner.run(out=tmp_path / "p.h5")
    finally:
        close_core(core)
    assert "dark" in read_partial(partial)["groups"]
    assert sorted(os.listdir(tmp_path)) == ["p.h5.partial.h5"]  # no frames file, no temporaries


def test_debug_flag_shows_the_traceback_in_the_console_script(tmp_path) -> None:
    """`rawsigma --debug ...` (the installed script) prints the traceback; without it,
    one line."""
    missing = tmp_path / "none.h5"
    for args, traceback_expected in ((["--debug"], True), ([], False)):
        proc = _cli(*args, "profile", "show", missing)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        assert ("Traceback (most recent call last)" in err) is traceback_expected, err
        assert "none.h5: no such profile file" in err
