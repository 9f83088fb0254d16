"""Format-5 test streams built from the kernels' encoder side (shared by the C decoder tests).

Importable from the test modules through pytest's ``pythonpath = ["tests"]`` and from
their subprocesses by putting this folder on ``sys.path``.
"""

from __future__ import annotations

import numpy as np
from rawsigma.analysis.noisecodec import pyramid as PY


def trained_weights(codes: np.ndarray, kernels) -> tuple[list, np.ndarray]:
    """The level classes and weights trained on ``codes`` by ``kernels``' `train_tile`."""
    acc = PY.new_moments()
    kernels.train_tile(codes, PY.n_levels(*codes.shape), acc)
    return PY.solve_weights(acc)


def coded_tile(codes: np.ndarray, wts, cts, kernels, rans) -> tuple:
    """``codes`` modelled by ``kernels`` and rANS-coded by ``rans.rans_encode16``, as
    ``(words, esc, tab)``: the words, the escaped codes and the decode table."""
    n = codes.size
    syms, ctxs = np.empty(n, np.uint8), np.empty(n, np.uint16)
    esc, hist = np.empty(n, np.int32), np.zeros(PY.N_CTX_ALL * PY.N_SYM, np.int64)
    ne = kernels.model_tile(codes, PY.n_levels(*codes.shape), wts, cts, syms, ctxs, esc, hist)
    phys = PY.normalise(hist.reshape(PY.N_CTX_ALL, PY.N_SYM))
    out = np.zeros(n + 2 * PY.WL + 16, np.uint16)
    words = out[: rans.rans_encode16(syms, ctxs, phys, PY.cumulative(phys), out)].copy()
    return words, esc[:ne], PY.decode_table(phys)
