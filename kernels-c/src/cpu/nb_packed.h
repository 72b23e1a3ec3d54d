/* Matmul kernels for AVX-512 VNNI (decode and prefill), included by nb_kernels.c in its AVX-512 build only.
 *
 * One vpdpbusd lane per weight row: 16 rows x 32 columns of weights are unpacked to bytes and transposed so that
 * register w[k] holds, in each 32-bit lane, 4 consecutive weights of one row; one token's 4 activation bytes are
 * broadcast to all lanes. Eight vpdpbusd then give 16 rows' block sums for a token, and the per-block float work
 * (convert, scale, accumulate) is shared by 16 rows instead of being spent per row: about a quarter of the
 * instructions of a row-at-a-time dot product, which matters even for one token (decode).
 *
 * vpdpbusd multiplies unsigned by signed bytes. The weights take the unsigned side and the activations stay signed:
 * Q4_0, Q4_K and Q6_K codes are unsigned already (0..15, 0..63), Q8_0 and IQ4_NL values get + 128; the zero point
 * (8, 32 or 128) times the sum of the activations is a per-token start value, computed when quantizing them. */

/* Tokens whose accumulators (16 floats each) stay in L1 while one row block is processed. */
#define NB_TOK_GROUP 64

typedef struct {
    __m512i w[8];     /* 8 x (16 lanes x 4 bytes) */
    __m512 scale[2];  /* per-row scale (two for Q6_K's 16-column groups) */
    __m512 min;       /* Q4_K: dmin * m per row, applied to dx * -(sum of the activations) */
} nb_packed_block;

enum { KIND_UNSIGNED, KIND_UNSIGNED_MIN, KIND_SPLIT };

static int wants_packed(int32_t wtype, int64_t n_tok) {
    (void)n_tok;
    return wtype == NB_Q4_0 || wtype == NB_Q8_0 || wtype == NB_IQ4_NL || wtype == NB_Q4_K || wtype == NB_Q6_K;
}

static void quantize_x_packed(const nb_mm_args *a, int64_t t) {
    int8_t q[32];
    float d;
    int32_t s[2];
    int offset = a->wtype == NB_Q4_0 ? 8 : a->wtype == NB_Q4_K ? 0 : a->wtype == NB_Q6_K ? 32 : 128;
    const float *x = a->x + t * a->n_in;
    for (int64_t b = 0; b < a->n_in / 32; b++) {
        quantize_x(x + 32 * b, 32, q, &d, s);
        int64_t at = b * a->n_tok + t;
        memcpy((uint8_t *)a->xp + at * 32, q, 32);
        ((float *)a->dx)[at] = d;
        ((float *)a->dxs)[at] = d * (float)(s[0] + s[1]);
        /* s holds negated sums; Q6_K's zero point applies per 16-column group, the others' per block */
        int32_t *xc = (int32_t *)a->xcorr + 2 * at;
        xc[0] = offset * (a->wtype == NB_Q6_K ? s[0] : s[0] + s[1]);
        xc[1] = offset * s[1];
    }
}

/* rows[r] + off: 16 bytes of row r; out[k] lane r = bytes 4k..4k+3 of row r. */
INLINE void transpose16x4(const uint8_t *const rows[16], int64_t off, __m512i out[4]) {
    __m512i z[4];
    for (int q = 0; q < 4; q++) {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rows[4 * q] + off)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rows[4 * q + 1] + off)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rows[4 * q + 2] + off)), 2);
        z[q] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rows[4 * q + 3] + off)), 3);
    }
    /* z[q] holds rows 4q..4q+3; regroup so that b[j] holds rows j, 4+j, 8+j, 12+j */
    __m512i a0 = _mm512_shuffle_i32x4(z[0], z[1], 0x44), a1 = _mm512_shuffle_i32x4(z[0], z[1], 0xEE);
    __m512i a2 = _mm512_shuffle_i32x4(z[2], z[3], 0x44), a3 = _mm512_shuffle_i32x4(z[2], z[3], 0xEE);
    /* a0 = rows 0,1,4,5; a1 = rows 2,3,6,7; a2 = rows 8,9,12,13; a3 = rows 10,11,14,15 */
    __m512i b0 = _mm512_shuffle_i32x4(a0, a2, 0x88), b1 = _mm512_shuffle_i32x4(a0, a2, 0xDD);
    __m512i b2 = _mm512_shuffle_i32x4(a1, a3, 0x88), b3 = _mm512_shuffle_i32x4(a1, a3, 0xDD);
    /* b0 = rows 0,4,8,12; b1 = rows 1,5,9,13; b2 = rows 2,6,10,14; b3 = rows 3,7,11,15: a 4x4 dword transpose
     * inside each 128-bit lane i then yields rows 4i..4i+3 */
    __m512i lo01 = _mm512_unpacklo_epi32(b0, b1), hi01 = _mm512_unpackhi_epi32(b0, b1);
    __m512i lo23 = _mm512_unpacklo_epi32(b2, b3), hi23 = _mm512_unpackhi_epi32(b2, b3);
    out[0] = _mm512_unpacklo_epi64(lo01, lo23);
    out[1] = _mm512_unpackhi_epi64(lo01, lo23);
    out[2] = _mm512_unpacklo_epi64(hi01, hi23);
    out[3] = _mm512_unpackhi_epi64(hi01, hi23);
}

/* The fp16 at byte off of each of the 16 rows (scalar loads: a vpgatherdd costs more on Zen 4). */
INLINE __m512 gather_f16(const uint8_t *const rows[16], int64_t off) {
    uint16_t h[16];
    for (int r = 0; r < 16; r++) h[r] = rd16(rows[r] + off);
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h));
}

/* IQ4_NL's codebook + 128, as unsigned bytes in every 128-bit lane. */
INLINE __m512i iq4nl_table(void) {
    return _mm512_xor_si512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)IQ4NL_VALUES)), _mm512_set1_epi8((char)0x80));
}

/* One 32-column block of a 32-element-block type (Q4_0, Q8_0, IQ4_NL), as unsigned bytes. */
INLINE void pack_block32(int32_t wtype, const uint8_t *const rows[16], int64_t b, nb_packed_block *pb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    int64_t bb = wtype == NB_Q8_0 ? 34 : 18;
    pb->scale[0] = gather_f16(rows, b * bb);
    if (wtype == NB_Q8_0) {
        transpose16x4(rows, b * bb + 2, pb->w);
        transpose16x4(rows, b * bb + 18, pb->w + 4);
        for (int k = 0; k < 8; k++) pb->w[k] = _mm512_xor_si512(pb->w[k], _mm512_set1_epi8((char)0x80));
        return;
    }
    __m512i t[4];
    transpose16x4(rows, b * bb + 2, t);
    const __m512i table = iq4nl_table();
    for (int k = 0; k < 4; k++) {
        __m512i lo = _mm512_and_si512(t[k], m4), hi = _mm512_and_si512(_mm512_srli_epi16(t[k], 4), m4);
        pb->w[k] = wtype == NB_IQ4_NL ? _mm512_shuffle_epi8(table, lo) : lo;
        pb->w[k + 4] = wtype == NB_IQ4_NL ? _mm512_shuffle_epi8(table, hi) : hi;
    }
}

/* A 256-column Q4_K super-block into 8 packed blocks. */
INLINE void pack_q4_k(const uint8_t *const rows[16], int64_t sb, nb_packed_block *pb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* the 16-byte headers of the 16 rows, transposed: h[0] = d | dmin << 16, h[1..3] = scale bytes 0-3, 4-7, 8-11 */
    __m512i h[4];
    transpose16x4(rows, sb * 144, h);
    const __m512i m6 = _mm512_set1_epi32(63), m4d = _mm512_set1_epi32(15);
    __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h[0]));
    __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(h[0], 16)));
    __m512 ds[8], dm[8];
    for (int j = 0; j < 4; j++) {
        __m512i b1 = _mm512_srli_epi32(h[1], 8 * j), b2 = _mm512_srli_epi32(h[2], 8 * j), b3 = _mm512_srli_epi32(h[3], 8 * j);
        __m512i sc = _mm512_and_si512(b1, m6), m = _mm512_and_si512(b2, m6);
        /* sub-blocks 4-7: low 4 bits from byte j+8, top 2 bits from the spare bits of bytes j and j+4 */
        __m512i sc_hi = _mm512_or_si512(_mm512_and_si512(b3, m4d), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(b1, 6), _mm512_set1_epi32(3)), 4));
        __m512i m_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(b3, 4), m4d), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(b2, 6), _mm512_set1_epi32(3)), 4));
        ds[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc));
        dm[j] = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(m));
        ds[j + 4] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sc_hi));
        dm[j + 4] = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(m_hi));
    }
    for (int i = 0; i < 4; i++) {
        __m512i t[8];
        transpose16x4(rows, sb * 144 + 16 + 32 * i, t);
        transpose16x4(rows, sb * 144 + 16 + 32 * i + 16, t + 4);
        for (int k = 0; k < 8; k++) {
            pb[2 * i].w[k] = _mm512_and_si512(t[k], m4);
            pb[2 * i + 1].w[k] = _mm512_and_si512(_mm512_srli_epi16(t[k], 4), m4);
        }
        for (int h = 0; h < 2; h++) {
            pb[2 * i + h].scale[0] = ds[2 * i + h];
            pb[2 * i + h].min = dm[2 * i + h];
        }
    }
}

/* A 256-column Q6_K super-block into 8 packed blocks, each with two 16-column scale groups. */
INLINE void pack_q6_k(const uint8_t *const rows[16], int64_t sb, nb_packed_block *pb) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    float sc[16][16];
    for (int r = 0; r < 16; r++) {
        const uint8_t *blk = rows[r] + sb * 210;
        float d = h2f(rd16(blk + 208));
        for (int g = 0; g < 16; g++) sc[g][r] = d * (float)(int8_t)blk[192 + g];
    }
    for (int h = 0; h < 2; h++) {
        __m512i la[8], lb[8], hv[8];
        int64_t base = sb * 210;
        transpose16x4(rows, base + 64 * h, la);
        transpose16x4(rows, base + 64 * h + 16, la + 4);
        transpose16x4(rows, base + 64 * h + 32, lb);
        transpose16x4(rows, base + 64 * h + 48, lb + 4);
        transpose16x4(rows, base + 128 + 32 * h, hv);
        transpose16x4(rows, base + 128 + 32 * h + 16, hv + 4);
        for (int k = 0; k < 8; k++) {
            __m512i q0 = _mm512_or_si512(_mm512_and_si512(la[k], m4), _mm512_and_si512(_mm512_slli_epi16(hv[k], 4), m30));
            __m512i q1 = _mm512_or_si512(_mm512_and_si512(lb[k], m4), _mm512_and_si512(_mm512_slli_epi16(hv[k], 2), m30));
            __m512i q2 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(la[k], 4), m4), _mm512_and_si512(hv[k], m30));
            __m512i q3 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(lb[k], 4), m4),
                                         _mm512_and_si512(_mm512_srli_epi16(hv[k], 2), m30));
            pb[4 * h + 0].w[k] = q0;
            pb[4 * h + 1].w[k] = q1;
            pb[4 * h + 2].w[k] = q2;
            pb[4 * h + 3].w[k] = q3;
        }
        for (int s = 0; s < 4; s++) {
            nb_packed_block *p = &pb[4 * h + s];
            p->scale[0] = _mm512_loadu_ps(sc[8 * h + 2 * s]);
            p->scale[1] = _mm512_loadu_ps(sc[8 * h + 2 * s + 1]);
        }
    }
}

/* acc[t] += this block's contribution for tokens [t0, t0 + nt). */
INLINE void packed_tokens(const nb_mm_args *a, const nb_packed_block *pb, int64_t blk, int64_t t0, int64_t nt, int kind,
                          __m512 *acc) {
    const __m512i w0 = pb->w[0], w1 = pb->w[1], w2 = pb->w[2], w3 = pb->w[3], w4 = pb->w[4], w5 = pb->w[5],
                  w6 = pb->w[6], w7 = pb->w[7];
    const uint8_t *xb = a->xp + (blk * a->n_tok + t0) * 32;
    const float *dx = a->dx + blk * a->n_tok + t0, *dxs = a->dxs + blk * a->n_tok + t0;
    const int32_t *xc = a->xcorr + 2 * (blk * a->n_tok + t0);
    int64_t t = 0;
    if (kind == KIND_UNSIGNED || kind == KIND_UNSIGNED_MIN) {
        /* two tokens per pass: two independent chains of eight, with no add to join halves of one chain */
        for (; t + 2 <= nt; t += 2, xb += 64) {
            const int32_t *xi = (const int32_t *)xb, *xj = (const int32_t *)(xb + 32);
            __m512i i0 = _mm512_set1_epi32(xc[2 * t]), i1 = _mm512_set1_epi32(xc[2 * t + 2]);
            i0 = _mm512_dpbusd_epi32(i0, w0, _mm512_set1_epi32(xi[0]));
            i1 = _mm512_dpbusd_epi32(i1, w0, _mm512_set1_epi32(xj[0]));
            i0 = _mm512_dpbusd_epi32(i0, w1, _mm512_set1_epi32(xi[1]));
            i1 = _mm512_dpbusd_epi32(i1, w1, _mm512_set1_epi32(xj[1]));
            i0 = _mm512_dpbusd_epi32(i0, w2, _mm512_set1_epi32(xi[2]));
            i1 = _mm512_dpbusd_epi32(i1, w2, _mm512_set1_epi32(xj[2]));
            i0 = _mm512_dpbusd_epi32(i0, w3, _mm512_set1_epi32(xi[3]));
            i1 = _mm512_dpbusd_epi32(i1, w3, _mm512_set1_epi32(xj[3]));
            i0 = _mm512_dpbusd_epi32(i0, w4, _mm512_set1_epi32(xi[4]));
            i1 = _mm512_dpbusd_epi32(i1, w4, _mm512_set1_epi32(xj[4]));
            i0 = _mm512_dpbusd_epi32(i0, w5, _mm512_set1_epi32(xi[5]));
            i1 = _mm512_dpbusd_epi32(i1, w5, _mm512_set1_epi32(xj[5]));
            i0 = _mm512_dpbusd_epi32(i0, w6, _mm512_set1_epi32(xi[6]));
            i1 = _mm512_dpbusd_epi32(i1, w6, _mm512_set1_epi32(xj[6]));
            i0 = _mm512_dpbusd_epi32(i0, w7, _mm512_set1_epi32(xi[7]));
            i1 = _mm512_dpbusd_epi32(i1, w7, _mm512_set1_epi32(xj[7]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0), _mm512_mul_ps(pb->scale[0], _mm512_set1_ps(dx[t])), acc[t]);
            acc[t + 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1), _mm512_mul_ps(pb->scale[0], _mm512_set1_ps(dx[t + 1])), acc[t + 1]);
            if (kind == KIND_UNSIGNED_MIN) {
                acc[t] = _mm512_fmadd_ps(pb->min, _mm512_set1_ps(dxs[t]), acc[t]);
                acc[t + 1] = _mm512_fmadd_ps(pb->min, _mm512_set1_ps(dxs[t + 1]), acc[t + 1]);
            }
        }
    }
    for (; t < nt; t++, xb += 32) {
        const int32_t *xi = (const int32_t *)xb;
        __m512 d = _mm512_set1_ps(dx[t]);
        if (kind == KIND_SPLIT) {
            __m512i ia = _mm512_set1_epi32(xc[2 * t]), ib = _mm512_set1_epi32(xc[2 * t + 1]);
            ia = _mm512_dpbusd_epi32(ia, w0, _mm512_set1_epi32(xi[0]));
            ib = _mm512_dpbusd_epi32(ib, w4, _mm512_set1_epi32(xi[4]));
            ia = _mm512_dpbusd_epi32(ia, w1, _mm512_set1_epi32(xi[1]));
            ib = _mm512_dpbusd_epi32(ib, w5, _mm512_set1_epi32(xi[5]));
            ia = _mm512_dpbusd_epi32(ia, w2, _mm512_set1_epi32(xi[2]));
            ib = _mm512_dpbusd_epi32(ib, w6, _mm512_set1_epi32(xi[6]));
            ia = _mm512_dpbusd_epi32(ia, w3, _mm512_set1_epi32(xi[3]));
            ib = _mm512_dpbusd_epi32(ib, w7, _mm512_set1_epi32(xi[7]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), _mm512_mul_ps(pb->scale[0], d), acc[t]);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ib), _mm512_mul_ps(pb->scale[1], d), acc[t]);
        } else {
            __m512i ia = _mm512_set1_epi32(xc[2 * t]), ib = _mm512_setzero_si512();
            ia = _mm512_dpbusd_epi32(ia, w0, _mm512_set1_epi32(xi[0]));
            ib = _mm512_dpbusd_epi32(ib, w4, _mm512_set1_epi32(xi[4]));
            ia = _mm512_dpbusd_epi32(ia, w1, _mm512_set1_epi32(xi[1]));
            ib = _mm512_dpbusd_epi32(ib, w5, _mm512_set1_epi32(xi[5]));
            ia = _mm512_dpbusd_epi32(ia, w2, _mm512_set1_epi32(xi[2]));
            ib = _mm512_dpbusd_epi32(ib, w6, _mm512_set1_epi32(xi[6]));
            ia = _mm512_dpbusd_epi32(ia, w3, _mm512_set1_epi32(xi[3]));
            ib = _mm512_dpbusd_epi32(ib, w7, _mm512_set1_epi32(xi[7]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(ia, ib)), _mm512_mul_ps(pb->scale[0], d), acc[t]);
            if (kind == KIND_UNSIGNED_MIN) acc[t] = _mm512_fmadd_ps(pb->min, _mm512_set1_ps(dxs[t]), acc[t]);
        }
    }
}

/* Four rows' 16 bytes at byte off, one row per 128-bit lane. */
INLINE __m512i load_4rows(const uint8_t *const *rows, int64_t off) {
    __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rows[0] + off)));
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(rows[1] + off)), 1);
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(rows[2] + off)), 2);
    return _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)(rows[3] + off)), 3);
}

/* Adds the four dwords of each row in s[0..3] (row 4q + i in lane i of s[q]): lane 4i + j gets row 4j + i. */
INLINE __m512i row_sums(const __m512i s[4]) {
    __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[0], s[1]), _mm512_unpackhi_epi32(s[0], s[1]));
    __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[2], s[3]), _mm512_unpackhi_epi32(s[2], s[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
}

/* Q4_0, Q8_0 or IQ4_NL for one token, without a transpose. Each 128-bit lane holds 16 weight bytes of one row (4
 * rows per register) against the matching 16 activations broadcast to every lane; the four partial sums of each row
 * are then added across lanes, which costs fewer shuffles than transposing the weights when there is only one token
 * to reuse them for. The sums come out with lane 4i + j holding row 4j + i; the scales are loaded in that order and
 * the result is put back in row order at the end. */
static void decode_block32(const nb_mm_args *a, const uint8_t *const rows[16], int nrows, int64_t rb, const uint8_t *pf,
                           int64_t pf_step) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), table = iq4nl_table(), bias = _mm512_set1_epi8((char)0x80);
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const int32_t wt = a->wtype;
    const int64_t bb = wt == NB_Q8_0 ? 34 : 18;
    const uint8_t *perm[16];
    for (int p = 0; p < 16; p++) perm[p] = rows[(p % 4) * 4 + p / 4];
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < a->n_in / 32; b++) {
        if (pf) prefetch_span(pf + b * pf_step, pf_step);
        const uint8_t *xb = a->xp + b * 32;
        __m512i xlo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)xb));
        __m512i xhi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(xb + 16)));
        __m512i s[4];
        for (int q = 0; q < 4; q++) {
            __m512i lo, hi;
            if (wt == NB_Q8_0) {
                lo = _mm512_xor_si512(load_4rows(rows + 4 * q, b * bb + 2), bias);
                hi = _mm512_xor_si512(load_4rows(rows + 4 * q, b * bb + 18), bias);
            } else {
                __m512i z = load_4rows(rows + 4 * q, b * bb + 2);
                lo = _mm512_and_si512(z, m4);
                hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
                if (wt == NB_IQ4_NL) {
                    lo = _mm512_shuffle_epi8(table, lo);
                    hi = _mm512_shuffle_epi8(table, hi);
                }
            }
            s[q] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo), hi, xhi);
        }
        __m512i sum = _mm512_add_epi32(row_sums(s), _mm512_set1_epi32(a->xcorr[2 * b]));
        __m512 scale = _mm512_mul_ps(gather_f16(perm, b * bb), _mm512_set1_ps(a->dx[b]));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc);
    }
    _mm512_mask_storeu_ps(a->y + rb, (__mmask16)((1u << nrows) - 1), _mm512_permutexvar_ps(order, acc));
}

/* Q4_K for one token, in the same row-per-128-bit-lane layout as decode_q4_0. */
static void decode_q4_k(const nb_mm_args *a, const uint8_t *const rows[16], int nrows, int64_t rb, const uint8_t *pf,
                        int64_t pf_step) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m6 = _mm512_set1_epi32(63), m4d = _mm512_set1_epi32(15),
                  m2 = _mm512_set1_epi32(3);
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const uint8_t *perm[16];
    for (int p = 0; p < 16; p++) perm[p] = rows[(p % 4) * 4 + p / 4];
    __m512 acc = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < a->n_in / 256; sb++) {
        if (pf) prefetch_span(pf + sb * pf_step, pf_step);
        /* scales and mins, decoded 16 rows at a time (lanes in the permuted row order) */
        __m512i h[4];
        transpose16x4(perm, sb * 144, h);
        __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h[0]));
        __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(h[0], 16)));
        __m512i sc[8], mn[8];
        for (int j = 0; j < 4; j++) {
            __m512i b1 = _mm512_srli_epi32(h[1], 8 * j), b2 = _mm512_srli_epi32(h[2], 8 * j), b3 = _mm512_srli_epi32(h[3], 8 * j);
            sc[j] = _mm512_and_si512(b1, m6);
            mn[j] = _mm512_and_si512(b2, m6);
            sc[j + 4] = _mm512_or_si512(_mm512_and_si512(b3, m4d), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(b1, 6), m2), 4));
            mn[j + 4] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(b3, 4), m4d), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(b2, 6), m2), 4));
        }
        for (int i = 0; i < 4; i++) {
            const uint8_t *xb = a->xp + (8 * sb + 2 * i) * 32;
            __m512i xa = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)xb));
            __m512i xbv = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(xb + 16)));
            __m512i xc = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(xb + 32)));
            __m512i xd = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(xb + 48)));
            __m512i slo[4], shi[4];
            int64_t off = sb * 144 + 16 + 32 * i;
            for (int q = 0; q < 4; q++) {
                __m512i z0 = load_4rows(rows + 4 * q, off), z1 = load_4rows(rows + 4 * q, off + 16);
                __m512i l0 = _mm512_and_si512(z0, m4), l1 = _mm512_and_si512(z1, m4);
                __m512i h0 = _mm512_and_si512(_mm512_srli_epi16(z0, 4), m4), h1 = _mm512_and_si512(_mm512_srli_epi16(z1, 4), m4);
                slo[q] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), l0, xa), l1, xbv);
                shi[q] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), h0, xc), h1, xd);
            }
            for (int half = 0; half < 2; half++) {
                int64_t blk = 8 * sb + 2 * i + half;
                __m512i sum = row_sums(half ? shi : slo);
                __m512 scale = _mm512_mul_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(sc[2 * i + half])), _mm512_set1_ps(a->dx[blk]));
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc);
                __m512 mins = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(mn[2 * i + half]));
                acc = _mm512_fmadd_ps(mins, _mm512_set1_ps(a->dxs[blk]), acc);
            }
        }
    }
    _mm512_mask_storeu_ps(a->y + rb, (__mmask16)((1u << nrows) - 1), _mm512_permutexvar_ps(order, acc));
}

/* Q6_K for one token, in the row-per-128-bit-lane layout of decode_block32: 16-column groups, one scale each. */
static void decode_q6_k(const nb_mm_args *a, const uint8_t *const rows[16], int nrows, int64_t rb, const uint8_t *pf,
                        int64_t pf_step) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const uint8_t *perm[16];
    for (int p = 0; p < 16; p++) perm[p] = rows[(p % 4) * 4 + p / 4];
    __m512 acc = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < a->n_in / 256; sb++) {
        const int64_t base = sb * 210;
        if (pf) prefetch_span(pf + sb * pf_step, pf_step);
        /* the 16 signed group scales of each row, times d (lanes in the permuted row order) */
        __m512i h[4];
        transpose16x4(perm, base + 192, h);
        __m512 d = gather_f16(perm, base + 208);
        __m512 sc[16];
        for (int g = 0; g < 16; g++)
            sc[g] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(h[g / 4], 24 - 8 * (g % 4)), 24)));
        for (int half = 0; half < 2; half++) {
            __m512i part[8][4]; /* [sub-block * 2 + group][row quad] */
            for (int q = 0; q < 4; q++) {
                const uint8_t *const *r4 = rows + 4 * q;
                for (int g = 0; g < 2; g++) {
                    __m512i la = load_4rows(r4, base + 64 * half + 16 * g), lb = load_4rows(r4, base + 64 * half + 32 + 16 * g);
                    __m512i hv = load_4rows(r4, base + 128 + 32 * half + 16 * g);
                    __m512i w[4];
                    w[0] = _mm512_or_si512(_mm512_and_si512(la, m4), _mm512_and_si512(_mm512_slli_epi16(hv, 4), m30));
                    w[1] = _mm512_or_si512(_mm512_and_si512(lb, m4), _mm512_and_si512(_mm512_slli_epi16(hv, 2), m30));
                    w[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(la, 4), m4), _mm512_and_si512(hv, m30));
                    w[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(lb, 4), m4),
                                           _mm512_and_si512(_mm512_srli_epi16(hv, 2), m30));
                    for (int k = 0; k < 4; k++) {
                        const uint8_t *xb = a->xp + (8 * sb + 4 * half + k) * 32 + 16 * g;
                        __m512i x = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)xb));
                        part[2 * k + g][q] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[k], x);
                    }
                }
            }
            for (int k = 0; k < 4; k++) {
                int64_t blk = 8 * sb + 4 * half + k;
                __m512 dx = _mm512_set1_ps(a->dx[blk]);
                for (int g = 0; g < 2; g++) {
                    __m512i sum = _mm512_add_epi32(row_sums(part[2 * k + g]), _mm512_set1_epi32(a->xcorr[2 * blk + g]));
                    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(sc[8 * half + 2 * k + g], dx), acc);
                }
            }
        }
    }
    _mm512_mask_storeu_ps(a->y + rb, (__mmask16)((1u << nrows) - 1), _mm512_permutexvar_ps(order, acc));
}

static void matmul_rows_packed(const nb_mm_args *a, int64_t r0, int64_t r1) {
    __m512 acc[NB_TOK_GROUP];
    nb_packed_block pb[8];
    const int32_t wt = a->wtype;
    const int64_t nunits = wt == NB_Q4_K || wt == NB_Q6_K ? a->n_in / 256 : a->n_in / 32;
    const int kind = wt == NB_Q4_K ? KIND_UNSIGNED_MIN : wt == NB_Q6_K ? KIND_SPLIT : KIND_UNSIGNED;
    for (int64_t rb = r0; rb < r1; rb += 16) {
        int nrows = r1 - rb < 16 ? (int)(r1 - rb) : 16;
        const uint8_t *rows[16];
        for (int r = 0; r < 16; r++) rows[r] = a->w + (rb + (r < nrows ? r : nrows - 1)) * a->row_bytes;
        if (a->n_tok == 1) {
            /* the next group of this range, spread over this group's nunits column steps */
            int64_t next = r1 - rb - 16 < 16 ? r1 - rb - 16 : 16;
            const uint8_t *pf = next > 0 ? a->w + (rb + 16) * a->row_bytes : NULL;
            int64_t pf_step = next > 0 ? next * a->row_bytes / nunits : 0;
            if (kind == KIND_UNSIGNED) decode_block32(a, rows, nrows, rb, pf, pf_step);
            else if (kind == KIND_UNSIGNED_MIN) decode_q4_k(a, rows, nrows, rb, pf, pf_step);
            else decode_q6_k(a, rows, nrows, rb, pf, pf_step);
            continue;
        }
        for (int64_t t0 = 0; t0 < a->n_tok; t0 += NB_TOK_GROUP) {
            int64_t nt = a->n_tok - t0 < NB_TOK_GROUP ? a->n_tok - t0 : NB_TOK_GROUP;
            for (int64_t t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
            for (int64_t u = 0; u < nunits; u++) {
                if (wt == NB_Q4_K) {
                    pack_q4_k(rows, u, pb);
                    for (int j = 0; j < 8; j++) packed_tokens(a, &pb[j], 8 * u + j, t0, nt, KIND_UNSIGNED_MIN, acc);
                } else if (wt == NB_Q6_K) {
                    pack_q6_k(rows, u, pb);
                    for (int j = 0; j < 8; j++) packed_tokens(a, &pb[j], 8 * u + j, t0, nt, KIND_SPLIT, acc);
                } else {
                    pack_block32(wt, rows, u, pb);
                    packed_tokens(a, pb, u, t0, nt, KIND_UNSIGNED, acc);
                }
            }
            __mmask16 valid = (__mmask16)((1u << nrows) - 1);
            for (int64_t t = 0; t < nt; t++) _mm512_mask_storeu_ps(a->y + (t0 + t) * a->n_out + rb, valid, acc[t]);
        }
    }
}
