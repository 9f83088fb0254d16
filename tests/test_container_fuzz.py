"""Fuzz: one altered byte (or a cut) anywhere in a file rawsigma reads back is refused
with one clear error, or decodes to the very same pixels and metadata (QA session 12).

The promise "no command may lose or alter data with exit 0", checked on the containers
`rawsigma compress` writes (``.rsnc``, TIFF, HDF5, zarr) and on camera profiles. Every
mutation is deterministic (fixed seed): each byte of the metadata (stream header,
OME-XML annotation, ``zarr.json``, HDF5 attributes, the profile's attributes) is XORed
with a random non-zero value and, where it is an ASCII digit, also replaced by another
digit (``"64"`` → ``"44"``: a damaged shape or voxel size that still parses); the
other bytes are sampled with a stride; files are cut at several lengths. The outcome is
what `rawsigma decompress` does with them: `read_compressed`, then `read_meta`.

HDF5 is read in a child process: libhdf5 itself crashes (SIGSEGV) on some damaged
object headers (about 1 in 200 flipped bytes of a small file). Since session 13 every
command probes a user's HDF5 file in a child first (`rawsigma.h5probe`): each try runs
the probe's walk before the real read, and a crash or hang must happen in the walk
(the probe refuses the file in one line), never after it.

Before session 12, found here: a flipped byte in the TIFF annotation, the HDF5
attributes or ``zarr.json`` changed the decoded axes or voxel size (or, zarr, cropped
every frame: ``"shape": [6, 64, 44]``) with exit 0; damaged TIFF tags and HDF5 headers
raised TypeError/RuntimeError/AttributeError (a traceback, not one line); a flipped
byte in a profile's provenance or dark-current info was used silently.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")

from rawsigma.analysis.noisecodec import NoiseCodec  # noqa: E402
from rawsigma.analysis.noisecodec import containers as C  # noqa: E402
from rawsigma.calib.profile import CameraProfile  # noqa: E402
from rawsigma.errors import RawsigmaError  # noqa: E402

EMBRYO = "bbbc050_mouse_embryo_nuclei_16cell_zyx51x120x122.tif"
META = {"axes": "ZYX", "spacing_zyx": [1.75, 0.8, 0.8]}
SEED = 20261207


@pytest.fixture(scope="module")
def volume(shared_data):
    """A real (Z, Y, X) crop (embryo nuclei, camera counts) and a profile of its camera
    model (uniform: its gain and offset from the data's background)."""
    import tifffile

    vol = tifffile.imread(shared_data / EMBRYO)
    img = np.ascontiguousarray(vol[20:23, 40:72, 40:72])
    prof = CameraProfile.uniform(img.shape[-2:], gain=0.5, offset=95.0, read_noise=1.6)
    return img, prof


def decode(path: Path) -> tuple[np.ndarray, dict]:
    """What `rawsigma decompress` reads: the frames, then the container's metadata."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return C.read_compressed(path), C.read_meta(path)


def outcome(path: Path, ref: tuple[np.ndarray, dict]) -> str:
    """``"refused"`` (a `RawsigmaError`: exit 1, one line), ``"same"`` (the reference
    pixels and metadata) or what went wrong (``"SILENT …"``, ``"crash …"``)."""
    try:
        px, meta = decode(path)
    except RawsigmaError:
        return "refused"
    except Exception as exc:  # noqa: BLE001 - anything else is a finding
        return f"crash {exc!r}"[:200]
    same = (
        not isinstance(px, np.ma.MaskedArray)
        and px.dtype == ref[0].dtype
        and px.shape == ref[0].shape
        and np.array_equal(px, ref[0])
        and meta == ref[1]
    )
    return "same" if same else f"SILENT {px.shape} {meta}"


def mutations(data: bytes, dense: range, stride: int, seed: int = SEED) -> list[tuple]:
    """``(position, new byte)`` pairs: every byte of ``dense`` XORed and (ASCII digits)
    replaced by another digit, the others every ``stride`` bytes XORed."""
    rng = np.random.default_rng(seed)
    out = []
    for pos in range(len(data)):
        x = int(rng.integers(1, 256))
        if pos in dense or pos % stride == 0:
            out.append((pos, data[pos] ^ x))
        if pos in dense and 0x30 <= data[pos] <= 0x39:
            out.append((pos, 0x30 + (data[pos] - 0x30 + 1 + x % 9) % 10))
    return out


def cuts(n: int) -> list[int]:
    return sorted({1, 8, 16, n // 4, n // 2, n - 100, n - 5, n - 4, n - 1} - {0})


def fuzz_file(src: Path, victim: Path, ref, dense: range, stride: int) -> dict:
    """Mutate ``victim`` (a file of the container ``src``, restored after each try);
    returns {outcome kind: count} and the findings under ``"bad"``."""
    data = victim.read_bytes()
    tally: dict = {"bad": []}
    tries = [(pos, bytes([b])) for pos, b in mutations(data, dense, stride)]
    tries += [(n, None) for n in cuts(len(data))]
    try:
        for pos, new in tries:
            victim.write_bytes(data[:pos] + new + data[pos + 1 :] if new else data[:pos])
            res = outcome(src, ref)
            kind = res.split(" ")[0]
            tally[kind] = tally.get(kind, 0) + 1
            if kind not in ("refused", "same"):
                tally["bad"].append((victim.name, pos, new, res))
    finally:
        victim.write_bytes(data)
    return tally


def _span(data: bytes, start: bytes, end: bytes) -> range:
    i = data.index(start)
    return range(i, data.index(end, i) + len(end))


@pytest.mark.parametrize("maps", ["global", "pixel"])
def test_rsnc_every_byte(tmp_path, volume, maps):
    img, prof = volume
    p = C.write_compressed(tmp_path / "x.rsnc", img, NoiseCodec(prof, maps=maps))
    ref = decode(p)
    tally = fuzz_file(p, p, ref, range(len(p.read_bytes())), 1)
    assert tally["bad"] == [] and tally.get("same", 0) == 0, tally["bad"][:5]


@pytest.mark.parametrize("maps", ["global", "pixel"])
def test_tiff(tmp_path, volume, maps):
    img, prof = volume
    p = C.write_compressed(tmp_path / "x.tif", img, NoiseCodec(prof, maps=maps), meta=META)
    ref = decode(p)
    assert ref[1] == META
    data = p.read_bytes()
    tally = fuzz_file(p, p, ref, _span(data, b"<?xml", b"</OME>"), 3)
    assert tally["bad"] == [], tally["bad"][:5]


def test_zarr_every_metadata_byte_and_chunks(tmp_path, volume):
    img, prof = volume
    p = C.write_compressed(tmp_path / "x.zarr", img, NoiseCodec(prof, maps="global"), meta=META)
    ref = decode(p)
    assert ref[1] == META
    bad = []
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        dense = range(f.stat().st_size) if f.name == "zarr.json" else range(0)
        bad += fuzz_file(p, f, ref, dense, 1 if f.name == "zarr.json" else 5)["bad"]
    assert bad == [], bad[:5]


def test_zarr_shape_digit(tmp_path, volume):
    """The case that cropped every frame with exit 0: one digit of the shape."""
    img, prof = volume
    p = C.write_compressed(tmp_path / "x.zarr", img, NoiseCodec(prof, maps="global"), meta=META)
    doc = json.loads((p / "zarr.json").read_text())
    doc["shape"] = [3, 32, 22]
    (p / "zarr.json").write_text(json.dumps(doc, indent=2))
    with pytest.raises(RawsigmaError, match="metadata checksum mismatch"):
        C.read_compressed(p)
    from rawsigma.imread import imread

    with pytest.raises(RawsigmaError, match="metadata checksum mismatch"):
        imread(p)  # `score` reads the store directly: the same check


_CHILD = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
os.environ["RAWSIGMA_H5_PROBE"] = "0"  # the walk below stands for the probe child
import test_container_fuzz as T
from pathlib import Path
from rawsigma.h5probe import walk
kind, src, tries = sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
data = src.read_bytes()
ref = T.REFERENCE[kind](src)
for i, (pos, new) in enumerate(tries):
    # a new file each try: libhdf5 shares a file still open (an object kept alive by a
    # traceback) with a later open of the same inode, showing stale contents
    victim = src.with_name(f"victim{i}" + src.suffix)
    victim.write_bytes(data[:pos] + bytes([new]) + data[pos + 1:] if new is not None
                       else data[:pos])
    print("TRY", pos, flush=True)
    try:
        walk(victim)
    except Exception:
        pass
    print("WALKED", pos, flush=True)
    print("RES", pos, new, T.CHILD_OUTCOME[kind](victim, ref), flush=True)
    victim.unlink()
"""


def profile_outcome(path: Path, ref: CameraProfile) -> str:
    """``"refused"`` (`ProfileError`), ``"same"`` (every field equal) or the finding."""
    try:
        p = CameraProfile.load(path)
    except RawsigmaError:
        return "refused"
    except Exception as exc:  # noqa: BLE001
        return f"crash {exc!r}"[:200]
    fields = ("emva", "plan", "provenance", "dark_info", "identity", "profile_id")
    same = all(getattr(p, f) == getattr(ref, f) for f in fields) and all(
        np.array_equal(getattr(p, n), getattr(ref, n), equal_nan=True)
        for n in ("offset", "gain", "read_noise", "defects", "dark_current")
    )
    same = same and p.ptc.keys() == ref.ptc.keys()
    same = same and all(np.array_equal(p.ptc[k], ref.ptc[k]) for k in p.ptc)
    return "same" if same else "SILENT profile"


REFERENCE = {"h5": decode, "profile": CameraProfile.load}
CHILD_OUTCOME = {"h5": outcome, "profile": profile_outcome}


def fuzz_in_child(kind: str, src: Path, tries: list[tuple]) -> dict:
    """`fuzz_file` for HDF5 files, in child processes restarted after a crash (a signal)
    or a hang (no answer in `HANG` s in the walk, 60 s in the read).

    Each try runs `rawsigma.h5probe.walk` (what the probe child of every command runs
    before rawsigma opens a user's HDF5 file), then the real read. A crash or hang in
    the walk is one the probe turns into one clear line (``"signal"``, ``"hang"``: the
    tries); one in the read after the walk passed is a probe that missed (``"missed"``).
    """
    import selectors

    tally: dict = {"bad": [], "signal": [], "hang": [], "missed": []}
    todo = list(tries)
    while todo:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(Path(__file__).parent), kind, str(src),
             json.dumps(todo)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        last, done, hung, walked = None, 0, False, False
        while True:
            wait = 60.0 if last is None or walked else HANG  # imports; a slow read
            if not sel.select(timeout=wait):
                proc.kill()  # no answer: a hang
                hung = True
                break
            line = proc.stdout.readline()
            if not line:
                break
            word, pos, *rest = line.rstrip("\n").split(" ", 3)
            if word == "TRY":
                last, walked = int(pos), False
            elif word == "WALKED":
                walked = True
            elif word == "RES":
                done += 1
                res = rest[1]
                tally[res.split(" ")[0]] = tally.get(res.split(" ")[0], 0) + 1
                if res.split(" ")[0] not in ("refused", "same"):
                    tally["bad"].append((int(pos), rest[0], res))
        rc = proc.wait()
        sel.close()
        proc.stdout.close()
        if rc == 0:
            break
        assert last is not None and rc < 0, rc  # a signal: a crash (or our kill)
        what = "hang" if hung else "signal"
        if walked:
            tally["missed"].append((what, todo[done]))
        else:
            tally[what].append(todo[done])
        todo = todo[done + 1 :]
    return tally


#: s without an answer in the walk of one try (each takes a few ms): a hang. A damaged
#: global-heap size makes libhdf5 allocate ~4 GB and take 2-15 s, then refuse cleanly:
#: killed here, and a probe either times out on it or passes (the read refuses it).
HANG = 5.0


def assert_probe_refuses(src: Path, tally: dict) -> None:
    """No crash or hang escapes the probe's walk, and `check_hdf5` (a fresh child, as
    every command runs it) refuses each try that crashed in the walk. (A try that
    hung in the walk is one the probe's timeout catches, or a slow one it passes and
    the read then refuses: not re-run, each would cost `HANG` s.)"""
    from rawsigma.errors import DamagedHDF5Error
    from rawsigma.h5probe import check_hdf5

    assert tally["missed"] == [], tally["missed"]
    data = src.read_bytes()
    for i, (pos, new) in enumerate(tally["signal"]):
        victim = src.with_name(f"probed{i}{src.suffix}")
        victim.write_bytes(data[:pos] + bytes([new]) + data[pos + 1 :] if new is not None
                           else data[:pos])  # fmt: skip
        with pytest.MonkeyPatch.context() as mp, pytest.raises(DamagedHDF5Error, match="crashed"):
            mp.setenv("RAWSIGMA_H5_PROBE", "1")  # off in the suite (conftest.py)
            check_hdf5(victim)


def _h5_tries(data: bytes, names: list[bytes], stride: int) -> list[tuple]:
    """Every byte within 64 bytes of an attribute name, the others every ``stride``."""
    dense: set[int] = set()
    for name in names:
        i = data.find(name)
        while i >= 0:
            dense.update(range(max(0, i - 64), min(len(data), i + 64)))
            i = data.find(name, i + 1)
    tries = mutations(data, dense, stride)  # type: ignore[arg-type]
    return tries + [(n, None) for n in cuts(len(data))]


@pytest.mark.slow
def test_hdf5(tmp_path, volume):
    img, prof = volume
    p = C.write_compressed(tmp_path / "x.h5", img, NoiseCodec(prof, maps="pixel"), meta=META)
    assert decode(p)[1] == META
    names = [b"element_size_um", b"axes", b"stack_shape", b"meta_crc32", b"rsnc_maps"]
    tally = fuzz_in_child("h5", p, _h5_tries(p.read_bytes(), names, 64))
    print("hdf5 fuzz:", {k: len(v) if isinstance(v, list) else v for k, v in tally.items()})
    assert tally["bad"] == [], tally["bad"][:5]
    assert tally.get("refused", 0) > 200
    assert_probe_refuses(p, tally)


@pytest.mark.slow
def test_profile(tmp_path):
    """A flipped byte in a profile is refused (maps and identity: `profile_id`; emva,
    plan, provenance, dark-current info and PTC: ``meta_crc32``), never used."""
    shape = (16, 16)
    rng = np.random.default_rng(SEED)
    prof = CameraProfile(
        offset=100 + rng.normal(0, 1, shape),
        gain=0.5 + rng.normal(0, 0.01, shape),
        read_noise=1.6 + rng.normal(0, 0.05, shape),
        defects=(rng.random(shape) < 0.01).astype(np.uint8),
        emva={"K": 0.5, "sigma_d": 3.2},
        provenance={"estimated": False, "seed": 7},
        ptc={"mean": np.linspace(100, 3000, 6), "var": np.linspace(3, 1500, 6)},
        dark_current=np.full(shape, 2.5, np.float32),
        dark_info={"reference_exposure_s": 0.01, "exposures_s": [0.01, 0.1]},
    )
    p = tmp_path / "p.h5"
    prof.save(p)
    data = p.read_bytes()
    names = [b"provenance", b"emva", b"info", b"columns", b"meta_crc32", b"profile_id"]
    tally = fuzz_in_child("profile", p, _h5_tries(data, names, 64))
    print("profile fuzz:", {k: len(v) if isinstance(v, list) else v for k, v in tally.items()})
    assert tally["bad"] == [], tally["bad"][:5]
    assert_probe_refuses(p, tally)


def test_decompress_refuses_in_one_line(tmp_path, volume):
    """Through the CLI: a damaged voxel size in each container is exit 1 and one line."""
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    img, prof = volume
    codec = NoiseCodec(prof, maps="global")
    for ext in ("tif", "h5", "zarr"):
        p = C.write_compressed(tmp_path / f"x.{ext}", img, codec, meta=META)
        f = p / "zarr.json" if p.is_dir() else p
        data = f.read_bytes()
        i = data.index(b"1.75") if ext != "h5" else data.index(np.float64(1.75).tobytes())
        f.write_bytes(data[:i] + b"3" + data[i + 1 :])  # 1.75 -> 3.75 (h5: the float's 1st byte)
        r = CliRunner().invoke(app, ["decompress", str(p), "--out", str(tmp_path / "d.tif")])
        assert r.exit_code == 1, (ext, r.output)
        assert len(r.output.strip().splitlines()) == 1 and "checksum" in r.output, r.output
        assert not (tmp_path / "d.tif").exists()


def test_containers_without_checksum_still_read(tmp_path, volume):
    """Containers written before session 12 (no ``meta_crc32``) decode as before."""
    import h5py
    import tifffile

    img, prof = volume
    codec = NoiseCodec(prof, maps="global")
    for ext in ("tif", "h5", "zarr"):
        p = C.write_compressed(tmp_path / f"x.{ext}", img, codec, meta=META)
        ref = decode(p)
        if ext == "h5":
            with h5py.File(p, "a") as f:
                del f["rsnc"].attrs["meta_crc32"]
        elif ext == "zarr":
            doc = json.loads((p / "zarr.json").read_text())
            del doc["attributes"]["meta_crc32"]
            (p / "zarr.json").write_text(json.dumps(doc))
        else:
            with tifffile.TiffFile(p) as tf:
                desc = tf.pages[0].description
            i = desc.index('<M K="meta_crc32">')
            old = desc[:i] + desc[desc.index("</M>", i) + 4 :]
            data = p.read_bytes().replace(desc.encode(), old.encode().ljust(len(desc), b" "))
            p.write_bytes(data)
        got = decode(p)
        assert np.array_equal(got[0], ref[0]) and got[1] == ref[1] == META, ext


@pytest.fixture
def compress_inputs(tmp_path, volume):
    import tifffile

    img, prof = volume
    tifffile.imwrite(tmp_path / "vol.tif", img, imagej=True, resolution=(1.25, 1.25),
                     metadata={"spacing": 1.75, "unit": "um", "axes": "ZYX"})  # fmt: skip
    prof.save(tmp_path / "prof.h5")
    return tmp_path / "vol.tif", tmp_path / "prof.h5"


@pytest.mark.parametrize(
    "damage",
    [
        "frames swapped",  # same shape and frame count: passed the old check
        "one pixel off",
        "metadata lost",
    ],
)
def test_compress_self_check(tmp_path, compress_inputs, monkeypatch, damage):
    """`compress` decodes what it wrote: wrong pixels or lost metadata in an output of the
    right shape are refused and the file removed (before: only the shape was compared)."""
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    image, profile = compress_inputs
    read, meta = C.read_compressed, C.read_meta

    def bad_read(path, fmt=None, allow_missing=False):
        out = np.array(read(path, fmt, allow_missing))
        if damage == "frames swapped":
            out = out[::-1].copy()
        elif damage == "one pixel off":
            out[1, 5, 7] += 40  # ~ 13 sigma at these counts
        return out

    monkeypatch.setattr(C, "read_compressed", bad_read)
    if damage == "metadata lost":
        monkeypatch.setattr(C, "read_meta", lambda *a, **k: {})
    out = tmp_path / "v.h5"
    r = CliRunner().invoke(app, ["compress", str(image), "-p", str(profile), "-o", str(out)])
    assert r.exit_code == 1, r.output
    assert "failed verification" in r.output and not out.exists()
    monkeypatch.setattr(C, "read_compressed", read)
    monkeypatch.setattr(C, "read_meta", meta)
    r = CliRunner().invoke(app, ["compress", str(image), "-p", str(profile), "-o", str(out)])
    assert r.exit_code == 0 and "voxel 1.75 x 0.8 x 0.8" in r.output, r.output


@pytest.mark.parametrize("ratio, refused", [(1.000005, False), (1.001, True)])
def test_compress_self_check_allows_float32_rounding_only(
    tmp_path, compress_inputs, monkeypatch, ratio, refused
):
    """The self-check's bound is evaluated in float32: a ratio within 1e-5 of it (hrev:
    0.9999 reached at EMCCD gains) must not refuse a correct file; beyond, it does."""
    from rawsigma.analysis.noisecodec import codec as codec_module
    from rawsigma.cli.main import app
    from typer.testing import CliRunner

    image, profile = compress_inputs
    monkeypatch.setattr(codec_module, "error_ratio", lambda *a: ratio)
    out = tmp_path / "v.rsnc"
    r = CliRunner().invoke(app, ["compress", str(image), "-p", str(profile), "-o", str(out)])
    assert (r.exit_code, out.exists()) == ((1, False) if refused else (0, True)), r.output
