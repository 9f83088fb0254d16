/* _ckernels.c, part: the format-5 decoder: rANS rows, pipelined stages, tiles.
 * Not a header: included once, in order, by _ckernels.c (one translation unit, so
 * that the kernels inline across parts exactly as before the split). */

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

/* the compact entry (`dt_fc`: freq << 16 | symbol << TAB_BITS | cum) of slot sl of the
 * table whose entries start at r (`rms`: table << TAB_BITS) */
AVX2_INLINE int entry_c(const int *fc, const uint8_t *sy, uint32_t r, uint32_t sl)
{
    return fc[(r >> (TAB_BITS - 6)) + sy[r + sl]];
}

/* the compact table entries of the 16 states at positions j..j+15, by scalar loads: a
 * state's slot (its low TAB_BITS) taken out of the vector two at a time, its context's
 * table from rms, the slot's symbol, then the symbol's entry. Not vpgatherdd: on Zen 3 a
 * gather of 8 costs ~10 cycles of throughput, the 8 loads it stands for ~3, and the two
 * gathers of rms were as many again (RESULTS.md, "decoder rANS step"); the loads also
 * leave the chain of a state shorter. The compact form (two dependent loads) rather than
 * the one-load entries (`tab`): 1.25 instead of 4 KiB per table, so that the ~90 tables
 * of a stage of a 10-frame stack stay in L2 (with the one-load entries the Usiigaci
 * stack decoded 0-50 % slower per frame than one frame, with what else ran on the
 * machine; a single frame's tables fit: it costs 2-4 % there. RESULTS.md, "Issue 16:
 * stack CPU per frame") */
AVX2_INLINE void entries16(int64_t j, const int32_t *pc, __m256i XA, __m256i XB,
                           const dectables *D, __m256i *ea, __m256i *eb)
{
    const int *fc = (const int *)dt_fc(D);
    const uint32_t *rms = D->rms;
    const uint8_t *sy = dt_sym(D);
    const __m256i m10 = _mm256_set1_epi32(TAB - 1);
    __m256i sa = _mm256_and_si256(XA, m10), sb = _mm256_and_si256(XB, m10);
    __m128i a0 = _mm256_castsi256_si128(sa), a1 = _mm256_extracti128_si256(sa, 1);
    __m128i b0 = _mm256_castsi256_si128(sb), b1 = _mm256_extracti128_si256(sb, 1);
    uint64_t s01 = (uint64_t)_mm_cvtsi128_si64(a0), s23 = (uint64_t)_mm_extract_epi64(a0, 1);
    uint64_t s45 = (uint64_t)_mm_cvtsi128_si64(a1), s67 = (uint64_t)_mm_extract_epi64(a1, 1);
    uint64_t s89 = (uint64_t)_mm_cvtsi128_si64(b0), sab = (uint64_t)_mm_extract_epi64(b0, 1);
    uint64_t scd = (uint64_t)_mm_cvtsi128_si64(b1), sef = (uint64_t)_mm_extract_epi64(b1, 1);
#define E2(k, s2)                                                                                 \
    entry_c(fc, sy, rms[pc[j + (k)]], (uint32_t)(s2)),                                            \
        entry_c(fc, sy, rms[pc[j + (k) + 1]], (uint32_t)((s2) >> 32))
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
    entries16(j, pc, *XA, *XB, D, &ea, &eb);
    /* x' = freq · (x >> TAB_BITS) + slot - cum */
    __m256i da = _mm256_sub_epi32(_mm256_and_si256(*XA, m10), _mm256_and_si256(ea, m10));
    __m256i db = _mm256_sub_epi32(_mm256_and_si256(*XB, m10), _mm256_and_si256(eb, m10));
    __m256i va = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_srli_epi32(ea, 16), _mm256_srli_epi32(*XA, TAB_BITS)), da);
    __m256i vb = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_srli_epi32(eb, 16), _mm256_srli_epi32(*XB, TAB_BITS)), db);
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
