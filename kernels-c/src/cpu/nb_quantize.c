/* Row quantizers for Q4_K and Q6_K: the converter's Java quantizers (dev.nibble.converter.quant.Q4KQuantizer,
 * Q6KQuantizer) step for step, so that both write the same bytes. Java float arithmetic is plain IEEE
 * single and double precision, so every expression below keeps the Java operand order and types, and this file is
 * compiled with -ffp-contract=off (a fused multiply-add rounds once where Java rounds twice). Helpers reproduce the
 * Java library calls the search relies on: Math.rint + (int) cast, Math.max on floats, Float.floatToFloat16 and
 * float16ToFloat. */
#include "nb_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* (int) Math.rint(v): round half to even, NaN -> 0, beyond the int range saturates. */
static inline int java_nearest_int(float v) {
    if (fabsf(v) < 4194304.0f) {
        /* Adding 1.5 * 2^23 leaves a float whose unit is 1, so the hardware's round-to-nearest-even does the work. */
        float shifted = v + 12582912.0f;
        return (int) (shifted - 12582912.0f);
    }
    if (v != v) {
        return 0;
    }
    double r = rint((double) v);
    if (r >= 2147483647.0) {
        return INT32_MAX;
    }
    if (r <= -2147483648.0) {
        return INT32_MIN;
    }
    return (int) r;
}

static inline int clamp_int(int v, int lo, int hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Math.max(float, float): NaN wins, +0 beats -0. */
static inline float java_max(float a, float b) {
    if (a != a) {
        return a;
    }
    if (a == 0.0f && b == 0.0f && signbit(a)) {
        return b;
    }
    return a >= b ? a : b;
}

static inline uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Float.floatToFloat16: round to nearest even; NaN keeps its sign and folds its significand into 10 bits. */
static uint16_t java_f32_to_f16(float f) {
    uint32_t bits = float_bits(f);
    uint16_t sign = (uint16_t) ((bits >> 16) & 0x8000u);
    if (f != f) {
        return (uint16_t) (sign | 0x7c00u | ((bits & 0x007fe000u) >> 13) | ((bits & 0x00001ff0u) >> 4) | (bits & 0xfu));
    }
    float a = fabsf(f);
    if (a >= 65520.0f) {
        return (uint16_t) (sign | 0x7c00u);
    }
    if (a <= 0x1.0p-25f) {
        return sign;
    }
    int exp = (int) ((bits >> 23) & 0xff) - 127;
    int delta = 0;
    uint32_t msb = 0;
    if (exp < -14) {
        delta = -14 - exp;
        exp = -15;
        msb = 0x00800000u;
    }
    uint32_t signif = (bits & 0x007fffffu) | msb;
    uint32_t half = signif >> (13 + delta);
    uint32_t lsb = signif & (1u << (13 + delta));
    uint32_t round = signif & (1u << (12 + delta));
    uint32_t sticky = signif & ((1u << (12 + delta)) - 1);
    if (round != 0 && (lsb | sticky) != 0) {
        half++;
    }
    return (uint16_t) (sign | ((((uint32_t) (exp + 15)) << 10) + half));
}

/* Float.float16ToFloat (exact). */
static float java_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        /* subnormal: mant * 2^-24, exact in float */
        float v = (float) mant * 0x1.0p-24f;
        bits = sign | float_bits(v);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline void put_u16(uint8_t *out, uint16_t v) {
    out[0] = (uint8_t) v;
    out[1] = (uint8_t) (v >> 8);
}

/* ---------------------------------------------------------------- Q4_K */

#define Q4K_BLOCK_BYTES 144
#define REFITS 2

typedef struct {
    float weights[32];
    float ones[32];
    uint8_t levels[32];
    uint8_t trial[32];
    float scales[8];
    float mins[8];
    int codes[8];
    int best_codes[8]; /* persists from block to block within a row, as in Java */
} q4k_work;

static double q4k_sub_error(const float *x, float scale, float min, uint8_t *levels) {
    float inv = scale != 0 ? 1.0f / scale : 0.0f;
    double error = 0;
    for (int l = 0; l < 32; l++) {
        float v = x[l];
        int q = clamp_int(java_nearest_int((v + min) * inv), 0, 15);
        double e = (double) (scale * q - min) - v;
        error += e * e;
        if (levels) {
            levels[l] = (uint8_t) q;
        }
    }
    return error;
}

/* The part both sub-block fits share: min (never above 0), max and the weighted sums. A constant sub-block gets scale 0
 * here and returns 0, so the caller stops. */
static int q4k_fit_bounds(const float *x, const float *weights, q4k_work *w, int j,
                          float *min_out, float *max_out, float *sum_w_out, float *sum_x_out) {
    float min = x[0];
    float max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < 32; i++) {
        if (x[i] < min) {
            min = x[i];
        }
        if (x[i] > max) {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0) {
        min = 0;
    }
    if (max == min) {
        w->scales[j] = 0;
        w->mins[j] = -min;
        return 0;
    }
    *min_out = min;
    *max_out = max;
    *sum_w_out = sum_w;
    *sum_x_out = sum_x;
    return 1;
}

static void q4k_fit(const float *x, const float *weights, q4k_work *w, int j) {
    float min, max, sum_w, sum_x;
    if (!q4k_fit_bounds(x, weights, w, j, &min, &max, &sum_w, &sum_x)) {
        return;
    }
    float iscale = 15 / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < 32; i++) {
        int l = clamp_int(java_nearest_int(iscale * (x[i] - min)), 0, 15);
        float diff = scale * l + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    for (int step = 0; step <= 20; step++) {
        iscale = (-1.0f + 0.1f * step + 15) / (max - min);
        float sum_l = 0;
        float sum_l2 = 0;
        float sum_xl = 0;
        for (int i = 0; i < 32; i++) {
            int l = clamp_int(java_nearest_int(iscale * (x[i] - min)), 0, 15);
            w->trial[i] = (uint8_t) l;
            float wi = weights[i];
            sum_l += wi * l;
            sum_l2 += wi * l * l;
            sum_xl += wi * l * x[i];
        }
        float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float error = 0;
            for (int i = 0; i < 32; i++) {
                float diff = this_scale * w->trial[i] + this_min - x[i];
                error += weights[i] * (diff * diff);
            }
            if (error < best_error) {
                best_error = error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    w->scales[j] = scale;
    w->mins[j] = -min;
}

static double q4k_search(const float *x, uint16_t d_bits, uint16_t dmin_bits, q4k_work *w) {
    float d = java_f16_to_f32(d_bits);
    float dmin = java_f16_to_f32(dmin_bits);
    double error = 0;
    for (int j = 0; j < 8; j++) {
        int ls0 = w->codes[j] & 0xff;
        int lm0 = w->codes[j] >> 8;
        double best = INFINITY;
        int ls_hi = ls0 + 1 < 63 ? ls0 + 1 : 63;
        int lm_hi = lm0 + 1 < 63 ? lm0 + 1 : 63;
        for (int ls = ls0 - 1 > 0 ? ls0 - 1 : 0; ls <= ls_hi; ls++) {
            for (int lm = lm0 - 1 > 0 ? lm0 - 1 : 0; lm <= lm_hi; lm++) {
                double e = q4k_sub_error(x + 32 * j, d * ls, dmin * lm, NULL);
                if (e < best) {
                    best = e;
                    w->codes[j] = ls | lm << 8;
                }
            }
        }
        error += best;
    }
    return error;
}

/* Least-squares (d, dmin) with codes and levels fixed; 0 when the fit is unusable. */
static int q4k_refit(const float *x, uint16_t d_bits, uint16_t dmin_bits, q4k_work *w, uint16_t *new_d,
                     uint16_t *new_dmin) {
    float d = java_f16_to_f32(d_bits);
    float dmin = java_f16_to_f32(dmin_bits);
    double saa = 0, sab = 0, sbb = 0, sax = 0, sbx = 0;
    for (int j = 0; j < 8; j++) {
        int ls = w->codes[j] & 0xff;
        int lm = w->codes[j] >> 8;
        q4k_sub_error(x + 32 * j, d * ls, dmin * lm, w->levels);
        for (int l = 0; l < 32; l++) {
            double a = ls * w->levels[l];
            double v = x[32 * j + l];
            saa += a * a;
            sab += a * lm;
            sbb += (double) lm * lm;
            sax += a * v;
            sbx += lm * v;
        }
    }
    double det = saa * sbb - sab * sab;
    if (!(det > 0)) {
        return 0;
    }
    double fd = (sax * sbb - sab * sbx) / det;
    double fm = (sax * sab - saa * sbx) / det;
    if (!(fd > 0) || fm < 0 || fd > 65504 || fm > 65504) {
        return 0;
    }
    *new_d = java_f32_to_f16((float) fd);
    *new_dmin = java_f32_to_f16((float) fm);
    return 1;
}

/* ---------------------------------------------------------------- Q4_K, AVX2
 * The searches try many candidates (grid steps, neighbouring codes) over the same 32 weights, and each candidate sums
 * its terms in weight order. Vectorising over the weights would reorder those sums; instead each vector lane runs one
 * candidate, with the scalar code's operations in the scalar code's order, so every lane rounds exactly as it would.
 * Rounding and clamping to 0..15 happen in float: _mm256_round_ps is round-half-even like Math.rint, and max(r, 0)
 * maps NaN to 0 and min(., 15) caps large values, which is what (int) saturation followed by the clamp gives. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define NB_Q_AVX2 __attribute__((target("avx2")))

NB_Q_AVX2 static inline __m256 round_clamp15(__m256 t) {
    __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_min_ps(_mm256_max_ps(r, _mm256_setzero_ps()), _mm256_set1_ps(15.0f));
}

NB_Q_AVX2 static void q4k_fit_avx2(const float *x, const float *weights, q4k_work *w, int j) {
    float min, max, sum_w, sum_x;
    if (!q4k_fit_bounds(x, weights, w, j, &min, &max, &sum_w, &sum_x)) {
        return;
    }
    float iscale = 15 / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    float xm[32];
    for (int i = 0; i < 32; i++) {
        xm[i] = x[i] - min;
        int l = clamp_int(java_nearest_int(iscale * xm[i]), 0, 15);
        float diff = scale * l + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    /* Accepting a step moves min, and later steps round against the new min: run 8 steps ahead on the current min,
     * take the first accepted one, and start again after it (a sub-block accepts a few steps of the 21). */
    const __m256 vsum_w = _mm256_set1_ps(sum_w);
    const __m256 vsum_x = _mm256_set1_ps(sum_x);
    const __m256 zero = _mm256_setzero_ps();
    int step = 0;
    while (step <= 20) {
        float lane_iscale[8], det_s[8], scale_s[8], min_s[8], err_s[8];
        for (int k = 0; k < 8; k++) {
            lane_iscale[k] = (-1.0f + 0.1f * (step + k) + 15) / (max - min);
        }
        for (int i = 0; i < 32; i++) {
            xm[i] = x[i] - min;
        }
        __m256 is = _mm256_loadu_ps(lane_iscale);
        __m256 sl = zero, sl2 = zero, sxl = zero;
        __m256 lv[32];
        for (int i = 0; i < 32; i++) {
            __m256 l = round_clamp15(_mm256_mul_ps(is, _mm256_set1_ps(xm[i])));
            lv[i] = l;
            __m256 wl = _mm256_mul_ps(_mm256_set1_ps(weights[i]), l);
            sl = _mm256_add_ps(sl, wl);
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(wl, l));
            sxl = _mm256_add_ps(sxl, _mm256_mul_ps(wl, _mm256_set1_ps(x[i])));
        }
        __m256 det = _mm256_sub_ps(_mm256_mul_ps(vsum_w, sl2), _mm256_mul_ps(sl, sl));
        __m256 ts = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(vsum_w, sxl), _mm256_mul_ps(vsum_x, sl)), det);
        __m256 tm = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sl2, vsum_x), _mm256_mul_ps(sl, sxl)), det);
        __m256 positive = _mm256_cmp_ps(tm, zero, _CMP_GT_OQ);
        tm = _mm256_blendv_ps(tm, zero, positive);
        ts = _mm256_blendv_ps(ts, _mm256_div_ps(sxl, sl2), positive);
        __m256 err = zero;
        for (int i = 0; i < 32; i++) {
            __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(ts, lv[i]), tm), _mm256_set1_ps(x[i]));
            err = _mm256_add_ps(err, _mm256_mul_ps(_mm256_set1_ps(weights[i]), _mm256_mul_ps(diff, diff)));
        }
        _mm256_storeu_ps(det_s, det);
        _mm256_storeu_ps(scale_s, ts);
        _mm256_storeu_ps(min_s, tm);
        _mm256_storeu_ps(err_s, err);
        int next = step + 8;
        for (int k = 0; k < 8 && step + k <= 20; k++) {
            if (det_s[k] > 0 && err_s[k] < best_error) {
                best_error = err_s[k];
                scale = scale_s[k];
                min = min_s[k];
                next = step + k + 1;
                break;
            }
        }
        step = next;
    }
    w->scales[j] = scale;
    w->mins[j] = -min;
}

NB_Q_AVX2 static double q4k_search_avx2(const float *x, uint16_t d_bits, uint16_t dmin_bits, q4k_work *w) {
    float d = java_f16_to_f32(d_bits);
    float dmin = java_f16_to_f32(dmin_bits);
    double error = 0;
    for (int j = 0; j < 8; j++) {
        const float *xj = x + 32 * j;
        int ls0 = w->codes[j] & 0xff;
        int lm0 = w->codes[j] >> 8;
        int ls_hi = ls0 + 1 < 63 ? ls0 + 1 : 63;
        int lm_hi = lm0 + 1 < 63 ? lm0 + 1 : 63;
        float sc[16], mn[16], inv[16];
        int code[16];
        int count = 0;
        for (int ls = ls0 - 1 > 0 ? ls0 - 1 : 0; ls <= ls_hi; ls++) {
            for (int lm = lm0 - 1 > 0 ? lm0 - 1 : 0; lm <= lm_hi; lm++) {
                sc[count] = d * ls;
                mn[count] = dmin * lm;
                inv[count] = sc[count] != 0 ? 1.0f / sc[count] : 0.0f;
                code[count] = ls | lm << 8;
                count++;
            }
        }
        for (int c = count; c < 16; c++) {
            sc[c] = sc[0];
            mn[c] = mn[0];
            inv[c] = inv[0];
        }
        __m256 s0 = _mm256_loadu_ps(sc), s1 = _mm256_loadu_ps(sc + 8);
        __m256 m0 = _mm256_loadu_ps(mn), m1 = _mm256_loadu_ps(mn + 8);
        __m256 i0 = _mm256_loadu_ps(inv), i1 = _mm256_loadu_ps(inv + 8);
        __m256d e0 = _mm256_setzero_pd(), e1 = e0, e2 = e0, e3 = e0;
        for (int l = 0; l < 32; l++) {
            __m256 v = _mm256_set1_ps(xj[l]);
            __m256d vd = _mm256_set1_pd((double) xj[l]);
            __m256 q0 = round_clamp15(_mm256_mul_ps(_mm256_add_ps(v, m0), i0));
            __m256 q1 = round_clamp15(_mm256_mul_ps(_mm256_add_ps(v, m1), i1));
            __m256 f0 = _mm256_sub_ps(_mm256_mul_ps(s0, q0), m0);
            __m256 f1 = _mm256_sub_ps(_mm256_mul_ps(s1, q1), m1);
            __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f0)), vd);
            __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f0, 1)), vd);
            __m256d d2 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f1)), vd);
            __m256d d3 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f1, 1)), vd);
            e0 = _mm256_add_pd(e0, _mm256_mul_pd(d0, d0));
            e1 = _mm256_add_pd(e1, _mm256_mul_pd(d1, d1));
            e2 = _mm256_add_pd(e2, _mm256_mul_pd(d2, d2));
            e3 = _mm256_add_pd(e3, _mm256_mul_pd(d3, d3));
        }
        double errs[16];
        _mm256_storeu_pd(errs, e0);
        _mm256_storeu_pd(errs + 4, e1);
        _mm256_storeu_pd(errs + 8, e2);
        _mm256_storeu_pd(errs + 12, e3);
        double best = INFINITY;
        for (int c = 0; c < count; c++) {
            if (errs[c] < best) {
                best = errs[c];
                w->codes[j] = code[c];
            }
        }
        error += best;
    }
    return error;
}
#endif

/* The AVX2 forms when the library runs its AVX2 (or AVX-512) path, else the scalar ones: the same results either way. */
static void q4k_fit_any(const float *x, const float *weights, q4k_work *w, int j, int avx2) {
#if defined(__x86_64__) || defined(_M_X64)
    if (avx2) {
        q4k_fit_avx2(x, weights, w, j);
        return;
    }
#endif
    q4k_fit(x, weights, w, j);
}

static double q4k_search_any(const float *x, uint16_t d_bits, uint16_t dmin_bits, q4k_work *w, int avx2) {
#if defined(__x86_64__) || defined(_M_X64)
    if (avx2) {
        return q4k_search_avx2(x, d_bits, dmin_bits, w);
    }
#endif
    return q4k_search(x, d_bits, dmin_bits, w);
}

static void q4k_write(const float *x, uint8_t *out, uint16_t d_bits, uint16_t dmin_bits, q4k_work *w) {
    memset(out, 0, Q4K_BLOCK_BYTES);
    put_u16(out, d_bits);
    put_u16(out + 2, dmin_bits);
    float d = java_f16_to_f32(d_bits);
    float dmin = java_f16_to_f32(dmin_bits);
    for (int j = 0; j < 8; j++) {
        int ls = w->best_codes[j] & 0xff;
        int lm = w->best_codes[j] >> 8;
        if (j < 4) {
            out[4 + j] = (uint8_t) ls;
            out[8 + j] = (uint8_t) lm;
        } else {
            out[8 + j] = (uint8_t) ((ls & 0xf) | (lm & 0xf) << 4);
            out[j] |= (uint8_t) ((ls >> 4) << 6);
            out[4 + j] |= (uint8_t) ((lm >> 4) << 6);
        }
    }
    for (int pair = 0; pair < 4; pair++) {
        int lo = w->best_codes[2 * pair];
        int hi = w->best_codes[2 * pair + 1];
        q4k_sub_error(x + 64 * pair, d * (lo & 0xff), dmin * (lo >> 8), w->levels);
        q4k_sub_error(x + 64 * pair + 32, d * (hi & 0xff), dmin * (hi >> 8), w->trial);
        for (int l = 0; l < 32; l++) {
            out[16 + 32 * pair + l] = (uint8_t) (w->levels[l] | w->trial[l] << 4);
        }
    }
}

static void q4k_block(const float *x, uint8_t *out, q4k_work *w, int avx2) {
    double best_error = INFINITY;
    uint16_t best_d = 0;
    uint16_t best_dmin = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int j = 0; j < 8; j++) {
            const float *weights = w->ones;
            const float *xj = x + 32 * j;
            if (pass == 0) {
                float sum_x2 = 0;
                for (int l = 0; l < 32; l++) {
                    sum_x2 += xj[l] * xj[l];
                }
                float rms = (float) sqrt((double) (sum_x2 / 32));
                for (int l = 0; l < 32; l++) {
                    w->weights[l] = rms + fabsf(xj[l]);
                }
                weights = w->weights;
            }
            q4k_fit_any(xj, weights, w, j, avx2);
        }
        float max_scale = 0;
        float max_min = 0;
        for (int j = 0; j < 8; j++) {
            max_scale = java_max(max_scale, w->scales[j]);
            max_min = java_max(max_min, w->mins[j]);
        }
        float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
        float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
        for (int j = 0; j < 8; j++) {
            w->codes[j] = clamp_int(java_nearest_int(inv_scale * w->scales[j]), 0, 63)
                    | clamp_int(java_nearest_int(inv_min * w->mins[j]), 0, 63) << 8;
        }
        uint16_t d_bits = java_f32_to_f16(max_scale / 63.0f);
        uint16_t dmin_bits = java_f32_to_f16(max_min / 63.0f);
        double error = q4k_search_any(x, d_bits, dmin_bits, w, avx2);
        if (error < best_error) {
            best_error = error;
            best_d = d_bits;
            best_dmin = dmin_bits;
            memcpy(w->best_codes, w->codes, sizeof w->codes);
        }
    }
    for (int round = 0; round < REFITS; round++) {
        memcpy(w->codes, w->best_codes, sizeof w->codes);
        uint16_t d_bits, dmin_bits;
        if (!q4k_refit(x, best_d, best_dmin, w, &d_bits, &dmin_bits)) {
            break;
        }
        double error = q4k_search_any(x, d_bits, dmin_bits, w, avx2);
        if (!(error < best_error)) {
            break;
        }
        best_error = error;
        best_d = d_bits;
        best_dmin = dmin_bits;
        memcpy(w->best_codes, w->codes, sizeof w->codes);
    }
    q4k_write(x, out, best_d, best_dmin, w);
}

static void q4k_row(const float *src, int64_t blocks, uint8_t *dst, int avx2) {
    q4k_work w;
    memset(&w, 0, sizeof w);
    for (int l = 0; l < 32; l++) {
        w.ones[l] = 1.0f;
    }
    for (int64_t b = 0; b < blocks; b++) {
        q4k_block(src + 256 * b, dst + Q4K_BLOCK_BYTES * b, &w, avx2);
    }
}

/* ---------------------------------------------------------------- Q6_K */

#define Q6K_BLOCK_BYTES 210

typedef struct {
    float scales[16];
    int codes[16];
    int best_codes[16]; /* persists from block to block within a row, as in Java */
    uint8_t levels[256];
} q6k_work;

static double q6k_sub_error(const float *x, float scale, uint8_t *levels) {
    float inv = scale != 0 ? 1.0f / scale : 0.0f;
    double error = 0;
    for (int l = 0; l < 16; l++) {
        float v = x[l];
        int q = clamp_int(java_nearest_int(v * inv), -32, 31);
        double e = (double) (scale * q) - v;
        error += e * e;
        if (levels) {
            levels[l] = (uint8_t) (q + 32);
        }
    }
    return error;
}

static float q6k_fit(const float *x, int weighted) {
    float max = 0;
    float amax = 0;
    for (int i = 0; i < 16; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < 1e-15f) {
        return 0.0f;
    }
    float iscale = -32 / max;
    float sum_lx = 0;
    float sum_l2 = 0;
    for (int i = 0; i < 16; i++) {
        float v = x[i];
        int l = clamp_int(java_nearest_int(iscale * v), -32, 31);
        float w = weighted ? v * v : 1.0f;
        sum_lx += w * v * l;
        sum_l2 += w * l * l;
    }
    float scale = sum_l2 != 0 ? sum_lx / sum_l2 : 0.0f;
    float best = scale * sum_lx;
    for (int step = -9; step <= 9; step++) {
        if (step == 0) {
            continue;
        }
        iscale = -(32 + 0.1f * step) / max;
        sum_lx = 0;
        sum_l2 = 0;
        for (int i = 0; i < 16; i++) {
            float v = x[i];
            int l = clamp_int(java_nearest_int(iscale * v), -32, 31);
            float w = weighted ? v * v : 1.0f;
            sum_lx += w * v * l;
            sum_l2 += w * l * l;
        }
        if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
            scale = sum_lx / sum_l2;
            best = scale * sum_lx;
        }
    }
    return scale;
}

static double q6k_search(const float *x, uint16_t d_bits, int *codes) {
    float d = java_f16_to_f32(d_bits);
    double error = 0;
    for (int j = 0; j < 16; j++) {
        int sc0 = codes[j];
        double best = INFINITY;
        int hi = sc0 + 2 < 127 ? sc0 + 2 : 127;
        for (int sc = sc0 - 2 > -128 ? sc0 - 2 : -128; sc <= hi; sc++) {
            double e = q6k_sub_error(x + 16 * j, d * sc, NULL);
            if (e < best) {
                best = e;
                codes[j] = sc;
            }
        }
        error += best;
    }
    return error;
}

/* Least-squares d with codes and levels fixed, as fp16 bits; 0 when there is nothing to fit. */
static uint16_t q6k_refit(const float *x, uint16_t d_bits, const int *codes, uint8_t *levels) {
    float d = java_f16_to_f32(d_bits);
    double saa = 0;
    double sax = 0;
    for (int j = 0; j < 16; j++) {
        q6k_sub_error(x + 16 * j, d * codes[j], levels + 16 * j);
        for (int l = 0; l < 16; l++) {
            double a = (double) codes[j] * (levels[16 * j + l] - 32);
            saa += a * a;
            sax += a * x[16 * j + l];
        }
    }
    double fitted = sax / saa;
    if (!(fabs(fitted) > 0) || fabs(fitted) > 65504) {
        return 0;
    }
    return java_f32_to_f16((float) fitted);
}

/* ---------------------------------------------------------------- Q6_K, AVX2 (one candidate per lane, as for Q4_K) */
#if defined(__x86_64__) || defined(_M_X64)
NB_Q_AVX2 static inline __m256 round_clamp_q6(__m256 t) {
    __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q)); /* NaN -> 0, as (int) NaN */
    return _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-32.0f)), _mm256_set1_ps(31.0f));
}

/* q6k_fit: its 19 grids are independent (only the choice among them is sequential), so all run as lanes. */
NB_Q_AVX2 static float q6k_fit_avx2(const float *x, int weighted) {
    float max = 0;
    float amax = 0;
    for (int i = 0; i < 16; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < 1e-15f) {
        return 0.0f;
    }
    /* lane 0: ggml's grid; lanes 1..18: steps -9..-1, 1..9; the rest repeat lane 0 */
    float lane_iscale[24];
    lane_iscale[0] = -32 / max;
    for (int k = 1; k < 24; k++) {
        int step = k <= 9 ? k - 10 : k - 9;
        lane_iscale[k] = k <= 18 ? -(32 + 0.1f * step) / max : lane_iscale[0];
    }
    float lx[24], l2[24];
    for (int g = 0; g < 3; g++) {
        __m256 is = _mm256_loadu_ps(lane_iscale + 8 * g);
        __m256 slx = _mm256_setzero_ps(), sl2 = _mm256_setzero_ps();
        for (int i = 0; i < 16; i++) {
            float v = x[i];
            float w = weighted ? v * v : 1.0f;
            __m256 l = round_clamp_q6(_mm256_mul_ps(is, _mm256_set1_ps(v)));
            slx = _mm256_add_ps(slx, _mm256_mul_ps(_mm256_set1_ps(w * v), l));
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w), l), l));
        }
        _mm256_storeu_ps(lx + 8 * g, slx);
        _mm256_storeu_ps(l2 + 8 * g, sl2);
    }
    float scale = l2[0] != 0 ? lx[0] / l2[0] : 0.0f;
    float best = scale * lx[0];
    for (int k = 1; k <= 18; k++) {
        if (l2[k] > 0 && lx[k] * lx[k] > best * l2[k]) {
            scale = lx[k] / l2[k];
            best = scale * lx[k];
        }
    }
    return scale;
}

NB_Q_AVX2 static double q6k_search_avx2(const float *x, uint16_t d_bits, int *codes) {
    float d = java_f16_to_f32(d_bits);
    double error = 0;
    for (int j = 0; j < 16; j++) {
        const float *xj = x + 16 * j;
        int sc0 = codes[j];
        int hi = sc0 + 2 < 127 ? sc0 + 2 : 127;
        float sc[8], inv[8];
        int code[8];
        int count = 0;
        for (int c = sc0 - 2 > -128 ? sc0 - 2 : -128; c <= hi; c++) {
            sc[count] = d * c;
            inv[count] = sc[count] != 0 ? 1.0f / sc[count] : 0.0f;
            code[count] = c;
            count++;
        }
        if (count == 0) {
            error += INFINITY;
            continue;
        }
        for (int c = count; c < 8; c++) {
            sc[c] = sc[0];
            inv[c] = inv[0];
        }
        __m256 s = _mm256_loadu_ps(sc), iv = _mm256_loadu_ps(inv);
        __m256d e0 = _mm256_setzero_pd(), e1 = e0;
        for (int l = 0; l < 16; l++) {
            __m256d vd = _mm256_set1_pd((double) xj[l]);
            __m256 q = round_clamp_q6(_mm256_mul_ps(_mm256_set1_ps(xj[l]), iv));
            __m256 f = _mm256_mul_ps(s, q);
            __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f)), vd);
            __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)), vd);
            e0 = _mm256_add_pd(e0, _mm256_mul_pd(d0, d0));
            e1 = _mm256_add_pd(e1, _mm256_mul_pd(d1, d1));
        }
        double errs[8];
        _mm256_storeu_pd(errs, e0);
        _mm256_storeu_pd(errs + 4, e1);
        double best = INFINITY;
        for (int c = 0; c < count; c++) {
            if (errs[c] < best) {
                best = errs[c];
                codes[j] = code[c];
            }
        }
        error += best;
    }
    return error;
}
#endif

static float q6k_fit_any(const float *x, int weighted, int avx2) {
#if defined(__x86_64__) || defined(_M_X64)
    if (avx2) {
        return q6k_fit_avx2(x, weighted);
    }
#endif
    return q6k_fit(x, weighted);
}

static double q6k_search_any(const float *x, uint16_t d_bits, int *codes, int avx2) {
#if defined(__x86_64__) || defined(_M_X64)
    if (avx2) {
        return q6k_search_avx2(x, d_bits, codes);
    }
#endif
    return q6k_search(x, d_bits, codes);
}

static void q6k_block(const float *x, uint8_t *out, q6k_work *w, int avx2) {
    memset(out, 0, Q6K_BLOCK_BYTES);
    double best_error = INFINITY;
    uint16_t best_d = 0;
    for (int pass = 0; pass < 2; pass++) {
        float max_scale = 0;
        float max_abs_scale = 0;
        for (int j = 0; j < 16; j++) {
            w->scales[j] = q6k_fit_any(x + 16 * j, pass == 0, avx2);
            if (fabsf(w->scales[j]) > max_abs_scale) {
                max_abs_scale = fabsf(w->scales[j]);
                max_scale = w->scales[j];
            }
        }
        if (max_abs_scale < 1e-15f) {
            return; /* all (near) zero: the zeroed block, d = 0 */
        }
        float iscale = -128.0f / max_scale;
        uint16_t d_bits = java_f32_to_f16(1 / iscale);
        for (int j = 0; j < 16; j++) {
            int c = java_nearest_int(iscale * w->scales[j]);
            w->codes[j] = c < 127 ? c : 127;
        }
        double error = q6k_search_any(x, d_bits, w->codes, avx2);
        if (error < best_error) {
            best_error = error;
            best_d = d_bits;
            memcpy(w->best_codes, w->codes, sizeof w->codes);
        }
    }
    for (int round = 0; round < REFITS; round++) {
        memcpy(w->codes, w->best_codes, sizeof w->codes);
        uint16_t d_bits = q6k_refit(x, best_d, w->codes, w->levels);
        if (d_bits == 0) {
            break;
        }
        double error = q6k_search_any(x, d_bits, w->codes, avx2);
        if (!(error < best_error)) {
            break;
        }
        best_error = error;
        best_d = d_bits;
        memcpy(w->best_codes, w->codes, sizeof w->codes);
    }
    float d = java_f16_to_f32(best_d);
    for (int j = 0; j < 16; j++) {
        q6k_sub_error(x + 16 * j, d * w->best_codes[j], w->levels + 16 * j);
        out[192 + j] = (uint8_t) w->best_codes[j];
    }
    put_u16(out + 208, best_d);
    for (int half = 0; half < 2; half++) {
        uint8_t *ql = out + 64 * half;
        uint8_t *qh = out + 128 + 32 * half;
        const uint8_t *lv = w->levels + 128 * half;
        for (int l = 0; l < 32; l++) {
            int q1 = lv[l], q2 = lv[l + 32], q3 = lv[l + 64], q4 = lv[l + 96];
            ql[l] = (uint8_t) ((q1 & 0xf) | (q3 & 0xf) << 4);
            ql[l + 32] = (uint8_t) ((q2 & 0xf) | (q4 & 0xf) << 4);
            qh[l] = (uint8_t) ((q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
        }
    }
}

static void q6k_row(const float *src, int64_t blocks, uint8_t *dst, int avx2) {
    q6k_work w;
    memset(&w, 0, sizeof w);
    for (int64_t b = 0; b < blocks; b++) {
        q6k_block(src + 256 * b, dst + Q6K_BLOCK_BYTES * b, &w, avx2);
    }
}

/* ---------------------------------------------------------------- entry point */

NB_API nb_status nb_quantize_row_isa(int32_t isa, int32_t type, const float *src, int64_t n, void *dst) {
    int64_t block;
    switch (type) {
    case NB_Q4_K:
    case NB_Q6_K:
        block = 256;
        break;
    default:
        return NB_ERR_UNSUPPORTED;
    }
    if (isa < NB_ISA_SCALAR || isa > NB_ISA_AVX512 || !src || !dst || n < 0 || n % block != 0) {
        return NB_ERR_ARGUMENT;
    }
    if (isa > nb_isa_best()) {
        return NB_ERR_UNSUPPORTED;
    }
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(src[i])) {
            return NB_ERR_ARGUMENT;
        }
    }
    if (type == NB_Q4_K) {
        q4k_row(src, n / block, (uint8_t *) dst, isa >= NB_ISA_AVX2);
    } else {
        q6k_row(src, n / block, (uint8_t *) dst, isa >= NB_ISA_AVX2);
    }
    return NB_OK;
}

NB_API nb_status nb_quantize_row(int32_t type, const float *src, int64_t n, void *dst) {
    return nb_quantize_row_isa(nb_isa_default(), type, src, n, dst);
}
