"""Standing fault suite, data integrity: bad inputs and parameters at the CLI edge.

Every case runs the ``rawsigma`` CLI the way a user would and asserts: one clear
message (no Python traceback), a nonzero exit code, and that no output was
written or changed (checksums). The success paths check frame counts end to end
(frames in = frames out) and that every codec spec printed by ``compress`` or
shown in the README is accepted by ``score``.

Exit codes: 2 for usage errors (bad option values), 1 for input/runtime errors. Each
case records its kind (``USAGE`` / ``INPUT``); the exact code is asserted once
`rawsigma.errors.UsageError` exists (before issue 10's exit-code change every error
exited with 2, and only "nonzero" is asserted).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import rawsigma.errors
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from rawsigma.calib.profile import CameraProfile
from rawsigma.cli.main import app
from typer.testing import CliRunner

SHAPE = (48, 64)
USAGE, INPUT = "usage", "input"
EXIT = {USAGE: 2, INPUT: 1}
#: The documented codes (2 usage, 1 input/runtime) come with rawsigma.errors.UsageError
#: (issue 10's exit-code change); before it every error exited with 2.
STRICT_EXIT_CODES = hasattr(rawsigma.errors, "UsageError")


def run(*args: str | Path):
    """Invoke the CLI; return the click Result (exceptions are caught by the runner)."""
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def assert_clean_error(r, kind: str, *needles: str) -> None:
    """Nonzero exit, no traceback, the message contains every needle."""
    out = r.output
    assert r.exit_code != 0, out
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in out, out
    if STRICT_EXIT_CODES:
        assert r.exit_code == EXIT[kind], (kind, r.exit_code, out)
    else:
        assert r.exit_code in (1, 2), (kind, r.exit_code, out)
    flat = " ".join(out.split()).replace("│", " ")
    flat = " ".join(flat.split())
    for n in needles:
        assert n in flat, (n, out)


def digest(path: Path) -> str:
    """sha256 of a file, or of every file under a directory (zarr)."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: digest(p) for p in folder.iterdir()}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A uniform profile, raw frames, a FrameWriter OME-TIFF of 5 frames, bad files."""
    d = tmp_path_factory.mktemp("faults")
    rng = np.random.default_rng(1)
    prof = CameraProfile.uniform(SHAPE, gain=2.0, offset=100.0, read_noise=3.0, bit_depth=12)
    prof.save(d / "prof.h5")
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    signal = 40 + 400 * (((yy // 12) + (xx // 16)) % 2)  # blocks: objects for a model
    frames = 100 + 2.0 * rng.poisson(signal, (5, *SHAPE)) + rng.normal(0, 3, (5, *SHAPE))
    frames = np.clip(np.rint(frames), 0, 4095).astype(np.uint16)
    tifffile.imwrite(d / "frame.tif", frames[0])
    from rawsigma.acquire.framesave import FrameWriter

    with FrameWriter(d / "saved_ome.ome.tif", SHAPE, 12) as w:  # one OME image per frame
        for i, f in enumerate(frames):
            w.write(f, "bright", 0, exposure_ms=10.0 + i)
    with FrameWriter(d / "saved_h5.h5", SHAPE, 12) as w:
        for f in frames:
            w.write(f, "bright", 0)
    bad = d / "bad"
    bad.mkdir()
    tifffile.imwrite(
        bad / "rgb.tif", rng.integers(0, 255, (*SHAPE, 3), np.uint8), photometric="rgb"
    )
    tifffile.imwrite(bad / "float.tif", frames[0].astype(np.float32))
    tifffile.imwrite(bad / "u8.tif", (frames[0] >> 4).astype(np.uint8))
    np.save(bad / "5d.npy", np.zeros((2, 3, 2, *SHAPE), np.uint16))
    (bad / "empty.tif").write_bytes(b"")
    # a multi-page stack cut in half: tifffile salvaged its first frame(s) silently
    tifffile.imwrite(bad / "whole.tif", np.concatenate([frames] * 4), compression="zlib")
    data = (bad / "whole.tif").read_bytes()
    (bad / "cut.tif").write_bytes(data[: len(data) // 2])
    (bad / "whole.tif").unlink()
    (bad / "text.tif").write_text("not an image\n")
    import h5py

    with h5py.File(bad / "two.h5", "w") as f:
        f["a"] = frames[:2]
        f["b"] = frames[2:]
    import zarr

    z = zarr.create_array(str(bad / "hole.zarr"), shape=frames.shape, chunks=(1, *SHAPE),
                          dtype="uint16")  # fmt: skip
    z[...] = frames
    import shutil

    shutil.rmtree(bad / "hole.zarr" / "c" / "2")  # frame 2's chunk is gone
    # a noise-codec file passed where raw frames are expected
    from rawsigma.analysis.noisecodec import NoiseCodec
    from rawsigma.analysis.noisecodec.containers import write_compressed

    write_compressed(bad / "coded.tif", frames[:2], NoiseCodec(prof, maps="global"))
    # profiles: most pixels defective, and some (10 %) defective
    for name, frac in (("defect60.h5", 0.6), ("defect10.h5", 0.10)):
        defects = (rng.random(SHAPE) < frac).astype(np.uint8)
        p = CameraProfile(
            offset=prof.offset, gain=prof.gain, read_noise=prof.read_noise,
            identity=prof.identity, defects=defects,
        )  # fmt: skip
        p.save(d / name)
    # labels: instance labels (every object its own value), two labelled pixels
    from scipy import ndimage as ndi

    inst, n = ndi.label(signal > 200)
    assert n >= 6
    tifffile.imwrite(d / "instances.tif", inst.astype(np.uint16))
    tifffile.imwrite(d / "instances_neg.tif", inst.astype(np.int16) - 1)  # background -1
    two = np.zeros(SHAPE, np.uint8)
    two[5, 5], two[20, 20] = 1, 2
    tifffile.imwrite(d / "two_pixels.tif", two)
    tifffile.imwrite(d / "mask.tif", (signal > 200).astype(np.uint8) * 255)
    sparse = np.zeros(SHAPE, np.uint8)
    sparse[signal > 200] = 2
    sparse[signal < 200] = 1
    tifffile.imwrite(d / "sparse.tif", sparse)
    (d / "seg.py").write_text(
        "import numpy as np\ndef segment(image):\n    return image > np.median(image)\n"
    )
    return {"dir": d, "frames": frames, "prof": prof}


# ----------------------------------------------------------------------------- compress
def _compress(world, image, *extra):
    d = world["dir"]
    return run("compress", image, "--profile", d / "prof.h5", "--out", d / "out" / "c.rsnc",
               *extra)  # fmt: skip


COMPRESS_BAD_INPUT = [
    ("bad/rgb.tif", "colour (RGB)"),
    ("bad/float.tif", "floating-point"),
    ("bad/u8.tif", "uint8 pixels"),
    ("bad/5d.npy", "without axis metadata"),
    ("bad/empty.tif", "empty file"),
    ("bad/text.tif", "unrecognised content"),
    ("bad/two.h5", "2 image datasets"),
    ("bad/hole.zarr", "1 of 5 chunks"),
    ("bad/cut.tif", "damaged or truncated TIFF"),
    ("bad/coded.tif", "rawsigma decompress"),
    ("bad/missing.tif", "no such file"),
    ("bad/two.h5:nope", "no dataset 'nope'"),
]


@pytest.mark.parametrize(
    ("name", "needle"), COMPRESS_BAD_INPUT, ids=[c[0] for c in COMPRESS_BAD_INPUT]
)
def test_compress_refuses_bad_input(world, name, needle):
    d = world["dir"]
    (d / "out").mkdir(exist_ok=True)
    before = snapshot(d / "bad")
    r = _compress(world, f"{d}/{name}")
    assert_clean_error(r, INPUT, needle)
    assert not (d / "out" / "c.rsnc").exists()
    assert snapshot(d / "bad") == before  # the inputs are untouched


COMPRESS_BAD_PARAMS = [
    (["--max-error", "0"], "outside (0, 1000]"),
    (["--max-error", "-1"], "outside (0, 1000]"),
    (["--max-error", "nan"], "outside (0, 1000]"),
    (["--maps", "bogus"], "not one of global, pixel"),
    (["--effort", "turbo"], "not one of pyramid, best, fast"),
    (["--format", "png"], "not one of rsnc, tiff, h5, zarr"),
]


@pytest.mark.parametrize(
    ("extra", "needle"), COMPRESS_BAD_PARAMS, ids=[" ".join(c[0]) for c in COMPRESS_BAD_PARAMS]
)
def test_compress_parameter_domains(world, extra, needle):
    d = world["dir"]
    r = _compress(world, d / "frame.tif", *extra)
    assert_clean_error(r, USAGE, needle)
    assert not (d / "out" / "c.rsnc").exists()


def test_compress_profile_mostly_defective(world):
    d = world["dir"]
    r = run("compress", d / "frame.tif", "--profile", d / "defect60.h5", "--out", d / "x.rsnc")
    assert_clean_error(r, INPUT, "flagged defective", "refusing")
    assert not (d / "x.rsnc").exists()
    r = run("compress", d / "frame.tif", "--profile", d / "defect10.h5", "--out", d / "y.rsnc")
    assert r.exit_code == 0, r.output
    assert "warning" in r.output and "flagged defective" in r.output


def test_compress_error_leaves_existing_output(world):
    """A failing --force run does not touch the file it would have replaced."""
    d = world["dir"]
    keep = d / "keep.rsnc"
    r = run("compress", d / "frame.tif", "--profile", d / "prof.h5", "--out", keep)
    assert r.exit_code == 0, r.output
    before = digest(keep)
    for bad in ("bad/float.tif", "bad/hole.zarr"):
        r = run("compress", d / bad, "--profile", d / "prof.h5", "--out", keep, "--force")
        assert_clean_error(r, INPUT)
        assert digest(keep) == before


@pytest.mark.parametrize("saved", ["saved_ome.ome.tif", "saved_h5.h5"])
@pytest.mark.parametrize("fmt", ["rsnc", "tif", "h5", "zarr"])
def test_frames_in_equal_frames_out(world, tmp_path, saved, fmt):
    """5 frames saved by FrameWriter -> compress -> decompress: 5 frames, right values."""
    from rawsigma.analysis.noisecodec import NoiseCodec

    d = world["dir"]
    out = tmp_path / f"c.{fmt}"
    r = run("compress", d / saved, "--profile", d / "prof.h5", "--out", out)
    assert r.exit_code == 0, r.output
    assert "5 frames" in r.output
    r = run("decompress", out, "--out", tmp_path / "d.tif")
    assert r.exit_code == 0, r.output
    dec = tifffile.imread(tmp_path / "d.tif")
    codec = NoiseCodec(world["prof"], maps="global")
    expected = codec.decode(codec.encode(world["frames"]))
    assert dec.shape == (5, *SHAPE)
    assert np.array_equal(dec, expected)


# ----------------------------------------------------------------------------- profile estimate
def test_profile_estimate_reads_every_saved_frame(world, tmp_path):
    """The OME-TIFF that FrameWriter writes is 5 frames, not 1 (same profile as .npy)."""
    d = world["dir"]
    np.save(tmp_path / "frames.npy", world["frames"])
    for src, out in ((d / "saved_ome.ome.tif", "a.h5"), (tmp_path / "frames.npy", "b.h5")):
        r = run("profile", "estimate", src, "--out", tmp_path / out, "--tile", "16")
        assert r.exit_code == 0, r.output
    a, b = CameraProfile.load(tmp_path / "a.h5"), CameraProfile.load(tmp_path / "b.h5")
    assert a.gain_global == pytest.approx(b.gain_global, rel=1e-6)
    assert a.read_noise_global == pytest.approx(b.read_noise_global, rel=1e-6)
    r = run("profile", "estimate", d / "bad" / "rgb.tif", "--out", tmp_path / "c.h5")
    assert_clean_error(r, INPUT, "colour (RGB)")
    assert not (tmp_path / "c.h5").exists()


# ----------------------------------------------------------------------------- score
def _score(world, out, *extra, labels="sparse.tif", image="frame.tif"):
    d = world["dir"]
    args = ["score", d / image, "--profile", d / "prof.h5", "--out", out]
    if labels:
        args += ["--labels", d / labels]
    return run(*args, *extra)


SCORE_BAD = [
    (["--replicas", "0"], USAGE, "--replicas"),
    (["--replicas", "1"], USAGE, "--replicas"),
    (["--replicas", "-3"], USAGE, "--replicas"),
    (["--replicas", "5000"], USAGE, "--replicas"),
    (["--max-distance", "0"], USAGE, "outside (0, 1000]"),
    (["--max-distance", "-2"], USAGE, "outside (0, 1000]"),
    (["--max-distance", "inf"], USAGE, "outside (0, 1000]"),
    (["--min-size", "-1"], USAGE, "--min-size"),
    (["--workers", "0"], USAGE, "--workers"),
    (["--seed", "-5"], USAGE, "--seed"),
    (["--foreground-class", "0"], USAGE, "--foreground-class"),
    (["--centre", "middle"], USAGE, "not one of observed, denoised"),
    (["--preset", "cellpose"], USAGE, "not one of ilastik, weka"),
    (["--codecs", "jpeg@0"], USAGE, "ratio=0.0 is outside [1.0"),
    (["--codecs", "jpeg@-1"], USAGE, "ratio=-1.0 is outside [1.0"),
    (["--codecs", "jpegxl@abc"], USAGE, "ratio='abc' is not a valid float"),
    (["--codecs", "lerc:maxerr=-1"], USAGE, "maxerr=-1.0 is outside [0.0"),
    (["--codecs", "jpeg:foo=1"], USAGE, "unknown parameter(s) foo"),
    (["--codecs", "noise:step=2,foo=1"], USAGE, "unknown parameter(s) foo"),
    (["--codecs", "noise:step=0"], USAGE, "step=0.0 is outside"),
    (["--codecs", "noise:step=2,effort=turbo"], USAGE, "is not one of pyramid, best, fast"),
    (["--codecs", "noise:dither=1,maxerr=2"], USAGE, "cannot be combined"),
    (["--codecs", "bogus"], USAGE, "unknown codec 'bogus'"),
    (["--codecs", "dither=1"], USAGE, "before any codec name"),
    (["--codecs", ","], USAGE, "no codec given"),
    (["--codecs", "jpeg@10,jpeg@10"], USAGE, "duplicate codec"),
    (["--index", "-1"], USAGE, "--index"),
    (["--estimate-profile"], USAGE, "--profile and --estimate-profile exclude each other"),
]


@pytest.mark.parametrize(
    ("extra", "kind", "needle"), SCORE_BAD, ids=[" ".join(c[0]) for c in SCORE_BAD]
)
def test_score_parameter_domains(world, tmp_path, extra, kind, needle):
    r = _score(world, tmp_path / "res", *extra)
    assert_clean_error(r, kind, needle)
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


SCORE_BAD_INPUT = [
    ({"labels": "instances.tif"}, "look like ground-truth instance labels", "--instances"),
    ({"labels": "two_pixels.tif"}, "too few annotated pixels", "class 1: 1 px, class 2: 1 px"),
    ({"labels": "bad/float.tif"}, "floating-point label image", ""),
    ({"labels": "mask.tif"}, "classes present: [255]", "pass --instances"),
    ({"image": "saved_ome.ome.tif"}, "stack of 5 frames", "--index"),
    ({"image": "bad/rgb.tif"}, "colour (RGB)", ""),
    ({"labels": "bad/rgb.tif"}, "colour (RGB)", "labels have one value per pixel"),
    ({"image": "bad/hole.zarr"}, "chunks of array", "missing"),
]


@pytest.mark.parametrize(
    ("kw", "n1", "n2"), SCORE_BAD_INPUT, ids=[str(c[0]) for c in SCORE_BAD_INPUT]
)
def test_score_refuses_implausible_input(world, tmp_path, kw, n1, n2):
    r = _score(world, tmp_path / "res", **kw)
    assert_clean_error(r, INPUT, n1, n2)
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


#: QA session 7: instance labels with a background of -1 lost object 1 (read as 0)
#: with exit 0; the image given as its own labels was told to "pass --instances".
SCORE_BAD_INSTANCES = [
    ("instances_neg.tif", "negative label values (min -1)"),
    ("frame.tif", "no pixel is 0"),
    ("bad/float.tif", "save them as uint8, uint16 or uint32"),
]


@pytest.mark.parametrize(("labels", "needle"), SCORE_BAD_INSTANCES)
def test_score_refuses_bad_instance_labels(world, tmp_path, labels, needle):
    r = _score(world, tmp_path / "res", "--instances", labels=labels)
    assert_clean_error(r, INPUT, needle)
    assert "raw camera counts" not in r.output and "pass --instances" not in r.output
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


def test_score_profile_mostly_defective(world, tmp_path):
    d = world["dir"]
    r = run("score", d / "frame.tif", "--profile", d / "defect60.h5", "--labels", d / "sparse.tif",
            "--out", tmp_path / "res")  # fmt: skip
    assert_clean_error(r, INPUT, "60", "flagged defective")


def test_score_instances_real_labels(shared_data, tmp_path):
    """BBBC039 expert instance labels without --instances: refused, with the count."""
    img = shared_data / "bbbc039_u2os_hoechst_3fields.tif"
    lab = shared_data / "bbbc039_u2os_hoechst_3fields_labels.tif"
    r = run("score", img, "--estimate-profile", "--labels", lab, "--index", "0",
            "--out", tmp_path / "res")  # fmt: skip
    assert_clean_error(r, INPUT, "86 distinct values", "--instances")
    assert not (tmp_path / "res").exists()


# ----------------------------------------------------------------------------- codec specs
def _printed_specs(prof) -> list[str]:
    """Every spec ``compress`` prints (its options' combinations)."""
    from rawsigma.analysis.noisecodec import NoiseCodec

    out = []
    for kw in ({}, {"effort": "best"}, {"effort": "fast"}, {"dither": True},
               {"max_error": 3.0}, {"step": 1.5, "dither": True, "effort": "best"}):  # fmt: skip
        out.append(NoiseCodec(prof, **kw).spec)
    return out


README_SPECS = [
    "8bit,jpeg@10,jpeg@100,noise:step=2",
    "8bit,jpeg@10,jpeg@100,jpegxl@20,noise:step=2",
    "8bit:range=display",
    "jpeg:q=80",
    "jpeg2000@10",
    "jpegls:near=2",
    "lerc:maxerr=2",
    "zstd",
    "zstd:level=5",
    "noise:step=2,dither=1",
    "noise:step=2,maxerr=3",
    "noise:step=2,effort=best",
    "noise:step=2,effort=fast",
    "noise:step=2,dither=1,effort=best",
]


def test_every_printed_and_documented_spec_parses(world):
    """The CLI split + the codec parser accept every spec the README and compress print,
    each as exactly one codec with the same canonical spec."""
    from rawsigma.analysis.codecs.registry import codec_available, parse_codecs
    from rawsigma.analysis.noisecodec import NoiseCodec
    from rawsigma.analysis.scoring.plans import ScorePlan
    from rawsigma.cli.params import codec_list

    prof = world["prof"]
    for text in README_SPECS + _printed_specs(prof):
        specs = codec_list(text)
        plan = ScorePlan(codecs=specs)
        assert plan.codecs == specs
        for s in specs:
            name = s.split("@")[0].split(":")[0]
            if not codec_available(name):
                continue
            (c,) = parse_codecs(s, profile=prof)
            if name == "noise" and "," not in text.replace(s, ""):
                assert c.spec == s, (s, c.spec)
    # the spec compress prints means the same codec in score (effort included)
    for kw in ({}, {"effort": "best"}, {"effort": "fast"}):
        nc = NoiseCodec(prof, **kw)
        (c,) = parse_codecs(nc.spec, profile=prof)
        assert c.inner.effort == nc.effort
    # a continuation token belongs to the codec before it
    assert codec_list("8bit,noise:step=2,dither=1,effort=best,jpeg@10") == [
        "8bit", "noise:step=2,dither=1,effort=best", "jpeg@10"]  # fmt: skip


def test_score_runs_with_comma_codec_spec(world, tmp_path):
    """The crash of issue 10: ``--codecs noise:step=2,dither=1`` scored end to end."""
    import json

    d = world["dir"]
    codecs = "noise:step=2,dither=1,noise:step=2,effort=best"
    r = run("score", d / "frame.tif", "--profile", d / "prof.h5", "--model",
            f"{d / 'seg.py'}:segment", "--replicas", "2", "--codecs", codecs,
            "--out", tmp_path / "res")  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    specs = [c["spec"] for c in res["codecs"]]
    assert specs == ["noise:step=2,dither=1", "noise:step=2,effort=best"], specs


def test_score_defect_warning_in_report(world, tmp_path):
    """A profile with 10 % defect pixels: scored, with a loud warning in CLI and report."""
    import json

    d = world["dir"]
    r = run("score", d / "frame.tif", "--profile", d / "defect10.h5", "--model",
            f"{d / 'seg.py'}:segment", "--replicas", "2", "--codecs", "zstd",
            "--out", tmp_path / "res")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "flagged defective" in r.output
    res = json.loads((tmp_path / "res" / "results.json").read_text())
    assert any("flagged defective" in n for n in res["notes"])
    assert "flagged defective" in (tmp_path / "res" / "report.html").read_text()


def test_no_stray_files(world):
    """No temporaries left beside the fixture's outputs after all the failures."""
    d = world["dir"]
    stray = [p for p in d.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert not stray, stray
    assert os.listdir(d)


# ----------------------------------------------------------------------------- property
_NAMES = ["8bit", "jpeg", "jpegxl", "jpeg2000", "jpegls", "lerc", "zstd", "noise", "replica"]
_KEYS = ["step", "dither", "maxerr", "effort", "q", "near", "level", "range", "distance"]


@st.composite
def _spec(draw):
    name = draw(st.sampled_from(_NAMES))
    ratio = draw(st.one_of(st.none(), st.integers(1, 200).map(str)))
    keys = draw(st.lists(st.sampled_from(_KEYS), unique=True, max_size=3))
    vals = [draw(st.sampled_from(["0", "1", "2.5", "best", "display"])) for _ in keys]
    text = name + (f"@{ratio}" if ratio else "")
    if keys:
        text += ":" + ",".join(f"{k}={v}" for k, v in zip(keys, vals, strict=True))
    return text


@settings(max_examples=60, deadline=None)
@given(specs=st.lists(_spec(), min_size=1, max_size=5), sep=st.sampled_from([",", ", ", ";"]))
def test_codec_list_split_round_trip(specs, sep):
    """Any list of specs joined with commas splits back into the same specs."""
    from rawsigma.analysis.codecs.registry import split_codec_specs

    assert split_codec_specs(sep.join(specs)) == specs


@pytest.mark.parametrize(
    "extra",
    [
        ["--labels", "instances.tif"],
        ["--labels", "two_pixels.tif"],
        ["--codecs", "jpeg@0"],
        ["--replicas", "1"],
        ["--profile-swap", "defect60.h5"],
    ],  # fmt: skip
    ids=["instances", "sparse", "codec", "replicas", "defects"],
)
def test_score_force_failure_keeps_previous_results(world, tmp_path, extra):
    """`score --force` that fails on its input leaves the previous results as they were."""
    from rawsigma.analysis.reporting.report import RESULT_FILES

    d = world["dir"]
    res = tmp_path / "res"
    res.mkdir()
    for name in RESULT_FILES:
        (res / name).write_text(f"previous {name}\n")
    before = snapshot(res)
    args = {"--labels": d / "sparse.tif", "--profile": d / "prof.h5", "--codecs": "zstd"}
    key, value = extra
    if key == "--profile-swap":
        args["--profile"] = d / value
    else:
        args[key] = d / value if value.endswith(".tif") else value
    flat = [x for kv in args.items() for x in kv]
    r = run("score", d / "frame.tif", *flat, "--out", res, "--force")
    assert_clean_error(r, USAGE if key in ("--codecs", "--replicas") else INPUT)
    assert snapshot(res) == before


@pytest.mark.parametrize(
    ("cmd", "out", "needle"),
    [
        ("compress", "c.png", "unknown container"),
        ("compress", "c", "unknown container"),
        ("decompress", "d.h5", "written as .tif or .npy"),
        ("decompress", "d.zarr", "written as .tif or .npy"),
        ("decompress", "d.png", "written as .tif or .npy"),
    ],
)
def test_output_named_as_another_format_is_refused(world, tmp_path, cmd, out, needle):
    """`compress --out c.png` wrote a bare .rsnc stream named .png and `decompress --out
    d.h5` a TIFF named .h5, both with exit 0: a file whose name lies about its format."""
    d = world["dir"]
    src = d / "frame.tif"
    if cmd == "decompress":
        src = tmp_path / "c.rsnc"
        r = run("compress", d / "frame.tif", "--profile", d / "prof.h5", "--out", src)
        assert r.exit_code == 0, r.output
    extra = ["--profile", d / "prof.h5"] if cmd == "compress" else []
    r = run(cmd, src, *extra, "--out", tmp_path / out)
    assert_clean_error(r, USAGE, needle)
    assert not (tmp_path / out).exists()


def test_compress_format_must_match_the_name(world, tmp_path):
    d = world["dir"]
    args = ("compress", d / "frame.tif", "--profile", d / "prof.h5", "--out")
    r = run(*args, tmp_path / "c.tif", "--format", "h5")
    assert_clean_error(r, USAGE, "names a tiff file but --format is h5")
    r = run(*args, tmp_path / "c.bin", "--format", "rsnc")  # an explicit container
    assert r.exit_code == 0, r.output
    r = run("decompress", tmp_path / "c.bin", "--format", "rsnc", "--out", tmp_path / "d.tif")
    assert r.exit_code == 0, r.output
    assert tifffile.imread(tmp_path / "d.tif").shape == SHAPE


def test_score_volume_refuses_negative_labels(tmp_path, shared_data):
    """The 3D in-memory path: the BBBC050 labels shifted to a background of -1."""
    vol = shared_data / "bbbc050_mouse_embryo_nuclei_16cell_zyx51x120x122.tif"
    lab = tifffile.imread(shared_data / f"{vol.stem}_labels.tif")
    tifffile.imwrite(tmp_path / "neg.tif", lab.astype(np.int16) - 1, metadata={"axes": "ZYX"})
    r = run("score", vol, "--estimate-profile", "--labels", tmp_path / "neg.tif",
            "--instances", "--out", tmp_path / "res")  # fmt: skip
    assert_clean_error(r, INPUT, "negative label values (min -1)")
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


def test_score_volume_lazy_failure_leaves_no_empty_out(tmp_path, shared_data):
    """QA session 8: the lazy driver failing while staging (here a 10-bit profile for the
    BBBC050 volume, max 1249 ADU) or Ctrl-C before any task left an empty --out folder."""
    pytest.importorskip("zarr")
    from rawsigma.calib.profile import CameraProfile

    vol = shared_data / "bbbc050_mouse_embryo_nuclei_16cell_zyx51x120x122.tif"
    lab = tifffile.imread(shared_data / f"{vol.stem}_labels.tif")
    ann = np.where(lab > 0, 2, 1).astype(np.uint8)
    tifffile.imwrite(tmp_path / "ann.tif", ann, metadata={"axes": "ZYX"})
    prof = tmp_path / "p10.h5"
    CameraProfile.uniform((120, 122), gain=20.0, offset=100.0, read_noise=2.2,
                          bit_depth=10).save(prof)  # fmt: skip
    r = run("score", vol, "--profile", prof, "--labels", tmp_path / "ann.tif", "--codecs",
            "8bit", "--replicas", "2", "--chunks", "24,64,64", "--driver", "lazy",
            "--out", tmp_path / "res")  # fmt: skip
    assert_clean_error(r, INPUT, "above the profile's maximum 1023 ADU")
    assert not (tmp_path / "res").exists()


def test_truncated_tiff_refused_by_every_reader(world, tmp_path):
    """QA session 7: a 48-frame stack cut in half was compressed as 1 frame, estimated
    from, and calibrated on (the frames before the cut), exit 0."""
    d = world["dir"]
    cut = d / "bad" / "cut.tif"
    for args in (
        ["profile", "estimate", cut, "--out", tmp_path / "e.h5"],
        ["calibrate", "--from-stacks", cut, d / "frame.tif", "--out", tmp_path / "c.h5"],
        ["score", cut, "--index", "0", "--estimate-profile", "--labels", d / "sparse.tif",
         "--out", tmp_path / "r"],
        ["score", cut, "--axes", "ZYX", "--estimate-profile", "--labels", d / "sparse.tif",
         "--out", tmp_path / "v"],
        ["tomo", "reconstruct", cut, "--angle-range", "0,360", "-o", tmp_path / "rec.tif"],
    ):  # fmt: skip
        r = run(*args)
        assert_clean_error(r, INPUT, "cut.tif: damaged or truncated TIFF")
        assert len([ln for ln in r.output.splitlines() if ln.strip()]) <= 3, r.output
    assert not any(tmp_path.iterdir())
