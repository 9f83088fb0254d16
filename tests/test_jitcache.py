"""Compiled kernels cached per machine (`jitcache`) and the announced warm-up (`warmup`)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from rawsigma import jitcache  # noqa: E402
from rawsigma.analysis.noisecodec import NoiseCodec, StreamParams, warmup  # noqa: E402
from rawsigma.analysis.noisecodec import ckernels as CK  # noqa: E402
from rawsigma.analysis.noisecodec import fastpath as FP  # noqa: E402
from rawsigma.analysis.noisecodec import kernels as K  # noqa: E402
from rawsigma.analysis.noisecodec import pyramid as PY  # noqa: E402
from rawsigma.analysis.noisecodec.synthetic import reference_frame  # noqa: E402

_CHILD = """
import sys
from rawsigma import jitcache
from rawsigma.analysis.noisecodec import pyramid as PY
before = jitcache.pending([PY.n_levels, PY.train_tile])
assert PY.n_levels(300, 200) == PY.n_levels.py_func(300, 200)
print(",".join(before), "|", ",".join(jitcache.pending([PY.n_levels, PY.train_tile])))
"""


def _child(cache: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env[jitcache.ENV] = cache
    r = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_kernels_cached_per_machine_in_the_user_cache(tmp_path):
    # a cheap kernel: compiled by the first process into the per-user folder, whose name
    # is the kernel modules' content hash; the second process finds it there
    assert _child(str(tmp_path)) == "n_levels,train_tile | train_tile"
    folder = tmp_path / "numba" / f"kernels-{jitcache.kernels_digest()}"
    assert any(p.name.startswith("pyramid.n_levels") for p in folder.iterdir())
    assert _child(str(tmp_path)) == "train_tile | train_tile"


def test_locator_leaves_other_files_to_numba():
    assert jitcache._is_kernel_module(PY.n_levels.py_func.__module__)
    assert not jitcache._is_kernel_module(np.__name__)
    assert all(jitcache._module_file(m) for m in jitcache.KERNEL_MODULES)
    assert len(jitcache.kernels_digest()) == 20


def test_warm_up_compiles_what_real_coding_uses(monkeypatch):
    """Coding real frames (per-pixel maps, a transform knee) uses no kernel signature
    that the warm-up's tiny coding does not: after `warm_up` nothing compiles (the
    numba kernels: the fallback when the C extension is not built, `ckernels`)."""
    monkeypatch.setattr(CK, "KERNELS", CK.numba_namespace())
    frame, _, cam = reference_frame((192, 160), seed=1)
    codec = NoiseCodec(cam.true_profile(), step=2.0)
    warmup.warm_up(codec.params)
    assert warmup.pending(codec.params) == []
    # what the warm-up's tiny coding uses (loaded or compiled: registered in-process
    # either way, whatever the cache held before)
    warmup.code_tiny(codec.params)
    mods = (K, PY, FP)
    disps = [getattr(m, n) for m in mods for n in dir(m) if hasattr(getattr(m, n), "overloads")]
    before = {d: len(d.signatures) for d in disps}
    stack = np.stack([frame, frame[::-1].copy()])
    np.testing.assert_array_equal(codec.decode(codec.encode(stack)).shape, stack.shape)
    assert {d: len(d.signatures) for d in disps} == before
    assert warmup.warm_up(codec.params) == 0.0


def test_warm_up_announces_its_stage(monkeypatch):
    seen = []
    monkeypatch.setattr(warmup, "pending", lambda params: ["decode_tile"])
    assert warmup.warm_up(StreamParams(), lambda *a: seen.append(a)) > 0
    assert seen == [(warmup.STAGE, 0, 2), (warmup.STAGE, 1, 2), (warmup.STAGE, 2, 2)]


def test_kernels_of_unused_back_ends_are_not_listed(monkeypatch):
    monkeypatch.setattr(CK, "KERNELS", CK.numba_namespace())
    names = {d.py_func.__module__ + "." + d.__name__ for d in warmup.kernels(StreamParams())}
    assert not any(".kernels.train_tile" in n or "fastpath.decode" in n for n in names)
    best = {d.__name__ for d in warmup.kernels(StreamParams(effort="best"), encode=False)}
    assert best == {"decode_lanes_best", "dequantise_tile"}
