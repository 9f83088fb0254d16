"""A damaged HDF5 file never crashes or hangs a command (QA session 13).

libhdf5 itself crashes (SIGSEGV) on some damaged files: here, an attribute whose
dataspace version byte is wrong (one flipped byte; the HDF5 fuzz tests of
test_container_fuzz.py find it in profiles and containers). Before session 13,
``rawsigma profile show``, ``compress``/``score --profile`` and ``decompress`` died
of that signal (a hang, on files where libhdf5 loops, ignored Ctrl-C). Now the file is
probed in a child first (`rawsigma.h5probe`): one line, exit 1, nothing written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile
from rawsigma import h5probe
from rawsigma.calib.profile import CameraProfile
from rawsigma.cli.main import app
from rawsigma.errors import DamagedHDF5Error
from typer.testing import CliRunner

if TYPE_CHECKING:
    from pathlib import Path

#: The datatype message of a variable-length string attribute as h5py writes it: class
#: 9 version 1, bit field 01 00 00 (a string), size 16, base type 1-byte integer.
VLEN_STR = bytes.fromhex("190101001000000010000000010000000000080000000000")


@pytest.fixture(autouse=True)
def probe_on(monkeypatch):
    """The suite runs with ``RAWSIGMA_H5_PROBE=0`` (tests/conftest.py): on here."""
    monkeypatch.setenv("RAWSIGMA_H5_PROBE", "1")
    monkeypatch.delenv("RAWSIGMA_H5_PROBE_TIMEOUT", raising=False)
    monkeypatch.setattr(h5probe, "_PROBED", {})


def damaged(src: Path, dst: Path, names: tuple[bytes, ...]) -> Path:
    """``src`` with the variable-length bit field of the first string attribute in
    ``names`` set to 0xCE (was 0x01): libhdf5 2.0 crashes reading it (SIGSEGV; found by
    the fuzz tests of test_container_fuzz.py in profiles and containers alike)."""
    data = bytearray(src.read_bytes())
    for name in names:
        i = data.find(name + b"\0")
        j = data.find(VLEN_STR, i) if i >= 0 else -1
        if j >= 0 and j - i < 64:
            data[j + 1] = 0xCE
            dst.write_bytes(bytes(data))
            return dst
    pytest.skip(f"no string attribute {names} laid out as libhdf5 2.0 writes it")


@pytest.fixture
def files(tmp_path):
    """A good profile, an image of its shape and a profile damaged as above."""
    rng = np.random.default_rng(13)
    prof = CameraProfile.uniform((32, 32), gain=0.5, offset=100.0, read_noise=1.6)
    prof.save(tmp_path / "good.h5")
    img = (100 + rng.poisson(200, (2, 32, 32)) * 0.5).astype(np.uint16)
    tifffile.imwrite(tmp_path / "img.tif", img)
    labels = np.zeros((32, 32), np.uint16)
    labels[8:20, 10:22] = 1
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    damaged(tmp_path / "good.h5", tmp_path / "bad.h5", (b"profile_id", b"provenance"))
    return tmp_path


def _console(*args: object, probe: str = "1") -> subprocess.CompletedProcess:
    env = dict(os.environ, RAWSIGMA_H5_PROBE=probe)
    cmd = [sys.executable, "-m", "rawsigma.cli.main", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_crashing_profile_is_one_line(files):
    """The console script: exit 1 and one line (before: killed by SIGSEGV)."""
    bare = _console("profile", "show", files / "bad.h5", probe="0")
    if bare.returncode >= 0:
        pytest.skip(f"libhdf5 no longer crashes on this damage (exit {bare.returncode})")
    r = _console("profile", "show", files / "bad.h5")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"cannot read {files / 'bad.h5'}: the HDF5 file is damaged" in r.stderr
    assert "libhdf5 crashed: SIGSEGV" in r.stderr and r.stdout == ""


@pytest.mark.parametrize("cmd", ["compress", "score", "compare", "report"])
def test_commands_refuse_a_crashing_profile(files, cmd):
    """Every command that reads a profile: exit 1, one line, nothing written."""
    bad, out = files / "bad.h5", files / "out"
    args = {
        "compress": ["compress", files / "img.tif", "-p", bad, "-o", files / "c.h5"],
        "score": ["score", files / "img.tif", "--profile", bad, "--labels", files / "labels.tif",
                  "--index", "0", "--codecs", "replica", "--replicas", "2", "--out", out],
        "compare": ["profile", "compare", files / "good.h5", bad],
        "report": ["profile", "report", bad, "--out", files / "r.html"],
    }[cmd]  # fmt: skip
    before = sorted(os.listdir(files))
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 1, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]  # score: "read …"
    assert len(errors) == 1 and "Traceback" not in r.output, r.output
    assert f"cannot read {bad}: the HDF5 file is damaged (libhdf5 crashed" in errors[0]
    assert sorted(os.listdir(files)) == before


def test_decompress_refuses_a_crashing_container(tmp_path):
    from rawsigma.analysis.noisecodec import NoiseCodec
    from rawsigma.analysis.noisecodec import containers as C

    prof = CameraProfile.uniform((16, 16), gain=0.5, offset=100.0, read_noise=1.6)
    img = np.full((2, 16, 16), 300, np.uint16)
    meta = {"axes": "ZYX", "spacing_zyx": [2.0, 0.5, 0.5]}
    p = C.write_compressed(tmp_path / "x.h5", img, NoiseCodec(prof, maps="global"), meta=meta)
    bad = damaged(p, tmp_path / "bad.h5", (b"axes", b"format", b"description"))
    r = CliRunner().invoke(app, ["decompress", str(bad), "--out", str(tmp_path / "d.tif")])
    assert r.exit_code == 1, r.output
    assert len(r.output.strip().splitlines()) == 1 and "libhdf5 crashed" in r.output
    assert not (tmp_path / "d.tif").exists()


def test_hang_is_one_line_after_the_timeout(files, monkeypatch):
    """A probe that does not answer (a child that sleeps stands for libhdf5 looping):
    killed after ``RAWSIGMA_H5_PROBE_TIMEOUT`` s, one line."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    monkeypatch.setattr(h5probe, "_child_cmd", lambda p, t: sleeper)
    monkeypatch.setenv("RAWSIGMA_H5_PROBE_TIMEOUT", "1.5")
    t0 = time.monotonic()
    r = CliRunner().invoke(app, ["profile", "show", str(files / "good.h5")])
    assert time.monotonic() - t0 < 30
    assert r.exit_code == 1, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert "the HDF5 file seems damaged (libhdf5 did not answer in 1.5 s" in r.output
    assert "RAWSIGMA_H5_PROBE_TIMEOUT" in r.output  # the way out for a slow, good file


def test_good_files_read_as_before_and_probed_once(files, monkeypatch):
    """A good file: the same output with and without the probe; one child per file and
    process, again when the file changes."""
    calls = []
    real = h5probe._run_child
    monkeypatch.setattr(h5probe, "_run_child", lambda p, t: calls.append(p) or real(p, t))
    show = ["profile", "show", str(files / "good.h5")]
    on = CliRunner().invoke(app, show)
    on2 = CliRunner().invoke(app, show)
    assert on.exit_code == 0 and calls == [files / "good.h5"], (on.output, calls)
    monkeypatch.setenv("RAWSIGMA_H5_PROBE", "0")
    off = CliRunner().invoke(app, show)
    assert on.output == on2.output == off.output and len(calls) == 1
    monkeypatch.setenv("RAWSIGMA_H5_PROBE", "1")
    os.utime(files / "good.h5", ns=(1, 1))
    h5probe.check_hdf5(files / "good.h5")
    assert len(calls) == 2


def test_damaged_answer_is_kept(files, monkeypatch):
    """A file found damaged is refused again at once (readers that probe, swallow the
    error and fall back to another reader do not wait twice)."""
    with pytest.raises(DamagedHDF5Error, match="libhdf5 crashed"):
        h5probe.check_hdf5(files / "bad.h5")
    monkeypatch.setattr(h5probe, "_run_child", lambda p, t: pytest.fail("probed twice"))
    with pytest.raises(DamagedHDF5Error, match="libhdf5 crashed"):
        CameraProfile.load(files / "bad.h5")


def test_napari_reader_refuses_a_crashing_file(files):
    from rawsigma.napari import read_layers, sniff

    assert sniff(files / "bad.h5") == "damaged"
    with pytest.raises(DamagedHDF5Error, match="libhdf5 crashed"):
        read_layers(files / "bad.h5")
    assert sniff(files / "good.h5") == "profile"


def test_ctrl_c_in_the_probe_is_an_interruption(files, monkeypatch):
    """A child ended by SIGINT (Ctrl-C reaches the whole process group) is the user's
    interruption (exit 130), not a damaged file."""
    me = (  # SIGINT is ignored in a background job: its default action here
        "import os, signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.kill(os.getpid(), signal.SIGINT); time.sleep(9)"
    )
    monkeypatch.setattr(h5probe, "_child_cmd", lambda p, t: [sys.executable, "-c", me])
    with pytest.raises(KeyboardInterrupt):
        h5probe.check_hdf5(files / "good.h5")


def test_no_probe_where_no_python_can_be_started(files, monkeypatch):
    """A frozen app's ``sys.executable`` is the app: the probe is skipped, not run."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(h5probe, "_run_child", lambda p, t: pytest.fail("spawned"))
    h5probe.check_hdf5(files / "bad.h5")
