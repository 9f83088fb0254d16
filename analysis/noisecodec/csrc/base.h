/* _ckernels.c, part: constants, macros and small helpers shared by every kernel.
 * Not a header: included once, in order, by _ckernels.c (one translation unit, so
 * that the kernels inline across parts exactly as before the split). */

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
