/* _ckernels.c, part: the format-5 encoder: rANS encode, training, modelling.
 * Not a header: included once, in order, by _ckernels.c (one translation unit, so
 * that the kernels inline across parts exactly as before the split). */

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
