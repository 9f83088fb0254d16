"""Steps of the tomography scoring run that do not depend on the segmentation.

Used by :func:`rawsigma.analysis.scoring.tomo_runner.score_tomo`: replicas and codec
versions of the projections, the volume store (in memory or chunked), the operator ε.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rawsigma.analysis.scoring.operators import OperatorEpsilon

__all__ = ["CONTROL_SPEC", "fill_replicas", "operator_eps", "operator_inputs", "versions",
           "volume_store"]  # fmt: skip

Progress = Callable[[str, int, int], None]
CONTROL_SPEC = "replica"


def fill_replicas(proj: np.ndarray, profile: Any, reps: Any, rng: Any, centre: Any) -> Any:
    """Replicas of every projection into ``reps`` (``reps[k][i]``: replica k of projection i)."""
    from rawsigma.analysis.noisemodel.synthesis import synthesize

    n = len(reps)
    for i in range(proj.shape[0]):
        s = synthesize(proj[i], profile, n, rng, centre)
        for k in range(n):
            reps[k][i] = s[k]
    return reps


def _encode_all(codec: Any, proj: np.ndarray, dec: Any) -> tuple[Any, int]:
    fit = getattr(codec, "fit_stack", None)
    if fit is not None:  # a setting taken from the whole stack (8bit:range=first)
        fit(proj)
    nbytes = 0
    for i in range(proj.shape[0]):
        data = codec.encode(proj[i])
        nbytes += len(data)
        dec[i] = np.asarray(codec.decode(data)).astype(proj.dtype, copy=False)
    return dec, nbytes


def versions(proj, specs, profile, centre: str, rng, report: Progress, vs) -> dict[str, tuple]:
    """``{spec: (projections, ratio, n_bytes, description)}``: control replica and codecs."""
    from rawsigma.analysis.codecs.registry import parse_codecs

    names = [s for s in specs if s != CONTROL_SPEC]
    codecs = dict(zip(names, parse_codecs(names, profile=profile) if names else [], strict=True))
    out: dict[str, tuple] = {}
    if CONTROL_SPEC in specs:
        ctrl = fill_replicas(proj, profile, [vs.projections("control", proj.shape, proj.dtype)],
                              rng, centre)[0]  # fmt: skip
        out[CONTROL_SPEC] = (ctrl, 1.0, proj.size * 2, "held-out raw-equivalent replica")
    for codec in codecs.values():
        getattr(codec, "prepare", lambda _p: None)(report)
    for i, (spec, codec) in enumerate(codecs.items()):
        report("encode", i, len(codecs))
        dec, nb = _encode_all(codec, proj, vs.projections(spec, proj.shape, proj.dtype))
        out[spec] = (dec, proj.size * 2 / max(nb, 1), nb, codec.description)
    report("encode", len(codecs), len(codecs))
    order = {s: k for k, s in enumerate(specs)}
    return dict(sorted(out.items(), key=lambda kv: order[kv[0]]))


def operator_inputs(proj, reps, decoded, vol_raw, rep_vols, vols, vs):
    """Arrays for the operator ε.

    Everything in memory, or (chunked) 16 projections and a central block of the
    reconstruction (at most 32 × 256 × 256 voxels).
    """
    if not vs.chunked:
        return (proj, list(reps), {s: d[0] for s, d in decoded.items()}, vol_raw, rep_vols,
                vols, "all projections and the whole reconstruction")  # fmt: skip
    a, z, n = proj.shape
    fr = np.unique(np.linspace(0, a - 1, min(a, 16)).round().astype(int))

    def frames(x: Any) -> np.ndarray:
        return np.stack([np.asarray(x[i]) for i in fr])

    def cut(lo_n: int, size: int) -> slice:
        lo = max(0, (lo_n - size) // 2)
        return slice(lo, lo + min(lo_n, size))

    blk = (cut(z, 32), cut(n, 256), cut(n, 256))

    def block(v: Any) -> np.ndarray:
        return np.asarray(v[blk], np.float32)

    where = (f"projections {', '.join(map(str, fr))} and the central block z {blk[0].start}:"
             f"{blk[0].stop}, y {blk[1].start}:{blk[1].stop}, x {blk[2].start}:{blk[2].stop} "
             "of the reconstruction")  # fmt: skip
    dec = {s: frames(d[0]) for s, d in decoded.items()}
    blocks = {s: block(v) for s, v in vols.items()}
    reps_f, rep_b = [frames(r) for r in reps], [block(v) for v in rep_vols]
    return frames(proj), reps_f, dec, block(vol_raw), rep_b, blocks, where


def operator_eps(inputs, plan, report: Progress) -> dict[str, OperatorEpsilon]:
    """Operator ε on the projections (2-D, per frame) and the reconstruction (3-D)."""
    from rawsigma.analysis.scoring.operators import operator_epsilon

    proj, reps, dec, vol_raw, rep_vols, vols, _where = inputs
    report("operator ε projections", 0, 1)
    out = {
        "projections": operator_epsilon(
            proj.astype(np.float32), (r.astype(np.float32) for r in reps),
            {s: d.astype(np.float32) for s, d in dec.items()},
            sigmas=plan.sigmas, stack=True, domain="projections",
        )
    }  # fmt: skip
    report("operator ε projections", 1, 1)
    report("operator ε reconstruction", 0, 1)
    out["reconstruction"] = operator_epsilon(
        vol_raw, rep_vols, vols, sigmas=plan.sigmas, domain="reconstruction"
    )
    report("operator ε reconstruction", 1, 1)
    return out


def volume_store(proj: np.ndarray, plan: Any, workdir: Any) -> tuple[Any, dict]:
    """The volume store (in memory or chunked on disk) and the record of that choice."""
    from rawsigma.analysis.scoring.tomo_chunked import ChunkedVolumes, choose_path, default_slab
    from rawsigma.analysis.scoring.tomo_segment import MemoryVolumes

    mode = "on" if plan.slab is not None and plan.chunks == "auto" else plan.chunks
    chunked, why = choose_path(
        proj.shape, plan.n_replicas, len(plan.codecs), plan.operators, mode, plan.memory_budget
    )
    if not chunked:
        return MemoryVolumes(), {"path": "in memory", "why": why}
    slab = plan.slab or default_slab(proj.shape[2], proj.shape[0], plan.memory_budget)
    import tempfile
    from pathlib import Path

    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    # a fresh directory of its own (inside workdir): close() removes only that
    root = tempfile.mkdtemp(prefix="rawsigma-tomo-", dir=workdir)
    vs = ChunkedVolumes(root, slab)
    rec = {"path": f"chunked, slabs of {slab} slices on disk", "why": why, "slab": slab,
           "workdir": root}  # fmt: skip
    return vs, rec
