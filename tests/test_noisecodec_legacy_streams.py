"""Streams of the "pyramid" back end written before format 5 (formats 3 and 4, four
rANS lanes with a word stream each) still decode to the same pixels, with the C and the
numba kernels; the same frames encoded today (format 5) decode to those pixels too.

The fixtures (tests/data/legacy/pyramid_*.rsnc) were written by rawsigma's main branch
of 2026-12-06 (commit 241ff97, before the encoder changes of hce, which give other bytes
for the same codes) from `reference_frame((150, 97), seed=4)`, S = 2, tiles of 37 rows,
embedded per-pixel maps."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rawsigma.analysis.noisecodec import NoiseCodec, codec_maps
from rawsigma.analysis.noisecodec import ckernels as CK
from rawsigma.analysis.noisecodec.stream import decode_frames, encode_frames, read_header
from rawsigma.analysis.noisecodec.synthetic import reference_frame

LEGACY = Path(__file__).parent / "data" / "legacy"
# name: (format version, sha256 of the decoded frames)
EXPECTED = {
    "pyramid_v3": (3, "9e5021402ca5c9b78ec8b428c7be69dc28e804d2534e334a41a5f0b6dcc49157"),
    "pyramid_v3_dither": (3, "dd89ed5f3f08fcdee05689a93b4d61549865ba05d8d2b76327e724532a514560"),
    "pyramid_v4_knee": (4, "5482fd2af0221bbb6472bf4dff8a36bad7cf47caf86bdadfa51d282db0f325ed"),
}
NAMESPACES = [ns for ns in (CK.numba_namespace(), CK.c_namespace()) if ns is not None]


def _inputs():
    """The frames and parameters the fixtures were written from."""
    frame, _, cam = reference_frame((150, 97), seed=4)
    prof = cam.true_profile()
    codec = NoiseCodec(prof, step=2.0, tile_rows=37, embed_maps=True)
    # the fixtures were written when defect pixels kept their own gain and offset
    codec.maps = codec_maps(prof, "pixel", trust_defects=True)
    low = frame.astype(np.int32) - int(prof.offset.max()) // 2
    low = np.clip(low, 0, 65535).astype(np.uint16)
    high = (frame + 400).astype(np.uint16)
    return codec, {
        "pyramid_v3": (np.stack([high, high[::-1].copy()]), {}),
        "pyramid_v3_dither": (high, dict(dither=True)),
        "pyramid_v4_knee": (low, {}),
    }


def _decode(data: bytes, ns) -> np.ndarray:
    saved = CK.KERNELS
    CK.KERNELS = ns
    try:
        return decode_frames(data)
    finally:
        CK.KERNELS = saved


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_legacy_stream_decodes_bit_identically(name):
    data = (LEGACY / f"{name}.rsnc").read_bytes()
    version, sha = EXPECTED[name]
    assert data[4:6] == version.to_bytes(2, "little")
    for ns in NAMESPACES:
        out = _decode(data, ns)
        assert hashlib.sha256(out.tobytes()).hexdigest() == sha, ns.name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_todays_stream_decodes_to_the_legacy_pixels(name):
    """Same frames, same parameters: today's stream (format 5) decodes to the pixels of
    the legacy stream, with either kernels."""
    codec, inputs = _inputs()
    x, kw = inputs[name]
    legacy = (LEGACY / f"{name}.rsnc").read_bytes()
    data = encode_frames(x, codec.maps, replace(codec.params, **kw), embed_maps=True)
    assert data[4:6] == (5).to_bytes(2, "little")
    assert read_header(data)["shape"] == read_header(legacy)["shape"]
    for ns in NAMESPACES:
        out = _decode(data, ns)
        assert hashlib.sha256(out.tobytes()).hexdigest() == EXPECTED[name][1], ns.name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_legacy_format_still_written(name, monkeypatch):
    """`encode_pyramid.PYRAMID_FORMAT = 4` writes formats 3-4 (4 word streams per tile: the
    comparison baseline of the benchmarks), decoding to the fixture's pixels; format 5
    of the same codes costs at most the final states of its 12 more rANS states per tile
    (48 bytes; 0.02-0.09 % on the benchmark frames, ~1.2 % on these 37 × 97 tiles)."""
    from rawsigma.analysis.noisecodec import encode_pyramid as EP

    codec, inputs = _inputs()
    x, kw = inputs[name]
    params = replace(codec.params, **kw)
    data5 = encode_frames(x, codec.maps, params, embed_maps=True)
    monkeypatch.setattr(EP, "PYRAMID_FORMAT", 4)
    data = encode_frames(x, codec.maps, params, embed_maps=True)
    assert data[4:6] == EXPECTED[name][0].to_bytes(2, "little")
    tiles = read_header(data)["tiles"]
    assert all(len(t) == 4 + 4 for t in tiles)  # frame, row0, rows, escapes, 4 lanes
    for ns in NAMESPACES:
        out = _decode(data, ns)
        assert hashlib.sha256(out.tobytes()).hexdigest() == EXPECTED[name][1], ns.name
    assert len(data) <= len(data5) <= len(data) + 48 * len(tiles), (len(data5), len(data))
