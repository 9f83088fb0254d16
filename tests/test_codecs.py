"""Codec registry: round trips, ratios, ImageJ 8-bit conversion, parser errors."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from rawsigma.analysis.codecs.registry import (
    Codec,
    CodecError,
    Param,
    available_codecs,
    codec_available,
    compression_ratio,
    parse_codecs,
    register_codec,
)
from rawsigma.calib.profile import CameraProfile
from rawsigma.errors import ImageMismatchError

LOSSY = [
    "8bit",
    "8bit:range=display",
    "jpeg@10",
    "jpeg@100",
    "jpeg:q=90",
    "jpegxl@20",
    "jpegxl:distance=1",
    "jpeg2000@10",
    "jpeg2000:psnr=60",
    "jpegls:near=2",
    "lerc:maxerr=2",
]
LOSSLESS = ["jpegxl", "jpeg2000", "jpegls", "lerc", "zstd", "zstd:level=9"]


def _family(spec: str) -> str:
    return spec.split("@")[0].split(":")[0]


def _skip_unavailable(spec: str) -> None:
    if not codec_available(_family(spec)):
        pytest.skip(f"{_family(spec)} not available in this imagecodecs")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """256x256 uint16 simulated fluorescence frame (Poisson-Gaussian, 16-bit)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    mu = 120 + 20 * np.ones((256, 256))
    for _ in range(25):
        cy, cx = rng.uniform(0, 256, 2)
        mu = mu + rng.uniform(300, 3000) * np.exp(
            -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(4, 15) ** 2)
        )
    x = 100 + 2.0 * rng.poisson((mu - 100) / 2.0) + rng.normal(0, 2.2, mu.shape)
    return np.clip(np.rint(x), 0, 65535).astype(np.uint16)


@pytest.mark.parametrize("spec", LOSSY + LOSSLESS)
def test_round_trip_dtype_shape(image, spec):
    _skip_unavailable(spec)
    (codec,) = parse_codecs(spec)
    data = codec.encode(image)
    out = codec.decode(data)
    assert isinstance(data, bytes)
    assert out.dtype == image.dtype and out.shape == image.shape
    assert codec.lossless == (spec in LOSSLESS)
    if spec in LOSSLESS:
        assert np.array_equal(out, image)
    else:
        assert not np.array_equal(out, image)
    assert codec.spec == spec  # canonical form of these specs is the spec itself
    assert codec.info(data)["ratio"] == pytest.approx(compression_ratio(image, data))


@pytest.mark.parametrize(
    "spec,tol", [("jpeg@10", 0.10), ("jpegxl@20", 0.10), ("jpeg2000@10", 0.10)]
)
def test_ratio_search_hits_target(image, spec, tol):
    _skip_unavailable(spec)
    (codec,) = parse_codecs(spec)
    data = codec.encode(image)
    target = float(spec.split("@")[1])
    assert compression_ratio(image, data) == pytest.approx(target, rel=0.10)
    assert codec.last_info["ratio"] == pytest.approx(compression_ratio(image, data), rel=1e-3)
    assert "ratio" in codec.description


def test_jpeg_quality_recorded(image):
    (codec,) = parse_codecs("jpeg@10")
    data = codec.encode(image)
    q = codec.info(data)["quality"]
    assert 1 <= q <= 100 and f"quality {q}" in codec.description
    # the same quality set explicitly gives the same image
    (fixed,) = parse_codecs(f"jpeg:q={q}")
    assert np.array_equal(fixed.decode(fixed.encode(image)), codec.decode(data))


def test_near_lossless_bounds(image):
    for spec, bound in (("jpegls:near=2", 2), ("lerc:maxerr=2", 2)):
        _skip_unavailable(spec)
        (codec,) = parse_codecs(spec)
        out = codec.decode(codec.encode(image))
        assert np.abs(out.astype(int) - image).max() <= bound


def test_8bit_error_bounded_by_one_step(image):
    (codec,) = parse_codecs("8bit")
    data = codec.encode(image)
    out = codec.decode(data)
    lo, hi = int(image.min()), int(image.max())
    step = (hi - lo + 1) / 256
    assert np.abs(out.astype(float) - image).max() <= step
    info = codec.info(data)
    assert (info["lo"], info["hi"]) == (lo, hi)
    assert compression_ratio(image, data) == pytest.approx(2.0, rel=0.01)
    assert len(np.unique(out)) <= 256


def test_8bit_matches_imagej_formula():
    img = np.array([[0, 1, 500, 999, 1000]], np.uint16)
    (codec,) = parse_codecs("8bit")
    codes = codec.to8(img, 0, 1000)
    # ImageJ TypeConverter: (int)((v - min) * 256 / (max - min + 1) + 0.5), max 255
    expect = [min(int(int(v) * 256 / 1001 + 0.5), 255) for v in img.ravel()]
    assert codes.ravel().tolist() == expect
    out = codec.decode(codec.encode(img))
    assert np.abs(out.astype(int) - img).max() <= 1001 / 256


def test_8bit_display_range_clips(image):
    (codec,) = parse_codecs("8bit:range=display,saturated=2")
    assert codec.spec == "8bit:range=display,saturated=2"
    data = codec.encode(image)
    out = codec.decode(data)
    lo, hi = codec.info(data)["lo"], codec.info(data)["hi"]
    assert image.min() < lo < hi < image.max()
    inside = (image >= lo) & (image <= hi)
    step = (hi - lo + 1) / 256
    assert np.abs(out[inside].astype(float) - image[inside]).max() <= step
    assert out[image < lo].max() == lo  # clipped to the range ends
    assert "display range" in codec.description


def test_stack_and_uint8(image):
    stack = np.stack([image, image[::-1]])
    for spec in ("8bit", "jpeg@10", "zstd", "jpegls"):
        (codec,) = parse_codecs(spec)
        out = codec.decode(codec.encode(stack))
        assert out.shape == stack.shape and out.dtype == np.uint16
    (z,) = parse_codecs("zstd")
    small = (image >> 8).astype(np.uint8)
    data = z.encode(small)
    assert np.array_equal(z.decode(data), small)
    # the ratio is always against 16 bits per pixel, whatever the dtype
    assert compression_ratio(small, data) == small.size * 2 / len(data)


def test_bad_images_and_payloads(image):
    (codec,) = parse_codecs("zstd")
    with pytest.raises(ImageMismatchError):
        codec.encode(image.astype(np.float32))
    with pytest.raises(ImageMismatchError):
        codec.encode(np.zeros((2, 2, 2, 2), np.uint16))
    with pytest.raises(CodecError, match="magic"):
        codec.decode(b"not a payload")
    (other,) = parse_codecs("8bit")
    with pytest.raises(CodecError, match="written by codec"):
        codec.decode(other.encode(image))


def test_parser():
    specs = (
        "8bit, jpeg@10 ,JPEG@100,jpegls:near=2,lerc:maxerr=2,zstd,8bit:range=display,saturated=1"
    )
    codecs = parse_codecs(specs)
    assert [c.spec for c in codecs] == [
        "8bit",
        "jpeg@10",
        "jpeg@100",
        "jpegls:near=2",
        "lerc:maxerr=2",
        "zstd",
        "8bit:range=display,saturated=1",
    ]
    assert parse_codecs(["jxl@5", "j2k"])[0].spec == "jpegxl@5"
    assert parse_codecs("zstd:level=3")[0].spec == "zstd"  # defaults omitted
    assert set(available_codecs()) >= {"8bit", "jpeg", "jpegxl", "jpeg2000", "jpegls", "lerc"}


@pytest.mark.parametrize(
    "spec,match",
    [
        ("webp@10", r"unknown codec 'webp'.*valid codecs: .*8bit.*jpeg.*zstd"),
        ("jpeg:quality=90", r"unknown parameter.*quality.*valid parameters: ratio"),
        ("jpeg:q=abc", r"q='abc' is not a valid int"),
        ("jpeg:q=101", r"outside"),
        ("jpeg@10:q=50", r"either a ratio"),
        ("jpegls@5", r"no ratio search"),
        ("8bit:range=auto", r"not one of minmax, display"),
        ("zstd:level", r"not key=value"),
        ("near=2,jpeg", r"before any codec"),
        ("", r"empty codec spec"),
        ("jpeg@", r"empty ratio"),
        ("noise:step=2", r"needs a camera profile"),
    ],
)
def test_parser_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_codecs(spec)


def test_register_custom_codec(image):
    class Halve(Codec):
        """Drop the lowest bit (test codec)."""

        name = "halve"
        PARAMS = (Param("bits", int, 1, "bits to drop", lo=0, hi=8),)

        def _encode(self, img):
            return [(img >> self.params["bits"]).astype(img.dtype).tobytes()], {}

        def _decode(self, bodies, meta, shape, dtype):
            return np.frombuffer(bodies[0], dtype).reshape(shape) << self.params["bits"]

    register_codec("halve", Halve, replace=True)
    (c,) = parse_codecs("halve:bits=2")
    out = c.decode(c.encode(image))
    assert np.array_equal(out, (image >> 2) << 2)
    with pytest.raises(ValueError, match="already registered"):
        register_codec("halve", Halve)


def test_noise_codec_registered_lazily(image, monkeypatch):
    """The noise codec is built from rawsigma.analysis.noisecodec.NoiseCodec (faked here)."""
    calls = {}

    class FakeNoiseCodec:
        def __init__(self, profile, step=2.0, dither=False, max_error=None):
            calls.update(step=step, dither=dither, max_error=max_error)
            self.profile = profile

        def encode(self, img):
            return np.asarray(img, "<u2").tobytes()

        def decode(self, data):
            return np.frombuffer(data, "<u2").reshape(self.profile.shape)

    fake = types.ModuleType("rawsigma.analysis.noisecodec")
    fake.NoiseCodec = FakeNoiseCodec
    monkeypatch.setitem(sys.modules, "rawsigma.analysis.noisecodec", fake)
    prof = CameraProfile.uniform(image.shape, gain=2.0, offset=100.0, read_noise=2.2)
    (c,) = parse_codecs("noise:step=1.5,dither=1", profile=prof)
    assert calls == {"step": 1.5, "dither": True, "max_error": None}
    assert c.spec == "noise:step=1.5,dither=1"
    (c,) = parse_codecs("noise:step=1.5,maxerr=1", profile=prof)
    assert calls == {"step": 1.5, "dither": False, "max_error": 1.0}
    assert c.spec == "noise:step=1.5,maxerr=1"
    with pytest.raises(CodecError, match="cannot be combined"):  # checked before the back end
        parse_codecs("noise:step=1.5,dither=1,maxerr=1", profile=prof)
    assert np.array_equal(c.decode(c.encode(image)), image)
    assert parse_codecs("noise", profile=prof)[0].spec == "noise:step=2"  # step always shown


def test_real_noise_codec_if_present(image):
    if not codec_available("noise"):
        pytest.skip("noise codec not landed")
    prof = CameraProfile.uniform(image.shape, gain=2.0, offset=100.0, read_noise=2.2)
    (c,) = parse_codecs("noise:step=2", profile=prof)
    data = c.encode(image)
    out = c.decode(data)
    assert out.dtype == image.dtype and out.shape == image.shape
    assert compression_ratio(image, data) > 2
    assert c.spec == "noise:step=2" and "noise-calibrated" in c.description
    # |error| stays within a few sigma of the profile's noise at each pixel
    sd = np.sqrt(prof.variance(image.astype(np.float32)))
    assert np.max(np.abs(out.astype(float) - image) / sd) < 4
    with pytest.raises(CodecError, match="noise"):
        parse_codecs("noise:dither=1,maxerr=1", profile=prof)


def test_8bit_full_range_uses_the_dtype_range():
    """ImageJ's "16-bit range: 16-bit": a 12-bit image gets an 8-bit step of 256 ADU."""
    rng = np.random.default_rng(3)
    img = rng.integers(100, 4000, size=(32, 40)).astype(np.uint16)
    (codec,) = parse_codecs("8bit:range=full")
    data = codec.encode(img)
    assert (codec.info(data)["lo"], codec.info(data)["hi"]) == (0, 65535)
    out = codec.decode(data)
    assert len(np.unique(out)) <= 4000 // 256 + 2  # 256-ADU bins
    assert np.abs(out.astype(int) - img).max() <= 128
