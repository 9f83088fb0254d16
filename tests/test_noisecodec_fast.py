"""Noise codec back ends: ``effort="fast"`` round trip (lane-parallel decoder), version 1."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from rawsigma.analysis.noisecodec import NoiseCodec  # noqa: E402
from rawsigma.analysis.noisecodec.stream import (  # noqa: E402
    _PREFIX,
    dequantise_frames,
    quantise_frames_knee,
)
from rawsigma.analysis.noisecodec.synthetic import reference_frame  # noqa: E402
from rawsigma.errors import InputFileError  # noqa: E402


@pytest.fixture(scope="module")
def scene():
    # 200 rows at tile_rows=24: 8 tiles of 24 rows (two 4-lane groups) and one of 8 rows
    frame, lam, cam = reference_frame((200, 152), seed=5)
    return frame, cam.true_profile()


@pytest.mark.parametrize("effort", ["fast", "best"])
@pytest.mark.parametrize("kw", [dict(step=2.0), dict(step=1.0, dither=True), dict(max_error=1.0)])
def test_decode_equals_quantiser(scene, effort, kw):
    """The entropy-coded stream is lossless on the codes: decoding gives exactly the
    dequantised codes, for every tile group (4 lanes, fewer lanes, a short last tile)."""
    frame, prof = scene
    codec = NoiseCodec(prof, tile_rows=24, effort=effort, **kw)
    data = codec.encode(frame)
    assert NoiseCodec.info(data)["effort"] == effort
    codes, recon, mode, kp = quantise_frames_knee(frame, codec.maps, codec.params)
    p = codec.params
    want = dequantise_frames(
        codes, codec.maps, recon, mode, p.step, p.sigma_e, p.seed, p.max_adu, kp=kp
    )
    got = codec.decode(data)
    np.testing.assert_array_equal(got, want)
    stack = np.stack([frame, frame[::-1].copy()])
    dec = codec.decode(codec.encode(stack))
    np.testing.assert_array_equal(dec[0], got)


def test_fast_ratio_close_to_best(scene):
    frame, prof = scene
    n = {e: len(NoiseCodec(prof, step=2.0, effort=e).encode(frame)) for e in ("best", "fast")}
    assert n["best"] < n["fast"] < 1.25 * n["best"], n
    assert frame.nbytes / n["fast"] > 5


def test_fast_corrupted_tile_detected(scene):
    """A stream whose tile directory lies (words moved between tiles) is refused."""
    frame, prof = scene
    codec = NoiseCodec(prof, tile_rows=24, effort="fast", embed_maps=True)
    data = codec.encode(frame)
    magic, version, hlen = _PREFIX.unpack_from(data)
    hd = json.loads(data[_PREFIX.size : _PREFIX.size + hlen])
    hd["tiles"][0][4] += 1
    hd["tiles"][1][4] -= 1
    hb = json.dumps(hd, separators=(",", ":")).encode()
    body = _PREFIX.pack(magic, version, len(hb)) + hb + data[_PREFIX.size + hlen : -4]
    with pytest.raises(InputFileError, match="corrupted"):
        codec.decode(body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF))


def test_version1_stream_still_decodes(scene):
    """A version-1 stream (no "effort" key: the 18-tap back end) decodes as before."""
    frame, prof = scene
    codec = NoiseCodec(prof, step=2.0, embed_maps=True, effort="best")
    data = codec.encode(frame)
    magic, _, hlen = _PREFIX.unpack_from(data)
    hd = json.loads(data[_PREFIX.size : _PREFIX.size + hlen])
    del hd["effort"]
    hb = json.dumps(hd, separators=(",", ":")).encode()
    body = _PREFIX.pack(magic, 1, len(hb)) + hb + data[_PREFIX.size + hlen : -4]
    v1 = body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    np.testing.assert_array_equal(codec.decode(v1), codec.decode(data))


def test_effort_validated(scene):
    with pytest.raises(ValueError, match="effort"):
        NoiseCodec(scene[1], effort="turbo")


def test_registry_effort(scene):
    from rawsigma.analysis.codecs.registry import parse_codecs

    frame, prof = scene
    (c,) = parse_codecs("noise:step=2,effort=fast", profile=prof)
    assert c.inner.effort == "fast" and "effort=fast" in c.inner.spec
    data = c.encode(frame)
    assert c.decode(data).shape == frame.shape


def test_numcodec_carries_effort(scene):
    from rawsigma.analysis.noisecodec.containers import NoiseNumcodec

    frame, prof = scene
    nc = NoiseNumcodec.from_codec(NoiseCodec(prof, step=2.0, effort="fast"))
    assert nc.get_config()["effort"] == "fast"
    data = nc.encode(frame)
    assert NoiseCodec.info(data)["effort"] == "fast"
    clone = NoiseNumcodec(**{k: v for k, v in nc.get_config().items() if k != "id"})
    np.testing.assert_array_equal(clone.decode(data), nc.decode(data))
