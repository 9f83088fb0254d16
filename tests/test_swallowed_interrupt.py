"""A Ctrl-C the console script saw but a library swallowed stops the command.

The console script's SIGINT handler records the Ctrl-C and raises KeyboardInterrupt;
raised inside a compiled module's initialisation (numpy.random imported while a
command loads), the KeyboardInterrupt can be lost and the command used to run on to
exit 0 (see test_acquire_sweep for `calibrate`). The flag is set here by hand.
"""

from __future__ import annotations

import threading

import pytest
from rawsigma.analysis.noisecodec.synthetic import reference_frame
from rawsigma.cli import console
from rawsigma.cli.main import app
from typer.testing import CliRunner


@pytest.fixture
def swallowed(monkeypatch):
    """The console script saw a Ctrl-C whose KeyboardInterrupt went missing."""
    monkeypatch.setattr(console, "_CONSOLE_SCRIPT", [True])
    monkeypatch.setattr(console, "_SIGINT_SEEN", [True])
    monkeypatch.setattr(console, "_INTERRUPT_SHOWN", [False])


@pytest.fixture(scope="module")
def frame_and_profile():
    frame, _lam, cam = reference_frame((64, 96), seed=3)
    return frame, cam.true_profile()


def _inputs(tmp_path, frame_and_profile):
    import tifffile

    frame, prof = frame_and_profile
    prof.save(tmp_path / "p.h5")
    tifffile.imwrite(tmp_path / "raw.tif", frame)
    return tmp_path / "raw.tif", tmp_path / "p.h5"


@pytest.mark.parametrize("ext", ["rsnc", "tif", "zarr"])
def test_compress_stops_and_writes_nothing(tmp_path, frame_and_profile, swallowed, ext):
    raw, prof = _inputs(tmp_path, frame_and_profile)
    out = tmp_path / f"c.{ext}"
    r = CliRunner().invoke(app, ["compress", str(raw), "--profile", str(prof), "--out", str(out)])
    assert r.exit_code == 130, r.output
    assert "interrupted" in r.output and "nothing written" in r.output
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.h5", "raw.tif"]


def test_decompress_stops_and_writes_nothing(tmp_path, frame_and_profile, monkeypatch):
    raw, prof = _inputs(tmp_path, frame_and_profile)
    run = CliRunner().invoke
    r = run(app, ["compress", str(raw), "--profile", str(prof), "--out", str(tmp_path / "c.rsnc")])
    assert r.exit_code == 0, r.output
    monkeypatch.setattr(console, "_CONSOLE_SCRIPT", [True])
    monkeypatch.setattr(console, "_SIGINT_SEEN", [True])
    r = run(app, ["decompress", str(tmp_path / "c.rsnc"), "--out", str(tmp_path / "d.tif")])
    assert r.exit_code == 130, r.output
    assert not (tmp_path / "d.tif").exists()


def test_stage_progress_raises_in_the_main_thread_only(swallowed) -> None:
    from rich.console import Console

    seen: list[BaseException] = []

    with console.stage_progress(Console(quiet=True), 10) as progress:

        def worker() -> None:
            try:
                progress("stage", 1, 2)
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                seen.append(exc)

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert seen == []  # a worker never raises it: the main thread does
        with pytest.raises(KeyboardInterrupt):
            progress("stage", 2, 2)


def test_library_use_is_not_interrupted(tmp_path, frame_and_profile, monkeypatch) -> None:
    """Outside the console script (the CLI called from Python) the flag is not read."""
    raw, prof = _inputs(tmp_path, frame_and_profile)
    monkeypatch.setattr(console, "_CONSOLE_SCRIPT", [False])
    monkeypatch.setattr(console, "_SIGINT_SEEN", [True])
    out = tmp_path / "c.rsnc"
    r = CliRunner().invoke(app, ["compress", str(raw), "--profile", str(prof), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 0
