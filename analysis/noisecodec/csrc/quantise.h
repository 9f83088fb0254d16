/* _ckernels.c, part: the encoder's symbols and the quantisers.
 * Not a header: included once, in order, by _ckernels.c (one translation unit, so
 * that the kernels inline across parts exactly as before the split). */

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
