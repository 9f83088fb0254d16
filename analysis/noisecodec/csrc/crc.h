/* _ckernels.c, part: CRC-32 by carry-less multiplication.
 * Not a header: included once, in order, by _ckernels.c (one translation unit, so
 * that the kernels inline across parts exactly as before the split). */

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
