/* _ckernels.c, part: the Python glue of the tile kernels.
 * Not a header: included once, in order, by _ckernels.c (one translation unit, so
 * that the kernels inline across parts exactly as before the split). */

/* ================================================================== Python glue */
#define MAXBUF 16
typedef struct {
    Py_buffer b[MAXBUF];
    int n;
} bufs;

static void release(bufs *B)
{
    for (int i = 0; i < B->n; i++) PyBuffer_Release(&B->b[i]);
    B->n = 0;
}

/* kind of a buffer format: 'i' signed, 'u' unsigned, 'f' float */
static char fmt_kind(const char *f)
{
    if (!f) return 'u';
    while (*f == '@' || *f == '=' || *f == '<' || *f == '!') f++;
    if (strchr("bhilqn", *f)) return 'i';
    if (strchr("BHILQN?", *f)) return 'u';
    if (strchr("efd", *f)) return 'f';
    return 0;
}

/* contiguous buffer of `o` with element kind and size; NULL (exception set) otherwise */
static void *get(bufs *B, PyObject *o, char kind, int size, int writable, const char *name,
                 Py_ssize_t *count)
{
    Py_buffer *b = &B->b[B->n];
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, b, flags) < 0) return NULL;
    B->n++;
    if (b->itemsize != size || fmt_kind(b->format) != kind) {
        PyErr_Format(PyExc_TypeError, "_ckernels: argument %s must be %c%d (got format %s)",
                     name, kind, 8 * size, b->format ? b->format : "B");
        return NULL;
    }
    if (count) *count = b->len / size;
    return b->buf;
}

static int shape2(bufs *B, int64_t *h, int64_t *w)
{
    Py_buffer *b = &B->b[B->n - 1];
    if (b->ndim != 2) {
        PyErr_SetString(PyExc_ValueError, "_ckernels: expected a 2-D array");
        return -1;
    }
    *h = b->shape[0];
    *w = b->shape[1];
    return 0;
}

#define NEED(cond, msg)                                                                           \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            PyErr_SetString(PyExc_ValueError, "_ckernels: " msg);                                 \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)

static PyObject *py_n_levels(PyObject *self, PyObject *args)
{
    long long h, w;
    if (!PyArg_ParseTuple(args, "LL", &h, &w)) return NULL;
    return PyLong_FromLong(n_levels(h, w));
}

/* The encoder's planes of a tile in a caller's int16 buffer, built once by train_tile
 * (keep) and read by model_tile (planes): pyramid_alloc_with's allocator returns the
 * buffer set by this thread (and records the size it asks for) */
#if defined(_WIN32)
static __declspec(thread) void *given_buf;
static __declspec(thread) size_t given_size;
#else
static __thread void *given_buf;
static __thread size_t given_size;
#endif

static void *given(size_t n)
{
    given_size = n;
    return given_buf;
}

/* bytes of the planes (with level 0) of an h x w tile; 0 if it has too many levels */
static size_t planes_bytes(int64_t h, int64_t w)
{
    pyramid p;
    given_buf = NULL;
    given_size = 0;
    pyramid_alloc_with(&p, h, w, 0, given); /* -1: no memory given, the size recorded */
    return given_size;
}

static int pyramid_at(pyramid *p, int64_t h, int64_t w, void *mem)
{
    given_buf = mem;
    int r = pyramid_alloc_with(p, h, w, 0, given);
    given_buf = NULL;
    return r;
}

/* planes_size(h, w) -> int16 elements of a tile's planes (train_tile's keep) */
static PyObject *py_planes_size(PyObject *self, PyObject *args)
{
    long long h, w;
    if (!PyArg_ParseTuple(args, "LL", &h, &w)) return NULL;
    size_t n = h > 0 && w > 0 ? planes_bytes(h, w) : 0;
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "_ckernels: no planes for this tile shape");
        return NULL;
    }
    return PyLong_FromSize_t(n / sizeof(int16_t));
}

/* the optional planes buffer (None: absent) of a tile, of planes_size elements */
static int16_t *get_planes(bufs *B, PyObject *o, int64_t h, int64_t w, int writable, int *bad)
{
    *bad = 0;
    if (o == NULL || o == Py_None) return NULL;
    Py_ssize_t n;
    int16_t *d = get(B, o, 'i', 2, writable, "planes", &n);
    if (d && (size_t)n * sizeof(int16_t) != planes_bytes(h, w)) {
        PyErr_SetString(PyExc_ValueError, "_ckernels: planes size");
        d = NULL;
    }
    *bad = d == NULL;
    return d;
}

/* train_tile(codes int32 (h, w), acc int64 flat, act_lut int32[, row_step = 4[, sparse = 0
 * [, keep]]]): keep, an int16 array of planes_size(h, w) or None, receives the tile's
 * planes for model_tile */
static PyObject *py_train_tile(PyObject *self, PyObject *args)
{
    PyObject *oc, *oa, *ol, *ok = NULL;
    int row_step = 4, sparse = 0, bad;
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "OOO|ipO", &oc, &oa, &ol, &row_step, &sparse, &ok)) return NULL;
    if (row_step < 1) {
        PyErr_SetString(PyExc_ValueError, "_ckernels: row_step must be >= 1");
        return NULL;
    }
    Py_ssize_t nacc, nlut;
    int64_t h, w;
    const int32_t *codes = get(&B, oc, 'i', 4, 0, "codes", NULL);
    if (!codes || shape2(&B, &h, &w)) goto fail;
    int64_t *acc = get(&B, oa, 'i', 8, 1, "acc", &nacc);
    if (!acc) goto fail;
    const int32_t *lut = get(&B, ol, 'i', 4, 0, "act_lut", &nlut);
    if (!lut) goto fail;
    NEED(nacc == (Py_ssize_t)N_SETS * N_ACT_CLS * (LVL_MAX + 1) * N_MOM, "acc size");
    NEED(nlut == ACT_MAX + 1, "act_lut size");
    int16_t *keep = get_planes(&B, ok, h, w, 1, &bad);
    if (bad) goto fail;
#ifdef HAVE_AVX2
    if (use_avx2 < 0) use_avx2 = avx2_wanted();
#endif
    pyramid p;
    rowbufs rb;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    if (keep ? pyramid_at(&p, h, w, keep) : pyramid_alloc(&p, h, w, 0)) err = 1;
    else if (rows_alloc(&rb, w)) {
        if (!keep) free(p.mem);
        err = 1;
    } else {
        int vec = build_planes_enc(&p, codes, h, w);
#ifdef HAVE_AVX2
        vec = vec && use_avx2;
#else
        vec = 0;
#endif
        train_tile(&p, &rb, acc, lut, row_step, sparse, vec);
        if (!keep) free(p.mem);
        free(rb.mem);
    }
    Py_END_ALLOW_THREADS
    release(&B);
    if (err) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail:
    release(&B);
    return NULL;
}

/* model_tile(codes, wts int32 (N_SETS·256), cts uint16, syms u8, ctxs u16, esc i32,
 * hist i64 or u32[, planes]) -> number of escapes; planes: None or train_tile's keep of
 * the same codes (the planes are not built again) */
static PyObject *py_model_tile(PyObject *self, PyObject *args)
{
    PyObject *o[8] = {NULL};
    bufs B = {.n = 0};
    int bad;
    if (!PyArg_ParseTuple(args, "OOOOOOO|O", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6],
                          &o[7]))
        return NULL;
    Py_ssize_t nw, nc, ns, nx, ne, nh;
    int64_t h, w;
    const int32_t *codes = get(&B, o[0], 'i', 4, 0, "codes", NULL);
    if (!codes || shape2(&B, &h, &w)) goto fail;
    const int32_t *wts = get(&B, o[1], 'i', 4, 0, "wts", &nw);
    /* cts: the class tables (uint16), or their separable form from split_class_tables
     * (uint32 ca then cl: checked once per frame instead of once per tile) */
    int csize = 2;
    Py_buffer peek;
    if (PyObject_GetBuffer(o[2], &peek, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0) {
        csize = peek.itemsize == 4 ? 4 : 2;
        PyBuffer_Release(&peek);
    } else {
        PyErr_Clear(); /* reported by get() */
    }
    const void *cts = wts ? get(&B, o[2], 'u', csize, 0, "cts", &nc) : NULL;
    /* ctxs None: syms is a uint16 array of histogram cells (`model_tile`, format 5) */
    const int cellmode = o[4] == Py_None;
    uint8_t *syms = cts ? get(&B, o[3], 'u', cellmode ? 2 : 1, 1, cellmode ? "cells" : "syms", &ns)
                        : NULL;
    uint16_t *ctxs = syms && !cellmode ? get(&B, o[4], 'u', 2, 1, "ctxs", &nx) : NULL;
    if (cellmode && syms) nx = ns;
    int32_t *esc = ctxs || (syms && cellmode) ? get(&B, o[5], 'i', 4, 1, "esc", &ne) : NULL;
    /* hist: int64 (N_CTX_ALL · N_SYM, added to), or the kernel's own two uint32
     * histograms (2 · N_CTX_ALL · N_SYM: even and odd pixels, summed by the caller) that
     * the tiles of a frame share (no zeroed copy and sum per tile) */
    int hsize = 8;
    if (esc && PyObject_GetBuffer(o[6], &peek, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0) {
        hsize = peek.itemsize == 4 ? 4 : 8;
        PyBuffer_Release(&peek);
    } else {
        PyErr_Clear(); /* reported by get() */
    }
    void *hist = esc ? get(&B, o[6], hsize == 4 ? 'u' : 'i', hsize, 1, "hist", &nh) : NULL;
    if (!hist) goto fail;
    NEED(nw == N_SETS * N_CLASS * N_W, "model size");
    NEED(ns >= h * w && nx >= h * w && ne >= h * w
             && nh == (hsize == 4 ? 2 : 1) * N_CTX_ALL * N_SYM, "output size");
    classtab tabs;
    if (B.b[2].itemsize == 4) {
        NEED(nc * 4 == (Py_ssize_t)sizeof(classtab), "split class tables size");
        memcpy(&tabs, cts, sizeof tabs);
    } else {
        NEED(nc == N_SETS * (ACT_MAX + 1) * 256, "model size");
        NEED(!split_tables((const uint16_t *)cts, &tabs), "class tables not separable");
    }
    pyramid p;
    rowbufs rb;
    int64_t n_esc = -1;
    NEED(h * w < ((int64_t)1 << 32), "tile too large");
    int16_t *built = get_planes(&B, o[7], h, w, 0, &bad);
    if (bad) goto fail;
#ifdef HAVE_AVX2
    if (use_avx2 < 0) use_avx2 = avx2_wanted();
#endif
    Py_BEGIN_ALLOW_THREADS
    /* a 32-bit histogram: a stage's contexts stay in L1 (added to hist at the end) */
    uint32_t *h32 = hsize == 4 ? (uint32_t *)hist
                               : (uint32_t *)calloc(2 * N_CTX_ALL * N_SYM, sizeof(uint32_t));
    if (h32 && !(built ? pyramid_at(&p, h, w, built) : pyramid_alloc(&p, h, w, 0))) {
        if (!rows_alloc(&rb, w)) {
            if (!built) build_planes_enc(&p, codes, h, w);
            n_esc = model_tile(&p, &rb, wts, &tabs, syms, ctxs, esc, h32);
            for (int64_t i = 0; hsize == 8 && i < N_CTX_ALL * N_SYM; i++)
                ((int64_t *)hist)[i] += (int64_t)h32[i] + h32[N_CTX_ALL * N_SYM + i];
            free(rb.mem);
        }
        if (!built) free(p.mem);
    }
    if (hsize == 8) free(h32);
    Py_END_ALLOW_THREADS
    release(&B);
    if (n_esc < 0) return PyErr_NoMemory();
    return PyLong_FromLongLong(n_esc);
fail:
    release(&B);
    return NULL;
}

#define BAD_SYMBOL "_ckernels: a symbol out of range or of frequency 0"

/* The encoder's packed table (freq << 16 | cum per context row and symbol), after checking
 * that every entry lies in [0, TAB] and (with check) that every symbol has a context row
 * and a non-zero frequency (`rans_encode16_avx2` checks them itself). NULL with a Python
 * error set otherwise. */
static uint32_t *symbol_table(const uint8_t *syms, const uint16_t *ctxs, Py_ssize_t ns,
                              const int64_t *freq, const int64_t *cum, Py_ssize_t nf, int check)
{
    int64_t nctx = nf / N_SYM;
    int bad = 0;
    for (Py_ssize_t i = 0; i < nf; i++) bad |= freq[i] < 0 || freq[i] > TAB || cum[i] < 0 || cum[i] > TAB;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "_ckernels: freq and cum must lie in [0, TAB]");
        return NULL;
    }
    uint32_t *fc = (uint32_t *)malloc((size_t)nf * sizeof(uint32_t));
    if (!fc) return (uint32_t *)PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < nf; i++) fc[i] = (uint32_t)(freq[i] << 16 | cum[i]);
    for (Py_ssize_t t = 0; t < ns && !bad && check; t++) {
        int64_t g = ctxs[t] & ((1 << LANE_SHIFT) - 1);
        bad = g >= nctx || syms[t] >= N_SYM || (fc[g * N_SYM + syms[t]] >> 16) == 0;
    }
    if (bad) {
        free(fc);
        PyErr_SetString(PyExc_ValueError, BAD_SYMBOL);
        return NULL;
    }
    return fc;
}

/* rans_encode(syms u8, ctxs u16, freq i64 (nctx, N_SYM), cum i64, out u16 (LANES, cap),
 * lens i64 (LANES)) */
static PyObject *py_rans_encode(PyObject *self, PyObject *args)
{
    PyObject *o[6];
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "OOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5])) return NULL;
    Py_ssize_t ns, nx, nf, nc, no, nl;
    int64_t rows, cap;
    const uint8_t *syms = get(&B, o[0], 'u', 1, 0, "syms", &ns);
    const uint16_t *ctxs = syms ? get(&B, o[1], 'u', 2, 0, "ctxs", &nx) : NULL;
    const int64_t *freq = ctxs ? get(&B, o[2], 'i', 8, 0, "freq", &nf) : NULL;
    const int64_t *cum = freq ? get(&B, o[3], 'i', 8, 0, "cum", &nc) : NULL;
    uint16_t *out = cum ? get(&B, o[4], 'u', 2, 1, "out", &no) : NULL;
    if (!out || shape2(&B, &rows, &cap)) goto fail;
    int64_t *lens = get(&B, o[5], 'i', 8, 1, "lens", &nl);
    if (!lens) goto fail;
    NEED(nx == ns && nf == nc && nf % N_SYM == 0 && rows == LANES && nl == LANES, "sizes");
    /* every lane at most cap - 2 words */
    NEED(cap >= 2, "freq and cum must lie in [0, TAB]");
    uint32_t *fc = symbol_table(syms, ctxs, ns, freq, cum, nf, 1);
    if (!fc) goto fail;
    int bad;
    Py_BEGIN_ALLOW_THREADS
    bad = rans_encode(syms, ctxs, ns, fc, out, cap, lens);
    Py_END_ALLOW_THREADS
    free(fc);
    release(&B);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "_ckernels: rans_encode: out too small");
        return NULL;
    }
    Py_RETURN_NONE;
fail:
    release(&B);
    return NULL;
}

/* quantise_round(x u16 (h, w), off f32, gain f32, codes i32, inv_step, c0, kp f64[4][,
 * with_min]) -> top, or (top, smallest float32 v of the pass) */
static PyObject *py_quantise_round(PyObject *self, PyObject *args)
{
    PyObject *o[5];
    double inv_step, c0;
    bufs B = {.n = 0};
    PyObject *with_min = NULL;
    if (!PyArg_ParseTuple(args, "OOOOddO|O", &o[0], &o[1], &o[2], &o[3], &inv_step, &c0, &o[4],
                          &with_min))
        return NULL;
    Py_ssize_t nx, no, ng, nc, nk;
    int64_t h = 1, w = 0;
    const uint16_t *x = get(&B, o[0], 'u', 2, 0, "x", &nx);
    if (x && B.b[0].ndim == 2) shape2(&B, &h, &w);
    const float *off = x ? get(&B, o[1], 'f', 4, 0, "off", &no) : NULL;
    const float *gain = off ? get(&B, o[2], 'f', 4, 0, "gain", &ng) : NULL;
    int32_t *codes = gain ? get(&B, o[3], 'i', 4, 1, "codes", &nc) : NULL;
    const double *kp = codes ? get(&B, o[4], 'f', 8, 0, "kp", &nk) : NULL;
    if (!kp) goto fail;
    /* gain: the map of x, or (x 2-D, w > 0) one row for every row (uniform maps: no 4 B/px
     * read; the same values, the same codes) */
    int row_gain = ng != nx && w > 0 && ng == w;
    NEED(no == nx && (ng == nx || row_gain) && nc == nx && nk == 4, "sizes");
    int32_t top = 0;
    float vmin = INFINITY;
    Py_BEGIN_ALLOW_THREADS
    if (!row_gain) top = quantise_round(x, off, gain, codes, nx, inv_step, c0, kp, &vmin);
    for (int64_t i = 0; row_gain && i < h; i++) {
        float v;
        int32_t t = quantise_round(x + i * w, off + i * w, gain, codes + i * w, w, inv_step, c0,
                                   kp, &v);
        top = t > top ? t : top;
        vmin = v < vmin ? v : vmin;
    }
    Py_END_ALLOW_THREADS
    release(&B);
    if (PyTuple_GET_SIZE(args) > 7 && PyObject_IsTrue(PyTuple_GET_ITEM(args, 7)))
        return Py_BuildValue("(ld)", (long)top, (double)vmin);
    return PyLong_FromLong(top);
fail:
    release(&B);
    return NULL;
}

/* quantise_tile(x, off, gain, codes, step, c0, dither, seed, index0, edges, sum_e, cnt, kp) */
static PyObject *py_quantise_tile(PyObject *self, PyObject *args)
{
    PyObject *o[8];
    double step, c0;
    int dither;
    unsigned long long seed;
    long long index0;
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "OOOOddpKLOOOO", &o[0], &o[1], &o[2], &o[3], &step, &c0, &dither,
                          &seed, &index0, &o[4], &o[5], &o[6], &o[7]))
        return NULL;
    Py_ssize_t nx, no, ng, nc, ne, ns, nn, nk;
    int64_t h, w;
    const uint16_t *x = get(&B, o[0], 'u', 2, 0, "x", &nx);
    if (!x || shape2(&B, &h, &w)) goto fail;
    const float *off = get(&B, o[1], 'f', 4, 0, "off", &no);
    const float *gain = off ? get(&B, o[2], 'f', 4, 0, "gain", &ng) : NULL;
    int32_t *codes = gain ? get(&B, o[3], 'i', 4, 1, "codes", &nc) : NULL;
    const double *edges = codes ? get(&B, o[4], 'f', 8, 0, "edges", &ne) : NULL;
    double *sum_e = edges ? get(&B, o[5], 'f', 8, 1, "sum_e", &ns) : NULL;
    int64_t *cnt = sum_e ? get(&B, o[6], 'i', 8, 1, "cnt", &nn) : NULL;
    const double *kp = cnt ? get(&B, o[7], 'f', 8, 0, "kp", &nk) : NULL;
    if (!kp) goto fail;
    NEED(no == nx && ng == nx && nc == nx && nk == 4 && nn >= ns, "sizes");
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = quantise_tile(x, off, gain, codes, h, w, step, c0, dither, (uint64_t)seed, index0,
                        edges, ne, sum_e, cnt, ns, kp);
    Py_END_ALLOW_THREADS
    release(&B);
    if (err) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail:
    release(&B);
    return NULL;
}

/* dec_prepare(cts u16, lut u8, fc u32, rm u16) -> bytearray (`dectables`), or None when
 * the tables are not consistent (a corrupted stream) */
static PyObject *py_dec_prepare(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "OOOO", &o[0], &o[1], &o[2], &o[3])) return NULL;
    Py_ssize_t nc, nlut, nfc, nrm;
    const uint16_t *cts = get(&B, o[0], 'u', 2, 0, "cts", &nc);
    const uint8_t *lut = cts ? get(&B, o[1], 'u', 1, 0, "lut", &nlut) : NULL;
    const uint32_t *fc = lut ? get(&B, o[2], 'u', 4, 0, "fc", &nfc) : NULL;
    const uint16_t *rm = fc ? get(&B, o[3], 'u', 2, 0, "rm", &nrm) : NULL;
    if (!rm) goto fail;
    NEED(nc == N_SETS * (ACT_MAX + 1) * 256, "model size");
    NEED(nrm == N_CTX_ALL && nfc % 64 == 0 && nlut == (nfc / 64) * TAB, "table size");
    int64_t ntab = nfc / 64;
    PyObject *res = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)DECTAB_BYTES(ntab));
    if (!res) goto fail;
    dectables *D = (dectables *)PyByteArray_AS_STRING(res);
    memset(D, 0, sizeof(dectables)); /* unused prediction-form steps: defined bytes */
    D->ntab = ntab;
    if (split_tables(cts, &D->cls)) {
        Py_DECREF(res);
        NEED(0, "class tables not separable");
    }
    for (int m = 0; m < N_SETS; m++) pred_form(&D->cls, m, &D->pf[m]);
    int sane = 1;
    for (int i = 0; i < N_CTX_ALL; i++) {
        sane &= rm[i] < ntab;
        D->rms[i] = (uint32_t)(rm[i] < ntab ? rm[i] : 0) << TAB_BITS;
    }
    /* the step of `pyramid._dec`: x' = f · (x >> TAB_BITS) + slot - cum, for the symbol
     * s = lut[slot]: here by runs of slots, checking that lut holds each run */
    for (int64_t g = 0; g < ntab && sane; g++) {
        const uint8_t *lt = lut + g * TAB;
        uint32_t *tg = D->tab + g * TAB;
        uint32_t slot = 0;
        while (slot < TAB && sane) {
            uint32_t s = lt[slot], e = s < 64 ? fc[g * 64 + s] : 0;
            uint32_t f = e >> 16, cum = e & 0xFFFF;
            sane &= s < 64 && f >= 1 && cum == slot && cum + f <= TAB;
            if (!sane) break;
            uint32_t v = f << 16 | s << TAB_BITS, bad = 0;
            for (uint32_t k = 0; k < f; k++) {
                tg[slot + k] = v | k;
                bad |= lt[slot + k] != s;
            }
            sane &= !bad;
            slot += f;
        }
    }
    if (sane) compact_tables(D);
    release(&B);
    if (!sane) {
        Py_DECREF(res);
        Py_RETURN_NONE;
    }
    return res;
fail:
    release(&B);
    return NULL;
}

/* The dequantisation buffers of both decode wrappers, o = (off, gain, recon, kp), into d:
 * off a (h, w) map, gain a map or one row (`dqargs` gstride), kp 4 values. The buffers
 * stay in B; 0, or -1 with a ValueError set. */
static int get_dequantisation(bufs *B, PyObject **o, int64_t h, int64_t w, dqargs *d)
{
    Py_ssize_t noff, ngain, nrec, nk;
    const float *off = get(B, o[0], 'f', 4, 0, "off", &noff);
    const float *gain = off ? get(B, o[1], 'f', 4, 0, "gain", &ngain) : NULL;
    const double *recon = gain ? get(B, o[2], 'f', 8, 0, "recon", &nrec) : NULL;
    const double *kp = recon ? get(B, o[3], 'f', 8, 0, "kp", &nk) : NULL;
    if (!kp) goto fail;
    NEED(nk == 4 && noff == h * w, "sizes");
    NEED(ngain == h * w || ngain == w, "gain: a map or one row");
    d->off = off;
    d->gain = gain;
    d->recon = recon;
    d->nrec = nrec;
    d->kp = kp;
    d->gstride = ngain == h * w ? w : 0;
    return 0;
fail:
    return -1;
}

/* decode_tile(prep bytearray, words u16, starts i64[4], ends i64[4], esc i64, ebeg, eend,
 * wts i32, out u16 (h, w), off f32, gain f32 (h, w, or one row), recon f64, step, c0, dither, seed, index0,
 * max_adu, analytic, kp f64[4]) -> (ok, ne) */
static PyObject *py_decode_tile(PyObject *self, PyObject *args)
{
    PyObject *o[11];
    long long ebeg, eend, index0;
    unsigned long long seed;
    double step, c0, max_adu;
    int dither, analytic;
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "OOOOOLLOOOOOddpKLdpO", &o[0], &o[1], &o[2], &o[3], &o[4],
                          &ebeg, &eend, &o[5], &o[6], &o[7], &o[8], &o[9], &step, &c0, &dither,
                          &seed, &index0, &max_adu, &analytic, &o[10]))
        return NULL;
    Py_ssize_t nprep, nwd, nst, nen, nes, nw;
    int64_t h, w;
    const uint8_t *prep = get(&B, o[0], 'u', 1, 0, "prep", &nprep);
    const uint16_t *words = prep ? get(&B, o[1], 'u', 2, 0, "words", &nwd) : NULL;
    const int64_t *starts = words ? get(&B, o[2], 'i', 8, 0, "starts", &nst) : NULL;
    const int64_t *ends = starts ? get(&B, o[3], 'i', 8, 0, "ends", &nen) : NULL;
    const int64_t *esc = ends ? get(&B, o[4], 'i', 8, 0, "esc", &nes) : NULL;
    const int32_t *wts = esc ? get(&B, o[5], 'i', 4, 0, "wts", &nw) : NULL;
    uint16_t *out = wts ? get(&B, o[6], 'u', 2, 1, "out", NULL) : NULL;
    if (!out || shape2(&B, &h, &w)) goto fail;
    dqargs d = {.step = step, .c0 = c0, .dither = dither, .seed = (uint64_t)seed,
                .index0 = index0, .max_adu = max_adu, .analytic = analytic};
    if (get_dequantisation(&B, &o[7], h, w, &d)) goto fail;
    NEED(nst == LANES && nen == LANES, "sizes");
    NEED(nw == N_SETS * N_CLASS * N_W, "model size");
    const dectables *D = (const dectables *)prep;
    NEED(nprep >= (Py_ssize_t)sizeof(dectables)
             && nprep == (Py_ssize_t)DECTAB_BYTES(D->ntab),
         "prep: not from dec_prepare");
    /* lanes inside the words (the decoder reads up to w words past a lane's end before it
     * checks) */
    int sane = ebeg >= 0 && eend <= nes;
    for (int l = 0; l < LANES; l++)
        sane &= starts[l] >= 0 && ends[l] >= starts[l] && ends[l] + w + 2 <= nwd;
    if (!sane) { /* a corrupted tile: as an overrun */
        release(&B);
        return Py_BuildValue("(OL)", Py_False, ebeg);
    }
#ifdef HAVE_AVX2
    if (use_avx2 < 0) use_avx2 = avx2_wanted();
#endif
    dectab T = {D, words};
    int64_t ne;
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = decode_tile(&T, starts, ends, esc, ebeg, eend, wts, out, h, w, &d, &ne);
    Py_END_ALLOW_THREADS
    release(&B);
    if (ok < 0) return PyErr_NoMemory();
    return Py_BuildValue("(OL)", ok ? Py_True : Py_False, (long long)ne);
fail:
    release(&B);
    return NULL;
}

/* rans_encode16(syms u8, ctxs u16, freq i64 (nctx, N_SYM), cum i64, out u16) -> words
 * (or freq: uint32 entries freq << 16 | cum, cum None: made once for a frame's tiles)
 * (format 5: the stream in out[:words]) */
static PyObject *py_rans_encode16(PyObject *self, PyObject *args)
{
    PyObject *o[5];
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "OOOOO", &o[0], &o[1], &o[2], &o[3], &o[4])) return NULL;
    Py_ssize_t ns, nx, nf, nc, no;
    /* ctxs None: syms is the uint16 histogram cells of `model_tile` (freq: the entries) */
    const int cellmode = o[1] == Py_None;
    const uint8_t *syms = get(&B, o[0], 'u', cellmode ? 2 : 1, 0, cellmode ? "cells" : "syms", &ns);
    const uint16_t *ctxs = syms && !cellmode ? get(&B, o[1], 'u', 2, 0, "ctxs", &nx) : NULL;
    if (cellmode && syms) nx = ns;
    /* freq int64 and cum int64, or freq the uint32 entries freq << 16 | cum of the
     * frame's tiles (made once per frame by the caller; cum None) */
    int esize = 8;
    Py_buffer peek;
    const int have = ctxs || (syms && cellmode);
    if (have && PyObject_GetBuffer(o[2], &peek, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0) {
        esize = peek.itemsize == 4 ? 4 : 8;
        PyBuffer_Release(&peek);
    } else {
        PyErr_Clear(); /* reported by get() */
    }
    const void *freq = have ? get(&B, o[2], esize == 4 ? 'u' : 'i', esize, 0, "freq", &nf) : NULL;
    const int64_t *cum = freq && esize == 8 ? get(&B, o[3], 'i', 8, 0, "cum", &nc) : NULL;
    if (esize == 4) nc = nf;
    uint16_t *out = freq && (cum || esize == 4) ? get(&B, o[4], 'u', 2, 1, "out", &no) : NULL;
    if (!out) goto fail;
    NEED(nx == ns && nf == nc && nf % N_SYM == 0, "sizes");
    NEED(!cellmode || esize == 4, "cells need the entry table");
    int64_t len;
#ifdef HAVE_AVX2
    if (use_avx2 < 0) use_avx2 = avx2_wanted();
    int vec = use_avx2 && no >= ns + 2 * WL + 16; /* checks the symbols itself */
#else
    int vec = 0;
#endif
    uint32_t *fc = esize == 4 ? (uint32_t *)freq
                              : symbol_table(syms, ctxs, ns, freq, cum, nf, !vec);
    if (!fc) goto fail;
    for (int64_t t = 0, nctx = nf / N_SYM; esize == 4 && !vec && t < ns; t++) {
        const uint16_t *ce = (const uint16_t *)syms;
        int64_t g = cellmode ? ce[t] / N_SYM : ctxs[t] & ((1 << LANE_SHIFT) - 1);
        int64_t k = cellmode ? ce[t] : g * N_SYM + syms[t];
        if (g >= nctx || k - g * N_SYM >= N_SYM || (fc[k] >> 16) == 0) {
            PyErr_SetString(PyExc_ValueError, BAD_SYMBOL);
            goto fail;
        }
    }
    Py_BEGIN_ALLOW_THREADS
#ifdef HAVE_AVX2
    if (vec) len = rans_encode16_avx2(syms, ctxs, ns, fc, nf / N_SYM, out, no);
    else
#endif
        len = rans_encode16(syms, ctxs, ns, fc, out, no);
    Py_END_ALLOW_THREADS
    if (esize == 8) free(fc);
    release(&B);
    if (len == -2) {
        PyErr_SetString(PyExc_ValueError, BAD_SYMBOL);
        return NULL;
    }
    if (len < 0) {
        PyErr_SetString(PyExc_ValueError, "_ckernels: rans_encode16: out too small");
        return NULL;
    }
    return PyLong_FromLongLong((long long)len);
fail:
    release(&B);
    return NULL;
}

/* the arguments of `py_decode_tile16` (tuple a) into c, prep and the buffers into *D,
 * *words, *esc, *wts (kept in B): 0, 1 when the tile lies outside the words (a corrupted
 * tile: (False, ebeg)), -1 with an exception set */
static int tile16_args(PyObject *a, bufs *B, tilecall *c, const dectables **D,
                       const uint16_t **words, const int64_t **esc, const int32_t **wts)
{
    PyObject *o[9];
    long long start, end, ebeg, eend, index0;
    unsigned long long seed;
    double step, c0, max_adu;
    int dither, analytic;
    if (!PyTuple_Check(a)) {
        PyErr_SetString(PyExc_TypeError, "_ckernels: decode_tile16 arguments: a tuple");
        return -1;
    }
    if (!PyArg_ParseTuple(a, "OOLLOLLOOOOOddpKLdpO", &o[0], &o[1], &start, &end, &o[2], &ebeg,
                          &eend, &o[3], &o[4], &o[5], &o[6], &o[7], &step, &c0, &dither, &seed,
                          &index0, &max_adu, &analytic, &o[8]))
        return -1;
    Py_ssize_t nprep, nwd, nes, nw;
    const uint8_t *prep = get(B, o[0], 'u', 1, 0, "prep", &nprep);
    *words = prep ? get(B, o[1], 'u', 2, 0, "words", &nwd) : NULL;
    *esc = *words ? get(B, o[2], 'i', 8, 0, "esc", &nes) : NULL;
    *wts = *esc ? get(B, o[3], 'i', 4, 0, "wts", &nw) : NULL;
    c->out = *wts ? get(B, o[4], 'u', 2, 1, "out", NULL) : NULL;
    if (!c->out || shape2(B, &c->h, &c->w)) goto fail;
    c->d = (dqargs){.step = step, .c0 = c0, .dither = dither, .seed = (uint64_t)seed,
                    .index0 = index0, .max_adu = max_adu, .analytic = analytic};
    if (get_dequantisation(B, &o[5], c->h, c->w, &c->d)) goto fail;
    NEED(nw == N_SETS * N_CLASS * N_W, "model size");
    *D = (const dectables *)prep;
    NEED(nprep >= (Py_ssize_t)sizeof(dectables)
             && nprep == (Py_ssize_t)DECTAB_BYTES((*D)->ntab),
         "prep: not from dec_prepare");
    c->start = start, c->end = end, c->ebeg = ebeg, c->eend = eend, c->ne = ebeg, c->ok = 0;
    /* the stream inside the words, with room for the reads past its end before a row's
     * check (w words and one 8-word load) */
    return !(ebeg >= 0 && eend <= nes && start >= 0 && end >= start && end + c->w + 2 * WL <= nwd);
fail:
    return -1;
}

/* decode_tile16(prep, words u16, start, end, esc i64, ebeg, eend, wts i32, out u16 (h, w),
 * off f32, gain f32 (h, w, or one row of w for every row), recon f64, step, c0, dither, seed, index0, max_adu, analytic,
 * kp f64[4]) -> (ok, ne) */
static PyObject *py_decode_tile16(PyObject *self, PyObject *args)
{
    bufs B = {.n = 0};
    tilecall c;
    const dectables *D;
    const uint16_t *words;
    const int64_t *esc;
    const int32_t *wts;
    int r = tile16_args(args, &B, &c, &D, &words, &esc, &wts);
    if (r == 0) {
#ifdef HAVE_AVX2
        if (use_avx2 < 0) use_avx2 = avx2_wanted();
#endif
        dectab T = {D, words};
        Py_BEGIN_ALLOW_THREADS
        c.ok = decode_tile16(&T, c.start, c.end, esc, c.ebeg, c.eend, wts, c.out, c.h, c.w, &c.d,
                             &c.ne);
        Py_END_ALLOW_THREADS
    }
    release(&B);
    if (r < 0) return NULL;
    if (c.ok < 0) return PyErr_NoMemory();
    return Py_BuildValue("(OL)", c.ok ? Py_True : Py_False, (long long)c.ne);
}

/* dec_tables(planes u8, remap u8, luts u8, act_lut i32) -> bytearray (`dectables`), or
 * None when the tables are not consistent (a corrupted stream). The tables of
 * `dec_prepare` straight from a stream's sections, without `decode_table` and
 * `class_tables` in Python: planes are the decompressed "freq" section (the low bytes,
 * then the high bytes of the uint16 frequencies, N_SYM per physical table), remap the
 * "contexts" section (N_CTX_ALL uint16, little endian), luts the "levels" section
 * (N_SETS x 256 level classes) and act_lut `pyramid.ACT_LUT`. The checks are those of
 * `stream._decode_pyramid` (every table sums to TAB, contexts name a table, level
 * classes < N_LVL_CLS); the class tables are those of `class_tables` in the separable
 * form of `split_tables` (exact when the activity part does not decrease from activity
 * 0, which `ACT_LUT` guarantees: else None). */
/* the slot entries of the ntab tables (`py_dec_tables`) from the frequency byte planes pl
 * (nv frequencies): 1, or 0 when a table's frequencies do not sum to TAB */
static int slot_tables(uint32_t *tab, const uint8_t *pl, int64_t nv, int64_t ntab)
{
    for (int64_t g = 0; g < ntab; g++) {
        uint32_t *tg = tab + g * TAB, slot = 0;
        for (int s = 0; s < N_SYM; s++) {
            int64_t i = g * N_SYM + s;
            uint32_t f = (uint32_t)pl[i] | (uint32_t)pl[nv + i] << 8;
            if (slot + f > TAB) return 0;
            uint32_t v = f << 16 | (uint32_t)s << TAB_BITS;
            for (uint32_t k = 0; k < f; k++) tg[slot + k] = v | k;
            slot += f;
        }
        if (slot != TAB) return 0;
    }
    return 1;
}

#ifdef HAVE_AVX2
/* `slot_tables` 8 entries per store: a run of f slots is written in whole vectors, up to
 * 7 entries past its end, which the next run (or table) writes again; where the last
 * run of the last table would pass the end of tab, entry by entry. Per table ~49 runs,
 * most of a few slots: the runs, not the entries, cost. */
__attribute__((target("avx2"))) static int slot_tables_avx2(uint32_t *tab, const uint8_t *pl,
                                                           int64_t nv, int64_t ntab)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), eight = _mm256_set1_epi32(8);
    for (int64_t g = 0; g < ntab; g++) {
        uint32_t *tg = tab + g * TAB, slot = 0;
        for (int s = 0; s < N_SYM; s++) {
            int64_t i = g * N_SYM + s;
            uint32_t f = (uint32_t)pl[i] | (uint32_t)pl[nv + i] << 8;
            if (slot + f > TAB) return 0;
            uint32_t v = f << 16 | (uint32_t)s << TAB_BITS; /* v | k = v + k (k < TAB) */
            if (g + 1 < ntab || slot + ((f + 7) & ~7u) <= TAB) {
                __m256i x = _mm256_add_epi32(_mm256_set1_epi32((int)v), iota);
                for (uint32_t k = 0; k < f; k += 8, x = _mm256_add_epi32(x, eight))
                    _mm256_storeu_si256((__m256i *)(tg + slot + k), x);
            } else {
                for (uint32_t k = 0; k < f; k++) tg[slot + k] = v | k;
            }
            slot += f;
        }
        if (slot != TAB) return 0;
    }
    return 1;
}
#endif

static PyObject *py_dec_tables(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "OOOO", &o[0], &o[1], &o[2], &o[3])) return NULL;
    Py_ssize_t npl, nrm, nl, na;
    const uint8_t *pl = get(&B, o[0], 'u', 1, 0, "planes", &npl);
    const uint8_t *rmb = pl ? get(&B, o[1], 'u', 1, 0, "remap", &nrm) : NULL;
    const uint8_t *luts = rmb ? get(&B, o[2], 'u', 1, 0, "luts", &nl) : NULL;
    const int32_t *act = luts ? get(&B, o[3], 'i', 4, 0, "act_lut", &na) : NULL;
    if (!act) goto fail;
    NEED(na == ACT_MAX + 1, "act_lut size");
    const int64_t nv = npl / 2, ntab = nv / N_SYM;
    if (npl % 2 || nv % N_SYM || ntab < 1 || nrm != 2 * N_CTX_ALL
        || nl != N_SETS * (LVL_MAX + 1)) {
        release(&B);
        Py_RETURN_NONE;
    }
    PyObject *res = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)DECTAB_BYTES(ntab));
    if (!res) goto fail;
    dectables *D = (dectables *)PyByteArray_AS_STRING(res);
    memset(D, 0, sizeof(dectables)); /* unused prediction-form steps: defined bytes */
    D->ntab = ntab;
    int sane = 1;
    /* class tables: ct[a << 8 | l] = 4 (act_lut[a] & 0xFF) + 4 luts[l] + (act_lut[a] >> 8 << 8),
     * = ca[a] + cl[l] with ca[a] = ct[a << 8] - ct[0] (>= 0) and cl[l] = ct[l] */
    uint32_t A[ACT_MAX + 1];
    for (int a = 0; a <= ACT_MAX; a++) {
        uint32_t cls = (uint32_t)act[a] & 0xFF, cx = (uint32_t)act[a] >> 8;
        A[a] = 4 * cls + (cx << 8);
        sane &= act[a] >= 0 && cls + N_LVL_CLS - 1 < 64 && A[a] + 4 * (N_LVL_CLS - 1) < 65536;
    }
    for (int a = 0; a <= ACT_MAX; a++) sane &= A[a] >= A[0];
    for (int m = 0; m < N_SETS && sane; m++) {
        const uint8_t *lt = luts + m * (LVL_MAX + 1);
        for (int a = 0; a <= ACT_MAX; a++) D->cls.ca[m][a] = A[a] - A[0];
        for (int l = 0; l <= LVL_MAX; l++) {
            sane &= lt[l] < N_LVL_CLS;
            D->cls.cl[m][l] = A[0] + 4u * lt[l];
        }
        pred_form(&D->cls, m, &D->pf[m]);
    }
    for (int i = 0; i < N_CTX_ALL && sane; i++) {
        uint32_t r = (uint32_t)rmb[2 * i] | (uint32_t)rmb[2 * i + 1] << 8;
        sane &= r < ntab;
        D->rms[i] = r << TAB_BITS;
    }
    /* per table, the slots of each symbol: freq << 16 | symbol << TAB_BITS | slot - cum */
#ifdef HAVE_AVX2
    if (use_avx2 < 0) use_avx2 = avx2_wanted();
    if (use_avx2) sane = sane && slot_tables_avx2(D->tab, pl, nv, ntab);
    else
#endif
        sane = sane && slot_tables(D->tab, pl, nv, ntab);
    if (sane) compact_tables(D);
    release(&B);
    if (!sane) {
        Py_DECREF(res);
        Py_RETURN_NONE;
    }
    return res;
fail:
    release(&B);
    return NULL;
}

MULTI static double v_min(const uint16_t *x, int64_t n, int64_t hw, const float *off,
                          const float *gain)
{
    double best = INFINITY, b4[4] = {INFINITY, INFINITY, INFINITY, INFINITY}, e[4096];
    uint16_t lo[4096];
    for (int64_t i0 = 0; i0 < hw; i0 += 4096) {
        int64_t m = imin(4096, hw - i0);
        memcpy(lo, x + i0, (size_t)m * sizeof(uint16_t));
        for (int64_t f = 1; f < n; f++) {
            const uint16_t *xf = x + f * hw + i0;
            for (int64_t i = 0; i < m; i++) lo[i] = xf[i] < lo[i] ? xf[i] : lo[i];
        }
        const float *o = off + i0, *g = gain + i0;
        for (int64_t i = 0; i < m; i++) e[i] = ((double)lo[i] - (double)o[i]) / (double)g[i];
        for (int64_t i = 0; i < m; i++) b4[i & 3] = e[i] < b4[i & 3] ? e[i] : b4[i & 3];
    }
    for (int l = 0; l < 4; l++) best = b4[l] < best ? b4[l] : best;
    return best; /* a minimum: the order does not matter (no NaN) */
}
