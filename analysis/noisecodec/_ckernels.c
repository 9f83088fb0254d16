/* The noise codec's hot kernels in C: the "pyramid" back end and the quantisers.
 *
 * A line-by-line port of the numba kernels of `pyramid.py` (train_tile, model_tile,
 * rans_encode, decode_tile), `fastpath.quantise_round` and `kernels.quantise_tile`,
 * producing the same bytes and pixels (the numba kernels stay the oracle and the
 * fallback; tests/test_noisecodec_ckernels.py compares them). Built at install
 * (setup.py, optional: without a compiler rawsigma uses the numba kernels).
 *
 * Arguments are contiguous buffers (buffer protocol, no numpy headers at build time);
 * `ckernels.py` is the Python side that checks dtypes and shapes. Floating point:
 * no contraction into FMA (-ffp-contract=off) and IEEE operations in the order of the
 * Python source, so results are bit-identical to numba's (which never fuses either).
 * Every kernel releases the GIL (tiles run in threads).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The kernels live in csrc/, one part per concern, included here in this order: they
 * form one translation unit (static functions, inlining and AVX2 clones as in one file). */
#include "csrc/base.h"
#include "csrc/pyramid.h"
#include "csrc/quantise.h"
#include "csrc/decode.h"
#include "csrc/decode16.h"
#include "csrc/encode16.h"
#include "csrc/glue.h"
#include "csrc/fit.h"
#include "csrc/crc.h"

/* v_min(stack u16 (n, h, w), off f32 (h, w), gain f32 (h, w)) -> min of (x - off) / gain */
static PyObject *py_v_min(PyObject *self, PyObject *args)
{
    PyObject *o[3];
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "OOO", &o[0], &o[1], &o[2])) return NULL;
    Py_ssize_t nx, no, ng;
    const uint16_t *x = get(&B, o[0], 'u', 2, 0, "stack", &nx);
    const float *off = x ? get(&B, o[1], 'f', 4, 0, "off", &no) : NULL;
    const float *gain = off ? get(&B, o[2], 'f', 4, 0, "gain", &ng) : NULL;
    if (!gain) goto fail;
    NEED(no == ng && no > 0 && nx % no == 0, "sizes");
    double best;
    Py_BEGIN_ALLOW_THREADS
    best = v_min(x, nx / no, no, off, gain);
    Py_END_ALLOW_THREADS
    release(&B);
    return PyFloat_FromDouble(best);
fail:
    release(&B);
    return NULL;
}

/* class_moments(acc i64 (N_SETS, N_ACT_CLS, LVL_MAX + 1, N_MOM), luts u8 (N_SETS,
 * LVL_MAX + 1), out i64 (N_SETS, N_ACT_CLS, N_LVL_CLS, N_MOM)): out = the level moments
 * summed per level class (`pyramid._class_moments`, exact integers) */
static PyObject *py_class_moments(PyObject *self, PyObject *args)
{
    PyObject *o[3];
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "OOO", &o[0], &o[1], &o[2])) return NULL;
    Py_ssize_t na, nl, no;
    const int64_t *acc = get(&B, o[0], 'i', 8, 0, "acc", &na);
    const uint8_t *luts = acc ? get(&B, o[1], 'u', 1, 0, "luts", &nl) : NULL;
    int64_t *out = luts ? get(&B, o[2], 'i', 8, 1, "out", &no) : NULL;
    if (!out) goto fail;
    NEED(na == (Py_ssize_t)N_SETS * N_ACT_CLS * (LVL_MAX + 1) * N_MOM
         && nl == N_SETS * (LVL_MAX + 1) && no == N_SETS * N_ACT_CLS * N_LVL_CLS * N_MOM, "sizes");
    int bad = 0;
    for (Py_ssize_t i = 0; i < nl; i++) bad |= luts[i] >= N_LVL_CLS;
    NEED(!bad, "level class out of range");
    memset(out, 0, (size_t)no * sizeof(int64_t));
    for (int s = 0; s < N_SETS; s++)
        for (int a = 0; a < N_ACT_CLS; a++) {
            const int64_t *src = acc + ((int64_t)s * N_ACT_CLS + a) * (LVL_MAX + 1) * N_MOM;
            int64_t *dst = out + ((int64_t)s * N_ACT_CLS + a) * N_LVL_CLS * N_MOM;
            for (int l = 0; l <= LVL_MAX; l++) {
                int64_t *d = dst + (int64_t)luts[s * (LVL_MAX + 1) + l] * N_MOM;
                for (int m = 0; m < N_MOM; m++) d[m] += src[l * N_MOM + m];
            }
        }
    release(&B);
    Py_RETURN_NONE;
fail:
    release(&B);
    return NULL;
}

/* split_class_tables(cts u16 (N_SETS, 64 · 256), out u32 (sizeof classtab / 4)): the
 * separable form model_tile takes instead of cts (ValueError if not separable) */
static PyObject *py_split_class_tables(PyObject *self, PyObject *args)
{
    PyObject *o[2];
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "OO", &o[0], &o[1])) return NULL;
    Py_ssize_t nc, no;
    const uint16_t *cts = get(&B, o[0], 'u', 2, 0, "cts", &nc);
    uint32_t *out = cts ? get(&B, o[1], 'u', 4, 1, "out", &no) : NULL;
    if (!out) goto fail;
    NEED(nc == N_SETS * (ACT_MAX + 1) * 256 && no * 4 == (Py_ssize_t)sizeof(classtab), "sizes");
    classtab tabs;
    NEED(!split_tables(cts, &tabs), "class tables not separable");
    memcpy(out, &tabs, sizeof tabs);
    release(&B);
    Py_RETURN_NONE;
fail:
    release(&B);
    return NULL;
}

static PyObject *py_constants(PyObject *self, PyObject *noargs)
{
    return Py_BuildValue(
        "{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "HALO",
        HALO, "WB", WB, "N_ACT_CLS", N_ACT_CLS, "N_LVL_CLS", N_LVL_CLS, "FRAC_BITS", FRAC_BITS,
        "N_ACT_CTX", N_ACT_CTX, "N_LEVEL_GROUPS", N_LEVEL_GROUPS, "N_STAGE", N_STAGE,
        "N_WEIGHT_LEVELS", N_WEIGHT_LEVELS, "N_W", N_W, "TOP_ROWS", TOP_ROWS, "LANES", LANES,
        "TAB_BITS", TAB_BITS, "ACT_MAX", ACT_MAX, "LVL_MAX", LVL_MAX, "N_MOM", N_MOM,
        "LANE_SHIFT", LANE_SHIFT, "RMAX", RMAX, "RANS_L", (int)RANS_L, "WL", WL);
}

static PyMethodDef methods[] = {
    {"n_levels", py_n_levels, METH_VARARGS, "Number of splits of an h x w tile."},
    {"train_tile", py_train_tile, METH_VARARGS, "pyramid.train_tile in C."},
    {"planes_size", py_planes_size, METH_VARARGS, "int16 elements of a tile's planes."},
    {"model_tile", py_model_tile, METH_VARARGS, "pyramid.model_tile in C."},
    {"rans_encode", py_rans_encode, METH_VARARGS, "pyramid.rans_encode in C."},
    {"dec_prepare", py_dec_prepare, METH_VARARGS, "The decoder's tables of a stream."},
    {"decode_tile", py_decode_tile, METH_VARARGS, "pyramid.decode_tile in C."},
    {"rans_encode16", py_rans_encode16, METH_VARARGS, "pyramid.rans_encode16 in C."},
    {"decode_tile16", py_decode_tile16, METH_VARARGS, "pyramid.decode_tile16 in C."},
    {"crc32", py_crc32, METH_VARARGS, "zlib.crc32 of a buffer (PCLMULQDQ), or None."},
    {"dec_tables", py_dec_tables, METH_VARARGS, "The decoder's tables from a stream's sections."},
    {"quantise_round", py_quantise_round, METH_VARARGS, "fastpath.quantise_round in C."},
    {"quantise_tile", py_quantise_tile, METH_VARARGS, "kernels.quantise_tile in C."},
    {"v_min", py_v_min, METH_VARARGS, "Smallest (x - off) / gain of a stack."},
    {"class_moments", py_class_moments, METH_VARARGS, "pyramid._class_moments in C."},
    {"split_class_tables", py_split_class_tables, METH_VARARGS, "Separable class tables."},
    {"solve_weights", py_solve_weights, METH_VARARGS, "pyramid.solve_weights in C."},
    {"encoder_tables", py_encoder_tables, METH_VARARGS, "pyramid.encoder_tables in C."},
    {"encoder_entries", py_encoder_entries, METH_VARARGS, "encoder_tables + rANS entries."},
    {"constants", py_constants, METH_NOARGS, "The format constants compiled in."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_ckernels",
                                    "The noise codec's hot kernels in C (see ckernels.py).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__ckernels(void)
{
    static int arena_ready = 0;
    if (!arena_ready) {
        if (arena_init()) return PyErr_NoMemory();
        arena_ready = 1;
    }
#ifdef HAVE_AVX2
    perm8_init();
    enc_tables_init();
#endif
    xl_init();
    crc_init();
    return PyModule_Create(&moddef);
}
