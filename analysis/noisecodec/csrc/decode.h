/* _ckernels.c, part: the decoder of formats 3-4 and the AVX2 building blocks.
 * Not a header: included once, in order, by _ckernels.c (one translation unit, so
 * that the kernels inline across parts exactly as before the split). */

/* ------------------------------------------------------------------ decoder */
/* The decoder's tables, prepared once per stream (`dec_prepare`) and shared by its tiles:
 * - one 32-bit entry per (physical table, slot): freq << 16 | symbol << 10 | slot - cum,
 *   so that a rANS step is one load (`decode_table`'s lut and fc give the same steps);
 * - the same steps in a compact form for the AVX2 rows (`dt_fc`, `dt_sym`);
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
    uint32_t tab[];          /* ntab · TAB entries, then `dt_fc` and `dt_sym` */
} dectables;

typedef struct {
    const dectables *D;
    const uint16_t *words;
} dectab;

/* the bytes of a `dectables` of ntab tables: the entries (4 KiB per table), then the
 * compact form of the same steps that the AVX2 rows read (`entries16`): per table, its
 * symbols' freq << 16 | symbol << TAB_BITS | cum (`dt_fc`, 64 per table, 0 for a symbol
 * of frequency 0), then per slot its symbol (`dt_sym`, one byte). 1.25 KiB per table
 * instead of 4: a stream of many tables (a 10-frame stack has 250-520, a single frame
 * of 0.36-1 Mpx 120-200) keeps a stage's tables in L2, for a second, dependent load per
 * step (RESULTS.md, "Issue 16: stack CPU per frame") */
#define DECTAB_BYTES(ntab) (sizeof(dectables) + (size_t)(ntab) * (TAB * 4 + 64 * 4 + TAB))
static inline uint32_t *dt_fc(const dectables *D) { return (uint32_t *)D->tab + D->ntab * TAB; }
static inline uint8_t *dt_sym(const dectables *D) { return (uint8_t *)(dt_fc(D) + D->ntab * 64); }

/* the compact form of the tables of D from their entries (every run of slots checked:
 * `dec_prepare`, `dec_tables`) */
static void compact_tables(dectables *D)
{
    uint32_t *fc = dt_fc(D);
    uint8_t *sy = dt_sym(D);
    memset(fc, 0, (size_t)D->ntab * 64 * sizeof(uint32_t));
    for (int64_t g = 0; g < D->ntab; g++) {
        const uint32_t *tg = D->tab + g * TAB;
        for (uint32_t slot = 0; slot < TAB;) {
            uint32_t e = tg[slot], s = (e >> TAB_BITS) & 63, f = e >> 16;
            fc[g * 64 + s] = (e & 0xFFFF0000u) | s << TAB_BITS | slot;
            memset(sy + g * TAB + slot, (int)s, f);
            slot += f;
        }
    }
}

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
