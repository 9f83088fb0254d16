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

/* constants of pyramid.py / kernels.py (checked against them at import: `constants`) */
#define HALO 2
#define WB 12
#define N_ACT_CLS 8
#define N_LVL_CLS 8
#define N_CLASS (N_ACT_CLS * N_LVL_CLS)
#define FRAC_BITS 3
#define N_FRAC (1 << FRAC_BITS)
#define N_ACT_CTX 12
#define N_CTX (N_FRAC * N_ACT_CTX)
#define N_LEVEL_GROUPS 2
#define N_STAGE 3
#define N_WEIGHT_LEVELS 2
#define N_SETS (N_WEIGHT_LEVELS * N_STAGE)
#define N_GROUPS (1 + N_LEVEL_GROUPS * N_STAGE)
#define N_CTX_ALL (N_GROUPS * N_CTX)
#define N_W 4
#define TOP_ROWS 8
#define LANES 4
#define TAB_BITS 10
#define TAB (1 << TAB_BITS)
#define ACT_MAX 63
#define LVL_MAX 255
#define N_MOM 14
#define LANE_SHIFT 14
#define RMAX 24
#define N_SYM (2 * RMAX + 1)
#define ESC (2 * RMAX)
#define RANS_L (1u << 16)
#define MAXK 64
#define SMALL_CODE 4095 /* plane values whose moment products fit in 32 bits */

/* the kernels are compiled twice, for AVX2 and for the baseline, and the CPU picks at
 * load time (gcc function multi-versioning; AVX2 has 8-wide integer min/max, sign
 * extension and floor, which the baseline x86-64 lacks) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define MULTI __attribute__((target_clones("avx2", "default")))
#else
#define MULTI
#endif
/* helpers of the kernels: inlined, so that each clone has its own copy */
#if defined(__GNUC__) || defined(__clang__)
#define HOT static inline __attribute__((always_inline))
#else
#define HOT static __forceinline
#endif
#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict
#endif

typedef struct {
    int16_t *d;
    int64_t R, C; /* padded rows and columns */
} plane;

#define ROW(P, a) ((P).d + (int64_t)(a) * (P).C)
/* plane P from column j on */
static inline plane pshift(plane P, int64_t j) { return (plane){P.d + j, P.R, P.C}; }

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int32_t min32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t max32(int32_t a, int32_t b) { return a > b ? a : b; }

/* ------------------------------------------------------------------ geometry */
static int n_levels(int64_t h, int64_t w)
{
    int k = 0;
    while (h > TOP_ROWS && w > 1) {
        h = (h + 1) / 2;
        w = (w + 1) / 2;
        k++;
    }
    return k;
}

static void sizes(int64_t h, int64_t w, int K, int64_t *hs, int64_t *ws)
{
    hs[0] = h;
    ws[0] = w;
    for (int k = 0; k < K; k++) {
        hs[k + 1] = (hs[k] + 1) / 2;
        ws[k + 1] = (ws[k] + 1) / 2;
    }
}

HOT void fill_halo(plane B, int64_t n, int64_t m)
{
    const int64_t H = HALO, R = B.R, C = B.C;
    for (int64_t i = H; i < H + n; i++) {
        int16_t *r = ROW(B, i);
        int16_t v = r[H];
        for (int64_t j = 0; j < H; j++) r[j] = v;
        v = r[H + m - 1];
        for (int64_t j = H + m; j < C; j++) r[j] = v;
    }
    for (int64_t i = 0; i < H; i++) memcpy(ROW(B, i), ROW(B, H), C * sizeof(int16_t));
    for (int64_t i = H + n; i < R; i++) memcpy(ROW(B, i), ROW(B, H + n - 1), C * sizeof(int16_t));
}

HOT void stage_rows(int kind, int64_t hk, int64_t wk, int64_t *n, int64_t *m)
{
    if (kind == 0) { *n = hk / 2; *m = wk / 2; }
    else if (kind == 1) { *n = (hk + 1) / 2; *m = wk / 2; }
    else { *n = hk / 2; *m = (wk + 1) / 2; }
}

/* Planes of a tile: level planes lv[0..K] (lv[0] only for the encoder) and per level k
 * the stage planes st[3k + s] (oo, eo, oe), all padded, in one allocation. */
typedef struct {
    int K;
    int64_t hs[MAXK + 1], ws[MAXK + 1];
    plane lv[MAXK + 1], st[3 * MAXK];
    int16_t *mem;
} pyramid;

/* the planes in memory from get(bytes) (the decoder's thread arena) or malloc */
static int pyramid_alloc_with(pyramid *p, int64_t h, int64_t w, int with_level0,
                              void *(*get)(size_t))
{
    int K = n_levels(h, w);
    if (K > MAXK) return -1;
    p->K = K;
    sizes(h, w, K, p->hs, p->ws);
    int64_t total = 0;
    for (int k = 0; k <= K; k++) {
        int64_t n = (p->hs[k] + 2 * HALO) * (p->ws[k] + 2 * HALO);
        total += (k == 0 ? (with_level0 || K == 0 ? n : 0) : 4 * n);
    }
    size_t bytes = (size_t)imax(total, 1) * sizeof(int16_t);
    p->mem = (int16_t *)(get ? get(bytes) : malloc(bytes));
    if (!p->mem) return -1;
    int16_t *q = p->mem;
    for (int k = 0; k <= K; k++) {
        plane X = {q, p->hs[k] + 2 * HALO, p->ws[k] + 2 * HALO};
        int64_t n = X.R * X.C;
        if (k == 0) {
            p->lv[0] = X;
            if (with_level0 || K == 0) q += n;
            continue;
        }
        p->lv[k] = X;
        q += n;
        for (int s = 0; s < 3; s++) {
            plane Y = {q, X.R, X.C};
            p->st[3 * (k - 1) + s] = Y;
            q += n;
        }
    }
    return 0;
}

static int pyramid_alloc(pyramid *p, int64_t h, int64_t w, int with_level0)
{
    return pyramid_alloc_with(p, h, w, with_level0, NULL);
}

/* polyphase plane t (0: ee, 1: oo, 2: eo, 3: oe) of level k + 1, and its offsets */
static plane phase(pyramid *p, int k, int t, int *dy, int *dx)
{
    *dy = t & 1;
    *dx = (t ^ (t >> 1)) & 1;
    return t == 0 ? p->lv[k + 1] : p->st[3 * k + t - 1];
}

/* the four phases of levels k0..K-1, each from its level's plane, with their halos */
MULTI static void split_levels(pyramid *p, int k0)
{
    const int64_t H = HALO;
    for (int k = k0; k < p->K; k++) {
        plane L = p->lv[k];
        for (int t = 0; t < 4; t++) {
            int dy, dx;
            plane X = phase(p, k, t, &dy, &dx);
            int64_t n = (p->hs[k] + 1 - dy) / 2, m = (p->ws[k] + 1 - dx) / 2;
            for (int64_t i = 0; i < n; i++) {
                int16_t *xr = ROW(X, H + i) + H;
                const int16_t *lr = ROW(L, H + 2 * i + dy) + H + dx;
                for (int64_t j = 0; j < m; j++) xr[j] = lr[2 * j];
            }
            fill_halo(X, n, m);
        }
    }
}

MULTI static void build_planes(pyramid *p, const int32_t *codes, int64_t h, int64_t w)
{
    const int64_t H = HALO;
    plane P = p->lv[0];
    for (int64_t i = 0; i < h; i++) {
        int16_t *r = ROW(P, H + i) + H;
        const int32_t *c = codes + i * w;
        for (int64_t j = 0; j < w; j++) r[j] = (int16_t)c[j];
    }
    fill_halo(P, h, w);
    split_levels(p, 0);
}

/* ------------------------------------------------------------------ prediction */
typedef struct {
    int32_t *r1, *r2, *r3;
    int32_t *al; /* activity << 8 | level */
    int32_t *base;
    int32_t *ctx;
    uint8_t *sym;
    int32_t *kbuf;
    void *mem;
} rowbufs;

static int rows_alloc(rowbufs *b, int64_t n)
{
    n += 8;
    size_t sz = (size_t)n * (7 * sizeof(int32_t) + 1) + 64;
    char *m = (char *)malloc(sz);
    if (!m) return -1;
    b->mem = m;
    b->r1 = (int32_t *)m; m += n * sizeof(int32_t);
    b->r2 = (int32_t *)m; m += n * sizeof(int32_t);
    b->r3 = (int32_t *)m; m += n * sizeof(int32_t);
    b->base = (int32_t *)m; m += n * sizeof(int32_t);
    b->kbuf = (int32_t *)m; m += n * sizeof(int32_t);
    b->al = (int32_t *)m; m += n * sizeof(int32_t);
    b->ctx = (int32_t *)m; m += n * sizeof(int32_t);
    b->sym = (uint8_t *)m;
    return 0;
}

static inline int32_t act_lvl(int32_t p0, int32_t p1, int32_t p2, int32_t p3, int32_t r1)
{
    int32_t hi = max32(max32(p0, p1), max32(p2, p3)), lo = min32(min32(p0, p1), min32(p2, p3));
    int32_t act = min32(hi - lo, ACT_MAX);
    int32_t lvl = max32(min32(r1 >> 2, LVL_MAX), 0);
    return (act << 8) | lvl;
}

/* ring sums, activity and level of row i of stage `kind`'s target plane */
HOT void features(int kind, int64_t i, int64_t n, plane E, plane O, plane Q, rowbufs *b)
{
    const int64_t a = i + HALO;
    int32_t *restrict r1 = b->r1, *restrict r2 = b->r2, *restrict r3 = b->r3;
    int32_t *restrict al = b->al;
    if (kind == 0) {
        const int16_t *u0 = ROW(E, a - 1), *u1 = ROW(E, a), *u2 = ROW(E, a + 1), *u3 = ROW(E, a + 2);
        for (int64_t j = 0; j < n; j++) {
            int32_t p0 = u1[j + 2], p1 = u1[j + 3], p2 = u2[j + 2], p3 = u2[j + 3];
            int32_t s1 = p0 + p1 + p2 + p3;
            r1[j] = s1;
            r2[j] = (int32_t)u1[j + 1] + u1[j + 4] + u2[j + 1] + u2[j + 4] + u0[j + 2] + u0[j + 3]
                    + u3[j + 2] + u3[j + 3];
            r3[j] = (int32_t)u0[j + 1] + u0[j + 4] + u3[j + 1] + u3[j + 4];
            al[j] = act_lvl(p0, p1, p2, p3, s1);
        }
    } else if (kind == 1) {
        const int16_t *e0 = ROW(E, a - 1), *e1 = ROW(E, a), *e2 = ROW(E, a + 1);
        const int16_t *o0 = ROW(O, a - 2), *o1 = ROW(O, a - 1), *o2 = ROW(O, a), *o3 = ROW(O, a + 1);
        for (int64_t j = 0; j < n; j++) {
            int32_t p0 = e1[j + 2], p1 = e1[j + 3], p2 = o1[j + 2], p3 = o2[j + 2];
            int32_t s1 = p0 + p1 + p2 + p3;
            r1[j] = s1;
            r2[j] = (int32_t)o1[j + 1] + o1[j + 3] + o2[j + 1] + o2[j + 3] + e0[j + 2] + e0[j + 3]
                    + e2[j + 2] + e2[j + 3];
            r3[j] = (int32_t)e1[j + 1] + e1[j + 4] + o0[j + 2] + o3[j + 2];
            al[j] = act_lvl(p0, p1, p2, p3, s1);
        }
    } else {
        const int16_t *e1 = ROW(E, a), *e2 = ROW(E, a + 1);
        const int16_t *o0 = ROW(O, a - 1), *o1 = ROW(O, a), *o2 = ROW(O, a + 1);
        const int16_t *q1 = ROW(Q, a), *q2 = ROW(Q, a + 1);
        for (int64_t j = 0; j < n; j++) {
            int32_t p0 = o1[j + 1], p1 = o1[j + 2], p2 = e1[j + 2], p3 = e2[j + 2];
            int32_t s1 = p0 + p1 + p2 + p3;
            r1[j] = s1;
            r2[j] = (int32_t)q1[j + 1] + q1[j + 2] + q2[j + 1] + q2[j + 2];
            r3[j] = (int32_t)e1[j + 1] + e1[j + 3] + e2[j + 1] + e2[j + 3] + o0[j + 1] + o0[j + 2]
                    + o2[j + 1] + o2[j + 2];
            al[j] = act_lvl(p0, p1, p2, p3, s1);
        }
    }
}

/* prediction (fixed point) and logical context of pixel j (`pyramid._pc`) */
/* `class_tables` of pyramid.py are separable: ct[a << 8 | l] = ca[a] + cl[l] (two small
 * tables that stay in L1 instead of 32 KB per weight set) */
typedef struct {
    uint32_t ca[N_SETS][ACT_MAX + 1];
    uint32_t cl[N_SETS][LVL_MAX + 1];
} classtab;

/* the separable form of cts (N_SETS, 64 · 256); -1 if cts is not separable */
static int split_tables(const uint16_t *cts, classtab *t)
{
    uint32_t bad = 0;
    for (int m = 0; m < N_SETS; m++) {
        const uint16_t *ct = cts + (int64_t)m * (ACT_MAX + 1) * (LVL_MAX + 1);
        for (int l = 0; l <= LVL_MAX; l++) t->cl[m][l] = ct[l];
        for (int a = 0; a <= ACT_MAX; a++) {
            const uint32_t ca = (uint16_t)(ct[a << 8] - ct[0]), *cl = t->cl[m];
            const uint16_t *row = ct + (a << 8);
            t->ca[m][a] = ca;
            for (int l = 0; l <= LVL_MAX; l++) bad |= (uint32_t)row[l] ^ (ca + cl[l]); /* vectorises */
        }
    }
    return bad ? -1 : 0;
}

static inline int64_t med(plane P, int64_t i, int64_t j)
{
    const int64_t H = HALO;
    if (i == H && j == H) return 0;
    if (i == H) return ROW(P, i)[j - 1];
    if (j == H) return ROW(P, i - 1)[j];
    int64_t a = ROW(P, i)[j - 1], b = ROW(P, i - 1)[j], c = ROW(P, i - 1)[j - 1];
    if (c >= imax(a, b)) return imin(a, b);
    if (c <= imin(a, b)) return imax(a, b);
    return a + b - c;
}

static inline int symbol(int64_t c, int64_t base)
{
    int64_t r = c - base;
    return (-RMAX <= r && r < RMAX) ? (int)(r + RMAX) : ESC;
}

/* ------------------------------------------------------------------ encoder */
/* fc: freq << 16 | cum per (context, symbol), every coded symbol's freq > 0 */
MULTI static int rans_encode(const uint8_t *syms, const uint16_t *ctxs, int64_t n,
                             const uint32_t *fc, uint16_t *out, int64_t cap, int64_t *lens)
{
    uint32_t xs[LANES];
    int64_t ls[LANES];
    for (int l = 0; l < LANES; l++) {
        xs[l] = RANS_L;
        ls[l] = 0;
    }
    for (int64_t t = n - 1; t >= 0; t--) {
        int ln = ctxs[t] >> LANE_SHIFT;
        uint32_t g = ctxs[t] & ((1 << LANE_SHIFT) - 1);
        uint32_t e = fc[g * N_SYM + syms[t]];
        uint32_t f = e >> 16, x = xs[ln];
        if ((uint64_t)x >= ((uint64_t)f << (32 - TAB_BITS))) { /* f = TAB: 2**32 */
            if (ls[ln] + 2 >= cap) return -1;
            out[ln * cap + ls[ln]] = (uint16_t)(x & 0xFFFF);
            ls[ln]++;
            x >>= 16;
        }
        /* exact x // f (the numba kernel's reciprocal with its correction gives the same) */
        uint32_t q = x / f, r = x - q * f;
        xs[ln] = (q << TAB_BITS) + r + (e & 0xFFFF);
    }
    for (int l = 0; l < LANES; l++) lens[l] = ls[l];
    for (int l = 0; l < LANES; l++) {
        uint16_t *o = out + l * cap;
        int64_t m = lens[l];
        o[m] = (uint16_t)(xs[l] & 0xFFFF);
        o[m + 1] = (uint16_t)(xs[l] >> 16);
        m += 2;
        lens[l] = m;
        for (int64_t a = 0; a < m / 2; a++) {
            uint16_t tmp = o[a];
            o[a] = o[m - 1 - a];
            o[m - 1 - a] = tmp;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ quantisation */
static inline double dither_value(uint64_t index, uint64_t seed)
{
    uint64_t z = index * 0x9E3779B97F4A7C15ULL + seed;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z = z ^ (z >> 31);
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static inline double vst(double v, const double *kp)
{
    if (v >= kp[0]) return v > 0.0 ? 2.0 * sqrt(v) : 0.0;
    return kp[1] + (v - kp[0]) * kp[2];
}

static inline double vst_inverse(double t, double c0, const double *kp)
{
    if (t >= kp[1]) return 0.25 * t * t - c0;
    return kp[0] - c0 + (t - kp[1]) / kp[2];
}

static inline double convexity(double t, double step, const double *kp)
{
    double a = t - kp[1] - 0.5 * step;
    double b = a + step;
    double d = t - kp[1];
    double bp = b > 0.0 ? b : 0.0, ap = a > 0.0 ? a : 0.0, dp = d > 0.0 ? d : 0.0;
    /* numba's x ** 3 is x · (x · x), x ** 2 is x · x */
    return (bp * (bp * bp) - ap * (ap * ap)) / (12.0 * step) - 0.25 * (dp * dp);
}

static inline double e_dither(double k, double u, double step, double c0, const double *kp)
{
    if (kp[0] == 0.0) {
        double t = step * (k - u + 0.5);
        return 0.25 * t * t - c0 - step * step / 48.0;
    }
    double t = step * (k - kp[3] - u + 0.5);
    return vst_inverse(t, c0, kp) - convexity(t, step, kp);
}

static inline double e_centre(double k, double step, double c0, const double *kp)
{
    if (kp[0] == 0.0) {
        double t = step * k;
        return 0.25 * t * t - c0;
    }
    return vst_inverse(step * (k - kp[3]), c0, kp);
}

static inline uint16_t adu(float off, float gain, double e, double max_adu)
{
    double v = floor((double)off + (double)gain * e + 0.5);
    v = v > 0.0 ? v : 0.0;
    v = v < max_adu ? v : max_adu;
    return (uint16_t)v;
}

typedef struct {
    const float *off, *gain; /* the tile's maps (h, w) */
    const double *recon;
    int64_t nrec;
    double step, c0;
    int dither;
    uint64_t seed;
    int64_t index0;
    double max_adu;
    int analytic;
    const double *kp;
    int64_t gstride; /* w, or 0: one gain row for every row (uniform maps) */
} dqargs;

/* codes k (int32: conversions to double that vectorise) → ADU */
HOT void dequantise_row(const int32_t *k, const float *off, const float *gain, uint16_t *out,
                        int64_t n, const dqargs *d, int64_t index0)
{
    const double step = d->step, c0 = d->c0, *kp = d->kp, max_adu = d->max_adu;
    const int32_t nrec = (int32_t)imin(d->nrec, INT32_MAX);
    if (d->dither) {
        for (int64_t x = 0; x < n; x++) {
            double u = dither_value((uint64_t)(index0 + x), d->seed);
            int32_t kk = k[x] > 0 ? k[x] : 0;
            out[x] = adu(off[x], gain[x], e_dither((double)kk, u, step, c0, kp), max_adu);
        }
        return;
    }
    if (!d->analytic) {
        int32_t kmax = 0;
        for (int64_t x = 0; x < n; x++) kmax = k[x] > kmax ? k[x] : kmax;
        if (kmax < nrec) { /* every code in the table: unconditional loads, vectorises */
            const double *recon = d->recon;
            for (int64_t x = 0; x < n; x++) {
                int32_t kk = k[x] > 0 ? k[x] : 0;
                out[x] = adu(off[x], gain[x], recon[kk], max_adu);
            }
            return;
        }
    }
    if (!d->analytic) {
        for (int64_t x = 0; x < n; x++) {
            int32_t kk = k[x] > 0 ? k[x] : 0;
            double e = kk < nrec ? d->recon[kk] : e_centre((double)kk, step, c0, kp);
            out[x] = adu(off[x], gain[x], e, max_adu);
        }
        return;
    }
    const double corr = step * step / 48.0;
    if (kp[0] == 0.0) { /* e_centre without a knee, written out for the vectoriser */
        for (int64_t x = 0; x < n; x++) {
            int32_t kk = k[x] > 0 ? k[x] : 0;
            double t = step * (double)kk;
            double e = 0.25 * t * t - c0;
            e = kk < nrec ? e - corr : e;
            out[x] = adu(off[x], gain[x], e, max_adu);
        }
        return;
    }
    for (int64_t x = 0; x < n; x++) {
        int32_t kk = k[x] > 0 ? k[x] : 0;
        double e = e_centre((double)kk, step, c0, kp);
        e = kk < nrec ? e - corr : e;
        out[x] = adu(off[x], gain[x], e, max_adu);
    }
}

/* float → int32 key of the same order (no NaN): an integer minimum vectorises, a float
 * one does not (it needs reassociation) */
static inline int32_t order_key(float v)
{
    int32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits ^ ((bits >> 31) & 0x7FFFFFFF);
}

static inline float key_value(int32_t key)
{
    float v;
    key ^= (key >> 31) & 0x7FFFFFFF;
    memcpy(&v, &key, sizeof v);
    return v;
}

/* codes of one tile; *vmin: the smallest v = (x - off) / gain + c0 of the pass (float32,
 * before any clamp; +inf when n = 0), for the knee check of `stream.quantise_frames_knee` */
MULTI static int32_t quantise_round(const uint16_t *x, const float *off, const float *gain,
                              int32_t *codes, int64_t n, double inv_step, double c0,
                              const double *kp, float *vmin)
{
    const float a = (float)(2.0 * inv_step), cc = (float)c0;
    int32_t top = 0, lo = INT32_MAX;
    if (kp[0] == 0.0) {
        for (int64_t i = 0; i < n; i++) {
            float v = ((float)x[i] - off[i]) / gain[i] + cc;
            int32_t key = order_key(v);
            lo = key < lo ? key : lo;
            v = v > 0.0f ? v : 0.0f;
            int32_t k = (int32_t)(sqrtf(v) * a + 0.5f);
            codes[i] = k;
            top = k > top ? k : top;
        }
    } else {
        const float vk = (float)kp[0], tk = (float)(kp[1] * inv_step);
        const float sk = (float)(kp[2] * inv_step), sh = (float)(kp[3] + 0.5);
        for (int64_t i = 0; i < n; i++) {
            float v = ((float)x[i] - off[i]) / gain[i] + cc;
            int32_t key = order_key(v);
            lo = key < lo ? key : lo;
            float lin = tk + (v - vk) * sk;
            float q = sqrtf(v > vk ? v : vk) * a;
            int32_t k = (int32_t)floorf((v >= vk ? q : lin) + sh);
            codes[i] = k;
            top = k > top ? k : top;
        }
    }
    *vmin = n > 0 ? key_value(lo) : INFINITY;
    return top;
}

MULTI static int quantise_tile(const uint16_t *x, const float *off, const float *gain, int32_t *codes,
                         int64_t h, int64_t w, double step, double c0, int dither, uint64_t seed,
                         int64_t index0, const double *edges, int64_t nedge, double *sum_e,
                         int64_t *cnt, int64_t nsum, const double *kp)
{
    const int64_t shift = (int64_t)kp[3];
    const double inv = 1.0 / step, dt = 0.25;
    int64_t ng = 2;
    if (nedge > 0) {
        double top = edges[nedge - 1] + c0;
        ng = (int64_t)(2.0 * sqrt(top > 0.0 ? top : 0.0) / dt) + 3;
    }
    int64_t *grid = (int64_t *)calloc((size_t)ng, sizeof(int64_t));
    if (!grid) return -1;
    if (nedge > 0) {
        int64_t k = 0;
        for (int64_t g = 0; g < ng; g++) {
            double tg = g * dt;
            double eg = 0.25 * tg * tg - c0;
            while (k + 1 < nedge && edges[k + 1] <= eg) k++;
            grid[g] = k;
        }
    }
    for (int64_t y = 0; y < h; y++) {
        for (int64_t i = 0; i < w; i++) {
            int64_t o = y * w + i, k;
            double e = ((double)x[o] - (double)off[o]) / (double)gain[o];
            if (nedge > 0) {
                double v = e + c0;
                k = 0;
                if (v > 0.0) {
                    int64_t g = imin((int64_t)(2.0 * sqrt(v) / dt) - 1, ng - 1);
                    if (g > 0) k = grid[g];
                }
                while (k + 1 < nedge && edges[k + 1] <= e) k++;
            } else {
                double t = vst(e + c0, kp);
                if (dither) {
                    double u = dither_value((uint64_t)(index0 + y * w + i), seed);
                    k = (int64_t)floor(t * inv + u) + shift;
                } else {
                    k = (int64_t)floor(t * inv + 0.5) + shift;
                }
            }
            codes[o] = (int32_t)k;
            if (k >= 0 && k < nsum) {
                sum_e[k] += e;
                cnt[k] += 1;
            }
        }
    }
    free(grid);
    return 0;
}

/* ------------------------------------------------------------------ decoder */
/* The decoder's tables, prepared once per stream (`dec_prepare`) and shared by its tiles:
 * - one 32-bit entry per (physical table, slot): freq << 16 | symbol << 10 | slot - cum,
 *   so that a rANS step is one load (`decode_table`'s lut and fc give the same steps);
 * - per logical context, its physical table's first entry (rm << TAB_BITS);
 * - the separable class tables (`split_tables`) and, per weight set, the same tables in
 *   a form the AVX2 prediction evaluates without gathers (`pred_form`). */
#define N_LVL_STEPS 8
typedef struct {
    int ok;              /* the AVX2 form is exact for this set */
    uint32_t ca[32];     /* ca[min(activity, 31)] (ca is constant from 31 on) */
    uint32_t cl0;        /* cl[0], then cl[l] = cl0 + sum of dl[i] over ls[i] <= l */
    int32_t nl;
    int32_t ls[N_LVL_STEPS];
    uint32_t dl[N_LVL_STEPS];
    int32_t lsm[8];  /* ls[i] - 1, then INT32_MAX: a sorted table for a binary search */
    uint32_t pre[8]; /* cl0 + dl[0] + ... + dl[i - 1]: cl of the level with i steps below */
    /* the byte form (fast = 1: every ca a multiple of 32 below 8192, every cl below 256,
     * the level steps within 15 levels): ca[a] = cab[a] << 5 and cl[l] = clb[clamp(l -
     * lbase, 0, 15)], two in-lane byte shuffles (`class_bytes`) instead of the permutes
     * and the binary search */
    int fast;
    int32_t lbase;
    uint8_t cab[32], clb[16];
} predform;

typedef struct {
    int64_t ntab;          /* physical tables */
    classtab cls;
    predform pf[N_SETS];
    uint32_t rms[N_CTX_ALL]; /* logical context → physical table << TAB_BITS */
    uint32_t tab[];          /* ntab · TAB entries */
} dectables;

typedef struct {
    const dectables *D;
    const uint16_t *words;
} dectab;

/* the prediction form of class tables set m: activity part as a 32-entry table, level
 * part as its steps; ok = 0 when the tables do not have that form (generic path) */
static void pred_form(const classtab *t, int m, predform *f)
{
    f->ok = 1;
    f->fast = 0;
    for (int a = 0; a < 32; a++) f->ca[a] = t->ca[m][a];
    for (int a = 32; a <= ACT_MAX; a++) f->ok &= t->ca[m][a] == t->ca[m][31];
    f->cl0 = t->cl[m][0];
    f->nl = 0;
    for (int l = 1; l <= LVL_MAX; l++) {
        if (t->cl[m][l] == t->cl[m][l - 1]) continue;
        if (f->nl == N_LVL_STEPS) {
            f->ok = 0;
            return;
        }
        f->ls[f->nl] = l;
        f->dl[f->nl] = t->cl[m][l] - t->cl[m][l - 1]; /* modulo 2**32: exact sums */
        f->nl++;
    }
    f->ok &= f->nl <= 7; /* the binary search of `predict8`: 7 steps at most */
    f->pre[0] = f->cl0;
    for (int i = 0; i < 8; i++) {
        f->lsm[i] = i < f->nl ? f->ls[i] - 1 : INT32_MAX;
        if (i > 0) f->pre[i] = f->pre[i - 1] + (i - 1 < f->nl ? f->dl[i - 1] : 0);
    }
    /* the byte form: levels below lbase + 1 have cl[lbase], above lbase + 15 cl[lbase + 15] */
    int fast = f->ok;
    for (int a = 0; a < 32; a++) {
        fast &= (f->ca[a] & 31) == 0 && f->ca[a] < (256u << 5);
        f->cab[a] = (uint8_t)(f->ca[a] >> 5);
    }
    f->lbase = f->nl ? f->ls[0] - 1 : 0;
    fast &= f->nl == 0 || f->ls[f->nl - 1] <= f->lbase + 15;
    for (int i = 0; i < 16; i++) {
        uint32_t c = t->cl[m][imin(f->lbase + i, LVL_MAX)];
        fast &= c < 256;
        f->clb[i] = (uint8_t)c;
    }
    f->fast = fast;
}

/* one rANS step of lane state x (uint32) with table entry base gs, stream position q */
#define DEC(x, gs, q, s)                                                                          \
    do {                                                                                          \
        uint32_t e_ = tab[(gs) + ((x) & (TAB - 1))];                                             \
        (x) = (e_ >> 16) * ((x) >> TAB_BITS) + (e_ & (TAB - 1));                                  \
        uint32_t need_ = (x) < RANS_L;                                                            \
        (x) = ((x) << (need_ << 4)) | ((uint32_t)words[q] & (0u - need_));                        \
        (q) += need_;                                                                             \
        (s) = (uint8_t)((e_ >> TAB_BITS) & 63);                                                   \
    } while (0)

/* prediction of pixels j0..n-1 of a row (scalar: the generic path and the tails) */
HOT void predict_tail(int64_t j0, int64_t n, const int32_t *wt, const uint32_t *ca,
                      const uint32_t *cl, uint32_t g0, rowbufs *b)
{
    for (int64_t j = j0; j < n; j++) {
        int32_t a = b->al[j];
        uint32_t v = ca[a >> 8] + cl[a & 0xFF];
        uint32_t c = v & 0xFF;
        int32_t p = (int32_t)((uint32_t)wt[c + 3] + (uint32_t)wt[c] * (uint32_t)b->r1[j]
                              + (uint32_t)wt[c + 1] * (uint32_t)b->r2[j]
                              + (uint32_t)wt[c + 2] * (uint32_t)b->r3[j]);
        b->base[j] = p >> WB;
        b->ctx[j] = (int32_t)(g0 + (uint32_t)((p >> (WB - FRAC_BITS)) & (N_FRAC - 1)) * N_ACT_CTX
                              + (v >> 8));
    }
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX2 1
#define AVX2_INLINE __attribute__((target("avx2,popcnt"), always_inline)) static inline

/* ca[act] + cl[lvl] of 8 pixels from the prediction form (activity clipped to 31) */
AVX2_INLINE __m256i class_form(__m256i act, __m256i lvl, const predform *f)
{
    const __m256i c7 = _mm256_set1_epi32(7);
    __m256i v = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)f->ca), act);
    v = _mm256_blendv_epi8(v, _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(f->ca + 8)), act),
                           _mm256_cmpgt_epi32(act, c7));
    v = _mm256_blendv_epi8(v, _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(f->ca + 16)), act),
                           _mm256_cmpgt_epi32(act, _mm256_set1_epi32(15)));
    v = _mm256_blendv_epi8(v, _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(f->ca + 24)), act),
                           _mm256_cmpgt_epi32(act, _mm256_set1_epi32(23)));
    /* cl[lvl] = pre[number of steps at or below lvl], found by a binary search over the
     * (at most 7) sorted steps */
    const __m256i lsm = _mm256_loadu_si256((const __m256i *)f->lsm), one = _mm256_set1_epi32(1);
    __m256i c = _mm256_and_si256(_mm256_cmpgt_epi32(lvl, _mm256_set1_epi32(f->lsm[3])),
                                 _mm256_set1_epi32(4));
    __m256i t = _mm256_permutevar8x32_epi32(lsm, _mm256_add_epi32(c, one));
    c = _mm256_add_epi32(c, _mm256_and_si256(_mm256_cmpgt_epi32(lvl, t), _mm256_set1_epi32(2)));
    t = _mm256_permutevar8x32_epi32(lsm, c);
    c = _mm256_add_epi32(c, _mm256_and_si256(_mm256_cmpgt_epi32(lvl, t), one));
    return _mm256_add_epi32(v, _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)f->pre), c));
}

/* the same from the byte form (f->fast), the level straight from the ring sum r1:
 * clamp(clamp(r1 >> 2, 0, 255) - lbase, 0, 15) = clamp((r1 >> 2) - lbase, 0, 15) as
 * 0 <= lbase <= 255 - 15 or else the top entries repeat cl[255]. A byte index with bit 7
 * set gives 0: activity + 0x70 selects cab[0..15] (0 for act >= 16), activity - 16
 * (+ 0x100 carried into byte 1) cab[16..31]; bytes 1..3 of every index have bit 7 set. */
AVX2_INLINE __m256i class_bytes(__m256i act, __m256i r1, const predform *f)
{
    const __m256i ta0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)f->cab)),
                  ta1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(f->cab + 16))),
                  tl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)f->clb));
    __m256i ca = _mm256_or_si256(
        _mm256_shuffle_epi8(ta0, _mm256_add_epi32(act, _mm256_set1_epi32((int)0x80808070u))),
        _mm256_shuffle_epi8(ta1, _mm256_add_epi32(act, _mm256_set1_epi32((int)0x808080F0u))));
    __m256i li = _mm256_sub_epi32(_mm256_srai_epi32(r1, 2), _mm256_set1_epi32(f->lbase));
    li = _mm256_min_epi32(_mm256_max_epi32(li, _mm256_setzero_si256()), _mm256_set1_epi32(15));
    __m256i cl = _mm256_shuffle_epi8(tl, _mm256_or_si256(li, _mm256_set1_epi32((int)0x80808000u)));
    return _mm256_add_epi32(_mm256_slli_epi32(ca, 5), cl);
}

/* the prediction of 8 pixels (j..j+7) from their ring sums and class value v (ca + cl):
 * the class's 4 weights loaded as one 128-bit vector per pixel and transposed; the same
 * integer operations as `predict_tail` (wrapping 32-bit products and sums) */
AVX2_INLINE void predict8(int64_t j, __m256i r1, __m256i r2, __m256i r3, __m256i v,
                          const int32_t *wt, uint32_t g0, rowbufs *b)
{
    const __m256i c7 = _mm256_set1_epi32(7), cff = _mm256_set1_epi32(0xFF);
    __m256i cv = _mm256_and_si256(v, cff);
    __m128i c03 = _mm256_castsi256_si128(cv), c47 = _mm256_extracti128_si256(cv, 1);
    uint64_t i01 = (uint64_t)_mm_cvtsi128_si64(c03), i23 = (uint64_t)_mm_extract_epi64(c03, 1);
    uint64_t i45 = (uint64_t)_mm_cvtsi128_si64(c47), i67 = (uint64_t)_mm_extract_epi64(c47, 1);
#define W4(i) _mm_loadu_si128((const __m128i *)(wt + (i)))
    __m256i A = _mm256_inserti128_si256(_mm256_castsi128_si256(W4((uint32_t)i01)), W4((uint32_t)i45), 1);
    __m256i B = _mm256_inserti128_si256(_mm256_castsi128_si256(W4(i01 >> 32)), W4(i45 >> 32), 1);
    __m256i C = _mm256_inserti128_si256(_mm256_castsi128_si256(W4((uint32_t)i23)), W4((uint32_t)i67), 1);
    __m256i D = _mm256_inserti128_si256(_mm256_castsi128_si256(W4(i23 >> 32)), W4(i67 >> 32), 1);
#undef W4
    __m256i t0 = _mm256_unpacklo_epi32(A, B), t1 = _mm256_unpackhi_epi32(A, B);
    __m256i t2 = _mm256_unpacklo_epi32(C, D), t3 = _mm256_unpackhi_epi32(C, D);
    __m256i w0 = _mm256_unpacklo_epi64(t0, t2), w1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i w2 = _mm256_unpacklo_epi64(t1, t3), w3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i p = _mm256_add_epi32(_mm256_add_epi32(w3, _mm256_mullo_epi32(w0, r1)), _mm256_mullo_epi32(w1, r2));
    p = _mm256_add_epi32(p, _mm256_mullo_epi32(w2, r3));
    _mm256_storeu_si256((__m256i *)(b->base + j), _mm256_srai_epi32(p, WB));
    __m256i fr = _mm256_and_si256(_mm256_srai_epi32(p, WB - FRAC_BITS), c7);
    __m256i cx = _mm256_add_epi32(_mm256_add_epi32(_mm256_set1_epi32((int)g0), _mm256_srli_epi32(v, 8)),
                                  _mm256_mullo_epi32(fr, _mm256_set1_epi32(N_ACT_CTX)));
    _mm256_storeu_si256((__m256i *)(b->ctx + j), cx);
}

/* features and prediction of row i of stage `kind` fused, 8 pixels at a time (the
 * operations of `features` and `act_lvl`, in registers); returns the pixels done */
AVX2_INLINE int64_t fused_kind(int kind, int fast, int64_t i, int64_t n, plane E, plane O,
                               plane Q, const int32_t *wt, const predform *f, uint32_t g0,
                               rowbufs *b)
{
    const int64_t a = i + HALO;
    const __m256i c31 = _mm256_set1_epi32(31), c255 = _mm256_set1_epi32(LVL_MAX),
                  zero = _mm256_setzero_si256();
    const int16_t *r[8];
    if (kind == 0) {
        r[0] = ROW(E, a - 1), r[1] = ROW(E, a), r[2] = ROW(E, a + 1), r[3] = ROW(E, a + 2);
    } else if (kind == 1) {
        r[0] = ROW(E, a - 1), r[1] = ROW(E, a), r[2] = ROW(E, a + 1);
        r[3] = ROW(O, a - 2), r[4] = ROW(O, a - 1), r[5] = ROW(O, a), r[6] = ROW(O, a + 1);
    } else {
        r[0] = ROW(E, a), r[1] = ROW(E, a + 1);
        r[2] = ROW(O, a - 1), r[3] = ROW(O, a), r[4] = ROW(O, a + 1);
        r[5] = ROW(Q, a), r[6] = ROW(Q, a + 1);
    }
#define L(k, o) _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(r[k] + j + (o))))
#define ADD(x, y) _mm256_add_epi32(x, y)
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256i p0, p1, p2, p3, r2, r3;
        if (kind == 0) { /* u0..u3 = r[0..3] */
            p0 = L(1, 2), p1 = L(1, 3), p2 = L(2, 2), p3 = L(2, 3);
            r2 = ADD(ADD(ADD(L(1, 1), L(1, 4)), ADD(L(2, 1), L(2, 4))),
                     ADD(ADD(L(0, 2), L(0, 3)), ADD(L(3, 2), L(3, 3))));
            r3 = ADD(ADD(L(0, 1), L(0, 4)), ADD(L(3, 1), L(3, 4)));
        } else if (kind == 1) { /* e0..e2 = r[0..2], o0..o3 = r[3..6] */
            p0 = L(1, 2), p1 = L(1, 3), p2 = L(4, 2), p3 = L(5, 2);
            r2 = ADD(ADD(ADD(L(4, 1), L(4, 3)), ADD(L(5, 1), L(5, 3))),
                     ADD(ADD(L(0, 2), L(0, 3)), ADD(L(2, 2), L(2, 3))));
            r3 = ADD(ADD(L(1, 1), L(1, 4)), ADD(L(3, 2), L(6, 2)));
        } else { /* e1, e2 = r[0..1], o0..o2 = r[2..4], q1, q2 = r[5..6] */
            p0 = L(3, 1), p1 = L(3, 2), p2 = L(0, 2), p3 = L(1, 2);
            r2 = ADD(ADD(L(5, 1), L(5, 2)), ADD(L(6, 1), L(6, 2)));
            r3 = ADD(ADD(ADD(L(0, 1), L(0, 3)), ADD(L(1, 1), L(1, 3))),
                     ADD(ADD(L(2, 1), L(2, 2)), ADD(L(4, 1), L(4, 2))));
        }
        __m256i r1 = ADD(ADD(p0, p1), ADD(p2, p3));
        __m256i hi = _mm256_max_epi32(_mm256_max_epi32(p0, p1), _mm256_max_epi32(p2, p3));
        __m256i lo = _mm256_min_epi32(_mm256_min_epi32(p0, p1), _mm256_min_epi32(p2, p3));
        /* min(min(hi - lo, ACT_MAX), 31) = min(hi - lo, 31): the prediction form's index */
        __m256i act = _mm256_min_epi32(_mm256_sub_epi32(hi, lo), c31), v;
        if (fast) {
            v = class_bytes(act, r1, f);
        } else {
            __m256i lvl = _mm256_max_epi32(_mm256_min_epi32(_mm256_srai_epi32(r1, 2), c255), zero);
            v = class_form(act, lvl, f);
        }
        predict8(j, r1, r2, r3, v, wt, g0, b);
    }
#undef L
#undef ADD
    return j;
}

/* `fused_kind` for a kind and form known at run time (one inlined copy per pair) */
__attribute__((target("avx2,popcnt"))) static int64_t predict_fused(int kind, int64_t i, int64_t n,
                                                                   plane E, plane O, plane Q,
                                                                   const int32_t *wt,
                                                                   const predform *f, uint32_t g0,
                                                                   rowbufs *b)
{
    if (f->fast) {
        if (kind == 0) return fused_kind(0, 1, i, n, E, O, Q, wt, f, g0, b);
        if (kind == 1) return fused_kind(1, 1, i, n, E, O, Q, wt, f, g0, b);
        return fused_kind(2, 1, i, n, E, O, Q, wt, f, g0, b);
    }
    if (kind == 0) return fused_kind(0, 0, i, n, E, O, Q, wt, f, g0, b);
    if (kind == 1) return fused_kind(1, 0, i, n, E, O, Q, wt, f, g0, b);
    return fused_kind(2, 0, i, n, E, O, Q, wt, f, g0, b);
}

/* Features in 16-bit lanes. Where every code a stage reads lies in [-FEAT16_MAX,
 * FEAT16_MAX] (`plane_small`), its ring sums (at most 8 codes) and activity fit in int16:
 * computed 16 pixels at a time in 16-bit lanes, the same integers as the 32-bit lanes of
 * `fused_kind` (no sum wraps), then widened for `predict8`. */
#define FEAT16_MAX 4095

/* whether every value of plane P (halo included) lies in [-FEAT16_MAX, FEAT16_MAX] */
__attribute__((target("avx2"))) static int plane_small(plane P)
{
    const int16_t *d = P.d;
    int64_t n = P.R * P.C, j = 0;
    __m256i hi = _mm256_setzero_si256(), lo = hi;
    for (; j + 16 <= n; j += 16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(d + j));
        hi = _mm256_max_epi16(hi, v);
        lo = _mm256_min_epi16(lo, v);
    }
    int16_t h[16], l[16];
    _mm256_storeu_si256((__m256i *)h, hi);
    _mm256_storeu_si256((__m256i *)l, lo);
    int ok = 1;
    for (int k = 0; k < 16; k++) ok &= h[k] <= FEAT16_MAX && l[k] >= -FEAT16_MAX;
    for (; j < n; j++) ok &= d[j] <= FEAT16_MAX && d[j] >= -FEAT16_MAX;
    return ok;
}

/* constants of the 16-bit lanes, read as memory operands (built in registers, they
 * cost three instructions each where the registers run out) */
#define K16(i) _mm256_load_si256((const __m256i *)k16[i])
static const int16_t k16[5][16] __attribute__((aligned(32))) = {
    {[0 ... 15] = (int16_t)0x8070}, {[0 ... 15] = (int16_t)0x80F0}, {[0 ... 15] = (int16_t)0x8000},
    {[0 ... 15] = 15}, {[0 ... 15] = 31}};

/* `class_bytes` in 16-bit lanes (bytes 1 of every index with bit 7 set) */
AVX2_INLINE __m256i class_bytes16(__m256i act, __m256i r1, const predform *f)
{
    const __m256i ta0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)f->cab)),
                  ta1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(f->cab + 16))),
                  tl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)f->clb));
    __m256i ca = _mm256_or_si256(_mm256_shuffle_epi8(ta0, _mm256_add_epi16(act, K16(0))),
                                 _mm256_shuffle_epi8(ta1, _mm256_add_epi16(act, K16(1))));
    __m256i li = _mm256_sub_epi16(_mm256_srai_epi16(r1, 2), _mm256_set1_epi16((short)f->lbase));
    li = _mm256_min_epi16(_mm256_max_epi16(li, _mm256_setzero_si256()), K16(3));
    __m256i cl = _mm256_shuffle_epi8(tl, _mm256_or_si256(li, K16(2)));
    return _mm256_add_epi16(_mm256_slli_epi16(ca, 5), cl);
}

/* the low (h = 0) or high 8 of 16 int16 lanes as int32 */
#define WIDEN(x, h) _mm256_cvtepi16_epi32((h) ? _mm256_extracti128_si256(x, 1) : _mm256_castsi256_si128(x))

/* `predict8` of 16 pixels from 16-bit ring sums and class values (v16 < 2^15): the
 * class offsets through memory (one store, a 16-bit load per pixel) instead of 64-bit
 * extracts and shifts; the same integers */
AVX2_INLINE void predict16(int64_t j, __m256i r1, __m256i r2, __m256i r3, __m256i v16,
                           const int32_t *wt, uint32_t g0, rowbufs *b)
{
    const __m256i c7 = _mm256_set1_epi32(7);
    uint16_t ci[16] __attribute__((aligned(32)));
    _mm256_store_si256((__m256i *)ci, _mm256_and_si256(v16, _mm256_set1_epi16(0xFF)));
    __m256i ac = _mm256_srli_epi16(v16, 8); /* the activity context */
#define W4(k) _mm_loadu_si128((const __m128i *)(wt + ci[k]))
#define W8(k) _mm256_inserti128_si256(_mm256_castsi128_si256(W4(k)), W4((k) + 4), 1)
    for (int h = 0; h < 2; h++) {
        __m256i A = W8(8 * h), B = W8(8 * h + 1), C = W8(8 * h + 2), D = W8(8 * h + 3);
        __m256i t0 = _mm256_unpacklo_epi32(A, B), t1 = _mm256_unpackhi_epi32(A, B);
        __m256i t2 = _mm256_unpacklo_epi32(C, D), t3 = _mm256_unpackhi_epi32(C, D);
        __m256i w0 = _mm256_unpacklo_epi64(t0, t2), w1 = _mm256_unpackhi_epi64(t0, t2);
        __m256i w2 = _mm256_unpacklo_epi64(t1, t3), w3 = _mm256_unpackhi_epi64(t1, t3);
        __m256i p = _mm256_add_epi32(_mm256_add_epi32(w3, _mm256_mullo_epi32(w0, WIDEN(r1, h))),
                                     _mm256_mullo_epi32(w1, WIDEN(r2, h)));
        p = _mm256_add_epi32(p, _mm256_mullo_epi32(w2, WIDEN(r3, h)));
        _mm256_storeu_si256((__m256i *)(b->base + j + 8 * h), _mm256_srai_epi32(p, WB));
        __m256i fr = _mm256_and_si256(_mm256_srai_epi32(p, WB - FRAC_BITS), c7);
        __m256i cx = _mm256_add_epi32(_mm256_add_epi32(_mm256_set1_epi32((int)g0), WIDEN(ac, h)),
                                      _mm256_mullo_epi32(fr, _mm256_set1_epi32(N_ACT_CTX)));
        _mm256_storeu_si256((__m256i *)(b->ctx + j + 8 * h), cx);
    }
#undef W4
#undef W8
}

/* `fused_kind` 16 pixels at a time with the features in 16-bit lanes (the stage's codes
 * small: `plane_small`); returns the pixels done (a multiple of 16) */
AVX2_INLINE int64_t fused16_kind(int kind, int fast, int64_t i, int64_t n, plane E, plane O,
                                 plane Q, const int32_t *wt, const predform *f, uint32_t g0,
                                 rowbufs *b)
{
    const int64_t a = i + HALO;
    const __m256i c255 = _mm256_set1_epi32(LVL_MAX), zero = _mm256_setzero_si256();
    const int16_t *r[8];
    if (kind == 0) {
        r[0] = ROW(E, a - 1), r[1] = ROW(E, a), r[2] = ROW(E, a + 1), r[3] = ROW(E, a + 2);
    } else if (kind == 1) {
        r[0] = ROW(E, a - 1), r[1] = ROW(E, a), r[2] = ROW(E, a + 1);
        r[3] = ROW(O, a - 2), r[4] = ROW(O, a - 1), r[5] = ROW(O, a), r[6] = ROW(O, a + 1);
    } else {
        r[0] = ROW(E, a), r[1] = ROW(E, a + 1);
        r[2] = ROW(O, a - 1), r[3] = ROW(O, a), r[4] = ROW(O, a + 1);
        r[5] = ROW(Q, a), r[6] = ROW(Q, a + 1);
    }
#define L(k, o) _mm256_loadu_si256((const __m256i *)(r[k] + j + (o)))
#define ADD(x, y) _mm256_add_epi16(x, y)
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256i p0, p1, p2, p3, r2, r3;
        if (kind == 0) {
            p0 = L(1, 2), p1 = L(1, 3), p2 = L(2, 2), p3 = L(2, 3);
            r2 = ADD(ADD(ADD(L(1, 1), L(1, 4)), ADD(L(2, 1), L(2, 4))),
                     ADD(ADD(L(0, 2), L(0, 3)), ADD(L(3, 2), L(3, 3))));
            r3 = ADD(ADD(L(0, 1), L(0, 4)), ADD(L(3, 1), L(3, 4)));
        } else if (kind == 1) {
            p0 = L(1, 2), p1 = L(1, 3), p2 = L(4, 2), p3 = L(5, 2);
            r2 = ADD(ADD(ADD(L(4, 1), L(4, 3)), ADD(L(5, 1), L(5, 3))),
                     ADD(ADD(L(0, 2), L(0, 3)), ADD(L(2, 2), L(2, 3))));
            r3 = ADD(ADD(L(1, 1), L(1, 4)), ADD(L(3, 2), L(6, 2)));
        } else {
            p0 = L(3, 1), p1 = L(3, 2), p2 = L(0, 2), p3 = L(1, 2);
            r2 = ADD(ADD(L(5, 1), L(5, 2)), ADD(L(6, 1), L(6, 2)));
            r3 = ADD(ADD(ADD(L(0, 1), L(0, 3)), ADD(L(1, 1), L(1, 3))),
                     ADD(ADD(L(2, 1), L(2, 2)), ADD(L(4, 1), L(4, 2))));
        }
        __m256i r1 = ADD(ADD(p0, p1), ADD(p2, p3));
        __m256i hi = _mm256_max_epi16(_mm256_max_epi16(p0, p1), _mm256_max_epi16(p2, p3));
        __m256i lo = _mm256_min_epi16(_mm256_min_epi16(p0, p1), _mm256_min_epi16(p2, p3));
        __m256i act = _mm256_min_epi16(_mm256_sub_epi16(hi, lo), K16(4));
        if (fast) {
            predict16(j, r1, r2, r3, class_bytes16(act, r1, f), wt, g0, b);
            continue;
        }
        for (int h = 0; h < 2; h++) {
            __m256i r1w = WIDEN(r1, h);
            __m256i lvl = _mm256_max_epi32(_mm256_min_epi32(_mm256_srai_epi32(r1w, 2), c255), zero);
            predict8(j + 8 * h, r1w, WIDEN(r2, h), WIDEN(r3, h), class_form(WIDEN(act, h), lvl, f),
                     wt, g0, b);
        }
    }
#undef L
#undef ADD
    return j;
}

/* `fused16_kind` for a kind and form known at run time */
__attribute__((target("avx2,popcnt"))) static int64_t predict_fused16(int kind, int64_t i, int64_t n,
                                                                     plane E, plane O, plane Q,
                                                                     const int32_t *wt,
                                                                     const predform *f, uint32_t g0,
                                                                     rowbufs *b)
{
    if (f->fast) {
        if (kind == 0) return fused16_kind(0, 1, i, n, E, O, Q, wt, f, g0, b);
        if (kind == 1) return fused16_kind(1, 1, i, n, E, O, Q, wt, f, g0, b);
        return fused16_kind(2, 1, i, n, E, O, Q, wt, f, g0, b);
    }
    if (kind == 0) return fused16_kind(0, 0, i, n, E, O, Q, wt, f, g0, b);
    if (kind == 1) return fused16_kind(1, 0, i, n, E, O, Q, wt, f, g0, b);
    return fused16_kind(2, 0, i, n, E, O, Q, wt, f, g0, b);
}

/* The fused prediction of pixels 0..n-1 16 at a time, past n up to the next multiple of
 * 16 (no scalar tail): pixels past n read plane values past their row (the next row, the
 * halo, `PLANE_SLACK`) and write base and ctx past n, where the chunk buffers have room
 * (`pipeset`); lanes are independent, so pixels below n are those of `fused_kind`, and
 * the contexts past n are zeroed before the rANS steps read them (`lane_next`). Returns
 * the pixels done (>= n). */
__attribute__((target("avx2,popcnt"))) static int64_t predict_over(int kind, int64_t i, int64_t n,
                                                                  plane E, plane O, plane Q,
                                                                  const int32_t *wt,
                                                                  const predform *f, uint32_t g0,
                                                                  rowbufs *b, int small)
{
    int64_t j = small ? predict_fused16(kind, i, n, E, O, Q, wt, f, g0, b)
                      : predict_fused(kind, i, n, E, O, Q, wt, f, g0, b);
    if (j < n) { /* the last 1-15 (1-7) pixels and those after them */
        rowbufs bt = *b;
        bt.base += j, bt.ctx += j;
        plane Ej = pshift(E, j), Oj = pshift(O, j), Qj = pshift(Q, j);
        j += small ? predict_fused16(kind, i, 16, Ej, Oj, Qj, wt, f, g0, &bt)
                   : predict_fused(kind, i, 8, Ej, Oj, Qj, wt, f, g0, &bt);
    }
    return j;
}

/* the prediction of a row from the row buffers (`features` done), 8 pixels at a time */
__attribute__((target("avx2,popcnt"))) static int64_t predict_avx2(int64_t n, const int32_t *wt,
                                                                  const predform *f, uint32_t g0,
                                                                  rowbufs *b)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256i al = _mm256_loadu_si256((const __m256i *)(b->al + j));
        __m256i act = _mm256_min_epi32(_mm256_srai_epi32(al, 8), _mm256_set1_epi32(31));
        __m256i lvl = _mm256_and_si256(al, _mm256_set1_epi32(0xFF));
        predict8(j, _mm256_loadu_si256((const __m256i *)(b->r1 + j)),
                 _mm256_loadu_si256((const __m256i *)(b->r2 + j)),
                 _mm256_loadu_si256((const __m256i *)(b->r3 + j)), class_form(act, lvl, f), wt, g0,
                 b);
    }
    return j;
}

/* trow[j] = (int16_t)(base[j] + sym[j] - RMAX) for j < n, 16 at a time in wrapping 16-bit
 * arithmetic (the low 16 bits of the int32 sum); returns the number of ESC symbols */
__attribute__((target("avx2,popcnt"))) static int64_t codes_avx2(int64_t n, const int32_t *base,
                                                                const uint8_t *sym, int16_t *trow)
{
    const __m256i lo16 = _mm256_set1_epi32(0xFFFF), rmax = _mm256_set1_epi16(RMAX);
    const __m128i esc = _mm_set1_epi8(ESC);
    int64_t j = 0, n_esc = 0;
    for (; j + 16 <= n; j += 16) {
        __m256i b0 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(base + j)), lo16);
        __m256i b1 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(base + j + 8)), lo16);
        __m256i b = _mm256_permute4x64_epi64(_mm256_packus_epi32(b0, b1), 0xD8);
        __m128i s8 = _mm_loadu_si128((const __m128i *)(sym + j));
        __m256i c = _mm256_sub_epi16(_mm256_add_epi16(b, _mm256_cvtepu8_epi16(s8)), rmax);
        _mm256_storeu_si256((__m256i *)(trow + j), c);
        n_esc += _mm_popcnt_u32((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(s8, esc)));
    }
    for (; j < n; j++) {
        int32_t s = sym[j];
        trow[j] = (int16_t)(base[j] + s - RMAX);
        n_esc += s == ESC;
    }
    return n_esc;
}
static int use_avx2 = -1;

/* the AVX2 paths where the CPU has AVX2, unless RAWSIGMA_CODEC_NO_AVX2 is set (tests: the
 * plain-C paths give the same pixels) */
static int avx2_wanted(void)
{
    const char *no = getenv("RAWSIGMA_CODEC_NO_AVX2");
    return __builtin_cpu_supports("avx2") && !(no && *no && strcmp(no, "0"));
}
#endif

/* one row of a stage: the prediction floors and logical contexts of the row first
 * (independent per pixel), then the four rANS lanes (pixel j on lane j & 3) writing
 * the symbols into sym, then the codes into trow; returns the number of escapes */
HOT int64_t decode_row(int64_t n, const int32_t *wt, int m, uint32_t g0, rowbufs *b,
                       uint32_t *xs, uint64_t *qs, const dectab *T, int16_t *trow)
{
    const dectables *D = T->D;
    const uint32_t *restrict tab = D->tab;
    const uint32_t *restrict rms = D->rms;
    const uint16_t *restrict words = T->words;
    int32_t *restrict base = b->base;
    int32_t *restrict pc = b->ctx;
    uint8_t *restrict sym = b->sym;
    int64_t j0 = 0;
#ifdef HAVE_AVX2
    if (use_avx2 && D->pf[m].ok) j0 = predict_avx2(n, wt, &D->pf[m], g0, b);
#endif
    predict_tail(j0, n, wt, D->cls.ca[m], D->cls.cl[m], g0, b);
    uint32_t x0 = xs[0], x1 = xs[1], x2 = xs[2], x3 = xs[3];
    uint64_t q0 = qs[0], q1 = qs[1], q2 = qs[2], q3 = qs[3];
    int64_t mm = n - (n & 3), j;
    for (j = 0; j < mm; j += 4) {
        DEC(x0, rms[pc[j]], q0, sym[j]);
        DEC(x1, rms[pc[j + 1]], q1, sym[j + 1]);
        DEC(x2, rms[pc[j + 2]], q2, sym[j + 2]);
        DEC(x3, rms[pc[j + 3]], q3, sym[j + 3]);
    }
    /* the last 1-3 pixels (written out: no lane state through memory) */
    if (j < n) DEC(x0, rms[pc[j]], q0, sym[j]);
    if (j + 1 < n) DEC(x1, rms[pc[j + 1]], q1, sym[j + 1]);
    if (j + 2 < n) DEC(x2, rms[pc[j + 2]], q2, sym[j + 2]);
    xs[0] = x0, xs[1] = x1, xs[2] = x2, xs[3] = x3;
    qs[0] = q0, qs[1] = q1, qs[2] = q2, qs[3] = q3;
    int64_t n_esc = 0;
    for (int64_t j = 0; j < n; j++) {
        int32_t s = sym[j];
        trow[j] = (int16_t)(base[j] + s - RMAX);
        n_esc += s == ESC;
    }
    return n_esc;
}

static inline int past(const uint64_t *qs, const uint64_t *es)
{
    return qs[0] > es[0] || qs[1] > es[1] || qs[2] > es[2] || qs[3] > es[3];
}

/* stages of level k (P: the decoded level plane k + 1); returns 0 or 1 (overrun) */
HOT int decode_level(pyramid *p, int k, rowbufs *b, const int32_t *wts, uint32_t *xs,
                     uint64_t *qs, const uint64_t *es, const dectab *T, const int64_t *esc,
                     int64_t *ne, int64_t eend)
{
    const int64_t H = HALO;
    plane E = p->lv[k + 1], O = p->st[3 * k], Q = p->st[3 * k + 1];
    int st = (int)imin(k, N_LEVEL_GROUPS - 1) * N_STAGE;
    int m0 = (int)imin(k, N_WEIGHT_LEVELS - 1) * N_STAGE;
    for (int kind = 0; kind < N_STAGE; kind++) {
        plane Tp = p->st[3 * k + kind];
        int64_t n_r, n_c;
        stage_rows(kind, p->hs[k], p->ws[k], &n_r, &n_c);
        uint32_t g0 = (uint32_t)(1 + st + kind) * N_CTX;
        const int32_t *wt = wts + (int64_t)(m0 + kind) * N_CLASS * N_W;
        for (int64_t i = 0; i < n_r; i++) {
            features(kind, i, n_c, E, O, Q, b);
            int16_t *trow = ROW(Tp, i + H) + H;
            int64_t n_esc = decode_row(n_c, wt, m0 + kind, g0, b, xs, qs, T, trow);
            if (past(qs, es)) return 1;
            if (n_esc) {
                for (int64_t j = 0; j < n_c; j++) {
                    if (b->sym[j] == ESC) {
                        trow[j] = (int16_t)(*ne < eend ? esc[*ne] : 0);
                        *ne += 1;
                    }
                }
            }
        }
        fill_halo(Tp, n_r, n_c);
    }
    return 0;
}

/* interleave the decoded planes of level k into level plane k */
HOT void interleave_level(pyramid *p, int k)
{
    const int64_t H = HALO, w = p->ws[k];
    plane L = p->lv[k];
    for (int64_t y = 0; y < p->hs[k]; y++) { /* even columns from A, odd ones from B */
        plane A = (y & 1) ? p->st[3 * k + 2] : p->lv[k + 1], B = p->st[3 * k + ((y & 1) ? 0 : 1)];
        const int16_t *ar = ROW(A, (y >> 1) + H) + H, *br = ROW(B, (y >> 1) + H) + H;
        int16_t *lr = ROW(L, y + H) + H;
        int64_t x = 0;
#ifdef HAVE_AVX2 /* SSE2: every x86-64 */
        for (; x + 16 <= w; x += 16) {
            __m128i a = _mm_loadu_si128((const __m128i *)(ar + x / 2));
            __m128i c = _mm_loadu_si128((const __m128i *)(br + x / 2));
            _mm_storeu_si128((__m128i *)(lr + x), _mm_unpacklo_epi16(a, c));
            _mm_storeu_si128((__m128i *)(lr + x + 8), _mm_unpackhi_epi16(a, c));
        }
#endif
        for (; x < w; x++) lr[x] = (x & 1) ? br[x >> 1] : ar[x >> 1];
    }
    fill_halo(L, p->hs[k], p->ws[k]);
}

/* the output, dequantised row by row (level 0 interleaved on the fly) */
HOT void output_rows(pyramid *p, rowbufs *b, uint16_t *out, int64_t h, int64_t w,
                     const dqargs *d)
{
    const int64_t H = HALO;
    for (int64_t y = 0; y < h; y++) {
        int32_t *kb = b->kbuf;
        if (p->K == 0) {
            const int16_t *r = ROW(p->lv[0], H + y) + H;
            for (int64_t j = 0; j < w; j++) kb[j] = r[j];
        } else {
            plane A = (y & 1) ? p->st[2] : p->lv[1], Bp = (y & 1) ? p->st[0] : p->st[1];
            const int16_t *ar = ROW(A, (y >> 1) + H) + H, *br = ROW(Bp, (y >> 1) + H) + H;
            for (int64_t j = 0; j < (w + 1) / 2; j++) kb[2 * j] = ar[j];
            for (int64_t j = 0; j < w / 2; j++) kb[2 * j + 1] = br[j];
        }
        dequantise_row(kb, d->off + y * w, d->gain + y * d->gstride, out + y * w, w, d,
                       d->index0 + y * w);
    }
}

#ifdef HAVE_AVX2
/* `output_rows` without dither, for K > 0: level 0's planes interleaved and dequantised 8
 * pixels at a time with the operations of `adu` (double, no contraction) from a table of
 * e per code, its entries loaded one by one (no gathers): the reconstruction table, or,
 * analytic without a knee, `dequantise_row`'s e_centre - corr for the first codes
 * (`OUT_TAB`), codes below 0 as 0 (`OUT_NEG` of them). Blocks with a code outside the
 * table: `dequantise_row`. `adu`'s clamp as
 * min(top, x + 0.5) truncated and packed with unsigned saturation: trunc = floor for
 * x >= 0, and everything below 0 (NaN: vminpd gives its second operand, truncated to
 * INT32_MIN) packs to 0, as max(floor, 0). gconst: one gain for the whole tile (uniform
 * maps), its products with e in the table. */
#define OUT_TAB 1024
#define OUT_NEG 64
AVX2_INLINE void output_rows8(pyramid *p, rowbufs *b, uint16_t *out, int64_t h, int64_t w,
                              const dqargs *d, const double *tab, int32_t ntab, int gconst)
{
    const int64_t H = HALO;
    const __m256i neg = _mm256_set1_epi32(-OUT_NEG), last = _mm256_set1_epi32(ntab - 1);
    const __m256d half = _mm256_set1_pd(0.5), top = _mm256_set1_pd(d->max_adu);
    for (int64_t y = 0; y < h; y++) {
        plane A = (y & 1) ? p->st[2] : p->lv[1], Bp = (y & 1) ? p->st[0] : p->st[1];
        const int16_t *ar = ROW(A, (y >> 1) + H) + H, *br = ROW(Bp, (y >> 1) + H) + H;
        const float *off = d->off + y * w, *gain = d->gain + y * d->gstride;
        uint16_t *o = out + y * w;
        int64_t x = 0;
        for (; x + 8 <= w; x += 8) {
            const int16_t *a4 = ar + x / 2, *b4 = br + x / 2;
            __m128i ev = _mm_loadl_epi64((const __m128i *)a4), od = _mm_loadl_epi64((const __m128i *)b4);
            __m256i k = _mm256_cvtepi16_epi32(_mm_unpacklo_epi16(ev, od));
            __m256i outside = _mm256_or_si256(_mm256_cmpgt_epi32(k, last), _mm256_cmpgt_epi32(neg, k));
            if (!_mm256_testz_si256(outside, outside)) {
                int32_t kb[8];
                _mm256_storeu_si256((__m256i *)kb, k);
                dequantise_row(kb, off + x, gain + x, o + x, 8, d, d->index0 + y * w + x);
                continue;
            }
#define E2(i) _mm_loadh_pd(_mm_load_sd(tab + a4[i]), tab + b4[i])
            __m256d e0 = _mm256_insertf128_pd(_mm256_castpd128_pd256(E2(0)), E2(1), 1);
            __m256d e1 = _mm256_insertf128_pd(_mm256_castpd128_pd256(E2(2)), E2(3), 1);
#undef E2
            __m256 of = _mm256_loadu_ps(off + x);
            __m256d v0, v1;
            if (gconst) { /* the table holds gain · e */
                v0 = e0;
                v1 = e1;
            } else {
                __m256 gf = _mm256_loadu_ps(gain + x);
                v0 = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(gf)), e0);
                v1 = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(gf, 1)), e1);
            }
            v0 = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(of)), v0);
            v1 = _mm256_add_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(of, 1)), v1);
            v0 = _mm256_min_pd(top, _mm256_add_pd(v0, half));
            v1 = _mm256_min_pd(top, _mm256_add_pd(v1, half));
            __m128i u = _mm_packus_epi32(_mm256_cvttpd_epi32(v0), _mm256_cvttpd_epi32(v1));
            _mm_storeu_si128((__m128i *)(o + x), u);
        }
        if (x < w) {
            int32_t *kb = b->kbuf;
            for (int64_t j = x; j < w; j++) kb[j - x] = (j & 1) ? br[j >> 1] : ar[j >> 1];
            dequantise_row(kb, off + x, gain + x, o + x, w - x, d, d->index0 + y * w + x);
        }
    }
}

/* `output_rows8` with its table, for the case at hand (one inlined copy per case): e of
 * the codes -OUT_NEG..OUT_TAB - 1 (those below 0: code 0's, `dequantise_row`'s clamp),
 * from the reconstruction table (codes below nrec) or analytic */
__attribute__((target("avx2"))) static void output_rows_avx2(pyramid *p, rowbufs *b, uint16_t *out,
                                                            int64_t h, int64_t w,
                                                            const dqargs *d)
{
    double et[OUT_NEG + OUT_TAB], *tab = et + OUT_NEG;
    int32_t ntab = (int32_t)imin(d->nrec, OUT_TAB);
    if (d->analytic) { /* with kp[0] == 0 (the caller checks): `dequantise_row`'s values */
        const double step = d->step, c0 = d->c0, corr = step * step / 48.0;
        for (int32_t k = 0; k < OUT_TAB; k++) {
            double t = step * (double)k;
            double e = 0.25 * t * t - c0;
            tab[k] = k < d->nrec ? e - corr : e;
        }
        ntab = OUT_TAB;
    } else {
        memcpy(tab, d->recon, (size_t)imax(ntab, 0) * sizeof(double));
    }
    if (ntab > 0) {
        for (int32_t k = -OUT_NEG; k < 0; k++) tab[k] = tab[0];
        int gconst = d->gstride == 0;
        for (int64_t x = 1; x < w && gconst; x++) gconst = d->gain[x] == d->gain[0];
        if (gconst) { /* gain · e once per code (the same products) */
            const double g = (double)d->gain[0];
            for (int32_t k = -OUT_NEG; k < ntab; k++) tab[k] = g * tab[k];
            output_rows8(p, b, out, h, w, d, tab, ntab, 1);
        }
        else output_rows8(p, b, out, h, w, d, tab, ntab, 0);
    } else {
        output_rows(p, b, out, h, w, d);
    }
}
#endif

/* decode one tile into out (h, w); returns 1 if every lane ended at its end, 0 if not,
 * -1 when out of memory; *ne_out: the escape position reached */
MULTI static int decode_tile(const dectab *T, const int64_t *starts, const int64_t *ends,
                       const int64_t *esc, int64_t ebeg, int64_t eend, const int32_t *wts,
                       uint16_t *out, int64_t h, int64_t w, const dqargs *d, int64_t *ne_out)
{
    const int64_t H = HALO;
    int64_t ne = ebeg;
    *ne_out = ne;
    for (int l = 0; l < LANES; l++)
        if (ends[l] - starts[l] < 2) return 0;
    pyramid p;
    rowbufs b;
    if (pyramid_alloc(&p, h, w, 0)) return -1;
    if (rows_alloc(&b, w)) {
        free(p.mem);
        return -1;
    }
    const int K = p.K;
    uint32_t xs[LANES];
    uint64_t qs[LANES], es[LANES];
    const uint32_t *restrict tab = T->D->tab;
    const uint16_t *restrict words = T->words;
    for (int l = 0; l < LANES; l++) {
        uint64_t q = (uint64_t)starts[l];
        xs[l] = ((uint32_t)words[q] << 16) | words[q + 1];
        qs[l] = q + 2;
        es[l] = (uint64_t)ends[l];
    }
    int ok = 0;
    uint32_t g = T->D->rms[0];
    plane P = p.lv[K];
    for (int64_t i = 0; i < p.hs[K]; i++) {
        for (int64_t j = 0; j < p.ws[K]; j++) {
            int l = j & 3;
            uint8_t s;
            DEC(xs[l], g, qs[l], s);
            int16_t c;
            if (s == ESC) {
                c = (int16_t)(ne < eend ? esc[ne] : 0);
                ne++;
            } else {
                c = (int16_t)(med(P, H + i, H + j) + s - RMAX);
            }
            ROW(P, H + i)[H + j] = c;
        }
        if (past(qs, es)) goto done;
    }
    fill_halo(P, p.hs[K], p.ws[K]);
    for (int k = K - 1; k >= 0; k--) {
        if (decode_level(&p, k, &b, wts, xs, qs, es, T, esc, &ne, eend)) goto done;
        if (k > 0) interleave_level(&p, k);
    }
    output_rows(&p, &b, out, h, w, d);
    ok = qs[0] == es[0] && qs[1] == es[1] && qs[2] == es[2] && qs[3] == es[3];
done:
    *ne_out = ne;
    free(p.mem);
    free(b.mem);
    return ok;
}

/* ------------------------------------------------------------------ format 5 */
/* Format 5: WL rANS states per tile, symbol t of the tile (decoding order) on state
 * t % WL, and one word stream: the states' renormalisation words in the order of the
 * symbols. The states start as the first 2 · WL words (high word first). The decoder
 * steps WL consecutive symbols at once (two AVX2 vectors of 8 states) and the chains of
 * its 16 states overlap. */
#define WL 16
#define CHUNK 512 /* the most pixels of a row decoded at a time (256: 2-4 % slower) */

typedef struct {
    uint32_t x[WL];
    uint64_t q; /* position in the words */
} wide;

/* one scalar step of symbol t (the top plane, the generic path) */
#define DECW(W, gs, t, s)                                                                        \
    do {                                                                                          \
        uint32_t *x_ = &(W)->x[(t) & (WL - 1)];                                                   \
        uint32_t e_ = tab[(gs) + (*x_ & (TAB - 1))];                                             \
        uint32_t v_ = (e_ >> 16) * (*x_ >> TAB_BITS) + (e_ & (TAB - 1));                          \
        if (v_ < RANS_L) v_ = (v_ << 16) | words[(W)->q++];                                       \
        *x_ = v_;                                                                                 \
        (s) = (uint8_t)((e_ >> TAB_BITS) & 63);                                                   \
    } while (0)

/* the renormalisation of a scalar step without a branch (half of them would be
 * mispredicted): v = r, qi += 1 if v < RANS_L. gcc turns the C select into a branch,
 * hence cmov and adc on x86-64. */
#if defined(__GNUC__) && defined(__x86_64__)
#define RSEL(V, R, QI)                                                                            \
    __asm__("cmpl $0x10000, %[v]\n\tcmovbl %[r], %[v]\n\tadcq $0, %[q]"                           \
            : [v] "+r"(V), [q] "+r"(QI)                                                           \
            : [r] "r"(R)                                                                          \
            : "cc")
#else
#define RSEL(V, R, QI)                                                                            \
    do {                                                                                          \
        uint32_t n_ = (V) < RANS_L;                                                               \
        (V) = n_ ? (R) : (V);                                                                     \
        (QI) += n_;                                                                               \
    } while (0)
#endif

/* one step of state xv at row position j (as DECW): the next word is read whatever the
 * need (the words have room past the stream's end) and kept by RSEL */
#define DECS(xv, j)                                                                               \
    do {                                                                                          \
        uint32_t x_ = (xv), e_ = tab[rms[pc[j]] + (x_ & (TAB - 1))];                              \
        uint32_t v_ = (e_ >> 16) * (x_ >> TAB_BITS) + (e_ & (TAB - 1));                           \
        uint32_t r_ = (v_ << 16) | words[qi];                                                     \
        RSEL(v_, r_, qi);                                                                         \
        (xv) = v_;                                                                                \
        sym[j] = (uint8_t)((e_ >> TAB_BITS) & 63);                                                \
    } while (0)

/* the symbols of row positions 0..n-1 (symbol index t0 + j) in scalar steps, the 16
 * states unrolled (the path without AVX2) */
HOT void rans_row_scalar(int64_t n, int64_t t0, const int32_t *restrict pc,
                         uint8_t *restrict sym, wide *W, const dectables *D,
                         const uint16_t *words)
{
    const uint32_t *restrict tab = D->tab, *restrict rms = D->rms;
    uint64_t qi = W->q;
    uint32_t x[WL];
    memcpy(x, W->x, sizeof x);
    int64_t j = 0;
    for (; j < n && ((t0 + j) & (WL - 1)); j++) DECS(x[(t0 + j) & (WL - 1)], j);
    for (; j + WL <= n; j += WL) {
        DECS(x[0], j);
        DECS(x[1], j + 1);
        DECS(x[2], j + 2);
        DECS(x[3], j + 3);
        DECS(x[4], j + 4);
        DECS(x[5], j + 5);
        DECS(x[6], j + 6);
        DECS(x[7], j + 7);
        DECS(x[8], j + 8);
        DECS(x[9], j + 9);
        DECS(x[10], j + 10);
        DECS(x[11], j + 11);
        DECS(x[12], j + 12);
        DECS(x[13], j + 13);
        DECS(x[14], j + 14);
        DECS(x[15], j + 15);
    }
    for (; j < n; j++) DECS(x[(t0 + j) & (WL - 1)], j);
    memcpy(W->x, x, sizeof x);
    W->q = qi;
}

#ifdef HAVE_AVX2
/* word permutation per renormalisation mask: state i takes word popcount(mask & (2**i - 1)) */
static int32_t perm8[256][8];

static void perm8_init(void)
{
    for (int m = 0; m < 256; m++) {
        int k = 0;
        for (int i = 0; i < 8; i++) {
            perm8[m][i] = (m >> i) & 1 ? k : 0;
            k += (m >> i) & 1;
        }
    }
}

/* the table entries of the 16 states at positions j..j+15, by scalar loads: a state's
 * slot (its low TAB_BITS) taken out of the vector two at a time, its context's table from
 * rms. Not vpgatherdd: on Zen 3 a gather of 8 costs ~10 cycles of throughput, the 8
 * loads it stands for ~3, and the two gathers of rms were as many again (RESULTS.md,
 * "decoder rANS step"); the loads also leave the chain of a state shorter. */
AVX2_INLINE void entries16(int64_t j, const int32_t *pc, __m256i XA, __m256i XB, const int *tab,
                           const int *rms, __m256i *ea, __m256i *eb)
{
    const __m256i m10 = _mm256_set1_epi32(TAB - 1);
    __m256i sa = _mm256_and_si256(XA, m10), sb = _mm256_and_si256(XB, m10);
    __m128i a0 = _mm256_castsi256_si128(sa), a1 = _mm256_extracti128_si256(sa, 1);
    __m128i b0 = _mm256_castsi256_si128(sb), b1 = _mm256_extracti128_si256(sb, 1);
    uint64_t s01 = (uint64_t)_mm_cvtsi128_si64(a0), s23 = (uint64_t)_mm_extract_epi64(a0, 1);
    uint64_t s45 = (uint64_t)_mm_cvtsi128_si64(a1), s67 = (uint64_t)_mm_extract_epi64(a1, 1);
    uint64_t s89 = (uint64_t)_mm_cvtsi128_si64(b0), sab = (uint64_t)_mm_extract_epi64(b0, 1);
    uint64_t scd = (uint64_t)_mm_cvtsi128_si64(b1), sef = (uint64_t)_mm_extract_epi64(b1, 1);
#define E2(k, s2) tab[rms[pc[j + (k)]] + (uint32_t)(s2)], tab[rms[pc[j + (k) + 1]] + (uint32_t)((s2) >> 32)]
    *ea = _mm256_setr_epi32(E2(0, s01), E2(2, s23), E2(4, s45), E2(6, s67));
    *eb = _mm256_setr_epi32(E2(8, s89), E2(10, sab), E2(12, scd), E2(14, sef));
#undef E2
}

/* one step of the 16 states over row positions j..j+15; masked: only positions in [0, n)
 * change state, read words or count (the first and last steps of a row) */
AVX2_INLINE void rans_step16(int64_t j, int64_t n, int masked, const int32_t *pc, uint8_t *sym,
                             __m256i *XA, __m256i *XB, const uint16_t **qp, const dectables *D)
{
    const __m256i m10 = _mm256_set1_epi32(TAB - 1), m63 = _mm256_set1_epi32(63),
                  zero = _mm256_setzero_si256();
    __m256i ea, eb;
    entries16(j, pc, *XA, *XB, (const int *)D->tab, (const int *)D->rms, &ea, &eb);
    __m256i va = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_srli_epi32(ea, 16), _mm256_srli_epi32(*XA, TAB_BITS)),
                                  _mm256_and_si256(ea, m10));
    __m256i vb = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_srli_epi32(eb, 16), _mm256_srli_epi32(*XB, TAB_BITS)),
                                  _mm256_and_si256(eb, m10));
    __m256i na = _mm256_cmpeq_epi32(_mm256_srli_epi32(va, 16), zero);
    __m256i nb = _mm256_cmpeq_epi32(_mm256_srli_epi32(vb, 16), zero);
    if (masked) {
        const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), none = _mm256_set1_epi32(-1),
                      nn = _mm256_set1_epi32((int)n);
        __m256i pa = _mm256_add_epi32(_mm256_set1_epi32((int)j), iota);
        __m256i pb = _mm256_add_epi32(pa, _mm256_set1_epi32(8));
        __m256i aa = _mm256_and_si256(_mm256_cmpgt_epi32(pa, none), _mm256_cmpgt_epi32(nn, pa));
        __m256i ab = _mm256_and_si256(_mm256_cmpgt_epi32(pb, none), _mm256_cmpgt_epi32(nn, pb));
        va = _mm256_blendv_epi8(*XA, va, aa);
        vb = _mm256_blendv_epi8(*XB, vb, ab);
        na = _mm256_and_si256(na, aa);
        nb = _mm256_and_si256(nb, ab);
    }
    int ma = _mm256_movemask_ps(_mm256_castsi256_ps(na));
    int mb = _mm256_movemask_ps(_mm256_castsi256_ps(nb));
    const uint16_t *q = *qp;
    __m256i wa = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)q));
    wa = _mm256_permutevar8x32_epi32(wa, _mm256_loadu_si256((const __m256i *)perm8[ma]));
    q += _mm_popcnt_u32((unsigned)ma);
    __m256i wb = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)q));
    wb = _mm256_permutevar8x32_epi32(wb, _mm256_loadu_si256((const __m256i *)perm8[mb]));
    q += _mm_popcnt_u32((unsigned)mb);
    *qp = q;
    *XA = _mm256_blendv_epi8(va, _mm256_or_si256(_mm256_slli_epi32(va, 16), wa), na);
    *XB = _mm256_blendv_epi8(vb, _mm256_or_si256(_mm256_slli_epi32(vb, 16), wb), nb);
    __m256i sa = _mm256_and_si256(_mm256_srli_epi32(ea, TAB_BITS), m63);
    __m256i sb = _mm256_and_si256(_mm256_srli_epi32(eb, TAB_BITS), m63);
    __m256i s16 = _mm256_permute4x64_epi64(_mm256_packus_epi32(sa, sb), 0xD8);
    __m128i s8 = _mm_packus_epi16(_mm256_castsi256_si128(s16), _mm256_extracti128_si256(s16, 1));
    _mm_storeu_si128((__m128i *)(sym + j), s8);
}

/* the symbols of row positions 0..n-1 (symbol index t0 + j), 16 states at a time: rows
 * start anywhere in the state cycle, so the first and last steps are masked; pc and sym
 * are readable and writable from -WL to n + WL (pc: valid contexts there) */
__attribute__((target("avx2,popcnt"))) static void rans_row_avx2(int64_t n, int64_t t0,
                                                                const int32_t *pc, uint8_t *sym,
                                                                wide *W, const dectables *D,
                                                                const uint16_t *words)
{

    __m256i XA = _mm256_loadu_si256((const __m256i *)W->x);
    __m256i XB = _mm256_loadu_si256((const __m256i *)(W->x + 8));
    const uint16_t *q = words + W->q;
    int64_t j = -(t0 & (WL - 1));
    if (j < 0 || j + WL > n) { /* a first step that starts before the row or ends after it */
        rans_step16(j, n, 1, pc, sym, &XA, &XB, &q, D);
        j += WL;
    }
    for (; j + WL <= n; j += WL) rans_step16(j, n, 0, pc, sym, &XA, &XB, &q, D);
    if (j < n) rans_step16(j, n, 1, pc, sym, &XA, &XB, &q, D);
    _mm256_storeu_si256((__m256i *)W->x, XA);
    _mm256_storeu_si256((__m256i *)(W->x + 8), XB);
    W->q = (uint64_t)(q - words);
}
#endif

/* the prediction of pixels jd..n-1 of row i (jd: a multiple of 8 predicted already): the
 * fused AVX2 form where f is given, then the features and the scalar form for the rest */
HOT void predict_row(int kind, int64_t i, int64_t jd, int64_t n, plane E, plane O, plane Q,
                     const int32_t *wt, const predform *f, const classtab *cls, int m,
                     uint32_t g0, rowbufs *b)
{
    rowbufs bt = *b;
#ifdef HAVE_AVX2
    if (f) {
        bt.base += jd, bt.ctx += jd;
        jd += predict_fused(kind, i, n - jd, pshift(E, jd), pshift(O, jd), pshift(Q, jd), wt, f,
                            g0, &bt);
        bt = *b;
    }
#endif
    if (jd < n) {
        bt.r1 += jd, bt.r2 += jd, bt.r3 += jd, bt.al += jd;
        features(kind, i, n - jd, pshift(E, jd), pshift(O, jd), pshift(Q, jd), &bt);
    }
    predict_tail(jd, n, wt, cls->ca[m], cls->cl[m], g0, b);
}

/* one row of a stage in format 5 (as `decode_row`); t0: the symbol index of its start */
HOT int64_t decode_row16(int kind, int64_t i, int64_t n, plane E, plane O, plane Q, int64_t t0,
                         const int32_t *wt, int m, uint32_t g0, rowbufs *b, wide *W,
                         const dectab *T, int16_t *trow)
{
    const dectables *D = T->D;
    int32_t *restrict base = b->base;
    uint8_t *restrict sym = b->sym;
    predict_row(kind, i, 0, n, E, O, Q, wt, use_avx2 && D->pf[m].ok ? &D->pf[m] : NULL, &D->cls,
                m, g0, b);
#ifdef HAVE_AVX2
    if (use_avx2) {
        for (int64_t j = n; j < n + WL; j++) b->ctx[j] = 0;
        rans_row_avx2(n, t0, b->ctx, sym, W, D, T->words);
    } else
#endif
        rans_row_scalar(n, t0, b->ctx, sym, W, D, T->words);
#ifdef HAVE_AVX2
    if (use_avx2) return codes_avx2(n, base, sym, trow);
#endif
    int64_t n_esc = 0;
    for (int64_t j = 0; j < n; j++) {
        int32_t s = sym[j];
        trow[j] = (int16_t)(base[j] + s - RMAX);
        n_esc += s == ESC;
    }
    return n_esc;
}

/* the codes of the n_esc escapes among the symbols of a row chunk, in order (16 symbols
 * compared at a time where SSE2 is there: every x86-64) */
HOT void put_escapes(int64_t n, int64_t n_esc, const uint8_t *sym, int16_t *trow,
                     const int64_t *esc, int64_t *ne, int64_t eend)
{
    int64_t j0 = 0;
#ifdef HAVE_AVX2
    const __m128i e = _mm_set1_epi8(ESC);
    for (; j0 + 16 <= n && n_esc > 0; j0 += 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(sym + j0)), e));
        for (; m; m &= m - 1, n_esc--) {
            trow[j0 + __builtin_ctz(m)] = (int16_t)(*ne < eend ? esc[*ne] : 0);
            *ne += 1;
        }
    }
#endif
    for (int64_t j = j0; j < n && n_esc > 0; j++) {
        if (sym[j] == ESC) {
            trow[j] = (int16_t)(*ne < eend ? esc[*ne] : 0);
            *ne += 1;
            n_esc--;
        }
    }
}

/* Pipelined stages (AVX2, prediction form exact): the rANS step is latency-bound (a
 * third of it waits on the chain of a state) and a stage's predictions read only planes
 * decoded before the stage, so the prediction of the next chunk of the stage (the next
 * CHUNK pixels of the row, or the start of the next row) is interleaved with the rANS
 * steps of the current one: 16 pixels after each step of 16 symbols. Two sets of row
 * buffers, one per chunk in flight; the same operations and pixels as `decode_row16`. */
typedef struct {
    int64_t i, j0, n;
} chunk16;

#define PSET (CHUNK + 4 * WL)
typedef struct {
    int32_t r[6][PSET]; /* r1, r2, r3, al, base, kbuf */
    int32_t ctx[PSET];  /* from -WL: zeros before and after the chunk */
    uint8_t sym[PSET];
} pipeset;

static void pipeset_bufs(pipeset *S, rowbufs *b)
{
    b->r1 = S->r[0], b->r2 = S->r[1], b->r3 = S->r[2], b->al = S->r[3];
    b->base = S->r[4], b->kbuf = S->r[5];
    b->ctx = S->ctx + WL, b->sym = S->sym + WL, b->mem = NULL;
}

/* a tile being decoded in format 5: its planes, full-row buffers (the stages without the
 * pipeline), chunk buffers (`pipeset`, the pipelined stages), rANS states and positions */
typedef struct {
    pyramid p;
    rowbufs b;
    pipeset *S; /* two */
    wide W;
    int64_t t, ne, eend;
    uint64_t qend;
    const int64_t *esc;
    int small; /* the current stage reads small codes only (`fused16_kind`) */
} tile16;

/* a stage (kind) of level k: its weight set m, columns n_c, context group g0, and the
 * pixels of a chunk of its rows when pipelined (cl: the rows in chunks of nearly one
 * length, a multiple of 16 up to CHUNK, so that the steps of a chunk have the next one's
 * prediction beside them: 700 columns as 352 + 348, not 512 + 188) */
typedef struct {
    int kind, m;
    int64_t n_c, cl;
    const int32_t *wt;
    uint32_t g0;
    const dectab *T;
} stage16;

HOT stage16 stage_of(const pyramid *p, int k, int kind, const int32_t *wts, const dectab *T)
{
    int st = (int)imin(k, N_LEVEL_GROUPS - 1) * N_STAGE;
    int m = (int)imin(k, N_WEIGHT_LEVELS - 1) * N_STAGE + kind;
    int64_t n_r, n_c;
    stage_rows(kind, p->hs[k], p->ws[k], &n_r, &n_c);
    int64_t nch = (n_c + CHUNK - 1) / CHUNK, cl = ((n_c + nch - 1) / imax(nch, 1) + 15) & ~15;
    stage16 G = {kind, m, n_c, imin(imax(cl, 16), CHUNK), wts + (int64_t)m * N_CLASS * N_W,
                 (uint32_t)(1 + st + kind) * N_CTX, T};
    return G;
}

#ifdef HAVE_AVX2
/* the prediction of chunk c's pixels from jd on (jd: a multiple of 8 done already) */
HOT void pipe_predict(int kind, chunk16 c, int64_t jd, plane E, plane O, plane Q,
                      const int32_t *wt, const predform *f, const classtab *cls, int m,
                      uint32_t g0, rowbufs *b, int small)
{
    E = pshift(E, c.j0), O = pshift(O, c.j0), Q = pshift(Q, c.j0);
    if (jd < c.n) {
        rowbufs bt = *b;
        bt.base += jd, bt.ctx += jd;
        jd += predict_over(kind, c.i, c.n - jd, pshift(E, jd), pshift(O, jd), pshift(Q, jd), wt,
                           f, g0, &bt, small);
    }
    predict_row(kind, c.i, jd, c.n, E, O, Q, wt, f, cls, m, g0, b); /* none left */
}

/* `rans_row_avx2` of one chunk with, after each step, the fused prediction of 16 pixels
 * of the next chunk nx (planes at its row start) into pb; returns the pixels predicted */
AVX2_INLINE int64_t rans_pred_kind(int kind, int fast, int small, int64_t n, int64_t t0,
                                   const int32_t *pc,
                                   uint8_t *sym, wide *W, const dectables *D,
                                   const uint16_t *words, chunk16 nx, plane E, plane O,
                                   plane Q, const int32_t *wt, const predform *f, uint32_t g0,
                                   rowbufs *pb)
{

    __m256i XA = _mm256_loadu_si256((const __m256i *)W->x);
    __m256i XB = _mm256_loadu_si256((const __m256i *)(W->x + 8));
    const uint16_t *q = words + W->q;
    E = pshift(E, nx.j0), O = pshift(O, nx.j0), Q = pshift(Q, nx.j0);
    int64_t j = -(t0 & (WL - 1)), jp = 0;
#define SIDE()                                                                                    \
    if (jp < nx.n) { /* 16 pixels, past nx's end too (`predict_over`) */                        \
        rowbufs bt_ = *pb;                                                                        \
        bt_.base += jp, bt_.ctx += jp;                                                            \
        if (small)                                                                                \
            fused16_kind(kind, fast, nx.i, 16, pshift(E, jp), pshift(O, jp), pshift(Q, jp), wt,   \
                         f, g0, &bt_);                                                            \
        else                                                                                      \
            fused_kind(kind, fast, nx.i, 16, pshift(E, jp), pshift(O, jp), pshift(Q, jp), wt, f,  \
                       g0, &bt_);                                                                 \
        jp += 16;                                                                                 \
    }
    if (j < 0 || j + WL > n) {
        rans_step16(j, n, 1, pc, sym, &XA, &XB, &q, D);
        SIDE();
        j += WL;
    }
    for (; j + WL <= n; j += WL) {
        rans_step16(j, n, 0, pc, sym, &XA, &XB, &q, D);
        SIDE();
    }
    if (j < n) {
        rans_step16(j, n, 1, pc, sym, &XA, &XB, &q, D);
        SIDE();
    }
#undef SIDE
    _mm256_storeu_si256((__m256i *)W->x, XA);
    _mm256_storeu_si256((__m256i *)(W->x + 8), XB);
    W->q = (uint64_t)(q - words);
    return jp;
}

__attribute__((target("avx2,popcnt"))) static int64_t
rans_pred(int kind, int64_t n, int64_t t0, const int32_t *pc, uint8_t *sym, wide *W,
          const dectables *D, const uint16_t *words, chunk16 nx, plane E, plane O, plane Q,
          const int32_t *wt, const predform *f, uint32_t g0, rowbufs *pb, int small)
{
#define RP(k, fa, sm)                                                                             \
    rans_pred_kind(k, fa, sm, n, t0, pc, sym, W, D, words, nx, E, O, Q, wt, f, g0, pb)
    if (small) {
        if (f->fast) return kind == 0 ? RP(0, 1, 1) : kind == 1 ? RP(1, 1, 1) : RP(2, 1, 1);
        return kind == 0 ? RP(0, 0, 1) : kind == 1 ? RP(1, 0, 1) : RP(2, 0, 1);
    }
    if (f->fast) return kind == 0 ? RP(0, 1, 0) : kind == 1 ? RP(1, 1, 0) : RP(2, 1, 0);
    return kind == 0 ? RP(0, 0, 0) : kind == 1 ? RP(1, 0, 0) : RP(2, 0, 0);
#undef RP
}

/* the next chunk of a stage of n_r rows of n_c pixels in chunks of cl; 0 after the last */
static inline int next_chunk16(chunk16 *c, int64_t n_r, int64_t n_c, int64_t cl)
{
    c->j0 += cl;
    if (c->j0 >= n_c) c->j0 = 0, c->i++;
    c->n = imin(cl, n_c - c->j0);
    return c->i < n_r;
}

/* one tile's pipelined stage in progress: the stage's planes and rows, the chunk whose
 * symbols come next (c, predicted in B[s]) */
typedef struct {
    tile16 *X;
    plane E, O, Q, Tp;
    int64_t n_r;
    rowbufs B[2];
    chunk16 c;
    int s, active;
} lane16;

/* lane L of tile X at stage G of level k, its first chunk predicted */
static void lane_begin(lane16 *L, tile16 *X, int k, const stage16 *G)
{
    const dectables *D = G->T->D;
    pyramid *p = &X->p;
    int64_t n_c;
    L->X = X;
    L->E = p->lv[k + 1], L->O = p->st[3 * k], L->Q = p->st[3 * k + 1];
    L->Tp = p->st[3 * k + G->kind];
    stage_rows(G->kind, p->hs[k], p->ws[k], &L->n_r, &n_c);
    pipeset_bufs(&X->S[0], &L->B[0]);
    pipeset_bufs(&X->S[1], &L->B[1]);
    L->c = (chunk16){0, 0, imin(G->cl, G->n_c)};
    L->s = 0;
    L->active = L->n_r > 0 && G->n_c > 0;
    if (L->active)
        pipe_predict(G->kind, L->c, 0, L->E, L->O, L->Q, G->wt, &D->pf[G->m], &D->cls, G->m,
                     G->g0, &L->B[0], X->small);
}

/* the chunk after L's (nx) and whether there is one; the contexts past L's chunk zeroed */
static inline int lane_next(lane16 *L, const stage16 *G, chunk16 *nx)
{
    rowbufs *b = &L->B[L->s];
    for (int64_t j = L->c.n; j < L->c.n + WL; j++) b->ctx[j] = 0;
    *nx = L->c;
    return next_chunk16(nx, L->n_r, G->n_c, G->cl);
}

/* the symbols of L's chunk alone, with the prediction of nx (if more) 16 pixels after
 * each step; returns the pixels of nx predicted */
static int64_t lane_rans(lane16 *L, const stage16 *G, int more, chunk16 nx)
{
    const dectables *D = G->T->D;
    rowbufs *b = &L->B[L->s];
    tile16 *X = L->X;
    if (!more) {
        rans_row_avx2(L->c.n, X->t, b->ctx, b->sym, &X->W, D, G->T->words);
        return 0;
    }
    return rans_pred(G->kind, L->c.n, X->t, b->ctx, b->sym, &X->W, D, G->T->words, nx, L->E,
                     L->O, L->Q, G->wt, &D->pf[G->m], G->g0, &L->B[L->s ^ 1], X->small);
}

/* after the symbols of L's chunk: its codes and escapes, then the rest of the prediction
 * of nx (jp pixels done) and nx the current chunk; 1 when the words ran out */
__attribute__((target("avx2,popcnt"))) static int lane_end(lane16 *L, const stage16 *G, int more,
                                                          chunk16 nx, int64_t jp)
{
    const int64_t H = HALO;
    const dectables *D = G->T->D;
    tile16 *X = L->X;
    rowbufs *b = &L->B[L->s];
    int16_t *trow = ROW(L->Tp, L->c.i + H) + H + L->c.j0;
    int64_t n_esc = codes_avx2(L->c.n, b->base, b->sym, trow);
    X->t += L->c.n;
    if (n_esc) put_escapes(L->c.n, n_esc, b->sym, trow, X->esc, &X->ne, X->eend);
    if (L->c.j0 + L->c.n >= G->n_c && X->W.q > X->qend) return 1;
    if (!more) {
        L->active = 0;
        return 0;
    }
    pipe_predict(G->kind, nx, jp, L->E, L->O, L->Q, G->wt, &D->pf[G->m], &D->cls, G->m, G->g0,
                 &L->B[L->s ^ 1], X->small);
    L->c = nx;
    L->s ^= 1;
    return 0;
}

/* the rest of L's stage, alone; 1 when the words ran out */
static int lane_run(lane16 *L, const stage16 *G)
{
    while (L->active) {
        chunk16 nx;
        int more = lane_next(L, G, &nx);
        int64_t jp = lane_rans(L, G, more, nx);
        if (lane_end(L, G, more, nx, jp)) return 1;
    }
    return 0;
}

/* one stage of level k of tile X, pipelined; 1 when the words ran out */
static int decode_stage16_pipe(tile16 *X, int k, const stage16 *G)
{
    lane16 L;
    lane_begin(&L, X, k, G);
    return lane_run(&L, G);
}

#endif

/* one stage of level k of tile X row by row, in chunks of CHUNK pixels (the row buffers
 * stay in L1): the path without AVX2 or without an exact prediction form; 1 when the
 * words ran out */
HOT int decode_stage16_rows(tile16 *X, int k, const stage16 *G)
{
    const int64_t H = HALO;
    pyramid *p = &X->p;
    plane E = p->lv[k + 1], O = p->st[3 * k], Q = p->st[3 * k + 1], Tp = p->st[3 * k + G->kind];
    int64_t n_r, n_c;
    stage_rows(G->kind, p->hs[k], p->ws[k], &n_r, &n_c);
    for (int64_t i = 0; i < n_r; i++) {
        for (int64_t j0 = 0; j0 < n_c; j0 += CHUNK) {
            int64_t n = imin(CHUNK, n_c - j0);
            int16_t *trow = ROW(Tp, i + H) + H + j0;
            int64_t n_esc = decode_row16(G->kind, i, n, pshift(E, j0), pshift(O, j0),
                                         pshift(Q, j0), X->t, G->wt, G->m, G->g0, &X->b, &X->W,
                                         G->T, trow);
            X->t += n;
            if (n_esc) put_escapes(n, n_esc, X->b.sym, trow, X->esc, &X->ne, X->eend);
        }
        if (X->W.q > X->qend) return 1;
    }
    return 0;
}

HOT void stage_halo(tile16 *X, int k, int kind)
{
    int64_t n_r, n_c;
    stage_rows(kind, X->p.hs[k], X->p.ws[k], &n_r, &n_c);
    fill_halo(X->p.st[3 * k + kind], n_r, n_c);
}

/* the stage G is pipelined (AVX2 and an exact prediction form) */
HOT int piped(const stage16 *G)
{
#ifdef HAVE_AVX2
    return use_avx2 && G->T->D->pf[G->m].ok;
#else
    (void)G;
    return 0;
#endif
}

/* stages of level k in format 5 (as `decode_level`); pipelined stages whose planes hold
 * small codes only (`plane_small`: E, then O and Q when decoded) in 16-bit lanes */
HOT int decode_level16(tile16 *X, int k, const int32_t *wts, const dectab *T)
{
    int sm[3] = {0, 0, 0}; /* E, O, Q small */
#ifdef HAVE_AVX2
    sm[0] = use_avx2 && plane_small(X->p.lv[k + 1]);
#endif
    for (int kind = 0; kind < N_STAGE; kind++) {
        stage16 G = stage_of(&X->p, k, kind, wts, T);
        X->small = sm[0] && (kind < 1 || sm[1]) && (kind < 2 || sm[2]);
#ifdef HAVE_AVX2
        if (piped(&G)) {
            if (decode_stage16_pipe(X, k, &G)) return 1;
        } else
#endif
            if (decode_stage16_rows(X, k, &G))
            return 1;
        stage_halo(X, k, kind);
#ifdef HAVE_AVX2
        if (kind < 2 && sm[0]) sm[1 + kind] = plane_small(X->p.st[3 * k + kind]);
#endif
    }
    return 0;
}

/* per thread, the decoder's planes and row buffers, kept from tile to tile (tiles of a
 * frame have one size: no allocation, no page faults after the first); with pthreads
 * freed when the thread ends (threads of short-lived pools: ~1.5 MiB each for a
 * 256 x 2048 tile otherwise) */
typedef struct {
    char *mem[2];
    size_t size[2];
} arena_t;

static void *arena_grow(arena_t *a, int i, size_t n)
{
    if (n > a->size[i]) {
        free(a->mem[i]);
        a->mem[i] = (char *)malloc(n);
        a->size[i] = a->mem[i] ? n : 0;
    }
    return a->mem[i];
}

#if defined(_WIN32)
static __declspec(thread) arena_t arena_tls;
static int arena_init(void) { return 0; }
static void *arena(int i, size_t n) { return arena_grow(&arena_tls, i, n); }
#else
#include <pthread.h>
static pthread_key_t arena_key;

static void arena_free(void *p)
{
    arena_t *a = (arena_t *)p;
    free(a->mem[0]);
    free(a->mem[1]);
    free(a);
}

static int arena_init(void) { return pthread_key_create(&arena_key, arena_free); }

static void *arena(int i, size_t n)
{
    arena_t *a = (arena_t *)pthread_getspecific(arena_key);
    if (!a) {
        a = (arena_t *)calloc(1, sizeof(arena_t));
        if (!a || pthread_setspecific(arena_key, a)) {
            free(a);
            return NULL;
        }
    }
    return arena_grow(a, i, n);
}
#endif

/* the planes, with PLANE_SLACK bytes after them: the pipelined predictions read up to 15
 * pixels past a row's end (`predict_over`) */
#define PLANE_SLACK 256
static void *arena_planes(size_t n) { return arena(0, n + PLANE_SLACK); }

/* tile X of words[start:end] (h, w) begun: planes and row buffers from the thread's
 * arena, the states read and the top plane decoded. Returns 1 to go on, 0 when the tile
 * is done (too short, or its words ran out), -1 out of memory. */
HOT int tile16_begin(tile16 *X, const dectab *T, int64_t start, int64_t end,
                     const int64_t *esc, int64_t ebeg, int64_t eend, int64_t h, int64_t w)
{
    const int64_t H = HALO;
    X->ne = ebeg, X->t = 0, X->esc = esc, X->eend = eend, X->qend = (uint64_t)end;
    if (end - start < 2 * WL) return 0;
    pyramid *p = &X->p;
    rowbufs *b = &X->b;
    if (pyramid_alloc_with(p, h, w, 0, arena_planes)) return -1;
    /* row buffers (`rows_alloc`), then contexts and symbols readable from -WL to w + 2 WL
     * (`rans_row_avx2`; contexts 0 before the row) */
    size_t nr = (size_t)w + 8, nrb = nr * (7 * sizeof(int32_t) + 1) + 64, nc = (size_t)w + 4 * WL;
    nrb = (nrb + 63) & ~(size_t)63; /* the contexts (int32) aligned: nr is odd for odd w */
    char *m = (char *)arena(1, nrb + nc * (sizeof(int32_t) + 1));
    if (!m) return -1;
    b->mem = NULL;
    b->r1 = (int32_t *)m, b->r2 = b->r1 + nr, b->r3 = b->r2 + nr, b->base = b->r3 + nr;
    b->kbuf = b->base + nr, b->al = b->kbuf + nr;
    int32_t *pcb = (int32_t *)(m + nrb);
    uint8_t *syb = (uint8_t *)(pcb + nc);
    memset(pcb, 0, WL * sizeof(int32_t));
    b->ctx = pcb + WL;
    b->sym = syb + WL;
    const int K = p->K;
    const uint32_t *restrict tab = T->D->tab;
    const uint16_t *restrict words = T->words;
    wide *W = &X->W;
    for (int l = 0; l < WL; l++)
        W->x[l] = ((uint32_t)words[start + 2 * l] << 16) | words[start + 2 * l + 1];
    W->q = (uint64_t)start + 2 * WL;
    uint32_t g = T->D->rms[0];
    plane P = p->lv[K];
    int64_t t = 0, ne = X->ne;
    for (int64_t i = 0; i < p->hs[K]; i++) {
        for (int64_t j = 0; j < p->ws[K]; j++, t++) {
            uint8_t s;
            DECW(W, g, t, s);
            int16_t c;
            if (s == ESC) {
                c = (int16_t)(ne < eend ? esc[ne] : 0);
                ne++;
            } else {
                c = (int16_t)(med(P, H + i, H + j) + s - RMAX);
            }
            ROW(P, H + i)[H + j] = c;
        }
        if (W->q > X->qend) {
            X->ne = ne;
            return 0;
        }
    }
    X->t = t, X->ne = ne;
    fill_halo(P, p->hs[K], p->ws[K]);
    return 1;
}

/* the pixels of tile X into out; 1 when its words were used exactly, else 0 */
HOT int tile16_end(tile16 *X, uint16_t *out, int64_t h, int64_t w, const dqargs *d)
{
    pyramid *p = &X->p;
#ifdef HAVE_AVX2
    if (use_avx2 && p->K > 0 && !d->dither && (!d->analytic || d->kp[0] == 0.0))
        output_rows_avx2(p, &X->b, out, h, w, d);
    else
#endif
        output_rows(p, &X->b, out, h, w, d);
    return X->W.q == X->qend;
}

/* decode one tile of format 5 (words[start:end]) into out (h, w); returns as
 * `decode_tile` */
MULTI static int decode_tile16(const dectab *T, int64_t start, int64_t end, const int64_t *esc,
                               int64_t ebeg, int64_t eend, const int32_t *wts, uint16_t *out,
                               int64_t h, int64_t w, const dqargs *d, int64_t *ne_out)
{
    tile16 X;
    pipeset S[2];
    memset(S[0].ctx, 0, WL * sizeof(int32_t));
    memset(S[1].ctx, 0, WL * sizeof(int32_t));
    X.S = S;
    int r = tile16_begin(&X, T, start, end, esc, ebeg, eend, h, w);
    for (int k = X.p.K - 1; k >= 0 && r > 0; k--) {
        if (decode_level16(&X, k, wts, T)) r = 0;
        else if (k > 0) interleave_level(&X.p, k);
    }
    if (r > 0) r = tile16_end(&X, out, h, w, d);
    *ne_out = X.ne;
    return r;
}

/* the arguments and results of one call of `decode_tile16` */
typedef struct {
    int64_t start, end, ebeg, eend, h, w, ne;
    uint16_t *out;
    dqargs d;
    int ok;
} tilecall;

/* format 5 encoder: symbols in decoding order, contexts as for `rans_encode` (the lane
 * bits ignored); writes the stream to out[0:len] and returns len, -1 if cap is too small */
MULTI static int64_t rans_encode16(const uint8_t *syms, const uint16_t *ctxs, int64_t n,
                                   const uint32_t *fc, uint16_t *out, int64_t cap)
{
    uint32_t xs[WL];
    int64_t pos = cap; /* words written backwards from the end */
    for (int l = 0; l < WL; l++) xs[l] = RANS_L;
    /* ctxs NULL: syms is the uint16 histogram cells of `model_tile` (the table rows) */
    const uint16_t *cells = ctxs ? NULL : (const uint16_t *)syms;
    for (int64_t t = n - 1; t >= 0; t--) {
        uint32_t g = cells ? 0 : ctxs[t] & ((1 << LANE_SHIFT) - 1);
        uint32_t e = cells ? fc[cells[t]] : fc[g * N_SYM + syms[t]];
        uint32_t f = e >> 16, x = xs[t & (WL - 1)];
        if ((uint64_t)x >= ((uint64_t)f << (32 - TAB_BITS))) {
            if (pos <= 2 * WL) return -1;
            out[--pos] = (uint16_t)(x & 0xFFFF);
            x >>= 16;
        }
        uint32_t q = x / f, r = x - q * f;
        xs[t & (WL - 1)] = (q << TAB_BITS) + r + (e & 0xFFFF);
    }
    for (int l = WL - 1; l >= 0; l--) {
        out[--pos] = (uint16_t)(xs[l] & 0xFFFF);
        out[--pos] = (uint16_t)(xs[l] >> 16);
    }
    memmove(out, out + pos, (size_t)(cap - pos) * sizeof(uint16_t));
    return cap - pos;
}

#ifdef HAVE_AVX2
/* lanes of a renormalisation mask in ascending order, packed at the back (positions
 * 8 - popcount .. 7) */
static int32_t back8[256][8];
static void enc_tables_init(void)
{
    for (int m = 0; m < 256; m++) {
        int k = 8 - __builtin_popcount((unsigned)m);
        for (int i = 0; i < k; i++) back8[m][i] = 0;
        for (int i = 0; i < 8; i++)
            if ((m >> i) & 1) back8[m][k++] = i;
    }
}

/* the renormalisation words of the lanes in need (mask m), ascending, ending at out
 * (stored as 8 words from out - 8: the ones below out - popcount(m) are overwritten by
 * the next stores); returns out - popcount(m) */
AVX2_INLINE uint16_t *emit8(__m256i x, int m, uint16_t *out)
{
    __m256i w = _mm256_permutevar8x32_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0xFFFF)),
                                            _mm256_loadu_si256((const __m256i *)back8[m]));
    __m128i u = _mm_packus_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    _mm_storeu_si128((__m128i *)(out - 8), u);
    return out - _mm_popcnt_u32((unsigned)m);
}

/* x // f of 8 lanes (x < 2**32, 1 <= f <= TAB): the correctly rounded double quotient
 * has the exact floor (a non-integer x / f lies >= 1 / f below the next integer) */
AVX2_INLINE __m256i div8(__m256i x, __m256i f)
{
    const __m256d two31 = _mm256_set1_pd(2147483648.0);
    __m256i xs = _mm256_xor_si256(x, _mm256_set1_epi32((int)0x80000000u)); /* x - 2**31 */
    __m256d x0 = _mm256_add_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(xs)), two31);
    __m256d x1 = _mm256_add_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(xs, 1)), two31);
    __m256d q0 = _mm256_div_pd(x0, _mm256_cvtepi32_pd(_mm256_castsi256_si128(f)));
    __m256d q1 = _mm256_div_pd(x1, _mm256_cvtepi32_pd(_mm256_extracti128_si256(f, 1)));
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm256_cvttpd_epi32(q0)),
                                   _mm256_cvttpd_epi32(q1), 1);
}

/* one encoder step of 8 states with table entries e (freq << 16 | cum) */
AVX2_INLINE __m256i enc8(__m256i x, __m256i e, __m256i need)
{
    __m256i f = _mm256_srli_epi32(e, 16), c = _mm256_and_si256(e, _mm256_set1_epi32(0xFFFF));
    x = _mm256_blendv_epi8(x, _mm256_srli_epi32(x, 16), need);
    __m256i q = div8(x, f);
    __m256i r = _mm256_sub_epi32(x, _mm256_mullo_epi32(q, f));
    return _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(q, TAB_BITS), r), c);
}

/* the table entries of symbols t..t+7; *bad collects the lanes whose context row (the
 * bits below LANE_SHIFT) or symbol is out of range or whose frequency is 0 */
AVX2_INLINE __m256i entries8(const uint8_t *syms, const uint16_t *ctxs, int64_t t,
                             const int *fc, int64_t nctx, __m256i *bad)
{
    __m256i g = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(ctxs + t)));
    g = _mm256_and_si256(g, _mm256_set1_epi32((1 << LANE_SHIFT) - 1));
    __m256i s = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(syms + t)));
    __m256i ok = _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)imin(nctx, 1 << 16)), g),
                                  _mm256_cmpgt_epi32(_mm256_set1_epi32(N_SYM), s));
    __m256i i = _mm256_add_epi32(_mm256_mullo_epi32(g, _mm256_set1_epi32(N_SYM)), s);
    __m256i e = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), fc, i, ok, 4);
    /* e = 0 where not ok: frequency 0 */
    *bad = _mm256_or_si256(*bad, _mm256_cmpeq_epi32(_mm256_srli_epi32(e, 16), _mm256_setzero_si256()));
    return e;
}

/* `entries8` from histogram cells (context · N_SYM + symbol; *bad: a cell beyond the
 * ncell entries or of frequency 0) */
AVX2_INLINE __m256i entries8c(const uint16_t *cells, int64_t t, const int *fc, int64_t ncell,
                              __m256i *bad)
{
    __m256i i = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(cells + t)));
    __m256i ok = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)imin(ncell, 1 << 16)), i);
    __m256i e = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), fc, i, ok, 4);
    *bad = _mm256_or_si256(*bad, _mm256_cmpeq_epi32(_mm256_srli_epi32(e, 16), _mm256_setzero_si256()));
    return e;
}

/* `rans_encode16` with the 16 states in two AVX2 vectors: the words written backwards
 * from out + cap as in the scalar kernel, each group of 16 symbols' in one store per
 * vector. cap >= n + 2 WL + 16 (the stores reach 8 words below the last word). Returns
 * the length (the stream moved to out[0:len]), -2 for a symbol out of range or of
 * frequency 0. */
__attribute__((target("avx2,popcnt"))) static int64_t rans_encode16_avx2(
    const uint8_t *syms, const uint16_t *ctxs, int64_t n, const uint32_t *fc, int64_t nctx,
    uint16_t *out, int64_t cap)
{
    uint32_t xs[WL];
    uint16_t *o = out + cap;
    for (int l = 0; l < WL; l++) xs[l] = RANS_L;
    int64_t nv = n & ~(int64_t)(WL - 1);
    const uint16_t *cells = ctxs ? NULL : (const uint16_t *)syms; /* as `rans_encode16` */
    for (int64_t t = n - 1; t >= nv; t--) { /* the last, partial group: scalar */
        int64_t g = cells ? cells[t] / N_SYM : ctxs[t] & ((1 << LANE_SHIFT) - 1);
        int64_t k = cells ? cells[t] : g * N_SYM + syms[t];
        if (g >= nctx || k - g * N_SYM >= N_SYM || (fc[k] >> 16) == 0) return -2;
        uint32_t e = fc[k];
        uint32_t f = e >> 16, x = xs[t & (WL - 1)];
        if ((x >> (32 - TAB_BITS)) >= f) {
            *--o = (uint16_t)(x & 0xFFFF);
            x >>= 16;
        }
        uint32_t q = x / f;
        xs[t & (WL - 1)] = (q << TAB_BITS) + (x - q * f) + (e & 0xFFFF);
    }
    __m256i XA = _mm256_loadu_si256((const __m256i *)xs);
    __m256i XB = _mm256_loadu_si256((const __m256i *)(xs + 8));
    const __m256i one = _mm256_set1_epi32(1);
    __m256i bad = _mm256_setzero_si256();
    for (int64_t t = nv - WL; t >= 0; t -= WL) {
        __m256i ea, eb;
        if (cells) {
            ea = entries8c(cells, t, (const int *)fc, nctx * N_SYM, &bad);
            eb = entries8c(cells, t + 8, (const int *)fc, nctx * N_SYM, &bad);
        } else {
            ea = entries8(syms, ctxs, t, (const int *)fc, nctx, &bad);
            eb = entries8(syms, ctxs, t + 8, (const int *)fc, nctx, &bad);
        }
        /* x >= f << 22: (x >> 22) > f - 1, both below 2**11 */
        __m256i na = _mm256_cmpgt_epi32(_mm256_srli_epi32(XA, 32 - TAB_BITS),
                                        _mm256_sub_epi32(_mm256_srli_epi32(ea, 16), one));
        __m256i nb = _mm256_cmpgt_epi32(_mm256_srli_epi32(XB, 32 - TAB_BITS),
                                        _mm256_sub_epi32(_mm256_srli_epi32(eb, 16), one));
        o = emit8(XB, _mm256_movemask_ps(_mm256_castsi256_ps(nb)), o);
        o = emit8(XA, _mm256_movemask_ps(_mm256_castsi256_ps(na)), o);
        XA = enc8(XA, ea, na);
        XB = enc8(XB, eb, nb);
    }
    if (!_mm256_testz_si256(bad, bad)) return -2; /* (frequency 0: a double division, no trap) */
    _mm256_storeu_si256((__m256i *)xs, XA);
    _mm256_storeu_si256((__m256i *)(xs + 8), XB);
    for (int l = WL - 1; l >= 0; l--) {
        *--o = (uint16_t)(xs[l] & 0xFFFF);
        *--o = (uint16_t)(xs[l] >> 16);
    }
    int64_t len = out + cap - o;
    memmove(out, o, (size_t)len * sizeof(uint16_t));
    return len;
}
#endif

#ifdef HAVE_AVX2
/* `train_tile`'s moments of a row, one pixel's 14 in three and a half vectors: the
 * products in 32 bits (exact: plane values within +-SMALL_CODE, so |f| <= 8 SMALL_CODE and
 * a product below 2**31), widened to 64 bits and added */
__attribute__((target("avx2"))) static void train_row_avx2(int64_t n, const rowbufs *b,
                                                          const int16_t *t, int64_t *acc,
                                                          const int64_t *cell0)
{
    const __m256i ia = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 2),
                  ib = _mm256_setr_epi32(0, 1, 2, 3, 1, 2, 3, 2),
                  ic = _mm256_setr_epi32(2, 3, 4, 4, 4, 4, 5, 5),
                  id = _mm256_setr_epi32(3, 3, 0, 1, 2, 3, 5, 5);
    /* local copies: the stores to acc would otherwise reload them from b every pixel */
    const int32_t *restrict al = b->al, *restrict r1 = b->r1, *restrict r2 = b->r2,
                            *restrict r3 = b->r3;
    for (int64_t j = 0; j < n; j++) {
        uint64_t v = (uint32_t)al[j];
        int64_t *u = acc + cell0[v >> 8] + (int64_t)(v & 0xFF) * N_MOM;
        /* q = (f1, f2, f3, 1, y, 0, 0, 0) */
        __m256i q = _mm256_setr_epi32(r1[j], r2[j], r3[j], 1, t[j], 0, 0, 0);
        __m256i P = _mm256_mullo_epi32(_mm256_permutevar8x32_epi32(q, ia),
                                       _mm256_permutevar8x32_epi32(q, ib));
        __m256i R = _mm256_mullo_epi32(_mm256_permutevar8x32_epi32(q, ic),
                                       _mm256_permutevar8x32_epi32(q, id));
        __m256i *w = (__m256i *)u;
        _mm256_storeu_si256(w, _mm256_add_epi64(_mm256_loadu_si256(w),
                                                _mm256_cvtepi32_epi64(_mm256_castsi256_si128(P))));
        _mm256_storeu_si256(w + 1, _mm256_add_epi64(_mm256_loadu_si256(w + 1),
                                                    _mm256_cvtepi32_epi64(_mm256_extracti128_si256(P, 1))));
        _mm256_storeu_si256(w + 2, _mm256_add_epi64(_mm256_loadu_si256(w + 2),
                                                    _mm256_cvtepi32_epi64(_mm256_castsi256_si128(R))));
        __m128i *z = (__m128i *)(u + 12);
        _mm_storeu_si128(z, _mm_add_epi64(_mm_loadu_si128(z),
                                          _mm_cvtepi32_epi64(_mm256_extracti128_si256(R, 1))));
    }
}
#endif

/* whether every plane value (codes as int16, `build_planes`) lies within +-SMALL_CODE */
MULTI static int codes_small(const int32_t *codes, int64_t n)
{
    int32_t lo = 0, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t v = (int16_t)codes[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    return lo >= -SMALL_CODE && hi <= SMALL_CODE;
}

/* the encoder's planes (`build_planes` without the level-0 plane, which only the
 * polyphase split reads): level 0's four phases straight from the codes, one pass; returns
 * whether every code (as int16) lies within +-SMALL_CODE (`codes_small`). Allocated with
 * with_level0 = 0 (a tile of one level, K = 0, keeps its level-0 plane) */
MULTI static int build_planes_enc(pyramid *p, const int32_t *codes, int64_t h, int64_t w)
{
    const int64_t H = HALO;
    if (p->K == 0) {
        build_planes(p, codes, h, w);
        return codes_small(codes, h * w);
    }
    plane X[4];
    int dy[4], dx[4];
    for (int t = 0; t < 4; t++) X[t] = phase(p, 0, t, &dy[t], &dx[t]);
    int32_t lo = 0, hi = 0;
    const int64_t m = w / 2;
    for (int64_t i = 0; i < h; i++) {
        const int32_t *restrict c = codes + i * w;
        /* row parity dy: phases (dy, dx) = (0, 0) ee 0, (0, 1) eo 2, (1, 0) oe 3, (1, 1) oo 1 */
        int16_t *restrict ev = ROW(X[i & 1 ? 3 : 0], H + i / 2) + H;
        int16_t *restrict od = ROW(X[i & 1 ? 1 : 2], H + i / 2) + H;
        for (int64_t j = 0; j < m; j++) { /* vectorises */
            int16_t a = (int16_t)c[2 * j], b = (int16_t)c[2 * j + 1];
            ev[j] = a;
            od[j] = b;
            lo = min32(lo, min32(a, b));
            hi = max32(hi, max32(a, b));
        }
        if (w & 1) {
            int16_t a = (int16_t)c[w - 1];
            ev[m] = a;
            lo = min32(lo, a);
            hi = max32(hi, a);
        }
    }
    for (int t = 0; t < 4; t++) fill_halo(X[t], (h + 1 - dy[t]) / 2, (w + 1 - dx[t]) / 2);
    split_levels(p, 1); /* the coarser levels as in build_planes */
    return lo >= -SMALL_CODE && hi <= SMALL_CODE;
}

/* the moments of the training rows into acc; vec: 8-wide accumulation (`train_row_avx2`,
 * every plane value within +-SMALL_CODE) */
MULTI static void train_tile(pyramid *p, rowbufs *b, int64_t *acc, const int32_t *act_lut,
                             int row_step, int sparse, int vec)
{
    for (int k = 0; k < p->K; k++) {
        plane E = p->lv[k + 1], O = p->st[3 * k], Q = p->st[3 * k + 1];
        int m0 = (int)imin(k, N_WEIGHT_LEVELS - 1) * N_STAGE;
        /* sparse: levels >= 1 at half the density (`pyramid.train_tile`) */
        int rstep = k == 0 ? row_step : ((k == 1 ? (row_step + 1) / 2 : 1) << (sparse ? 1 : 0));
        for (int kind = 0; kind < N_STAGE; kind++) {
            plane T = p->st[3 * k + kind];
            int64_t n_r, n_c;
            stage_rows(kind, p->hs[k], p->ws[k], &n_r, &n_c);
            uint64_t m = (uint64_t)(m0 + kind);
            int64_t cell0[ACT_MAX + 1]; /* offset of (set m, activity's class, level 0) */
            for (int a = 0; a <= ACT_MAX; a++)
                cell0[a] = (int64_t)((m * N_ACT_CLS + (uint64_t)(act_lut[a] & 0xFF) / N_LVL_CLS)
                                     * (LVL_MAX + 1) * N_MOM);
            for (int64_t i = kind % rstep; i < n_r; i += rstep) {
                features(kind, i, n_c, E, O, Q, b);
                const int16_t *t = ROW(T, i + HALO) + HALO;
#ifdef HAVE_AVX2
                if (vec) {
                    train_row_avx2(n_c, b, t, acc, cell0);
                    continue;
                }
#endif
                (void)vec;
                for (int64_t j = 0; j < n_c; j++) {
                    uint64_t v = b->al[j];
                    uint64_t c = (uint64_t)(act_lut[v >> 8] & 0xFF) / N_LVL_CLS;
                    uint64_t o = ((m * N_ACT_CLS + c) * (LVL_MAX + 1) + (v & 0xFF)) * N_MOM;
                    int64_t f1 = b->r1[j], f2 = b->r2[j], f3 = b->r3[j], y = t[j];
                    int64_t *u = acc + o;
                    u[0] += f1 * f1;
                    u[1] += f1 * f2;
                    u[2] += f1 * f3;
                    u[3] += f1;
                    u[4] += f2 * f2;
                    u[5] += f2 * f3;
                    u[6] += f2;
                    u[7] += f3 * f3;
                    u[8] += f3;
                    u[9] += 1;
                    u[10] += y * f1;
                    u[11] += y * f2;
                    u[12] += y * f3;
                    u[13] += y;
                }
            }
        }
    }
}

/* ================================================================== encoder: modelling */
/* (after the decoder: the encoder's prediction uses its AVX2 paths, `predict_fused`) */
_Static_assert(N_CTX_ALL * N_SYM <= 65536, "histogram cells must fit uint16");
/* syms, ctxs: the symbols and (lane bits |) contexts of `rans_encode`/`rans_encode16`; or
 * (ctxs NULL) syms is a uint16 array of histogram cells, context · N_SYM + symbol: the
 * table row of `rans_encode16c` (format 5), one array written instead of two */
MULTI static int64_t model_tile(pyramid *p, rowbufs *b, const int32_t *wts, const classtab *cts,
                          uint8_t *syms, uint16_t *ctxs, int32_t *esc, uint32_t *hist)
{
    uint16_t *cells = ctxs ? NULL : (uint16_t *)syms;
    uint32_t *hist2 = hist + N_CTX_ALL * N_SYM; /* the odd pixels' (summed by the caller) */
    const int64_t H = HALO;
    const int K = p->K;
#ifdef HAVE_AVX2
    predform pf[N_SETS]; /* the decoder's gather-free prediction where it is exact */
    for (int m = 0; m < N_SETS; m++) pred_form(cts, m, &pf[m]);
#endif
    int64_t t = 0, n_esc = 0;
    plane P = p->lv[K];
    for (int64_t i = 0; i < p->hs[K]; i++) {
        for (int64_t j = 0; j < p->ws[K]; j++) {
            int64_t c = ROW(P, H + i)[H + j];
            int s = symbol(c, med(P, H + i, H + j));
            if (s == ESC) esc[n_esc++] = (int32_t)c;
            if (cells) {
                cells[t] = (uint16_t)s; /* context 0 */
            } else {
                syms[t] = (uint8_t)s;
                ctxs[t] = (uint16_t)((j & 3) << LANE_SHIFT);
            }
            hist[s] += 1;
            t++;
        }
    }
    for (int k = K - 1; k >= 0; k--) {
        plane E = p->lv[k + 1], O = p->st[3 * k], Q = p->st[3 * k + 1];
        int st = (int)imin(k, N_LEVEL_GROUPS - 1) * N_STAGE;
        int m0 = (int)imin(k, N_WEIGHT_LEVELS - 1) * N_STAGE;
        for (int kind = 0; kind < N_STAGE; kind++) {
            plane T = p->st[3 * k + kind];
            int64_t n_r, n_c;
            stage_rows(kind, p->hs[k], p->ws[k], &n_r, &n_c);
            uint32_t g0 = (uint32_t)(1 + st + kind) * N_CTX;
            const int32_t *wt = wts + (int64_t)(m0 + kind) * N_CLASS * N_W;
            const uint32_t *ca = cts->ca[m0 + kind], *cl = cts->cl[m0 + kind];
            for (int64_t i = 0; i < n_r; i++) {
                int64_t j0 = 0;
#ifdef HAVE_AVX2
                if (use_avx2 && pf[m0 + kind].ok)
                    j0 = predict_fused(kind, i, n_c, E, O, Q, wt, &pf[m0 + kind], g0, b);
#endif
                if (j0 < n_c) { /* features of the pixels left, into the buffers at j0 */
                    rowbufs bt = *b;
                    bt.r1 += j0, bt.r2 += j0, bt.r3 += j0, bt.al += j0;
                    plane Ej = {E.d + j0, E.R, E.C}, Oj = {O.d + j0, O.R, O.C},
                          Qj = {Q.d + j0, Q.R, Q.C};
                    features(kind, i, n_c - j0, Ej, Oj, Qj, &bt);
                }
                predict_tail(j0, n_c, wt, ca, cl, g0, b);
                const int16_t *restrict trow = ROW(T, H + i) + H;
                int32_t *restrict gg = b->ctx;
                int32_t n_row_esc = 0;
                const int32_t *restrict bs = b->base;
                uint8_t *restrict sy = cells ? b->sym : syms + t; /* cells: a row buffer */
                if (cells) {
                    uint16_t *restrict ce = cells + t;
                    for (int64_t j = 0; j < n_c; j++) { /* vectorises */
                        int32_t r = trow[j] - bs[j] + RMAX;
                        int32_t e = (uint32_t)r >= 2 * RMAX;
                        int32_t sym = e ? ESC : r;
                        sy[j] = (uint8_t)sym;
                        gg[j] = gg[j] * N_SYM + sym; /* the histogram cell */
                        ce[j] = (uint16_t)gg[j];
                        n_row_esc += e;
                    }
                } else {
                    uint16_t *restrict cx = ctxs + t;
                    for (int64_t j = 0; j < n_c; j++) { /* symbols and lanes: vectorises */
                        int32_t r = trow[j] - bs[j] + RMAX;
                        int32_t e = (uint32_t)r >= 2 * RMAX;
                        int32_t sym = e ? ESC : r;
                        sy[j] = (uint8_t)sym;
                        cx[j] = (uint16_t)(gg[j] | ((j & 3) << LANE_SHIFT));
                        gg[j] = gg[j] * N_SYM + sym; /* the histogram cell */
                        n_row_esc += e;
                    }
                }
                /* two histograms (even and odd pixels): equal neighbouring cells do not
                 * wait for each other's increment */
                int64_t j = 0;
                for (; j + 1 < n_c; j += 2) {
                    hist[gg[j]] += 1;
                    hist2[gg[j + 1]] += 1;
                }
                if (j < n_c) hist[gg[j]] += 1;
                for (const uint8_t *e = sy; n_row_esc > 0; n_row_esc--, e++) { /* memchr: SIMD */
                    e = (const uint8_t *)memchr(e, ESC, (size_t)(sy + n_c - e));
                    esc[n_esc++] = trow[e - sy];
                }
                t += n_c;
            }
        }
    }
    return n_esc;
}

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
    PyObject *res = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(sizeof(dectables) + (size_t)ntab * TAB * 4));
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
             && nprep == (Py_ssize_t)(sizeof(dectables) + (size_t)D->ntab * TAB * 4),
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
             && nprep == (Py_ssize_t)(sizeof(dectables) + (size_t)(*D)->ntab * TAB * 4),
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
    PyObject *res = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(sizeof(dectables) + (size_t)ntab * TAB * 4));
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

/* ================================================================== per-frame model fit
 * The encoder's work once per frame (henc): the predictor weights from the training
 * moments (`pyramid.solve_weights`) and the rANS tables from the histogram
 * (`pyramid.encoder_tables`). Their numpy twins use the same operations (`exactfit`):
 * IEEE arithmetic in the same order for the weights, integers for the context costs,
 * so both make the same choices bit for bit. */
#define XL_F 16
#define XL_BITS 14
#define XL_N (1 << XL_BITS)
static int64_t log_tab[XL_N + 1], xl_tab[XL_N]; /* ilog2(c), c · ilog2(c) */

/* log2(c) · 2^XL_F of c >= 1 by repeated squaring (`exactfit.ilog2`) */
static int64_t ilog2_fx(uint64_t c)
{
    int e = 0;
    for (int s = 32; s; s >>= 1)
        if (c >> (e + s)) e += s;
    uint64_t y = e <= 31 ? c << (31 - e) : c >> (e - 31);
    int64_t r = e;
    for (int i = 0; i < XL_F; i++) {
        y = (y * y) >> 31;
        int hi = y >= ((uint64_t)1 << 32);
        r = 2 * r + hi;
        if (hi) y >>= 1;
    }
    return r;
}

static void xl_init(void)
{
    log_tab[0] = xl_tab[0] = 0;
    for (int64_t c = 1; c < XL_N; c++) {
        log_tab[c] = ilog2_fx((uint64_t)c);
        xl_tab[c] = c * log_tab[c];
    }
    log_tab[XL_N] = ilog2_fx(XL_N);
}

/* c · L(c): the table, or above it c's top XL_BITS bits' logarithm interpolated
 * linearly (floor) plus the shift (`exactfit.xlog2x`) */
static inline int64_t xlog2x(int64_t c)
{
    if (c < XL_N) return xl_tab[c];
    /* the least r >= 1 with c >> r < XL_N: the bit length of c less XL_BITS */
#if defined(__GNUC__) || defined(__clang__)
    int r = 64 - XL_BITS - __builtin_clzll((uint64_t)c);
#else
    int r = 1;
    while ((c >> r) >= XL_N) r++;
#endif
    int64_t m = c >> r, lo = log_tab[m];
    int64_t frac = ((log_tab[m + 1] - lo) * (c - (m << r))) >> r;
    return c * (lo + frac + ((int64_t)r << XL_F));
}

/* fixed-point bits of coding `cnt` with its own distribution, plus its table
 * (`pyramid._code_bits`) */
static int64_t code_bits(const int64_t *cnt)
{
    int64_t tot = 0, sum = 0, used = 0;
    for (int s = 0; s < N_SYM; s++) {
        if (!cnt[s]) continue;
        tot += cnt[s];
        sum += xlog2x(cnt[s]);
        used++;
    }
    return xlog2x(tot) - sum + ((9 * used + 16 * (tot > 0)) << XL_F);
}

/* the fraction-bin width (8, 4, 2 or 1 bins per table) of group g, activity a
 * whose tables code the histogram in the fewest bits (ties: the fewest tables) */
static int merge_width(const int64_t *hist, int g, int a)
{
    int64_t m[N_FRAC / 2][N_SYM], cost[FRAC_BITS + 1];
    const int64_t *row[N_FRAC];
    cost[FRAC_BITS] = 0; /* one table per fraction bin: the histogram's own rows */
    for (int f = 0; f < N_FRAC; f++) {
        row[f] = hist + ((int64_t)(g * N_FRAC + f) * N_ACT_CTX + a) * N_SYM;
        cost[FRAC_BITS] += code_bits(row[f]);
    }
    if (cost[FRAC_BITS] == 0) return N_FRAC; /* no count: every cost 0, the fewest tables */
    for (int t = 0; t < N_FRAC / 2; t++)
        for (int s = 0; s < N_SYM; s++) m[t][s] = row[2 * t][s] + row[2 * t + 1][s];
    for (int k = FRAC_BITS - 1; k >= 0; k--) { /* 2^k tables, merged pairwise below */
        cost[k] = 0;
        for (int t = 0; t < (1 << k); t++) cost[k] += code_bits(m[t]);
        for (int t = 0; k && t < (1 << (k - 1)); t++)
            for (int s = 0; s < N_SYM; s++) m[t][s] = m[2 * t][s] + m[2 * t + 1][s];
    }
    int best = 0;
    for (int k = 1; k <= FRAC_BITS; k++)
        if (cost[k] < cost[best]) best = k;
    return N_FRAC >> best;
}

/* context map (`pyramid.choose_contexts`); returns the number of physical tables */
static int choose_contexts(const int64_t *hist, int64_t *remap)
{
    int64_t target[N_CTX_ALL], per[N_CTX_ALL], rank[N_CTX_ALL];
    char empty[N_CTX_ALL];
    for (int g = 0; g < N_GROUPS; g++)
        for (int a = 0; a < N_ACT_CTX; a++) {
            int width = merge_width(hist, g, a);
            for (int f = 0; f < N_FRAC; f++)
                target[g * N_CTX + f * N_ACT_CTX + a] = g * N_CTX + f / width * width * N_ACT_CTX + a;
        }
    memset(per, 0, sizeof per);
    for (int l = 0; l < N_CTX_ALL; l++)
        for (int s = 0; s < N_SYM; s++) per[target[l]] += hist[(int64_t)l * N_SYM + s];
    int64_t first = -1; /* contexts never used share one table */
    for (int l = 0; l < N_CTX_ALL; l++) {
        empty[l] = per[target[l]] == 0;
        if (empty[l] && first < 0) first = target[l];
    }
    for (int l = 0; l < N_CTX_ALL; l++)
        if (empty[l]) target[l] = first;
    int n = 0; /* physical tables: the distinct targets in ascending order */
    memset(rank, 0, sizeof rank);
    for (int l = 0; l < N_CTX_ALL; l++) rank[target[l]] = 1;
    for (int t = 0; t < N_CTX_ALL; t++) rank[t] = rank[t] ? n++ : -1;
    for (int l = 0; l < N_CTX_ALL; l++) remap[l] = rank[target[l]];
    return n;
}

/* frequencies summing to `total`, >= 1 for every seen symbol (`kernels.normalise_counts`) */
static void normalise_row(const int64_t *c, int64_t *v, int m, int64_t total)
{
    int64_t tot = 0, acc = 0;
    for (int s = 0; s < m; s++) tot += c[s];
    if (tot <= 0) {
        for (int s = 0; s < m; s++) v[s] = total / m;
        v[RMAX] += total - (total / m) * m;
        return;
    }
    for (int s = 0; s < m; s++) {
        v[s] = c[s] * total / tot;
        if (v[s] == 0 && c[s] > 0) v[s] = 1;
        acc += v[s];
    }
    while (acc != total) { /* the remainder to (from) the most frequent, first of equals */
        int j = 0;
        for (int s = 1; s < m; s++)
            if (v[s] > v[j]) j = s;
        int64_t d = total - acc;
        if (d < 0 && d < 1 - v[j]) d = 1 - v[j];
        if (d == 0) break; /* cannot happen with m <= total; no endless loop */
        v[j] += d;
        acc += d;
    }
}

/* the tables of `pyramid.encoder_tables`: phys (n, N_SYM), freq and cum (N_CTX_ALL,
 * N_SYM); returns n */
static int encoder_tables(const int64_t *hist, int64_t *remap, int64_t *phys, int64_t *freq,
                          int64_t *cum)
{
    int n = choose_contexts(hist, remap);
    memset(freq, 0, (size_t)n * N_SYM * sizeof(int64_t)); /* counts per table first */
    for (int l = 0; l < N_CTX_ALL; l++)
        for (int s = 0; s < N_SYM; s++) freq[remap[l] * N_SYM + s] += hist[(int64_t)l * N_SYM + s];
    for (int p = 0; p < n; p++) normalise_row(freq + p * N_SYM, phys + p * N_SYM, N_SYM, TAB);
    for (int l = 0; l < N_CTX_ALL; l++) {
        const int64_t *src = phys + remap[l] * N_SYM;
        int64_t *f = freq + (int64_t)l * N_SYM, *c = cum + (int64_t)l * N_SYM, run = 0;
        for (int s = 0; s < N_SYM; s++) {
            f[s] = src[s];
            c[s] = run;
            run += src[s];
        }
    }
    return n;
}

/* level → class LUT at the octiles of `cnt` (`pyramid.level_luts`, float64 cdf) */
static void level_lut(const int64_t *cnt, uint8_t *lut)
{
    double cdf[LVL_MAX + 1], run = 0.0;
    for (int l = 0; l <= LVL_MAX; l++) cdf[l] = run += (double)cnt[l];
    memset(lut, 0, LVL_MAX + 1);
    if (!(cdf[LVL_MAX] > 0)) return;
    int prev = -1;
    for (int k = 1; k < N_LVL_CLS; k++) {
        double thr = cdf[LVL_MAX] * (double)k / (double)N_LVL_CLS;
        int e = 0;
        while (e <= LVL_MAX && cdf[e] <= thr) e++;
        e = e < 1 ? 1 : (e > LVL_MAX ? LVL_MAX : e);
        if (e != prev)
            for (int l = e; l <= LVL_MAX; l++) lut[l]++;
        prev = e;
    }
}

/* the ridge least squares of one class (`pyramid._solve` + `exactfit.solve4`) from
 * its moments `mo` (N_MOM, as float64); 0 without a fit (no sample, singular) */
static int solve_class(const double *mo, double *x)
{
    static const int idx[N_W][N_W] = {{0, 1, 2, 3}, {1, 4, 5, 6}, {2, 5, 7, 8}, {3, 6, 8, 9}};
    double n = mo[9], a[N_W][N_W], b[N_W];
    if (!(n > 0.0)) return 0;
    for (int u = 0; u < N_W; u++) {
        for (int v = 0; v < N_W; v++) a[u][v] = mo[idx[u][v]] / n + (u == v && u < N_W - 1 ? 1e-3 : 0.0);
        b[u] = mo[10 + u] / n;
    }
    for (int k = 0; k < N_W; k++) {
        int p = k;
        for (int i = k + 1; i < N_W; i++) /* the largest magnitude, NaN below all */
            if ((isnan(a[i][k]) ? -1.0 : fabs(a[i][k])) > (isnan(a[p][k]) ? -1.0 : fabs(a[p][k])))
                p = i;
        for (int j = 0; j < N_W; j++) {
            double t = a[k][j];
            a[k][j] = a[p][j];
            a[p][j] = t;
        }
        double t = b[k];
        b[k] = b[p];
        b[p] = t;
        for (int i = k + 1; i < N_W; i++) {
            double f = a[i][k] / a[k][k];
            for (int j = k + 1; j < N_W; j++) a[i][j] = a[i][j] - f * a[k][j];
            b[i] = b[i] - f * b[k];
        }
    }
    int ok = 1;
    for (int i = N_W - 1; i >= 0; i--) {
        double s = b[i];
        for (int j = i + 1; j < N_W; j++) s = s - a[i][j] * x[j];
        x[i] = s / a[i][i];
        ok &= isfinite(x[i]) != 0;
    }
    return ok;
}

/* `pyramid.solve_weights`: luts (N_SETS, LVL_MAX + 1), weights (N_SETS, N_CLASS · N_W);
 * zero: acc is zeroed (each set once read, while in cache) for the next frame's training */
static void solve_weights(int64_t *acc, uint8_t *luts, int32_t *wts, int zero)
{
    const int64_t per_act = (int64_t)(LVL_MAX + 1) * N_MOM;
    for (int st = 0; st < N_SETS; st++) {
        int64_t *as = acc + (int64_t)st * N_ACT_CLS * per_act;
        int64_t cnt[LVL_MAX + 1] = {0}, mom[N_CLASS + 1][N_MOM];
        uint8_t *lut = luts + st * (LVL_MAX + 1);
        for (int a = 0; a < N_ACT_CLS; a++)
            for (int l = 0; l <= LVL_MAX; l++) cnt[l] += as[a * per_act + l * N_MOM + 9];
        level_lut(cnt, lut);
        memset(mom, 0, sizeof mom);
        for (int a = 0; a < N_ACT_CLS; a++)
            for (int l = 0; l <= LVL_MAX; l++)
                for (int q = 0; q < N_MOM; q++)
                    mom[a * N_LVL_CLS + lut[l]][q] += as[a * per_act + l * N_MOM + q];
        for (int c = 0; c < N_CLASS; c++)
            for (int q = 0; q < N_MOM; q++) mom[N_CLASS][q] += mom[c][q];
        if (zero) memset(as, 0, (size_t)N_ACT_CLS * per_act * sizeof(int64_t));
        double x[N_CLASS + 1][N_W], mo[N_MOM];
        int ok[N_CLASS + 1];
        for (int c = 0; c <= N_CLASS; c++) {
            for (int q = 0; q < N_MOM; q++) mo[q] = (double)mom[c][q];
            ok[c] = solve_class(mo, x[c]);
        }
        double pooled[N_W] = {0.25, 0.0, 0.0, 0.0};
        if ((double)mom[N_CLASS][9] > 16 * N_W && ok[N_CLASS]) memcpy(pooled, x[N_CLASS], sizeof pooled);
        for (int c = 0; c < N_CLASS; c++) {
            const double *w = (double)mom[c][9] > 32 * N_W && ok[c] ? x[c] : pooled;
            for (int u = 0; u < N_W; u++) {
                double lim = u < N_W - 1 ? 2.0 : 4096.0, v = w[u];
                v = v < -lim ? -lim : (v > lim ? lim : v);
                wts[(st * N_CLASS + c) * N_W + u] = (int32_t)nearbyint(v * (double)(1 << WB));
            }
        }
    }
}

/* solve_weights(acc i64 (N_SETS, N_ACT_CLS, LVL_MAX + 1, N_MOM), luts u8 (N_SETS,
 * LVL_MAX + 1), wts i32 (N_SETS, N_CLASS · N_W)[, zero]): zero (acc writable) leaves acc
 * zeroed */
static PyObject *py_solve_weights(PyObject *self, PyObject *args)
{
    PyObject *o[3];
    int zero = 0;
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "OOO|p", &o[0], &o[1], &o[2], &zero)) return NULL;
    Py_ssize_t na, nl, nw;
    int64_t *acc = get(&B, o[0], 'i', 8, zero, "acc", &na);
    uint8_t *luts = acc ? get(&B, o[1], 'u', 1, 1, "luts", &nl) : NULL;
    int32_t *wts = luts ? get(&B, o[2], 'i', 4, 1, "wts", &nw) : NULL;
    if (!wts) goto fail;
    NEED(na == (Py_ssize_t)N_SETS * N_ACT_CLS * (LVL_MAX + 1) * N_MOM
         && nl == N_SETS * (LVL_MAX + 1) && nw == N_SETS * N_CLASS * N_W, "sizes");
    solve_weights(acc, luts, wts, zero);
    release(&B);
    Py_RETURN_NONE;
fail:
    release(&B);
    return NULL;
}

/* encoder_tables(hist i64 (N_CTX_ALL, N_SYM), remap i64 (N_CTX_ALL,), phys, freq, cum
 * i64 (N_CTX_ALL, N_SYM)) -> number of physical tables (the rows of phys) */
static PyObject *py_encoder_tables(PyObject *self, PyObject *args)
{
    PyObject *o[5];
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "OOOOO", &o[0], &o[1], &o[2], &o[3], &o[4])) return NULL;
    Py_ssize_t n[5];
    int64_t *p[5];
    static const char *names[5] = {"hist", "remap", "phys", "freq", "cum"};
    for (int i = 0; i < 5; i++)
        if (!(p[i] = get(&B, o[i], 'i', 8, i > 0, names[i], &n[i]))) goto fail;
    const Py_ssize_t full = (Py_ssize_t)N_CTX_ALL * N_SYM;
    NEED(n[0] == full && n[1] == N_CTX_ALL && n[2] == full && n[3] == full && n[4] == full, "sizes");
    uint64_t bad = 0, tot = 0; /* total <= 2^40: the fixed-point costs stay in int64 */
    for (Py_ssize_t i = 0; i < full; i++) { /* unsigned: a negative count is large */
        bad |= (uint64_t)p[0][i] >> 40;
        tot += (uint64_t)p[0][i];
    }
    NEED(!bad && tot <= ((uint64_t)1 << 40), "histogram counts out of range");
    int k = encoder_tables(p[0], p[1], p[2], p[3], p[4]);
    release(&B);
    return PyLong_FromLong(k);
fail:
    release(&B);
    return NULL;
}

/* encoder_entries(hist, remap i64 (N_CTX_ALL,), phys i64 (N_CTX_ALL, N_SYM), entries u32
 * (N_CTX_ALL · N_SYM)) -> number of physical tables: `encoder_tables` and the rANS entries
 * freq << 16 | cum of `rans_encode16` (`ckernels.rans_entries`) in one call. hist: the
 * uint32 halves of `model_tile` (even and odd pixels), m >= 1 pairs (m · 2 · N_CTX_ALL ·
 * N_SYM, one per thread), all summed: no int64 histogram, freq or cum made in numpy */
static PyObject *py_encoder_entries(PyObject *self, PyObject *args)
{
    PyObject *o[4];
    bufs B = {.n = 0};
    int64_t *work = NULL;
    if (!PyArg_ParseTuple(args, "OOOO", &o[0], &o[1], &o[2], &o[3])) return NULL;
    Py_ssize_t nh, nr, np_, ne;
    const Py_ssize_t full = (Py_ssize_t)N_CTX_ALL * N_SYM;
    const uint32_t *h32 = get(&B, o[0], 'u', 4, 0, "hist", &nh);
    int64_t *remap = h32 ? get(&B, o[1], 'i', 8, 1, "remap", &nr) : NULL;
    int64_t *phys = remap ? get(&B, o[2], 'i', 8, 1, "phys", &np_) : NULL;
    uint32_t *ent = phys ? get(&B, o[3], 'u', 4, 1, "entries", &ne) : NULL;
    if (!ent) goto fail;
    NEED(nh > 0 && nh % (2 * full) == 0 && nr == N_CTX_ALL && np_ == full && ne == full, "sizes");
    work = (int64_t *)malloc(3 * (size_t)full * sizeof(int64_t)); /* hist, freq, cum */
    if (!work) {
        release(&B);
        return PyErr_NoMemory();
    }
    int64_t *hist = work, *freq = work + full, *cum = work + 2 * full;
    for (Py_ssize_t i = 0; i < full; i++) hist[i] = h32[i]; /* vectorises */
    for (Py_ssize_t k = full; k < nh; k += full)
        for (Py_ssize_t i = 0; i < full; i++) hist[i] += h32[k + i];
    uint64_t tot = 0; /* total <= 2^40: the fixed-point costs stay in int64 */
    for (Py_ssize_t i = 0; i < full; i++) tot += (uint64_t)hist[i];
    NEED(tot <= ((uint64_t)1 << 40), "histogram counts out of range");
    int n = encoder_tables(hist, remap, phys, freq, cum);
    for (Py_ssize_t i = 0; i < full; i++) /* both in [0, TAB] by construction */
        ent[i] = (uint32_t)(freq[i] << 16 | cum[i]);
    free(work);
    release(&B);
    return PyLong_FromLong(n);
fail:
    free(work);
    release(&B);
    return NULL;
}

/* v_min(stack u16 (n, h, w), off f32 (h, w), gain f32 (h, w)) -> min of (x - off) / gain */
/* ------------------------------------------------------------------ CRC-32 */
/* zlib's CRC-32 (reflected, polynomial 0xEDB88320) of a stream's bytes (`stream.read_header`
 * checks every stream): 64 bytes at a time by carry-less multiplication (folding, then a
 * Barrett reduction: Intel, "Fast CRC computation for generic polynomials using
 * PCLMULQDQ", 2009; the constants of Chromium's zlib, crc32_simd.c), the last bytes by a
 * table; ~10 times zlib 1.2's speed where the CPU has PCLMULQDQ. */
static uint32_t crc_tab[256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_tab[n] = c;
    }
}

/* the register form (the complement of zlib's value) over len bytes */
static uint32_t crc_bytes(uint32_t c, const uint8_t *b, size_t len)
{
    for (size_t i = 0; i < len; i++) c = crc_tab[(c ^ b[i]) & 0xFF] ^ (c >> 8);
    return c;
}

#ifdef HAVE_AVX2 /* x86-64 with gcc or clang: immintrin.h */
#define HAVE_CLMUL 1
/* the register form over len bytes, len >= 64 and a multiple of 16 */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc_fold(uint32_t c, const uint8_t *b,
                                                                 size_t len)
{
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124);
    const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);
    const __m128i m32 = _mm_setr_epi32(~0, 0, ~0, 0);
    __m128i x1 = _mm_loadu_si128((const __m128i *)b), x2 = _mm_loadu_si128((const __m128i *)(b + 16));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(b + 32)), x4 = _mm_loadu_si128((const __m128i *)(b + 48));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)c));
    b += 64, len -= 64;
#define FOLD(x, k, y)                                                                             \
    x = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x11), _mm_clmulepi64_si128(x, k, 0x00)), y)
    for (; len >= 64; b += 64, len -= 64) {
        FOLD(x1, k1k2, _mm_loadu_si128((const __m128i *)b));
        FOLD(x2, k1k2, _mm_loadu_si128((const __m128i *)(b + 16)));
        FOLD(x3, k1k2, _mm_loadu_si128((const __m128i *)(b + 32)));
        FOLD(x4, k1k2, _mm_loadu_si128((const __m128i *)(b + 48)));
    }
    FOLD(x1, k3k4, x2);
    FOLD(x1, k3k4, x3);
    FOLD(x1, k3k4, x4);
    for (; len >= 16; b += 16, len -= 16) FOLD(x1, k3k4, _mm_loadu_si128((const __m128i *)b));
#undef FOLD
    /* 128 bits to 64, then Barrett's reduction to 32 */
    x2 = _mm_clmulepi64_si128(x1, k3k4, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, m32), k5k0, 0x00), x2);
    x2 = _mm_and_si128(_mm_clmulepi64_si128(_mm_and_si128(x1, m32), poly, 0x10), m32);
    x1 = _mm_xor_si128(x1, _mm_clmulepi64_si128(x2, poly, 0x00));
    return (uint32_t)_mm_extract_epi32(x1, 1);
}
#endif

/* crc32(data, value=0) -> zlib.crc32(data, value), or None where the CPU lacks PCLMULQDQ
 * (zlib's own is then as fast as this table); the GIL released */
static PyObject *py_crc32(PyObject *self, PyObject *args)
{
    PyObject *o;
    unsigned long start = 0;
    bufs B = {.n = 0};
    if (!PyArg_ParseTuple(args, "O|k", &o, &start)) return NULL;
#ifdef HAVE_CLMUL
    if (!__builtin_cpu_supports("pclmul") || !__builtin_cpu_supports("sse4.1")) Py_RETURN_NONE;
    Py_ssize_t n;
    const uint8_t *b = get(&B, o, 'u', 1, 0, "data", &n);
    if (!b) goto fail;
    uint32_t c = ~(uint32_t)start;
    Py_BEGIN_ALLOW_THREADS
    size_t head = n >= 64 ? (size_t)n & ~(size_t)15 : 0;
    if (head) c = crc_fold(c, b, head);
    c = crc_bytes(c, b + head, (size_t)n - head);
    Py_END_ALLOW_THREADS
    release(&B);
    return PyLong_FromUnsignedLong((unsigned long)~c);
fail:
    release(&B);
    return NULL;
#else
    (void)o;
    (void)start;
    (void)B;
    Py_RETURN_NONE;
#endif
}

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
