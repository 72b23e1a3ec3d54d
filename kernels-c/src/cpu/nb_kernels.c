/* Kernel bodies, compiled once per instruction-set path (see CMakeLists.txt): without vector flags
 * (NB_KERNELS = nb_kernels_scalar), with AVX2+FMA+F16C (nb_kernels_avx2), and with AVX-512 F/BW/VL/VNNI
 * (nb_kernels_avx512). The integer dot products are written with 256-bit intrinsics; the AVX-512 build
 * runs them as VNNI vpdpbusd (on Zen 4 a 512-bit op costs two 256-bit ones, so width buys nothing there). */
#include <float.h>
#include <math.h>

#include "nb_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define NB_SIMD 1
#else
#define NB_SIMD 0
#endif

#if NB_SIMD && defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define NB_VNNI 1
#else
#define NB_VNNI 0
#endif

#define INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------- scalar conversions */

INLINE float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

INLINE uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

INLINE float h2f(uint16_t h) {
#if NB_SIMD
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        float f = (float)man * 5.9604644775390625e-8f; /* subnormal: man * 2^-24 */
        return sign ? -f : f;
    }
    if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (man << 13));
    return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
#endif
}

INLINE uint16_t f2h(float f) {
#if NB_SIMD
    return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
#else
    uint32_t x = f32_to_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) return (uint16_t)(sign | 0x7e00);   /* NaN stays NaN */
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);  /* rounds past 65504: infinity */
    if (x < 0x38800000u) {                                   /* below 2^-14: half subnormal */
        uint32_t m = (uint32_t)nearbyintf(bits_to_f32(x) * 16777216.0f);
        return (uint16_t)(sign | m);
    }
    x += 0xfffu + ((x >> 13) & 1); /* round to nearest even on the 13 dropped bits */
    return (uint16_t)(sign | ((x - (112u << 23)) >> 13));
#endif
}

INLINE float bf2f(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

INLINE uint16_t rd16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static const int8_t IQ4NL_VALUES[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* The bitsandbytes NF4 codebook. */
static const float NF4_VALUES[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};

/* Q4_K packs 8 six-bit scales and 8 six-bit mins into 12 bytes. */
INLINE void q4k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* ---------------------------------------------------------------- dequantization (all paths) */

static void dequant_row(int32_t wtype, const uint8_t *row, int64_t n, float *out) {
    switch (wtype) {
    case NB_F32:
        memcpy(out, row, (size_t)n * 4);
        return;
    case NB_F16: {
        int64_t i = 0;
#if NB_SIMD
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * i))));
#endif
        for (; i < n; i++) out[i] = h2f(rd16(row + 2 * i));
        return;
    }
    case NB_BF16: {
        int64_t i = 0;
#if NB_SIMD
        for (; i + 8 <= n; i += 8) {
            __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * i)));
            _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
        }
#endif
        for (; i < n; i++) out[i] = bf2f(rd16(row + 2 * i));
        return;
    }
    case NB_Q4_0:
        for (int64_t b = 0; b < n / 32; b++, row += 18, out += 32) {
            float d = h2f(rd16(row));
            for (int j = 0; j < 16; j++) {
                out[j] = d * (float)((row[2 + j] & 0xF) - 8);
                out[j + 16] = d * (float)((row[2 + j] >> 4) - 8);
            }
        }
        return;
    case NB_Q8_0:
        for (int64_t b = 0; b < n / 32; b++, row += 34, out += 32) {
            float d = h2f(rd16(row));
            for (int j = 0; j < 32; j++) out[j] = d * (float)(int8_t)row[2 + j];
        }
        return;
    case NB_IQ4_NL:
        for (int64_t b = 0; b < n / 32; b++, row += 18, out += 32) {
            float d = h2f(rd16(row));
            for (int j = 0; j < 16; j++) {
                out[j] = d * (float)IQ4NL_VALUES[row[2 + j] & 0xF];
                out[j + 16] = d * (float)IQ4NL_VALUES[row[2 + j] >> 4];
            }
        }
        return;
    case NB_Q4_K:
        for (int64_t b = 0; b < n / 256; b++, row += 144, out += 256) {
            float d = h2f(rd16(row)), dmin = h2f(rd16(row + 2));
            const uint8_t *q = row + 16;
            for (int j = 0; j < 4; j++) {
                int sc1, m1, sc2, m2;
                q4k_scale_min(row + 4, 2 * j, &sc1, &m1);
                q4k_scale_min(row + 4, 2 * j + 1, &sc2, &m2);
                float d1 = d * (float)sc1, o1 = dmin * (float)m1, d2 = d * (float)sc2, o2 = dmin * (float)m2;
                for (int l = 0; l < 32; l++) {
                    out[64 * j + l] = d1 * (float)(q[32 * j + l] & 0xF) - o1;
                    out[64 * j + 32 + l] = d2 * (float)(q[32 * j + l] >> 4) - o2;
                }
            }
        }
        return;
    case NB_Q6_K:
        for (int64_t b = 0; b < n / 256; b++, row += 210, out += 256) {
            float d = h2f(rd16(row + 208));
            const int8_t *sc = (const int8_t *)(row + 192);
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = row + 64 * h, *qh = row + 128 + 32 * h;
                float *y = out + 128 * h;
                const int8_t *s = sc + 8 * h;
                for (int l = 0; l < 32; l++) {
                    int is = l / 16;
                    int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l] = d * (float)s[is] * (float)q1;
                    y[l + 32] = d * (float)s[is + 2] * (float)q2;
                    y[l + 64] = d * (float)s[is + 4] * (float)q3;
                    y[l + 96] = d * (float)s[is + 6] * (float)q4;
                }
            }
        }
        return;
    case NB_NF4:
        for (int64_t b = 0; b < n / 256; b++, row += 134, out += 256) {
            float d = h2f(rd16(row));
            for (int i = 0; i < 4; i++) {
                float amax = d * (float)row[2 + i];
                const uint8_t *q = row + 6 + 32 * i;
                int j = 0;
#if NB_SIMD
                /* codebook lookup of 8 indices: two 8-entry permutes, blended on index >= 8 */
                const __m256 lo_half = _mm256_loadu_ps(NF4_VALUES), hi_half = _mm256_loadu_ps(NF4_VALUES + 8);
                const __m256 scale = _mm256_set1_ps(amax);
                const __m256i seven = _mm256_set1_epi32(7), m4 = _mm256_set1_epi32(15);
                for (; j < 32; j += 8) {
                    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + j)));
                    __m256i idx[2] = {_mm256_and_si256(v, m4), _mm256_srli_epi32(v, 4)};
                    for (int h = 0; h < 2; h++) {
                        __m256 e = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo_half, idx[h]),
                                                    _mm256_permutevar8x32_ps(hi_half, idx[h]),
                                                    _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx[h], seven)));
                        _mm256_storeu_ps(out + 64 * i + 32 * h + j, _mm256_mul_ps(scale, e));
                    }
                }
#endif
                for (; j < 32; j++) {
                    out[64 * i + j] = amax * NF4_VALUES[q[j] & 0xF];
                    out[64 * i + j + 32] = amax * NF4_VALUES[q[j] >> 4];
                }
            }
        }
        return;
    default:
        return;
    }
}

/* ---------------------------------------------------------------- float vector helpers */

#if NB_SIMD
INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Eight floats from f32 or f16 memory. */
INLINE __m256 load8(const void *p, int32_t type, int64_t i) {
    if (type == NB_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
    return _mm256_loadu_ps((const float *)p + i);
}

/* e^x to about 2e-7 relative: x = n ln2 + r with |r| <= ln2/2, e^r by its degree-6 Taylor polynomial, 2^n into the
 * exponent bits. Inputs are clamped to [-87.3, 88.7], so results stay finite and normal. A NaN stays NaN, as in expf:
 * max and min return their second operand when either is NaN, so x goes second (first, it would be clamped away). */
INLINE __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.7f), _mm256_max_ps(_mm256_set1_ps(-87.3f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x); /* ln 2 split in two for exactness */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

/* out[i] = e^(x[i] - shift), returning the sum of the outputs. */
INLINE float exp_shifted(const float *x, float shift, int64_t n, float *out) {
    int64_t i = 0;
    float s = 0.0f;
#if NB_SIMD
    __m256 acc = _mm256_setzero_ps(), sh = _mm256_set1_ps(shift);
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), sh));
        _mm256_storeu_ps(out + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    s = hsum256(acc);
#endif
    for (; i < n; i++) {
        out[i] = expf(x[i] - shift);
        s += out[i];
    }
    return s;
}

INLINE float load1(const void *p, int32_t type, int64_t i) {
    return type == NB_F16 ? h2f(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

/* sum a[i] * b[i]; b is f32 or f16. */
INLINE float dot_any(const float *a, const void *b, int32_t btype, int64_t n) {
    int64_t i = 0;
    float s = 0.0f;
#if NB_SIMD
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8(b, btype, i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load8(b, btype, i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8(b, btype, i), acc0);
    s = hsum256(_mm256_add_ps(acc0, acc1));
#endif
    for (; i < n; i++) s += a[i] * load1(b, btype, i); /* scalar tail */
    return s;
}

/* acc[i] = acc[i] * c + sum over j < nv of p[j] * v_j[i], with v_j = v + j * stride elements (f32 or f16).
 * Four value rows per pass over acc, so acc is loaded and stored once per four keys. */
INLINE void scale_axpy_rows(float *acc, float c, const float *p, const uint8_t *v, int64_t stride_bytes, int64_t nv,
                            int32_t vtype, int64_t n) {
    if (c != 1.0f)
        for (int64_t i = 0; i < n; i++) acc[i] *= c;
    int64_t j = 0;
#if NB_SIMD
    for (; j + 4 <= nv; j += 4) {
        const uint8_t *v0 = v + j * stride_bytes, *v1 = v0 + stride_bytes, *v2 = v1 + stride_bytes, *v3 = v2 + stride_bytes;
        __m256 p0 = _mm256_set1_ps(p[j]), p1 = _mm256_set1_ps(p[j + 1]), p2 = _mm256_set1_ps(p[j + 2]),
               p3 = _mm256_set1_ps(p[j + 3]);
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            __m256 a = _mm256_loadu_ps(acc + i);
            a = _mm256_fmadd_ps(p0, load8(v0, vtype, i), a);
            a = _mm256_fmadd_ps(p1, load8(v1, vtype, i), a);
            a = _mm256_fmadd_ps(p2, load8(v2, vtype, i), a);
            a = _mm256_fmadd_ps(p3, load8(v3, vtype, i), a);
            _mm256_storeu_ps(acc + i, a);
        }
        for (; i < n; i++) /* scalar tail */
            acc[i] += p[j] * load1(v0, vtype, i) + p[j + 1] * load1(v1, vtype, i) + p[j + 2] * load1(v2, vtype, i) +
                      p[j + 3] * load1(v3, vtype, i);
    }
#endif
    for (; j < nv; j++)
        for (int64_t i = 0; i < n; i++) acc[i] += p[j] * load1(v + j * stride_bytes, vtype, i);
}

/* ---------------------------------------------------------------- float matmul (every type) */

/* Columns [c, c + len) of row r as floats: in place for F32, else dequantized into buf. */
INLINE const float *row_chunk(const nb_mm_args *a, int64_t r, int64_t c, int64_t len, float *buf) {
    const uint8_t *row = a->w + r * a->row_bytes;
    if (a->wtype == NB_F32) return (const float *)row + c;
    dequant_row(a->wtype, row + c / nb_block_elems(a->wtype) * nb_block_bytes(a->wtype), len, buf);
    return buf;
}

#if NB_SIMD
/* y[t][r] += w_r . x_t over one chunk for 4 rows x 4 tokens: 16 accumulators, each loaded vector used 4 times. */
INLINE void float_tile_4x4(const float *const w[4], const float *const x[4], int64_t len, float *y, int64_t n_out) {
    __m256 acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= len; k += 8) {
        __m256 wv[4], xv[4];
        for (int i = 0; i < 4; i++) wv[i] = _mm256_loadu_ps(w[i] + k);
        for (int j = 0; j < 4; j++) xv[j] = _mm256_loadu_ps(x[j] + k);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) acc[i][j] = _mm256_fmadd_ps(wv[i], xv[j], acc[i][j]);
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            float s = hsum256(acc[i][j]);
            for (int64_t q = k; q < len; q++) s += w[i][q] * x[j][q]; /* scalar tail */
            y[j * n_out + i] += s;
        }
}
#endif

/* Float weights (and every type on the scalar path): each chunk of a row is dequantized once and used for every
 * token; on SIMD paths 4 rows x 4 tokens at a time, so that each load feeds four multiply-adds. */
static void matmul_rows_float(const nb_mm_args *a, int64_t r0, int64_t r1) {
    float buf[4][NB_CHUNK];
    for (int64_t r = r0; r < r1; r++)
        for (int64_t t = 0; t < a->n_tok; t++) a->y[t * a->n_out + r] = 0.0f;
    for (int64_t r = r0; r < r1; r += 4) {
        int nr = r1 - r < 4 ? (int)(r1 - r) : 4;
        for (int64_t c = 0; c < a->n_in; c += NB_CHUNK) {
            int64_t len = a->n_in - c < NB_CHUNK ? a->n_in - c : NB_CHUNK;
            const float *w[4];
            for (int i = 0; i < nr; i++) w[i] = row_chunk(a, r + i, c, len, buf[i]);
            int64_t t = 0;
#if NB_SIMD
            if (nr == 4)
                for (; t + 4 <= a->n_tok; t += 4) {
                    const float *x[4] = {a->x + t * a->n_in + c, a->x + (t + 1) * a->n_in + c, a->x + (t + 2) * a->n_in + c,
                                         a->x + (t + 3) * a->n_in + c};
                    float_tile_4x4(w, x, len, a->y + t * a->n_out + r, a->n_out);
                }
#endif
            for (; t < a->n_tok; t++) /* tokens (or rows) left over from the tiles */
                for (int i = 0; i < nr; i++) a->y[t * a->n_out + r + i] += dot_any(w[i], a->x + t * a->n_in + c, NB_F32, len);
        }
    }
}

/* ---------------------------------------------------------------- 8-bit activations and integer dot products */

#if NB_SIMD

/* Prefetches [p, p + len) into L2. The one-token kernels read 16 rows side by side, 16 interleaved streams that
 * the hardware prefetcher follows poorly (worst for short rows); while one 16-row group is computed, the next group
 * is fetched in address order, a little per column block, so that memory sees one sequential stream per thread. */
INLINE void prefetch_span(const uint8_t *p, int64_t len) {
    for (int64_t o = 0; o < len; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T1);
}

static int wants_q8(int32_t wtype) {
    return wtype == NB_Q4_0 || wtype == NB_Q8_0 || wtype == NB_IQ4_NL || wtype == NB_Q4_K || wtype == NB_Q6_K;
}

/* Per 32 values: d = absmax / 127, q = round(x / d); also the negated sums of each 16 q (for offsets).
 * A block holding a NaN or an infinity gets d = NaN and q = 0, so that every dot product it enters is NaN, as in f32
 * (no q can stand for it: x * 127/inf is NaN or 0, and NaN converts to INT_MIN). max() drops a NaN operand, so amax
 * alone cannot show one: an unordered compare per 16 values, once per block, does. */
static void quantize_x(const float *x, int64_t n, int8_t *qx, float *dx, int32_t *sx) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + 32 * b;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8), v2 = _mm256_loadu_ps(xb + 16),
               v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        float amax = hmax256(m);
        __m256 nan = _mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q), _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q));
        if (_mm256_movemask_ps(nan) != 0 || amax == INFINITY) {
            memset(qx + 32 * b, 0, 32);
            sx[2 * b] = sx[2 * b + 1] = 0;
            dx[b] = NAN;
            continue;
        }
        float d = amax / 127.0f;
        /* 127 / amax overflows for amax 0 or below about 4e-37; q = 0 then (such a block's products are below the
         * float resolution of any others), never inf * 0 = NaN converted to INT_MIN */
        float inv = 127.0f / amax;
        __m256 id = _mm256_set1_ps(inv <= FLT_MAX ? inv : 0.0f);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, id)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, id)),
                i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, id)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, id));
        __m256i s01 = _mm256_add_epi32(i0, i1), s23 = _mm256_add_epi32(i2, i3);
        __m128i h01 = _mm_add_epi32(_mm256_castsi256_si128(s01), _mm256_extracti128_si256(s01, 1));
        __m128i h23 = _mm_add_epi32(_mm256_castsi256_si128(s23), _mm256_extracti128_si256(s23, 1));
        __m128i h = _mm_hadd_epi32(h01, h23); /* a01 a23 b01 b23 */
        h = _mm_hadd_epi32(h, h);             /* sum first 16, sum last 16, ... */
        sx[2 * b] = -_mm_extract_epi32(h, 0);
        sx[2 * b + 1] = -_mm_extract_epi32(h, 1);
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        _mm256_storeu_si256((__m256i *)(qx + 32 * b), _mm256_permutevar8x32_epi32(p, perm));
        dx[b] = d;
    }
}

#if NB_VNNI
#include "nb_packed.h"
#else
/* Row-at-a-time integer dot products for AVX2 (the AVX-512 build uses nb_packed.h instead). */

/* Tokens per tile: each weight block is unpacked once and used for this many tokens. */
#define NB_TILE 4

/* acc += sum over groups of 4 of u[i] * s[i] (u unsigned, s signed bytes). maddubs saturates at 16 bits: callers
 * keep |u * s| pairs below 32767 (u <= 128, |s| <= 127). */
INLINE __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

INLINE __m256i load_nibbles(const uint8_t *p) { /* 16 bytes -> low nibbles then high nibbles */
    __m128i q = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
}

/* The token tile: T tokens starting at t0, one output per token. */
#define XQ(t, off) ((const __m256i *)(a->qx + (t0 + (t)) * a->n_in + (off)))
#define DX(t, blk) (a->dx + (t0 + (t)) * (a->n_in / 32) + (blk))
#define SX(t, g) (a->sx + (t0 + (t)) * (a->n_in / 16) + (g))

INLINE void dot_q4_0(const nb_mm_args *a, const uint8_t *row, int64_t t0, int T, float *out) {
    __m256 acc[NB_TILE];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    int64_t nb = a->n_in / 32;
    for (int64_t b = 0; b < nb; b++, row += 18) {
        __m256i w = load_nibbles(row + 2);
        __m256 dw = _mm256_set1_ps(h2f(rd16(row)));
        for (int t = 0; t < T; t++) {
            /* weights are q - 8: start each of the 8 lanes at -S (lanes sum to -8 S) */
            __m256i ci = _mm256_set1_epi32(SX(t, 2 * b)[0] + SX(t, 2 * b)[1]);
            __m256i i = dot_u8s8(ci, w, _mm256_loadu_si256(XQ(t, 32 * b)));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(dw, _mm256_broadcast_ss(DX(t, b))), acc[t]);
        }
    }
    for (int t = 0; t < T; t++) out[t] = hsum256(acc[t]);
}

/* Signed weights w against the tile: |w| times x carrying w's sign keeps the unsigned-by-signed product. */
INLINE void dot_signed_blocks(const nb_mm_args *a, const uint8_t *row, int64_t stride, int iq4, int64_t t0, int T,
                              float *out) {
    __m256 acc[NB_TILE];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    int64_t nb = a->n_in / 32;
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)IQ4NL_VALUES));
    for (int64_t b = 0; b < nb; b++, row += stride) {
        __m256i w = iq4 ? _mm256_shuffle_epi8(table, load_nibbles(row + 2)) : _mm256_loadu_si256((const __m256i *)(row + 2));
        __m256i u = _mm256_abs_epi8(w);
        __m256 dw = _mm256_set1_ps(h2f(rd16(row)));
        for (int t = 0; t < T; t++) {
            __m256i i = dot_u8s8(_mm256_setzero_si256(), u, _mm256_sign_epi8(_mm256_loadu_si256(XQ(t, 32 * b)), w));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(dw, _mm256_broadcast_ss(DX(t, b))), acc[t]);
        }
    }
    for (int t = 0; t < T; t++) out[t] = hsum256(acc[t]);
}

INLINE void dot_q4_k(const nb_mm_args *a, const uint8_t *row, int64_t t0, int T, float *out) {
    __m256 acc[NB_TILE], accm[NB_TILE];
    for (int t = 0; t < T; t++) acc[t] = accm[t] = _mm256_setzero_ps();
    int64_t nb = a->n_in / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; b++, row += 144) {
        float d = h2f(rd16(row)), dmin = h2f(rd16(row + 2));
        float ds[8], dm[8];
        for (int j = 0; j < 8; j++) {
            int sc, m;
            q4k_scale_min(row + 4, j, &sc, &m);
            ds[j] = d * (float)sc;
            dm[j] = dmin * (float)m;
        }
        const uint8_t *q = row + 16;
        for (int j = 0; j < 4; j++) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(q + 32 * j));
            __m256i lo = _mm256_and_si256(qv, m4), hi = _mm256_and_si256(_mm256_srli_epi16(qv, 4), m4);
            __m256 s_lo = _mm256_broadcast_ss(&ds[2 * j]), s_hi = _mm256_broadcast_ss(&ds[2 * j + 1]);
            for (int t = 0; t < T; t++) {
                int64_t blk = 8 * b + 2 * j;
                __m256i il = dot_u8s8(_mm256_setzero_si256(), lo, _mm256_loadu_si256(XQ(t, 32 * blk)));
                __m256i ih = dot_u8s8(_mm256_setzero_si256(), hi, _mm256_loadu_si256(XQ(t, 32 * blk + 32)));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(il), _mm256_mul_ps(s_lo, _mm256_broadcast_ss(DX(t, blk))), acc[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ih), _mm256_mul_ps(s_hi, _mm256_broadcast_ss(DX(t, blk + 1))), acc[t]);
            }
        }
        /* the mins: sum_j dmin*m_j * dx_j * (sum of x's 32 q): lane j of one 8-wide product */
        __m256 dmv = _mm256_loadu_ps(dm);
        for (int t = 0; t < T; t++) {
            __m256i s16 = _mm256_loadu_si256((const __m256i *)SX(t, 16 * b));
            __m256i s32a = _mm256_hadd_epi32(s16, _mm256_loadu_si256((const __m256i *)SX(t, 16 * b + 8)));
            /* hadd interleaves 128-bit lanes: (j0 j1 j4 j5 | j2 j3 j6 j7) -> restore order */
            __m256i s32 = _mm256_permute4x64_epi64(s32a, 0xD8);
            accm[t] = _mm256_fmadd_ps(_mm256_mul_ps(dmv, _mm256_loadu_ps(DX(t, 8 * b))), _mm256_cvtepi32_ps(s32), accm[t]);
        }
    }
    /* sx holds negated sums, so accm already carries the minus sign of the min term */
    for (int t = 0; t < T; t++) out[t] = hsum256(_mm256_add_ps(acc[t], accm[t]));
}

INLINE void dot_q6_k(const nb_mm_args *a, const uint8_t *row, int64_t t0, int T, float *out) {
    __m256 acc[NB_TILE];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    int64_t nb = a->n_in / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), k32 = _mm256_set1_epi8(32);
    for (int64_t b = 0; b < nb; b++, row += 210) {
        float d = h2f(rd16(row + 208));
        const int8_t *sc = (const int8_t *)(row + 192);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = row + 64 * h, *qh = row + 128 + 32 * h;
            __m256i la = _mm256_loadu_si256((const __m256i *)ql), lb = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hv = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(la, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 4), m30));
            q[1] = _mm256_or_si256(_mm256_and_si256(lb, m4), _mm256_and_si256(_mm256_slli_epi16(hv, 2), m30));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, 4), m4), _mm256_and_si256(hv, m30));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(hv, 2), m30));
            for (int k = 0; k < 4; k++) {
                __m256i w = _mm256_sub_epi8(q[k], k32);
                __m256i u = _mm256_abs_epi8(w);
                const int8_t *s = sc + 8 * h + 2 * k;
                /* lanes 0-3 hold the first 16 products, lanes 4-7 the second 16: one scale each */
                __m256 sv = _mm256_set_m128(_mm_set1_ps(d * (float)s[1]), _mm_set1_ps(d * (float)s[0]));
                int64_t blk = 8 * b + 4 * h + k;
                for (int t = 0; t < T; t++) {
                    __m256i i = dot_u8s8(_mm256_setzero_si256(), u, _mm256_sign_epi8(_mm256_loadu_si256(XQ(t, 32 * blk)), w));
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(sv, _mm256_broadcast_ss(DX(t, blk))), acc[t]);
                }
            }
        }
    }
    for (int t = 0; t < T; t++) out[t] = hsum256(acc[t]);
}

INLINE void dot_tile(const nb_mm_args *a, const uint8_t *row, int64_t t0, int T, float *out) {
    switch (a->wtype) {
    case NB_Q4_0: dot_q4_0(a, row, t0, T, out); break;
    case NB_Q8_0: dot_signed_blocks(a, row, 34, 0, t0, T, out); break;
    case NB_IQ4_NL: dot_signed_blocks(a, row, 18, 1, t0, T, out); break;
    case NB_Q4_K: dot_q4_k(a, row, t0, T, out); break;
    case NB_Q6_K: dot_q6_k(a, row, t0, T, out); break;
    default: break;
    }
}

/* Rows per cache block: their weights stay in L1/L2 while every token tile passes over them. */
#define NB_ROW_BLOCK 16

/* Two rows' 16 bytes at byte off: row r0 in the low 128-bit lane, r1 in the high one. */
INLINE __m256i load_2rows(const uint8_t *r0, const uint8_t *r1, int64_t off) {
    return _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(r1 + off)), _mm_loadu_si128((const __m128i *)(r0 + off)));
}

/* Sum of 4 x (u * s) byte products per 32-bit lane (u unsigned <= 15, s signed), for two operand pairs. */
INLINE __m256i dot4_pair(__m256i u0, __m256i s0, __m256i u1, __m256i s1) {
    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(u0, s0), _mm256_maddubs_epi16(u1, s1));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* Q4_0 for one token on AVX2: 16 rows at a time, one row per 128-bit lane (two per register) against the block's
 * activations broadcast to both lanes, then the four partial sums of each row added across registers with hadd.
 * Fewer instructions than row-at-a-time blocks, as the per-block convert and scale work is shared by 8 rows. */
static void decode_q4_0(const nb_mm_args *a, int64_t r0, int64_t r1) {
    static const int ORDER[8] = {0, 2, 4, 6, 1, 3, 5, 7}; /* row held by each lane after the hadds */
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    for (int64_t rb = r0; rb < r1; rb += 16) {
        int nrows = r1 - rb < 16 ? (int)(r1 - rb) : 16;
        const uint8_t *rows[16];
        for (int r = 0; r < 16; r++) rows[r] = a->w + (rb + (r < nrows ? r : nrows - 1)) * a->row_bytes;
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        int64_t next = r1 - rb - 16 < 16 ? r1 - rb - 16 : 16; /* rows of the next group, prefetched meanwhile */
        for (int64_t b = 0; b < a->n_in / 32; b++) {
            if (next > 0) prefetch_span(a->w + (rb + 16) * a->row_bytes + b * next * 18, next * 18);
            const int8_t *xb = a->qx + 32 * b;
            __m256i xlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xb));
            __m256i xhi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xb + 16)));
            __m256i s[8];
            for (int p = 0; p < 8; p++) {
                __m256i z = load_2rows(rows[2 * p], rows[2 * p + 1], b * 18 + 2);
                __m256i lo = _mm256_and_si256(z, m4), hi = _mm256_and_si256(_mm256_srli_epi16(z, 4), m4);
                /* pairs of products stay below 2 * 15 * 127, and two of them below 16 bits */
                s[p] = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi)), ones);
            }
            __m256i corr = _mm256_set1_epi32(8 * (a->sx[2 * b] + a->sx[2 * b + 1]));
            float dx = a->dx[b];
            for (int half = 0; half < 2; half++) {
                const __m256i *v = s + 4 * half;
                __m256i sum = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
                uint16_t h[8];
                for (int i = 0; i < 8; i++) h[i] = rd16(rows[8 * half + ORDER[i]] + b * 18);
                __m256 scale = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h)), _mm256_set1_ps(dx));
                acc[half] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(sum, corr)), scale, acc[half]);
            }
        }
        float out[16];
        _mm256_storeu_ps(out, acc[0]);
        _mm256_storeu_ps(out + 8, acc[1]);
        for (int i = 0; i < 16; i++) {
            int r = 8 * (i / 8) + ORDER[i % 8];
            if (r < nrows) a->y[rb + r] = out[i];
        }
    }
}

/* Q4_K for one token on AVX2, in decode_q4_0's layout (8 rows per half, lanes in the order the hadds leave). */
static void decode_q4_k(const nb_mm_args *a, int64_t r0, int64_t r1) {
    static const int ORDER[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    const __m256i m4 = _mm256_set1_epi8(0x0F), m6 = _mm256_set1_epi32(63), m4d = _mm256_set1_epi32(15),
                  m2 = _mm256_set1_epi32(3);
    for (int64_t rb = r0; rb < r1; rb += 16) {
        int nrows = r1 - rb < 16 ? (int)(r1 - rb) : 16;
        const uint8_t *rows[16];
        for (int r = 0; r < 16; r++) rows[r] = a->w + (rb + (r < nrows ? r : nrows - 1)) * a->row_bytes;
        __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        int64_t next = r1 - rb - 16 < 16 ? r1 - rb - 16 : 16; /* rows of the next group, prefetched meanwhile */
        for (int64_t sb = 0; sb < a->n_in / 256; sb++) {
            const int64_t base = sb * 144;
            if (next > 0) prefetch_span(a->w + (rb + 16) * a->row_bytes + sb * next * 144, next * 144);
            __m256 ds[2][8], dm[2][8];
            for (int half = 0; half < 2; half++) {
                const uint8_t *const *r8 = rows + 8 * half;
                /* the 16-byte headers of 8 rows, transposed: h[k] holds dword k of each row, in ORDER */
                __m256i y0 = load_2rows(r8[0], r8[1], base), y1 = load_2rows(r8[2], r8[3], base);
                __m256i y2 = load_2rows(r8[4], r8[5], base), y3 = load_2rows(r8[6], r8[7], base);
                __m256i lo01 = _mm256_unpacklo_epi32(y0, y1), lo23 = _mm256_unpacklo_epi32(y2, y3);
                __m256i hi01 = _mm256_unpackhi_epi32(y0, y1), hi23 = _mm256_unpackhi_epi32(y2, y3);
                __m256i h0 = _mm256_unpacklo_epi64(lo01, lo23), h1 = _mm256_unpackhi_epi64(lo01, lo23);
                __m256i h2 = _mm256_unpacklo_epi64(hi01, hi23), h3 = _mm256_unpackhi_epi64(hi01, hi23);
                uint32_t hd[8];
                uint16_t dd[8], dmn[8];
                _mm256_storeu_si256((__m256i *)hd, h0);
                for (int i = 0; i < 8; i++) {
                    dd[i] = (uint16_t)hd[i];
                    dmn[i] = (uint16_t)(hd[i] >> 16);
                }
                __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dd));
                __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dmn));
                for (int j = 0; j < 4; j++) {
                    __m256i b1 = _mm256_srli_epi32(h1, 8 * j), b2 = _mm256_srli_epi32(h2, 8 * j), b3 = _mm256_srli_epi32(h3, 8 * j);
                    __m256i sc_hi = _mm256_or_si256(_mm256_and_si256(b3, m4d), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(b1, 6), m2), 4));
                    __m256i m_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(b3, 4), m4d), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(b2, 6), m2), 4));
                    ds[half][j] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(b1, m6)));
                    dm[half][j] = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_and_si256(b2, m6)));
                    ds[half][j + 4] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc_hi));
                    dm[half][j + 4] = _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(m_hi));
                }
            }
            for (int i = 0; i < 4; i++) {
                const int8_t *xb = a->qx + 256 * sb + 64 * i;
                __m256i xa = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xb));
                __m256i xbv = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xb + 16)));
                __m256i xc = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xb + 32)));
                __m256i xd = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xb + 48)));
                __m256i slo[8], shi[8];
                int64_t off = base + 16 + 32 * i;
                for (int p = 0; p < 8; p++) {
                    __m256i z0 = load_2rows(rows[2 * p], rows[2 * p + 1], off), z1 = load_2rows(rows[2 * p], rows[2 * p + 1], off + 16);
                    slo[p] = dot4_pair(_mm256_and_si256(z0, m4), xa, _mm256_and_si256(z1, m4), xbv);
                    shi[p] = dot4_pair(_mm256_and_si256(_mm256_srli_epi16(z0, 4), m4), xc,
                                       _mm256_and_si256(_mm256_srli_epi16(z1, 4), m4), xd);
                }
                for (int sub = 0; sub < 2; sub++) {
                    int64_t blk = 8 * sb + 2 * i + sub;
                    const __m256i *v = sub ? shi : slo;
                    __m256 dx = _mm256_set1_ps(a->dx[blk]);
                    /* sx holds negated sums, so this is the min term with its minus sign */
                    __m256 dxs = _mm256_set1_ps(a->dx[blk] * (float)(a->sx[2 * blk] + a->sx[2 * blk + 1]));
                    for (int half = 0; half < 2; half++) {
                        const __m256i *w = v + 4 * half;
                        __m256i sum = _mm256_hadd_epi32(_mm256_hadd_epi32(w[0], w[1]), _mm256_hadd_epi32(w[2], w[3]));
                        acc[half] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(ds[half][2 * i + sub], dx), acc[half]);
                        acc[half] = _mm256_fmadd_ps(dm[half][2 * i + sub], dxs, acc[half]);
                    }
                }
            }
        }
        float out[16];
        _mm256_storeu_ps(out, acc[0]);
        _mm256_storeu_ps(out + 8, acc[1]);
        for (int i = 0; i < 16; i++) {
            int r = 8 * (i / 8) + ORDER[i % 8];
            if (r < nrows) a->y[rb + r] = out[i];
        }
    }
}

static void matmul_rows_q8(const nb_mm_args *a, int64_t r0, int64_t r1) {
    if (a->n_tok == 1 && a->wtype == NB_Q4_0) {
        decode_q4_0(a, r0, r1);
        return;
    }
    if (a->n_tok == 1 && a->wtype == NB_Q4_K) {
        decode_q4_k(a, r0, r1);
        return;
    }
    float out[NB_TILE];
    for (int64_t rb = r0; rb < r1; rb += NB_ROW_BLOCK) {
        int64_t re = rb + NB_ROW_BLOCK < r1 ? rb + NB_ROW_BLOCK : r1;
        for (int64_t t0 = 0; t0 < a->n_tok; t0 += NB_TILE) {
            int T = a->n_tok - t0 < NB_TILE ? (int)(a->n_tok - t0) : NB_TILE;
            for (int64_t r = rb; r < re; r++) {
                const uint8_t *row = a->w + r * a->row_bytes;
                switch (T) { /* constant tile sizes let the compiler keep accumulators in registers */
                case 1: dot_tile(a, row, t0, 1, out); break;
                case 2: dot_tile(a, row, t0, 2, out); break;
                case 3: dot_tile(a, row, t0, 3, out); break;
                case 4: dot_tile(a, row, t0, 4, out); break;
                default: break;
                }
                for (int t = 0; t < T; t++) a->y[(t0 + t) * a->n_out + r] = out[t];
            }
        }
    }
}

static int wants_packed(int32_t wtype, int64_t n_tok) {
    (void)wtype, (void)n_tok;
    return 0;
}

static void quantize_x_packed(const nb_mm_args *a, int64_t t) { (void)a, (void)t; }
#endif /* NB_VNNI */

static void matmul_rows(const nb_mm_args *a, int64_t r0, int64_t r1) {
#if NB_VNNI
    if (a->packed) matmul_rows_packed(a, r0, r1);
    else matmul_rows_float(a, r0, r1);
#else
    if (a->qx) matmul_rows_q8(a, r0, r1);
    else matmul_rows_float(a, r0, r1);
#endif
}

#else /* scalar path: everything in f32 */

static int wants_q8(int32_t wtype) {
    (void)wtype;
    return 0;
}

static void quantize_x(const float *x, int64_t n, int8_t *qx, float *dx, int32_t *sx) {
    (void)x, (void)n, (void)qx, (void)dx, (void)sx;
}

static int wants_packed(int32_t wtype, int64_t n_tok) {
    (void)wtype, (void)n_tok;
    return 0;
}

static void quantize_x_packed(const nb_mm_args *a, int64_t t) { (void)a, (void)t; }

static void matmul_rows(const nb_mm_args *a, int64_t r0, int64_t r1) { matmul_rows_float(a, r0, r1); }

#endif

/* ---------------------------------------------------------------- element-wise and small kernels */

static void rmsnorm(const float *x, const float *w, int64_t n, float eps, float *y) {
    float ss = dot_any(x, x, NB_F32, n);
    float s = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * s * w[i];
}

static void rope(float *x, int64_t n_heads, int64_t head_dim, int32_t pos, float theta, float freq_scale,
                 const float *freq_factors) {
    float cs[NB_MAX_HEAD_DIM / 2], sn[NB_MAX_HEAD_DIM / 2];
    int64_t half = head_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        double inv_freq = pow((double)theta, -2.0 * (double)i / (double)head_dim);
        double angle = (double)pos * (double)freq_scale * inv_freq / (freq_factors ? (double)freq_factors[i] : 1.0);
        cs[i] = (float)cos(angle);
        sn[i] = (float)sin(angle);
    }
    for (int64_t h = 0; h < n_heads; h++) {
        float *v = x + h * head_dim;
        for (int64_t i = 0; i < half; i++) {
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * cs[i] - b * sn[i];
            v[2 * i + 1] = a * sn[i] + b * cs[i];
        }
    }
}

static void softmax(float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    float inv = 1.0f / exp_shifted(x, m, n, x);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

/* Keys scored per step of the online softmax. */
#define NB_ATT_BLOCK 64
/* Query heads of one group processed together (they read the same keys and values). */
#define NB_ATT_GROUP 8

static void attention_one(const nb_attn_args *a, int64_t t, int64_t h) {
    int64_t group = a->n_heads / a->n_kv_heads, hd = a->head_dim;
    int64_t n_ctx = (int64_t)a->pos[t] + 1 < a->n_kv ? (int64_t)a->pos[t] + 1 : a->n_kv;
    int64_t esz = a->kv_type == NB_F16 ? 2 : 4;
    /* the token's sequence begins at this cache row */
    const uint8_t *kbase = (const uint8_t *)a->k, *vbase = (const uint8_t *)a->v;
    if (a->start) {
        kbase += (int64_t)a->start[t] * a->kv_stride * esz;
        vbase += (int64_t)a->start[t] * a->kv_stride * esz;
    }
    float acc[NB_ATT_GROUP][NB_MAX_HEAD_DIM];
    float s[NB_ATT_GROUP][NB_ATT_BLOCK];
    float m[NB_ATT_GROUP], l[NB_ATT_GROUP];
    for (int64_t g0 = 0; g0 < group; g0 += NB_ATT_GROUP) {
        int64_t ng = group - g0 < NB_ATT_GROUP ? group - g0 : NB_ATT_GROUP;
        const float *q = a->q + (t * a->n_heads + h * group + g0) * hd;
        for (int64_t g = 0; g < ng; g++) {
            m[g] = -INFINITY;
            l[g] = 0.0f;
            memset(acc[g], 0, (size_t)hd * 4);
        }
        for (int64_t j0 = 0; j0 < n_ctx; j0 += NB_ATT_BLOCK) {
            int64_t nj = n_ctx - j0 < NB_ATT_BLOCK ? n_ctx - j0 : NB_ATT_BLOCK;
            for (int64_t j = 0; j < nj; j++) {
                const uint8_t *kr = kbase + ((j0 + j) * a->kv_stride + h * hd) * esz;
                for (int64_t g = 0; g < ng; g++) s[g][j] = dot_any(q + g * hd, kr, a->kv_type, hd) * a->scale;
            }
            for (int64_t g = 0; g < ng; g++) {
                float mb = m[g];
                for (int64_t j = 0; j < nj; j++) mb = s[g][j] > mb ? s[g][j] : mb;
                float c = expf(m[g] - mb); /* rescales what came before to the new maximum */
                m[g] = mb;
                l[g] = l[g] * c + exp_shifted(s[g], mb, nj, s[g]);
                const uint8_t *vr = vbase + (j0 * a->kv_stride + h * hd) * esz;
                scale_axpy_rows(acc[g], c, s[g], vr, a->kv_stride * esz, nj, a->kv_type, hd);
            }
        }
        for (int64_t g = 0; g < ng; g++) {
            float *o = a->out + (t * a->n_heads + h * group + g0 + g) * hd;
            float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;
            for (int64_t i = 0; i < hd; i++) o[i] = acc[g][i] * inv;
        }
    }
}

static void swiglu(const float *gate, const float *up, int64_t n, float *out) {
    int64_t i = 0;
#if NB_SIMD
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp256(_mm256_sub_ps(zero, g));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
    }
#endif
    for (; i < n; i++) { /* scalar tail */
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void add(const float *a, const float *b, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

static void f32_to_f16(const float *src, int64_t n, uint16_t *dst) {
    int64_t i = 0;
#if NB_SIMD
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) dst[i] = f2h(src[i]);
}

static void f16_to_f32(const uint16_t *src, int64_t n, float *dst) {
    int64_t i = 0;
#if NB_SIMD
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++) dst[i] = h2f(src[i]);
}

const nb_kernels NB_KERNELS = {
    .name = NB_KERNELS_NAME,
    .wants_q8 = wants_q8,
    .quantize_x = quantize_x,
    .wants_packed = wants_packed,
    .quantize_x_packed = quantize_x_packed,
    .matmul_rows = matmul_rows,
    .dequant_row = dequant_row,
    .rmsnorm = rmsnorm,
    .rope = rope,
    .softmax = softmax,
    .attention_one = attention_one,
    .swiglu = swiglu,
    .add = add,
    .f32_to_f16 = f32_to_f16,
    .f16_to_f32 = f16_to_f32,
};
