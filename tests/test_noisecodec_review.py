"""Robustness of the format-5 decoder found in the review of session 8 (hrw): a stream
whose checksum is right but whose tile directory does not cover the frames exactly, and
the alignment of the C decoder's row buffers."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
import zlib
from pathlib import Path

import numpy as np
import pytest
from rawsigma.analysis.noisecodec import NoiseCodec
from rawsigma.analysis.noisecodec import ckernels as CK
from rawsigma.analysis.noisecodec.stream import _PREFIX, decode_frames
from rawsigma.analysis.noisecodec.synthetic import reference_frame
from rawsigma.errors import InputFileError

REPO = Path(__file__).resolve().parents[1]


def _stream(shape=(40, 30), tile_rows=16):
    frame, _, cam = reference_frame(shape, seed=3)
    codec = NoiseCodec(cam.true_profile(), step=2.0, tile_rows=tile_rows, embed_maps=True)
    return codec.encode(np.stack([frame, frame[::-1].copy()]))


def _split(data: bytes):
    magic, version, hlen = _PREFIX.unpack_from(data)
    hd = json.loads(data[_PREFIX.size : _PREFIX.size + hlen])
    return magic, version, hd, data[_PREFIX.size + hlen : -4]


def _seal(magic, version, hd, body) -> bytes:
    """A stream with a right checksum for a rewritten header (a writer's bug, a crafted
    file): the decoder must not trust it."""
    hb = json.dumps(hd, separators=(",", ":")).encode()
    b = _PREFIX.pack(magic, version, len(hb)) + hb + body
    return b + struct.pack("<I", zlib.crc32(b) & 0xFFFFFFFF)


def _lie(hd, how):
    tiles = hd["tiles"]
    if how == "frame past the end":
        tiles[-1][0] = 2
    elif how == "negative frame":  # numpy would take it as the last frame
        tiles[0][0] = -1
    elif how == "overlapping rows":  # frame 0's first rows twice, its last never
        tiles[1][1] = 0
    elif how == "an extra frame in the shape":  # frame 2 never decoded
        hd["shape"] = [3, *hd["shape"][1:]]
    elif how == "rows past the end":
        tiles[-1][2] += 5
    elif how == "a float field":
        tiles[0][1] = 0.0
    elif how == "a gap between tiles":  # frame 0's rows one row short of covered
        tiles[1][1] += 1
        tiles[1][2] -= 1
    elif how == "a tile twice":
        tiles.append(list(tiles[0]))
    return hd


@pytest.mark.parametrize(
    "how",
    [
        "frame past the end",
        "negative frame",
        "overlapping rows",
        "an extra frame in the shape",
        "rows past the end",
        "a float field",
        "a gap between tiles",
        "a tile twice",
    ],
)
def test_tile_directory_must_cover_every_row_once(how):
    """Before: IndexError, or rows of `np.empty` (never decoded) returned as pixels."""
    magic, version, hd, body = _split(_stream())
    assert version == 5
    bad = _seal(magic, version, _lie(hd, how), body)
    with pytest.raises(InputFileError, match="tile directory"):
        decode_frames(bad)


def test_a_true_directory_still_decodes():
    data = _stream((41, 30), tile_rows=8)  # last tile: 1 row
    magic, version, hd, body = _split(data)
    assert [t[2] for t in hd["tiles"]][-1] == 1
    out = decode_frames(_seal(magic, version, hd, body))
    np.testing.assert_array_equal(out, decode_frames(data))


def _ubsan_build(tmp: Path) -> Path | None:
    """The extension built with UBSan's alignment check (abort on the first report)."""
    cc = shutil.which("gcc")
    if cc is None:
        return None
    src = REPO / "analysis" / "noisecodec" / "_ckernels.c"
    so = tmp / ("_ckernels" + sysconfig.get_config_var("EXT_SUFFIX"))
    inc = sysconfig.get_paths()["include"]
    cmd = [cc, "-shared", "-fPIC", "-O1", "-ffp-contract=off", "-fsanitize=alignment",
           "-fno-sanitize-recover=alignment", f"-I{inc}", str(src), "-o", str(so)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True)
    return so if r.returncode == 0 else None


@pytest.mark.skipif(CK.c_namespace() is None, reason="C kernels unavailable")
@pytest.mark.skipif(sys.platform != "linux", reason="gcc and UBSan on Linux only")
def test_c_decoder_row_buffers_aligned(tmp_path):
    """Widths that are not a multiple of 4 put the format-5 decoder's int32 contexts at
    an odd address (UB; a vectorised loop that assumes their alignment can fault).
    Both decoder paths (AVX2 and plain C), under UBSan's alignment check."""
    so = _ubsan_build(tmp_path)
    if so is None:
        pytest.skip("gcc cannot build with -fsanitize=alignment here")
    stream = tmp_path / "s.rsnc"
    stream.write_bytes(_stream((37, 30)))
    code = (
        "import sys, importlib.util as u\n"
        "name = 'rawsigma.analysis.noisecodec._ckernels'\n"
        "spec = u.spec_from_file_location(name, sys.argv[1])\n"
        "m = u.module_from_spec(spec); sys.modules[name] = m; spec.loader.exec_module(m)\n"
        "from rawsigma.analysis.noisecodec import ckernels as CK\n"
        "from rawsigma.analysis.noisecodec.stream import decode_frames\n"
        "assert CK.BACKEND == 'c', CK.WHY_NOT\n"
        "print(decode_frames(open(sys.argv[2], 'rb').read()).sum())\n"
    )
    want = str(decode_frames(stream.read_bytes()).sum())
    for flag in ("0", "1"):
        env = dict(os.environ, RAWSIGMA_CODEC_NO_AVX2=flag, RAWSIGMA_CODEC_KERNELS="c")
        r = subprocess.run([sys.executable, "-c", code, str(so), str(stream)], env=env,
                           capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 0 and "runtime error" not in r.stderr, r.stderr[-2000:]
        assert r.stdout.strip() == want


_LEAK = """
import threading
from rawsigma.analysis.noisecodec import NoiseCodec, ckernels as CK
from rawsigma.analysis.noisecodec.stream import decode_frames
from rawsigma.analysis.noisecodec.synthetic import reference_frame
assert CK.BACKEND == 'c'
frame, _, cam = reference_frame((256, 2048), seed=1)
data = NoiseCodec(cam.true_profile(), step=2.0, embed_maps=True).encode(frame)
decode_frames(data, threads=1)
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
r0 = rss()
for i in range(100):
    t = threading.Thread(target=decode_frames, args=(data,), kwargs=dict(threads=1))
    t.start()
    t.join()
print(rss() - r0)
"""


@pytest.mark.skipif(CK.c_namespace() is None, reason="C kernels unavailable")
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="RSS from /proc only")
def test_decoder_buffers_freed_when_a_thread_ends():
    """The C decoder keeps its planes per thread; threads of short-lived pools must not
    leave them behind (before: ~1.5 MiB per thread for a 256 × 2048 tile, 150 MiB here)."""
    env = dict(os.environ, RAWSIGMA_CODEC_KERNELS="c")
    r = subprocess.run([sys.executable, "-c", _LEAK], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) < 60.0, f"RSS grew by {float(r.stdout):.0f} MiB"


def _damage_section(hd, body, name, how):
    o, n = hd["sections"][name]
    b = bytearray(body)
    if how == "bytes":
        b[o : o + n] = bytes(x ^ 0x5A for x in b[o : o + n])
    elif how == "offset past the end":
        hd["sections"][name] = [len(body) + 10, n]
    elif how == "length cut":
        hd["sections"][name] = [o, max(n // 2, 1)]
    return hd, bytes(b)


@pytest.mark.parametrize("how", ["bytes", "offset past the end", "length cut"])
@pytest.mark.parametrize("name", ["escapes", "recon", "maps"])
def test_damaged_sections_are_one_input_error(name, how):
    """Damage the checksum cannot see (a writer's bug, a crafted file) in a compressed
    section: before, zlib.error / ZstdError / IndexError escaped the decoder."""
    magic, version, hd, body = _split(_stream())
    assert name in hd["sections"]
    hd, body = _damage_section(hd, body, name, how)
    with pytest.raises(InputFileError, match="noise.codec") as err:
        decode_frames(_seal(magic, version, hd, body))
    assert "\n" not in str(err.value)
