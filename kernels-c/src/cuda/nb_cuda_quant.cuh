// Weight types on the device: the layout nb_cuda_upload_weight repacks each ggml type into, and the per-type
// device helpers (load one 32-weight unit, turn it into floats or into int8 words) shared by the GEMV, the GEMMs and
// the embedding lookup; the integer tensor-core matmul (mmq in nb_cuda_matmul.cu) reads the same planes through
// shared memory.
//
// Why repack: ggml blocks are 18 (Q4_0), 34 (Q8_0), 144 (Q4_K) or 210 (Q6_K) bytes, so a block-per-lane read is only
// 2-byte aligned and a warp's reads straddle sectors. On the device every weight type is stored as up to four
// "planes", each a matrix of n_out rows:
//   plane 0: the quants, 16 bytes per 32 weights (32 for Q8_0), so one lane reads one 32-weight "unit" with a
//            single aligned 16-byte load and consecutive lanes read consecutive units (coalesced);
//   planes 1-3: the scales (and Q6_K's two high bits), kept in their ggml encoding, so that dequantized values are
//            bit-for-bit those of ggml / Dequantizer.java.
// Each plane starts 256-byte aligned, and each row of a scale plane is padded with zeros to a multiple of 16 bytes
// (at most 14 bytes a row), so that mmq copies the scales of four units of a row with one aligned cp.async. Every
// access goes through Layout (plane p of row r at off[p] + r * row[p]), so the padding only moves row starts.
// Inside a unit the nibbles of 4-bit types are in sequential order (nibble k of 32-bit word i is weight 8i+k), except
// IQ4_NL, ordered for its byte-permute codebook lookup (see Q<IQ4_NL>). The integer kernels (the dp4a GEMV and mmq)
// consume a unit as 8 int8 words where word 2i holds weights 8i+{0,2,4,6} and word 2i+1 weights 8i+{1,3,5,7}: a
// 4-bit word then splits into its two words with one mask each, and the activations are quantized into the same
// interleaved order.
// Float types (F32/F16/BF16) keep ggml's element order; only each row is padded with zeros to a multiple of 16 bytes.
#ifndef NB_CUDA_QUANT_CUH
#define NB_CUDA_QUANT_CUH

#include <stdint.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace nbq {

enum : int32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8, Q4_K = 12, Q6_K = 14, IQ4_NL = 20, BF16 = 30, NF4 = 1024 };

// Weights per ggml block and bytes per ggml block; 0 for an unknown type.
__host__ __device__ constexpr int block_size(int32_t t) {
    switch (t) {
        case F32: case F16: case BF16: return 1;
        case Q4_0: case Q8_0: case IQ4_NL: return 32;
        case Q4_K: case Q6_K: case NF4: return 256;
        default: return 0;
    }
}
__host__ __device__ constexpr int block_bytes(int32_t t) {
    switch (t) {
        case F32: return 4;
        case F16: case BF16: return 2;
        case Q4_0: case IQ4_NL: return 18;
        case Q8_0: return 34;
        case Q4_K: return 144;
        case Q6_K: return 210;
        case NF4: return 134;
        default: return 0;
    }
}
__host__ __device__ constexpr bool is_float_type(int32_t t) { return t == F32 || t == F16 || t == BF16; }

// Where the planes of a weight lie: plane p of row r starts at byte off[p] + r * row[p].
struct Layout {
    int64_t off[4];
    int64_t row[4];
    int64_t total;
};

// The device layout of an n_out x n_in weight; false for an unknown type or an n_in that is not a multiple of the
// block size.
inline bool layout_of(int32_t t, int64_t n_out, int64_t n_in, Layout *L) {
    int bs = block_size(t);
    if (bs == 0 || n_out < 1 || n_in < 1 || n_in % bs != 0) return false;
    int64_t units = n_in / 32, supers = n_in / 256;
    int64_t row[4] = {0, 0, 0, 0};
    auto pad = [](int64_t b) { return (b + 15) / 16 * 16; };
    switch (t) {
        case F32: row[0] = pad(n_in * 4); break;
        case F16: case BF16: row[0] = pad(n_in * 2); break;
        case Q4_0: case IQ4_NL: row[0] = units * 16; row[1] = pad(units * 2); break;      // nibbles | fp16 d
        case Q8_0: row[0] = units * 32; row[1] = pad(units * 2); break;                   // int8    | fp16 d
        case Q4_K: row[0] = units * 16; row[1] = supers * 16; break;                      // nibbles | d,dmin,scales[12]
        case Q6_K: row[0] = units * 16; row[1] = pad(units * 8); row[2] = supers * 16; row[3] = pad(supers * 2); break;
                                                                 // low nibbles | high 2 bits | int8 scales[16] | d
        case NF4: row[0] = units * 16; row[1] = supers * 8; break;                        // nibbles | d, codes[4], pad
    }
    int64_t at = 0;
    for (int p = 0; p < 4; p++) {
        L->off[p] = at;
        L->row[p] = row[p];
        at += (n_out * row[p] + 255) / 256 * 256;
    }
    L->total = at;
    return true;
}

// ---------------------------------------------------------------------------------------------------------------
// Small device helpers.

__device__ __forceinline__ float h2f(uint32_t bits) { return __half2float(__ushort_as_half((unsigned short) bits)); }
__device__ __forceinline__ float bf2f(uint32_t bits) { return __uint_as_float(bits << 16); }

__device__ __forceinline__ uint4 ld16(const uint8_t *p) { return __ldg(reinterpret_cast<const uint4 *>(p)); }
__device__ __forceinline__ uint2 ld8(const uint8_t *p) { return __ldg(reinterpret_cast<const uint2 *>(p)); }
__device__ __forceinline__ uint32_t ld4(const uint8_t *p) { return __ldg(reinterpret_cast<const unsigned int *>(p)); }
__device__ __forceinline__ uint32_t ld2(const uint8_t *p) { return __ldg(reinterpret_cast<const unsigned short *>(p)); }

__device__ __forceinline__ uint32_t word(const uint4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; // i is a compile-time constant after unrolling
}

// A unit decoded for the dp4a GEMV: contribution to y of the unit for an activation block quantized as
// (int8 words X, scale dx, sx = dx * sum of the int8 values) is
//   dx * (s0 * dot(q[0..3], X[0..3]) + s1 * dot(q[4..7], X[4..7])) - m * sx
struct IntUnit {
    int q[8];
    float s0, s1, m;
};

// The two 4-bit halves of a word of sequential nibbles as interleaved int8 words (see the file comment).
__device__ __forceinline__ void split_nibbles(uint32_t w, int &even, int &odd) {
    even = (int) (w & 0x0F0F0F0Fu);
    odd = (int) ((w >> 4) & 0x0F0F0F0Fu);
}

// ---------------------------------------------------------------------------------------------------------------
// Per-type access to one unit (32 consecutive weights of a row, unit index u = first weight / 32).
//   Raw load(w, L, row, u)            reads what the unit needs (one 16-byte load plus scales)
//   Raw load_p(p, u)                  the same from the row's plane starts p[k] = w + L.off[k] + row * L.row[k]
//                                     (integer types only; the integer GEMV keeps them per row)
//   void to_float(raw, out[32], lut)  the 32 weights in order, exactly as Dequantizer.java computes them
//   void to_int(raw, IntUnit&)        (integer types only)
// The float types use F<T> instead (any n_in, see below).

template <int T> struct Q;

template <> struct Q<Q4_0> {
    static constexpr bool kInt = true;
    struct Raw { uint4 q; uint32_t d; };
    __device__ static Raw load_p(const uint8_t *const *p, int u) { return {ld16(p[0] + u * 16), ld2(p[1] + u * 2)}; }
    __device__ static Raw load(const uint8_t *w, const Layout &L, int64_t row, int64_t u) {
        return {ld16(w + L.off[0] + row * L.row[0] + u * 16), ld2(w + L.off[1] + row * L.row[1] + u * 2)};
    }
    __device__ static void to_float(const Raw &r, float *out, const float *) {
        float d = h2f(r.d);
#pragma unroll
        for (int k = 0; k < 32; k++) out[k] = (float) ((int) ((word(r.q, k / 8) >> (4 * (k % 8))) & 15) - 8) * d;
    }
    __device__ static void to_int(const Raw &r, IntUnit &o) {
#pragma unroll
        for (int i = 0; i < 4; i++) split_nibbles(word(r.q, i), o.q[2 * i], o.q[2 * i + 1]);
        o.s0 = o.s1 = h2f(r.d);
        o.m = 8.0f * o.s0; // sum (q - 8) x = dot(q, x) - 8 sum(x)
    }
};

// IQ4_NL: nibbles are stored so that the low 16 bits of word i are the codes of weights 8i+{0,2,4,6} and the high
// 16 bits those of 8i+{1,3,5,7}: each half is then directly a byte_perm selector into the 16-entry int8 codebook.
template <> struct Q<IQ4_NL> {
    static constexpr bool kInt = true;
    using Raw = Q<Q4_0>::Raw;
    __device__ static Raw load(const uint8_t *w, const Layout &L, int64_t row, int64_t u) {
        return Q<Q4_0>::load(w, L, row, u);
    }
    __device__ static Raw load_p(const uint8_t *const *p, int u) { return Q<Q4_0>::load_p(p, u); }
    static constexpr uint32_t T0 = 0xBFAD9881u, T1 = 0xF6EADDCFu, T2 = 0x26190D01u, T3 = 0x71594535u;
    // Four codes (nibbles of a 16-bit selector) -> four int8 levels: pick from levels 0-7 and 8-15 with the low three
    // bits, then choose between the two by bit 3 of each code (byte k or k+4 of the pair).
    __device__ static int lookup4(uint32_t codes) {
        uint32_t lo3 = codes & 0x7777u;
        uint32_t a = __byte_perm(T0, T1, lo3), b = __byte_perm(T2, T3, lo3);
        return (int) __byte_perm(a, b, ((codes & 0x8888u) >> 1) | 0x3210u);
    }
    __device__ static void to_float(const Raw &r, float *out, const float *) {
        float d = h2f(r.d);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t w = word(r.q, i), even = (uint32_t) lookup4(w & 0xFFFFu), odd = (uint32_t) lookup4(w >> 16);
#pragma unroll
            for (int b = 0; b < 4; b++) {
                out[8 * i + 2 * b] = d * (float) (signed char) (even >> (8 * b));
                out[8 * i + 2 * b + 1] = d * (float) (signed char) (odd >> (8 * b));
            }
        }
    }
    __device__ static void to_int(const Raw &r, IntUnit &o) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t w = word(r.q, i);
            o.q[2 * i] = lookup4(w & 0xFFFFu);
            o.q[2 * i + 1] = lookup4(w >> 16);
        }
        o.s0 = o.s1 = h2f(r.d);
        o.m = 0.0f;
    }
};

// Q8_0: int8 stored interleaved (word 2i = weights 8i+{0,2,4,6}, word 2i+1 = 8i+{1,3,5,7}).
template <> struct Q<Q8_0> {
    static constexpr bool kInt = true;
    struct Raw { uint4 a, b; uint32_t d; };
    __device__ static Raw load(const uint8_t *w, const Layout &L, int64_t row, int64_t u) {
        const uint8_t *p = w + L.off[0] + row * L.row[0] + u * 32;
        return {ld16(p), ld16(p + 16), ld2(w + L.off[1] + row * L.row[1] + u * 2)};
    }
    __device__ static Raw load_p(const uint8_t *const *p, int u) {
        return {ld16(p[0] + u * 32), ld16(p[0] + u * 32 + 16), ld2(p[1] + u * 2)};
    }
    __device__ static void to_float(const Raw &r, float *out, const float *) {
        float d = h2f(r.d);
#pragma unroll
        for (int k = 0; k < 32; k++) {
            int wi = 2 * (k / 8) + (k & 1), b = (k % 8) / 2;
            uint32_t v = wi < 4 ? word(r.a, wi) : word(r.b, wi - 4);
            out[k] = (float) (int) (signed char) (v >> (8 * b)) * d;
        }
    }
    __device__ static void to_int(const Raw &r, IntUnit &o) {
        o.q[0] = (int) r.a.x; o.q[1] = (int) r.a.y; o.q[2] = (int) r.a.z; o.q[3] = (int) r.a.w;
        o.q[4] = (int) r.b.x; o.q[5] = (int) r.b.y; o.q[6] = (int) r.b.z; o.q[7] = (int) r.b.w;
        o.s0 = o.s1 = h2f(r.d);
        o.m = 0.0f;
    }
};

// Q4_K: plane 1 keeps the 16-byte super-block header (fp16 d, fp16 dmin, 12 bytes of packed 6-bit scales and mins);
// the eight lanes of one super-block read the same 16 bytes (one transaction).
template <> struct Q<Q4_K> {
    static constexpr bool kInt = true;
    struct Raw { uint4 q; uint4 h; int j; };
    __device__ static Raw load(const uint8_t *w, const Layout &L, int64_t row, int64_t u) {
        return {ld16(w + L.off[0] + row * L.row[0] + u * 16), ld16(w + L.off[1] + row * L.row[1] + (u >> 3) * 16),
                (int) (u & 7)};
    }
    __device__ static Raw load_p(const uint8_t *const *p, int u) {
        return {ld16(p[0] + u * 16), ld16(p[1] + (u >> 3) * 16), u & 7};
    }
    // Sub-block j's 6-bit scale and min (the packing of Dequantizer.q4KScaleMin).
    __device__ static void scale_min(const Raw &r, int &sc, int &m) {
        uint32_t s0 = r.h.y, s1 = r.h.z, s2 = r.h.w; // scale bytes 0-3, 4-7, 8-11
        int j = r.j, sh = 8 * (j & 3);
        if (j < 4) {
            sc = (s0 >> sh) & 63;
            m = (s1 >> sh) & 63;
        } else {
            uint32_t low = (s2 >> sh) & 0xFF;
            sc = (int) ((low & 15) | (((s0 >> sh) >> 6) & 3) << 4);
            m = (int) ((low >> 4) | (((s1 >> sh) >> 6) & 3) << 4);
        }
    }
    __device__ static void to_float(const Raw &r, float *out, const float *) {
        int sc, m;
        scale_min(r, sc, m);
        float d1 = h2f(r.h.x & 0xFFFF) * (float) sc, m1 = h2f(r.h.x >> 16) * (float) m;
#pragma unroll
        for (int k = 0; k < 32; k++)
            out[k] = __fsub_rn(__fmul_rn(d1, (float) ((word(r.q, k / 8) >> (4 * (k % 8))) & 15)), m1);
    }
    __device__ static void to_int(const Raw &r, IntUnit &o) {
#pragma unroll
        for (int i = 0; i < 4; i++) split_nibbles(word(r.q, i), o.q[2 * i], o.q[2 * i + 1]);
        int sc, m;
        scale_min(r, sc, m);
        o.s0 = o.s1 = h2f(r.h.x & 0xFFFF) * (float) sc;
        o.m = h2f(r.h.x >> 16) * (float) m;
    }
};

// Q6_K: plane 0 the low nibbles (sequential), plane 1 eight bytes of high bits per unit arranged for the interleaved
// words: the 2 high bits for int8 word k (0-7), byte b are bits 8b + 2(k%4) of 32-bit word k/4. Planes 2 and 3 are
// ggml's int8 scales (one per 16 weights) and fp16 d.
template <> struct Q<Q6_K> {
    static constexpr bool kInt = true;
    struct Raw { uint4 ql; uint2 qh; uint32_t sc; uint32_t d; };
    __device__ static Raw load(const uint8_t *w, const Layout &L, int64_t row, int64_t u) {
        int64_t s = u >> 3;
        return {ld16(w + L.off[0] + row * L.row[0] + u * 16), ld8(w + L.off[1] + row * L.row[1] + u * 8),
                ld2(w + L.off[2] + row * L.row[2] + s * 16 + (u & 7) * 2), ld2(w + L.off[3] + row * L.row[3] + s * 2)};
    }
    __device__ static Raw load_p(const uint8_t *const *p, int u) {
        return {ld16(p[0] + u * 16), ld8(p[1] + u * 8), ld2(p[2] + u * 2), ld2(p[3] + (u >> 3) * 2)};
    }
    // int8 word k as values 0..63 (before the -32).
    __device__ static uint32_t q6word(const Raw &r, int k) {
        uint32_t lw = word(r.ql, k / 2);
        uint32_t lo = (k & 1) ? (lw >> 4) & 0x0F0F0F0Fu : lw & 0x0F0F0F0Fu;
        uint32_t hw = (k < 4) ? r.qh.x : r.qh.y;
        return lo | ((hw >> (2 * (k % 4))) & 0x03030303u) << 4;
    }
    __device__ static void to_float(const Raw &r, float *out, const float *) {
        float d = h2f(r.d);
        float da = d * (float) (signed char) (r.sc & 0xFF), db = d * (float) (signed char) (r.sc >> 8);
#pragma unroll
        for (int k = 0; k < 32; k++) {
            int wi = 2 * (k / 8) + (k & 1), b = (k % 8) / 2;
            int q = (int) ((q6word(r, wi) >> (8 * b)) & 63) - 32;
            out[k] = __fmul_rn(k < 16 ? da : db, (float) q);
        }
    }
    __device__ static void to_int(const Raw &r, IntUnit &o) {
#pragma unroll
        for (int k = 0; k < 8; k++) o.q[k] = (int) ((q6word(r, k) + 0x60606060u) ^ 0x80808080u); // bytes q - 32
        float d = h2f(r.d);
        o.s0 = d * (float) (signed char) (r.sc & 0xFF);
        o.s1 = d * (float) (signed char) (r.sc >> 8);
        o.m = 0.0f;
    }
};

// NF4: plane 1 is 8 bytes per super-block: fp16 d, the four u8 absmax codes, 2 bytes of padding. The codebook is
// float, so NF4 has no integer path; `lut` points to the 16 levels in shared memory.
template <> struct Q<NF4> {
    static constexpr bool kInt = false;
    struct Raw { uint4 q; uint2 h; int sub; };
    __device__ static Raw load(const uint8_t *w, const Layout &L, int64_t row, int64_t u) {
        return {ld16(w + L.off[0] + row * L.row[0] + u * 16), ld8(w + L.off[1] + row * L.row[1] + (u >> 3) * 8),
                (int) ((u & 7) >> 1)};
    }
    __device__ static float absmax(const Raw &r) {
        uint32_t code = (r.sub < 2) ? (r.h.x >> (16 + 8 * r.sub)) & 0xFF : (r.h.y >> (8 * (r.sub - 2))) & 0xFF;
        return h2f(r.h.x & 0xFFFF) * (float) code;
    }
    __device__ static void to_float(const Raw &r, float *out, const float *lut) {
        float a = absmax(r);
#pragma unroll
        for (int k = 0; k < 32; k++) out[k] = a * lut[(word(r.q, k / 8) >> (4 * (k % 8))) & 15];
    }
};

__device__ __constant__ const float kNf4Levels[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// Float types: element size, and a 16-byte vector of VW elements as floats.
template <int T> struct F;
template <> struct F<F32> {
    static constexpr int kSize = 4, VW = 4;
    __device__ static float get(uint32_t bits) { return __uint_as_float(bits); }
    __device__ static void vec(const uint4 &v, float *o) {
        o[0] = __uint_as_float(v.x); o[1] = __uint_as_float(v.y); o[2] = __uint_as_float(v.z); o[3] = __uint_as_float(v.w);
    }
};
template <> struct F<F16> {
    static constexpr int kSize = 2, VW = 8;
    __device__ static float get(uint32_t bits) { return h2f(bits); }
    __device__ static void vec(const uint4 &v, float *o) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t w = word(v, i);
            float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&w));
            o[2 * i] = f.x;
            o[2 * i + 1] = f.y;
        }
    }
};
template <> struct F<BF16> {
    static constexpr int kSize = 2, VW = 8;
    __device__ static float get(uint32_t bits) { return bf2f(bits & 0xFFFF); }
    __device__ static void vec(const uint4 &v, float *o) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t w = word(v, i);
            o[2 * i] = __uint_as_float(w << 16);
            o[2 * i + 1] = __uint_as_float(w & 0xFFFF0000u);
        }
    }
};

// One 32-weight unit of any type as floats, elements at or past n_in read as 0 (only float types can have a partial
// unit). Used by the GEMM's tile loader and by embed; `lut` is the NF4 codebook in shared memory (NF4 only).
template <int T, bool kFloat = is_float_type(T)> struct Unit;

template <int T> struct Unit<T, false> {
    using Raw = typename Q<T>::Raw;
    __device__ static Raw load(const uint8_t *w, const Layout &L, int64_t row, int64_t u, int64_t) {
        return Q<T>::load(w, L, row, u);
    }
    __device__ static void to_float(const Raw &r, float *out, const float *lut) { Q<T>::to_float(r, out, lut); }
};

template <int T> struct Unit<T, true> {
    static constexpr int NV = 32 * F<T>::kSize / 16; // 16-byte vectors per unit
    struct Raw { uint4 v[NV]; };
    __device__ static Raw load(const uint8_t *w, const Layout &L, int64_t row, int64_t u, int64_t n_in) {
        Raw r;
        const uint8_t *p = w + L.off[0] + row * L.row[0] + u * 32 * F<T>::kSize;
        if (32 * u + 32 <= n_in) {
#pragma unroll
            for (int i = 0; i < NV; i++) r.v[i] = ld16(p + 16 * i);
        } else { // the row's last, partial unit: element by element (the padding is zero, the next row is not ours)
            uint32_t t[4 * NV];
#pragma unroll
            for (int i = 0; i < 4 * NV; i++) t[i] = 0;
            for (int64_t k = 0; k < 32 && 32 * u + k < n_in; k++) {
                uint32_t bits = F<T>::kSize == 4 ? ld4(p + 4 * k) : ld2(p + 2 * k);
                t[k * F<T>::kSize / 4] |= F<T>::kSize == 4 ? bits : bits << (16 * (k & 1));
            }
#pragma unroll
            for (int i = 0; i < NV; i++) r.v[i] = make_uint4(t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        }
        return r;
    }
    __device__ static void to_float(const Raw &r, float *out, const float *) {
#pragma unroll
        for (int i = 0; i < NV; i++) F<T>::vec(r.v[i], out + i * F<T>::VW);
    }
};

} // namespace nbq

#endif
