/* _ckernels.c, part: the pyramid's geometry and the shared prediction.
 * Not a header: included once, in order, by _ckernels.c (one translation unit, so
 * that the kernels inline across parts exactly as before the split). */

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
