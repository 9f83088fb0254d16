"""Noise codec ``effort="pyramid"`` back end: lossless on the codes for every geometry,
escapes, corrupted streams refused, and its ratio against the causal back ends."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from rawsigma.analysis.noisecodec import NoiseCodec  # noqa: E402
from rawsigma.analysis.noisecodec import pyramid as PY  # noqa: E402
from rawsigma.analysis.noisecodec.stream import (  # noqa: E402
    _PREFIX,
    dequantise_frames,
    quantise_frames_knee,
)
from rawsigma.analysis.noisecodec.synthetic import reference_frame  # noqa: E402
from rawsigma.errors import InputFileError  # noqa: E402


@pytest.fixture(scope="module")
def scene():
    frame, lam, cam = reference_frame((200, 152), seed=5)
    return frame, cam.true_profile()


def _expected(codec, frame):
    codes, recon, mode, kp = quantise_frames_knee(frame, codec.maps, codec.params)
    p = codec.params
    return dequantise_frames(
        codes, codec.maps, recon, mode, p.step, p.sigma_e, p.seed, p.max_adu, kp=kp
    )


@pytest.mark.parametrize("kw", [dict(step=2.0), dict(step=1.0, dither=True), dict(max_error=1.0)])
@pytest.mark.parametrize("tile_rows", [24, 256])
def test_decode_equals_quantiser(scene, kw, tile_rows):
    """Decoding gives exactly the dequantised codes: tiles of 24 rows (3 levels) and a
    short last tile of 8 rows (no split at all), or one tile of 200 rows."""
    frame, prof = scene
    codec = NoiseCodec(prof, tile_rows=tile_rows, effort="pyramid", **kw)
    data = codec.encode(frame)
    assert NoiseCodec.info(data)["effort"] == "pyramid"
    # format 5 (16 rANS states in one word stream), with or without the knee
    assert struct.unpack_from("<H", data, 4)[0] == 5
    np.testing.assert_array_equal(codec.decode(data), _expected(codec, frame))


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (9, 2), (17, 1), (33, 47), (64, 5), (130, 257)])
def test_odd_geometries(shape):
    """Odd and tiny shapes: empty polyphase planes, single columns, odd halves."""
    frame, lam, cam = reference_frame(shape, seed=11)
    codec = NoiseCodec(cam.true_profile(), step=2.0, tile_rows=64, effort="pyramid")
    stack = np.stack([frame, frame[::-1].copy()])
    dec = codec.decode(codec.encode(stack))
    np.testing.assert_array_equal(dec[0], _expected(codec, frame))
    np.testing.assert_array_equal(dec[1], _expected(codec, frame[::-1].copy()))


def test_escapes_round_trip(scene):
    """Residuals outside the symbol range (hot pixels, a saturated block) escape."""
    frame, prof = scene
    f = frame.copy()
    rng = np.random.default_rng(3)
    f[rng.integers(0, 200, 60), rng.integers(0, 152, 60)] = 4000
    f[50:60, 70:90] = 4095
    f[0, 0] = 4095
    codec = NoiseCodec(prof, step=2.0, tile_rows=48, effort="pyramid")
    data = codec.encode(f)
    hd = NoiseCodec.info(data)
    assert sum(t[3] for t in hd["tiles"]) > 0
    np.testing.assert_array_equal(codec.decode(data), _expected(codec, f))


def _rewrite(data: bytes, edit) -> bytes:
    """Apply ``edit(header, body)`` and re-seal the stream with a valid CRC."""
    magic, version, hlen = _PREFIX.unpack_from(data)
    hd = json.loads(data[_PREFIX.size : _PREFIX.size + hlen])
    body = bytearray(data[_PREFIX.size + hlen : -4])
    edit(hd, body)
    hb = json.dumps(hd, separators=(",", ":")).encode()
    out = _PREFIX.pack(magic, version, len(hb)) + hb + bytes(body)
    return out + struct.pack("<I", zlib.crc32(out) & 0xFFFFFFFF)


def test_corrupted_streams_refused(scene):
    """Altered words, a lying tile directory or bad tables (CRC re-sealed, so only the
    decoder's own checks can catch them) raise InputFileError, never crash."""
    frame, prof = scene
    codec = NoiseCodec(prof, step=2.0, tile_rows=48, effort="pyramid", embed_maps=True)
    data = codec.encode(frame)

    def flip_words(hd, body):
        o, n = hd["sections"]["words"]
        for k in range(o + 10, o + n, max(1, n // 50)):
            body[k] ^= 0x5A

    def move_words(hd, body):
        hd["tiles"][0][4] += 3
        hd["tiles"][1][4] -= 3

    def bad_freq(hd, body):
        o, n = hd["sections"]["freq"]
        f = bytearray(zlib.decompress(bytes(body[o : o + n])))
        f[5] ^= 0xFF
        blob = zlib.compress(bytes(f))
        body[o : o + n] = blob
        shift = len(blob) - n
        hd["sections"]["freq"][1] = len(blob)
        for v in hd["sections"].values():
            if v[0] > o:
                v[0] += shift

    for edit in (flip_words, move_words, bad_freq):
        with pytest.raises(InputFileError, match="corrupted"):
            codec.decode(_rewrite(data, edit))


def test_ratio_beats_causal_back_ends(scene):
    """The pyramid back end codes the same codes in fewer bytes than the 18-tap causal
    back end and the 6-tap one, at S = 2 and S = 1."""
    frame, lam, cam = reference_frame((512, 512), seed=2)
    prof = cam.true_profile()
    for step in (2.0, 1.0):
        n = {
            e: len(NoiseCodec(prof, step=step, effort=e).encode(frame))
            for e in ("pyramid", "best", "fast")
        }
        assert n["pyramid"] < n["best"] < n["fast"], (step, n)


def test_level_thresholds_are_octiles():
    counts = np.zeros(PY.LVL_MAX + 1)
    counts[10:90] = 1.0  # uniform on 10..89
    lut = PY.level_thresholds(counts)
    cls = lut[10:90]
    assert cls[0] == 0 and cls[-1] == PY.N_LVL_CLS - 1
    np.testing.assert_array_equal(np.bincount(cls), np.full(PY.N_LVL_CLS, 10))
    assert np.all(np.diff(lut.astype(int)) >= 0)


def test_codes_beyond_the_pyramid_range_fall_back_to_best(scene):
    """A step far below the noise gives codes above `pyramid.MAX_CODE`: the stream is
    written by the causal back end (format 2) and still decodes exactly."""
    frame, prof = scene
    codec = NoiseCodec(prof, step=0.02)
    data = codec.encode(frame)
    hd = NoiseCodec.info(data)
    assert hd["n_codes"] - 1 > PY.MAX_CODE
    version = 4 if "knee" in hd else 2  # 4: with the transform's knee, any back end
    assert hd["effort"] == "best" and struct.unpack_from("<H", data, 4)[0] == version
    np.testing.assert_array_equal(codec.decode(data), _expected(codec, frame))


def _normalise_reference(counts, total):
    """The former per-context loop of `normalise_counts` (numba kernel until issue 16)."""
    n, m = counts.shape
    f = np.zeros((n, m), np.int64)
    for c in range(n):
        tot = int(counts[c].sum())
        if tot == 0:
            f[c] = total // m
            f[c, PY.RMAX] += total - (total // m) * m
            continue
        for s in range(m):
            v = int(counts[c, s]) * total // tot
            f[c, s] = 1 if v == 0 and counts[c, s] > 0 else v
        acc = int(f[c].sum())
        while acc != total:
            j = int(np.argmax(f[c]))
            d = total - acc
            if d < 0:
                d = max(d, 1 - int(f[c, j]))
            f[c, j] += d
            acc += d
    return f


def test_table_normalisation_and_decode_tables_match_the_loops():
    """numpy `normalise_counts` and `decode_table` (no kernel to compile) give the values
    of the former loops: every row sums to the table size, seen symbols keep >= 1."""
    rng = np.random.default_rng(3)
    counts = (rng.pareto(1.0, (60, PY.N_SYM)) * 20).astype(np.int64)
    counts *= rng.random(counts.shape) < 0.3
    counts[::7] = 0  # contexts never seen
    counts[5] = 0
    counts[5, 3] = 10**9  # one symbol: every other seen one is lifted to 1
    counts[5, 4] = 1
    freq = PY.normalise(counts)
    np.testing.assert_array_equal(freq, _normalise_reference(counts, PY.TAB))
    assert (freq.sum(1) == PY.TAB).all() and (freq[counts > 0] >= 1).all()
    lut, fc, remap = PY.decode_table(freq)
    cum = PY.cumulative(freq)
    for c in (0, 5, 11):
        for s in range(PY.N_SYM):
            assert fc[c * 64 + s] == (freq[c, s] << 16) | cum[c, s]
            assert (lut[c * PY.TAB + cum[c, s] : c * PY.TAB + cum[c, s] + freq[c, s]] == s).all()
    np.testing.assert_array_equal(remap, np.arange(60))
    with pytest.raises(ValueError):
        PY.decode_table(freq[:, ::-1] - 1)
