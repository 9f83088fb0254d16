/* _ckernels.c, part: the encoder's per-frame model fit (weights, rANS tables).
 * Not a header: included once, in order, by _ckernels.c (one translation unit, so
 * that the kernels inline across parts exactly as before the split). */

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
