// Weights on the device: upload (with repacking, see nb_cuda_quant.cuh), matmul and embedding lookup.
//
// matmul picks one of five kernels:
//  * gemv_int (Q4_0, Q8_0, Q4_K, Q6_K, IQ4_NL; n_tok <= 8): the activations as int8 blocks of 32 (the ggml q8 idea: a
//    4-bit weight then costs 1/4 of a dp4a), written once per call into the context's scratch buffer by quantize_x
//    (or by the rmsnorm before, nb_cuda_xq_ready). Warp task = 4 rows x one K slice; the slices of a row group are
//    the warps of one block (split K, so that 4096 rows still make a full wave), lane l reads unit k + l of each row
//    (16-byte coalesced loads), partial sums meet in shared memory; see its section below.
//  * mmq (the same types; 9 <= n_tok <= 64): int8 tensor cores (mma.sync m16n8k32 s8 x s8 -> s32) on the same
//    quantized activations, the weights unpacked to int8 in registers, the exact integer dot of every 32-weight unit
//    scaled in float. Blocks of 256 (128 at 33..64 tokens) rows x one K chain, the chains summed by a thread-block
//    cluster on sm_90, or through a workspace and mq_combine elsewhere; see its section below.
//    Both integer kernels also run up to four weights of one type on one input (nb_cuda_matmul_shared_input) and
//    gate/up pairs with the SwiGLU applied before the store (nb_cuda_matmul_swiglu).
//  * gemv_float (F32, F16, BF16, NF4; n_tok <= 8): lane l reads 16-byte vector k + l of 4 rows, f32 math, the
//    activations read through L1.
//  * gemm_q (Q4_0, Q8_0, Q4_K, Q6_K with n_in % 64 == 0, n_tok > 64; token tile 128, 64 or 32, the widest that gives
//    at least half as many blocks as SMs): activations converted to f16 once per call (convert_x16, into the
//    scratch buffer), a 4-stage cp.async pipeline of raw quantized and f16 tiles, weights dequantized from shared
//    memory straight into mma fragments; see its section below.
//  * gemm (n_tok > 8 for the other types, n_tok > 64 for IQ4_NL, and the shapes gemm_q does not take, such as
//    n_in % 64 != 0): a 128 x BN x 64 tile per block of 8 warps, mma.sync m16n8k16 (f16 in, f32 accumulate). Each K
//    step, every thread loads one 32-weight unit and 16 or 32 activations into registers for the next tile while the
//    tensor cores work on the current one, then dequantizes/converts them to f16 into the other half of a
//    double-buffered, XOR-swizzled shared tile that ldmatrix reads without bank conflicts.
//
// Batch invariance (integer types; each token's activations are quantized alone, and quantize_x and the fused rmsnorm
// write the same bits):
//  - 9 <= n_tok <= 64 (mmq): output (row r, token t) is bit-identical whatever the other tokens of the call are, and
//    whichever of the three entry points computes it (nb_cuda_matmul, nb_cuda_matmul_shared_input,
//    nb_cuda_matmul_swiglu == nb_cuda_matmul twice + nb_cuda_swiglu), on every GPU: the K order is fixed by n_in
//    alone (the units in blocks of 8, NG = min(8, ceil(U / 8)) chains of consecutive blocks, mq_chain_begin, each
//    chain accumulated unit by unit in one float, then y = ((p0 + p1) + p2) + ...); every float operation is an
//    explicit __fmaf_rn / __fmul_rn / __fadd_rn (no contraction left to the compiler); the integer dots are exact;
//    the cluster and workspace forms and all token tile widths share that code.
//  - 1 <= n_tok <= 8 (gemv_int): output (r, t) is bit-identical for every n_tok in 1..8 of the same entry point, the
//    same weights (n_out, n_in, and for nb_cuda_matmul_shared_input the same set of weights) on GPUs of the same SM
//    count: the K split (KS slices of SU units) is chosen from the rows of the launch and the SM count, never from
//    n_tok, and each token's sum is the same explicitly rounded operations for every token-count instance. It is not
//    bit-identical across entry points (a QKV launch has other KS than three single matmuls) nor across GPUs.
//  - Not against each other: n_tok <= 8 and n_tok >= 9 give different bits (different K orders; both round the same
//    int8 activations, so they differ by float rounding only). Nor n_tok > 64 (gemm_q / gemm, f16 operands) against
//    n_tok <= 64, nor the float types (F32, F16, BF16, NF4: gemv_float for n_tok <= 8, gemm above).
#include <stdint.h>
#include <type_traits>
#include <cooperative_groups.h>
#include "nb_cuda_internal.cuh"
#include "nb_cuda_quant.cuh"

using namespace nbq;
namespace cg = cooperative_groups;

namespace {

constexpr int kThreads = 256; // every kernel here runs 8 warps per block
constexpr int kWarps = kThreads / 32;
constexpr int kRows = 4;      // rows per warp task in the GEMVs
// Steps of 32 units per row loaded before use in the GEMVs: 4 (a whole 4096-wide Q4_0 row in one round trip) for one
// token and a small unit, else 2, which keeps the kernel at <= ~128 registers (2 blocks per SM, 64 KB in flight).
template <int NT, class Raw> constexpr int depth() { return NT == 1 && sizeof(Raw) <= 20 ? 4 : 2; }

// silu(g) * u = g / (1 + exp(-g)) * u, each step rounded on its own (the fused kernels' SwiGLU). The same bits as the
// contracted g / (1.0f + expf(-g)) * u of nb_cuda_swiglu: expf ends in a multiply by a power of two, which is exact,
// so fusing the + 1 into it rounds the same sum once either way (outside the denormal range).
__device__ __forceinline__ float silu_mul(float g, float u) {
    return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}

// Loads floats [k, k + n) of one activation row into v (zeros past n_in); float4 loads when allowed.
template <int N>
__device__ __forceinline__ void load_x(const float *__restrict__ xr, int64_t k, int64_t n_in, bool vec, float *v) {
    if (vec && k + N <= n_in) {
#pragma unroll
        for (int i = 0; i < N; i += 4) {
            float4 f = __ldg(reinterpret_cast<const float4 *>(xr + k + i));
            v[i] = f.x; v[i + 1] = f.y; v[i + 2] = f.z; v[i + 3] = f.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < N; i++) v[i] = (k + i < n_in) ? __ldg(xr + k + i) : 0.0f;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Upload: ggml blocks (a chunk of whole rows in a temporary device buffer) -> the device layout. One thread per
// (row, ggml block); byte-wise, it runs once per weight.

template <int T>
__device__ void repack_block(const uint8_t *s, const Layout &L, int64_t row, int64_t b, uint8_t *dst) {
    if constexpr (T == Q4_0 || T == IQ4_NL || T == Q8_0) {
        uint8_t *q = dst + L.off[0] + row * L.row[0] + b * (T == Q8_0 ? 32 : 16);
        uint8_t *d = dst + L.off[1] + row * L.row[1] + b * 2;
        d[0] = s[0];
        d[1] = s[1];
        if constexpr (T == Q8_0) {
            for (int k = 0; k < 32; k++) q[4 * (2 * (k / 8) + (k & 1)) + (k % 8) / 2] = s[2 + k];
        } else {
            uint32_t w[4] = {0, 0, 0, 0};
            for (int k = 0; k < 32; k++) {
                uint32_t c = (k < 16 ? s[2 + k] : s[2 + k - 16] >> 4) & 15;
                int i = k / 8, j = k % 8;
                int pos = (T == Q4_0) ? 4 * j : 16 * (j & 1) + 4 * (j >> 1);
                w[i] |= c << pos;
            }
            for (int i = 0; i < 16; i++) q[i] = (uint8_t) (w[i / 4] >> (8 * (i % 4)));
        }
    } else if constexpr (T == Q4_K || T == NF4) {
        const int hdr = (T == Q4_K) ? 16 : 6;  // bytes before the nibbles
        uint8_t *h = dst + L.off[1] + row * L.row[1] + b * (T == Q4_K ? 16 : 8);
        for (int i = 0; i < hdr; i++) h[i] = s[i];
        for (int j = 0; j < 8; j++) { // unit j: weights 32j..32j+31, the low (j even) or high nibbles of 32 bytes
            const uint8_t *qs = s + hdr + 32 * (j / 2);
            uint8_t *q = dst + L.off[0] + row * L.row[0] + (b * 8 + j) * 16;
            for (int i = 0; i < 16; i++) {
                uint32_t lo = (j & 1) ? qs[2 * i] >> 4 : qs[2 * i] & 15;
                uint32_t hi = (j & 1) ? qs[2 * i + 1] >> 4 : qs[2 * i + 1] & 15;
                q[i] = (uint8_t) (lo | hi << 4);
            }
        }
    } else if constexpr (T == Q6_K) {
        const uint8_t *ql = s, *qh = s + 128, *sc = s + 192;
        for (int j = 0; j < 8; j++) {
            uint8_t *q = dst + L.off[0] + row * L.row[0] + (b * 8 + j) * 16;
            uint8_t *h = dst + L.off[1] + row * L.row[1] + (b * 8 + j) * 8;
            uint8_t lo[16] = {0}, hb[8] = {0};
            for (int k = 0; k < 32; k++) {
                int wgt = 32 * j + k, half = wgt / 128, r = wgt % 128, quarter = r / 32, l = r % 32;
                int low = (ql[64 * half + l + 32 * (quarter & 1)] >> (4 * (quarter >> 1))) & 15;
                int high = (qh[32 * half + l] >> (2 * quarter)) & 3;
                lo[k / 2] |= (uint8_t) (low << (4 * (k & 1)));
                int wi = 2 * (k / 8) + (k & 1), byte = (k % 8) / 2;
                hb[4 * (wi / 4) + byte] |= (uint8_t) (high << (2 * (wi % 4)));
            }
            for (int i = 0; i < 16; i++) q[i] = lo[i];
            for (int i = 0; i < 8; i++) h[i] = hb[i];
        }
        uint8_t *scd = dst + L.off[2] + row * L.row[2] + b * 16;
        for (int i = 0; i < 16; i++) scd[i] = sc[i];
        uint8_t *d = dst + L.off[3] + row * L.row[3] + b * 2;
        d[0] = s[208];
        d[1] = s[209];
    }
}

template <int T>
__global__ void repack_kernel(const uint8_t *__restrict__ src, int64_t rows, int64_t blocks_per_row, int64_t row0,
                              Layout L, uint8_t *__restrict__ dst) {
    int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * blocks_per_row) return;
    int64_t r = i / blocks_per_row, b = i % blocks_per_row;
    repack_block<T>(src + i * block_bytes(T), L, row0 + r, b, dst);
}

// ---------------------------------------------------------------------------------------------------------------
// Activations for the integer kernels (gemv_int, mmq): quantize_x turns the n_tok (<= 64) activation rows into int8
// blocks of 32 in the scratch buffer, laid out for 16-byte reads: plane A (int8 words 0-3 of every unit, [nt][U]
// uint4), plane B (words 4-7), then (dx, sx) per unit ([nt][U] float2: the scale amax / 127 and dx * the sum of the 32
// int8 values). Four threads per unit, eight activations each. Each token is quantized on its own, so its bits do not
// depend on the batch. Both kernels read exactly this layout (gemv_int through __ldg, mmq through cp.async).
//
// Integer GEMV (gemv_int, 1..8 tokens): a warp task is (group of kRows weight rows, one K slice of SU units); a block
// holds kWarps / KS row groups x KS slices, so that even 4096 rows make about one full wave of warps (KS = 4 there)
// and every lane has its kRows 16-byte loads in flight at once. Lane l of a warp reads unit k + l of each row
// (coalesced), its int8 activation words straight from global memory (L1 hits: every warp of the SM reads the same
// few KB), and the slices' partial sums meet in shared memory. KS and SU depend on the rows of the launch (n_out, the
// number of weights, SwiGLU) and the SM count, never on the token count, and each token's sum is the same sequence of
// explicitly rounded operations for every NT: so 1..8 tokens give the same bits per token (for one call shape and
// SM count), but not the bits of mmq.
// Measured on an H200 and dropped: quantizing x inside every GEMV block instead of the separate launch (slower at
// n_in = 11008, no gain at 4096), L2 prefetch of the next weight steps (doubled the fused gate/up time) and
// programmatic dependent launch (~0.5 us per isolated kernel, nothing end to end).

// The rmsnorm kernels of nb_cuda_elementwise.cu write this same layout, with the same arithmetic, for their output when
// it fits (nb_cuda_xq_fits): the matmul entry points then skip quantize_x (see nb_cuda_xq_ready).
// Bytes of scratch the quantized activations of nt tokens of U units take.
inline size_t xq_bytes(int64_t nt, int64_t units) { return (size_t) nt * units * (16 + 16 + 8); }

// Quantization items: four threads (a quad of lanes) per (token, unit), eight activations each; thread c is token
// c / (4U), unit (c / 4) % U, part c % 4. The grid covers nt * U * 4 rounded up to whole blocks; the threads past the
// end still take part in the quad shuffles (with zeros), and a quad is either all in range or all not.
__global__ void __launch_bounds__(kThreads) quantize_x(const float *__restrict__ x, int64_t n_in, int nt, int U,
                                                       bool xvec, uint4 *__restrict__ xq) {
    uint4 *xa = xq, *xb = xq + (size_t) nt * U;
    float2 *xs = reinterpret_cast<float2 *>(xq + (size_t) 2 * nt * U);
    const int c = blockIdx.x * kThreads + threadIdx.x;
    const bool ok = c < nt * U * 4;
    const int t = c / (4 * U), rem = c - t * 4 * U, u = rem >> 2, part = rem & 3;
    float v[8];
    if (ok) {
        load_x<8>(x + (int64_t) t * n_in, 32 * (int64_t) u + 8 * part, n_in, xvec, v);
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = 0.0f;
    }
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; i++) amax = fmaxf(amax, fabsf(v[i]));
    amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, 2));
    float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    int q[8], sum = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        q[i] = __float2int_rn(v[i] * inv);
        sum += q[i];
    }
    sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 1);
    sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 2);
    if (ok) {
        // Part p's eight values become int8 words 2p (the even ones) and 2p + 1 (the odd ones): the interleaved order
        // of the weights' words (split_nibbles). Words 0-3 of a unit are plane A, 4-7 plane B.
        uint2 pk;
        pk.x = (q[0] & 0xFF) | (q[2] & 0xFF) << 8 | (q[4] & 0xFF) << 16 | (uint32_t) (q[6] & 0xFF) << 24;
        pk.y = (q[1] & 0xFF) | (q[3] & 0xFF) << 8 | (q[5] & 0xFF) << 16 | (uint32_t) (q[7] & 0xFF) << 24;
        reinterpret_cast<uint2 *>((part < 2 ? xa : xb) + (size_t) t * U + u)[part & 1] = pk;
        if (part == 0) {
            float dx = amax / 127.0f;
            xs[(size_t) t * U + u] = make_float2(dx, dx * (float) sum);
        }
    }
}

// Up to four weights of one type (and one n_in) in one launch. Plain mode: blocks [first[j], first[j+1]) compute
// weight j. SwiGLU mode: w[0] = gate, w[1] = up (same shape); a warp task holds kRows / 2 rows of each and writes
// silu(gate) * up.
struct GemvJob {
    const uint8_t *w[4];
    Layout L[4];
    int64_t n_out[4];
    float *y[4];
    int64_t first[5];
    int n_w;
};

// Blocks per SM the integer GEMV is built for (80 or 128 registers a thread): the accumulators grow with NT.
template <int T, int NT> constexpr int gemv_min_blocks() { return NT == 1 ? 3 : 2; }

template <int T, int NT, bool kSwiglu>
__global__ void __launch_bounds__(kThreads, gemv_min_blocks<T, NT>())
gemv_int(const __grid_constant__ GemvJob job, const uint4 *__restrict__ xq, int U, int SU, int KS, int nt) {
    using QT = Q<T>;
    using Raw = typename QT::Raw;
    constexpr int RPG = kSwiglu ? kRows / 2 : kRows;      // output rows per group
    constexpr bool kPipe = (T == Q4_0 || T == IQ4_NL) && NT == 1; // registers for a second batch of loads
    __shared__ float red[kWarps][kRows][NT];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, slice = warp % KS, grp = warp / KS, G = kWarps / KS;
    // Which weight this block computes (uniform per block).
    int j = 0;
#pragma unroll
    for (int i = 1; i < 4; i++)
        if (!kSwiglu && i < job.n_w && (int64_t) blockIdx.x >= job.first[i]) j = i;
    // __grid_constant__: indexed in parameter space, no local copy of the job.
    const uint8_t *wj = job.w[j];
    const Layout &L = job.L[j];
    const int64_t n_out = job.n_out[j], first = job.first[j];
    float *y = job.y[j];
    const uint8_t *wu = kSwiglu ? job.w[1] : wj;
    const int64_t row0 = (((int64_t) blockIdx.x - first) * G + grp) * RPG;

    // Row starts of the planes the type uses (rows past the end read the last row; their results are dropped).
    constexpr int NP = T == Q6_K ? 4 : 2;
    const uint8_t *pl[kRows][NP];
#pragma unroll
    for (int r = 0; r < kRows; r++) {
        int64_t rr = row0 + (kSwiglu ? r % RPG : r);
        rr = rr < n_out ? rr : n_out - 1;
        const uint8_t *wb = (kSwiglu && r >= RPG) ? wu : wj;
#pragma unroll
        for (int k = 0; k < NP; k++) pl[r][k] = wb + L.off[k] + rr * L.row[k];
    }
    const int u_begin = slice * SU, u_end = min(U, u_begin + SU);

    Raw cur[kRows], nxt[kRows];
    auto load = [&](Raw *raw, int k0) {
        int u = k0 + lane;
        if (u < u_end) {
#pragma unroll
            for (int r = 0; r < kRows; r++) raw[r] = QT::load_p(pl[r], u);
        }
    };
    load(cur, u_begin);
    const uint4 *xa = xq, *xb = xq + (size_t) nt * U;
    const float2 *xs = reinterpret_cast<const float2 *>(xq + (size_t) 2 * nt * U);
    float acc[kRows][NT];
#pragma unroll
    for (int r = 0; r < kRows; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;

    for (int k0 = u_begin; k0 < u_end; k0 += 32) {
        if constexpr (kPipe) {
            if (k0 + 32 < u_end) load(nxt, k0 + 32);
        }
        const int u = k0 + lane;
        if (u < u_end) {
            IntUnit iu[kRows];
#pragma unroll
            for (int r = 0; r < kRows; r++) QT::to_int(cur[r], iu[r]);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t >= nt) break;
                const uint4 a = __ldg(xa + (size_t) t * U + u), b = __ldg(xb + (size_t) t * U + u);
                const float2 ds = __ldg(xs + (size_t) t * U + u);
#pragma unroll
                for (int r = 0; r < kRows; r++) {
                    int s0 = __dp4a(iu[r].q[0], (int) a.x, 0);
                    s0 = __dp4a(iu[r].q[1], (int) a.y, s0);
                    s0 = __dp4a(iu[r].q[2], (int) a.z, s0);
                    s0 = __dp4a(iu[r].q[3], (int) a.w, s0);
                    int s1 = __dp4a(iu[r].q[4], (int) b.x, 0);
                    s1 = __dp4a(iu[r].q[5], (int) b.y, s1);
                    s1 = __dp4a(iu[r].q[6], (int) b.z, s1);
                    s1 = __dp4a(iu[r].q[7], (int) b.w, s1);
                    // s0 * f0 + s1 * f1 as the compiler contracted it, written out so that every NT instance
                    // computes a token's sum with the same operations.
                    const float part =
                        __fmaf_rn(iu[r].s0, __int2float_rn(s0), __fmul_rn(iu[r].s1, __int2float_rn(s1)));
                    acc[r][t] = __fmaf_rn(ds.x, part, __fmaf_rn(-iu[r].m, ds.y, acc[r][t]));
                }
            }
        }
        if constexpr (kPipe) {
#pragma unroll
            for (int r = 0; r < kRows; r++) cur[r] = nxt[r];
        } else {
            if (k0 + 32 < u_end) load(cur, k0 + 32);
        }
    }

#pragma unroll
    for (int r = 0; r < kRows; r++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = warp_sum(acc[r][t]);
            if (lane == 0) red[warp][r][t] = v;
        }
    __syncthreads();
    if (slice == 0 && lane < RPG * NT) {
        const int r = lane / NT, t = lane % NT;
        if (t < nt && row0 + r < n_out) {
            float v = 0.0f;
            for (int s = 0; s < KS; s++) v += red[grp * KS + s][r][t];
            if constexpr (kSwiglu) {
                float up = 0.0f;
                for (int s = 0; s < KS; s++) up += red[grp * KS + s][r + RPG][t];
                v = silu_mul(v, up);
            }
            y[(int64_t) t * n_out + row0 + r] = v;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Float GEMV (F32, F16, BF16, NF4): lane l reads 16-byte vector k + l of 4 rows; activations through L1.

template <int T> struct FV; // one 16-byte vector: VW weights, decoded in chunks of CH
template <int T> struct FVPlain {
    static constexpr int VW = F<T>::VW, CH = F<T>::VW;
    struct Raw { uint4 v; };
    __device__ static Raw load(const uint8_t *w, const Layout &L, int64_t row, int64_t v) {
        return {ld16(w + L.off[0] + row * L.row[0] + v * 16)};
    }
    __device__ static void chunk(const Raw &r, int, float *o, const float *) { F<T>::vec(r.v, o); }
};
template <> struct FV<F32> : FVPlain<F32> {};
template <> struct FV<F16> : FVPlain<F16> {};
template <> struct FV<BF16> : FVPlain<BF16> {};
template <> struct FV<NF4> {
    static constexpr int VW = 32, CH = 8;
    struct Raw { typename Q<NF4>::Raw q; float a; };
    __device__ static Raw load(const uint8_t *w, const Layout &L, int64_t row, int64_t v) {
        Raw r;
        r.q = Q<NF4>::load(w, L, row, v);
        return r;
    }
    __device__ static void chunk(const Raw &r, int c, float *o, const float *lut) {
        float a = Q<NF4>::absmax(r.q);
        uint32_t wd = word(r.q.q, c);
#pragma unroll
        for (int k = 0; k < 8; k++) o[k] = a * lut[(wd >> (4 * k)) & 15];
    }
};

template <int T, int NT>
__global__ void __launch_bounds__(kThreads) gemv_float(const uint8_t *__restrict__ w, Layout L, int64_t n_out,
                                                       int64_t n_in, const float *__restrict__ x, int nt, bool xvec,
                                                       float *__restrict__ y) {
    using V = FV<T>;
    using Raw = typename V::Raw;
    constexpr int kDepth = depth<NT, Raw>();
    __shared__ float lut[16];
    if constexpr (T == NF4) {
        if (threadIdx.x < 16) lut[threadIdx.x] = kNf4Levels[threadIdx.x];
        __syncthreads();
    }
    const int lane = threadIdx.x & 31;
    const int64_t nvec = (n_in + V::VW - 1) / V::VW;
    const int64_t tasks = (n_out + kRows - 1) / kRows, stride = (int64_t) gridDim.x * kWarps;
    for (int64_t task = (int64_t) blockIdx.x * kWarps + (threadIdx.x >> 5); task < tasks; task += stride) {
        float acc[kRows][NT];
#pragma unroll
        for (int r = 0; r < kRows; r++)
#pragma unroll
            for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
        for (int64_t k0 = 0; k0 < nvec; k0 += 32 * kDepth) {
            Raw raw[kDepth][kRows];
#pragma unroll
            for (int s = 0; s < kDepth; s++) {
                int64_t v = k0 + s * 32 + lane;
#pragma unroll
                for (int r = 0; r < kRows; r++)
                    if (v < nvec) raw[s][r] = V::load(w, L, min(task * kRows + r, n_out - 1), v);
            }
#pragma unroll
            for (int s = 0; s < kDepth; s++) {
                int64_t v = k0 + s * 32 + lane;
                if (v >= nvec) continue;
#pragma unroll
                for (int c = 0; c < V::VW / V::CH; c++) {
                    float wf[kRows][V::CH];
#pragma unroll
                    for (int r = 0; r < kRows; r++) V::chunk(raw[s][r], c, wf[r], lut);
#pragma unroll
                    for (int t = 0; t < NT; t++) {
                        // NT rounds the token count up (3 -> 4, 5..7 -> 8): rows past nt do not exist in x.
                        float xv[V::CH];
                        if (t < nt) {
                            load_x<V::CH>(x + (int64_t) t * n_in, v * V::VW + c * V::CH, n_in, xvec, xv);
                        } else {
#pragma unroll
                            for (int i = 0; i < V::CH; i++) xv[i] = 0.0f;
                        }
#pragma unroll
                        for (int r = 0; r < kRows; r++)
#pragma unroll
                            for (int i = 0; i < V::CH; i++) acc[r][t] = fmaf(wf[r][i], xv[i], acc[r][t]);
                    }
                }
            }
        }
        const int64_t row0 = task * kRows;
#pragma unroll
        for (int r = 0; r < kRows; r++)
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float v = warp_sum(acc[r][t]);
                if (lane == 0 && t < nt && row0 + r < n_out) y[(int64_t) t * n_out + row0 + r] = v;
            }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor-core GEMM. Block tile: BM = 128 weight rows x BN tokens, K step BK = 64 (two units). A tile [BM][BK] and
// B tile [BN][BK] in f16, 128-byte rows of eight 16-byte chunks, chunk c of row r stored at c ^ (r & 7) so that
// both the 16-byte stores of the loaders and ldmatrix's 8-row reads hit 8 distinct bank groups.

constexpr int BM = 128, BK = 64;

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
}

__device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float a, float b) {
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t *>(&h);
}

template <int BN>
constexpr size_t gemm_smem() { return (size_t) 2 * (BM + BN) * BK * 2; }

template <int T, int BN>
__global__ void __launch_bounds__(kThreads) gemm(const uint8_t *__restrict__ w, Layout L, int64_t n_out, int64_t n_in,
                                                 const float *__restrict__ x, int64_t n_tok, bool xvec,
                                                 float *__restrict__ y) {
    using UT = Unit<T>;
    using Raw = typename UT::Raw;
    constexpr int WARPS_M = BN == 128 ? 2 : 4, WARPS_N = kWarps / WARPS_M;
    constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N, MT = WM / 16, NT8 = WN / 8;
    constexpr int TPT = kThreads / BN, FPT = BK / TPT; // activation loader: threads per token, floats per thread
    static_assert(NT8 % 2 == 0 && FPT % 8 == 0, "tile shape");

    extern __shared__ uint4 smem[];
    uint4 *As = smem;                   // [2][BM * 8]
    uint4 *Bs = smem + 2 * BM * 8;      // [2][BN * 8]
    __shared__ float lut[16];
    if constexpr (T == NF4) {
        if (threadIdx.x < 16) lut[threadIdx.x] = kNf4Levels[threadIdx.x];
        __syncthreads();
    }

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % WARPS_M, wn = warp / WARPS_M;
    const int64_t m0 = (int64_t) blockIdx.x * BM, n0 = (int64_t) blockIdx.y * BN;
    const int64_t units = (n_in + 31) / 32, ktiles = (units + 1) / 2;

    // Weight loader: thread -> (row, which of the two units of the K step).
    const int a_row = tid >> 1, a_half = tid & 1;
    const int64_t a_grow = min(m0 + a_row, n_out - 1);
    // Activation loader: thread -> (token, FPT consecutive k).
    const int b_tok = tid / TPT, b_part = tid % TPT;
    const bool b_ok = n0 + b_tok < n_tok;
    const float *xr = x + (n0 + b_tok) * n_in;

    Raw araw;
    bool a_ok = false;
    float bx[FPT];
    auto load_tile = [&](int64_t kt) {
        int64_t u = 2 * kt + a_half;
        a_ok = u < units;
        if (a_ok) araw = UT::load(w, L, a_grow, u, n_in);
        if (b_ok) {
            load_x<FPT>(xr, kt * BK + b_part * FPT, n_in, xvec, bx);
        } else {
#pragma unroll
            for (int i = 0; i < FPT; i++) bx[i] = 0.0f;
        }
    };
    auto store_tile = [&](int buf) {
        float f[32];
        if (a_ok) {
            UT::to_float(araw, f, lut);
        } else {
#pragma unroll
            for (int i = 0; i < 32; i++) f[i] = 0.0f;
        }
        uint4 *arow = As + buf * BM * 8 + a_row * 8;
#pragma unroll
        for (int c = 0; c < 4; c++) {
            int chunk = a_half * 4 + c;
            arow[chunk ^ (a_row & 7)] = make_uint4(pack_half2(f[8 * c], f[8 * c + 1]), pack_half2(f[8 * c + 2], f[8 * c + 3]),
                                                  pack_half2(f[8 * c + 4], f[8 * c + 5]), pack_half2(f[8 * c + 6], f[8 * c + 7]));
        }
        uint4 *brow = Bs + buf * BN * 8 + b_tok * 8;
#pragma unroll
        for (int c = 0; c < FPT / 8; c++) {
            int chunk = b_part * (FPT / 8) + c;
            brow[chunk ^ (b_tok & 7)] = make_uint4(pack_half2(bx[8 * c], bx[8 * c + 1]), pack_half2(bx[8 * c + 2], bx[8 * c + 3]),
                                                  pack_half2(bx[8 * c + 4], bx[8 * c + 5]), pack_half2(bx[8 * c + 6], bx[8 * c + 7]));
        }
    };

    float acc[MT][NT8][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT8; j++)
#pragma unroll
            for (int k = 0; k < 4; k++) acc[i][j][k] = 0.0f;

    load_tile(0);
    store_tile(0);
    __syncthreads();
    const uint32_t as_base = (uint32_t) __cvta_generic_to_shared(As), bs_base = (uint32_t) __cvta_generic_to_shared(Bs);
    // ldmatrix.x4 addressing: lane l supplies row (l & 7) of 8x8 matrix l >> 3.
    const int lm = lane >> 3, lr = lane & 7;
    for (int64_t kt = 0; kt < ktiles; kt++) {
        const int buf = (int) (kt & 1);
        if (kt + 1 < ktiles) load_tile(kt + 1); // global loads in flight during the MMAs below
#pragma unroll
        for (int ks = 0; ks < BK / 16; ks++) {
            uint32_t af[MT][4], bf[NT8][2];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) { // matrices: rows 0-7/8-15 x k 0-7/8-15 -> a0..a3
                int r = wm * WM + mt * 16 + (lm & 1) * 8 + lr, chunk = ks * 2 + (lm >> 1);
                ldmatrix_x4(as_base + (uint32_t) ((buf * BM * 8 + r * 8 + (chunk ^ (r & 7))) * 16), af[mt][0], af[mt][1],
                            af[mt][2], af[mt][3]);
            }
#pragma unroll
            for (int np = 0; np < NT8 / 2; np++) { // matrices: tokens 0-7 k 0-7, k 8-15, tokens 8-15 k 0-7, k 8-15
                int r = wn * WN + np * 16 + (lm >> 1) * 8 + lr, chunk = ks * 2 + (lm & 1);
                ldmatrix_x4(bs_base + (uint32_t) ((buf * BN * 8 + r * 8 + (chunk ^ (r & 7))) * 16), bf[2 * np][0],
                            bf[2 * np][1], bf[2 * np + 1][0], bf[2 * np + 1][1]);
            }
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT8; nt++) mma16816(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
        }
        if (kt + 1 < ktiles) store_tile(buf ^ 1); // the other buffer was last read before the previous barrier
        __syncthreads();
    }

    // C fragment: c0, c1 at (row lane/4, tokens 2(lane%4) + 0/1), c2, c3 eight rows further.
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT8; nt++) {
            int64_t o = m0 + wm * WM + mt * 16 + (lane >> 2);
            int64_t t = n0 + wn * WN + nt * 8 + 2 * (lane & 3);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                int64_t oo = o + (k >> 1) * 8, tt = t + (k & 1);
                if (oo < n_out && tt < n_tok) y[tt * n_out + oo] = acc[mt][nt][k];
            }
        }
}

// ---------------------------------------------------------------------------------------------------------------
// Quantized tensor-core GEMM (Q4_0, Q8_0, Q4_K, Q6_K when n_in % 64 == 0; gemm above takes the other cases).
//
// 1. convert_x16 writes the activations once per call as f16 into the context's scratch buffer, each 32-element unit
//    permuted (see gq_perm) so that the 8 weights a thread decodes from one 32-bit word of a unit are exactly its
//    A-fragment elements of the unit's two m16n8k16 steps.
// 2. gemm_q: block tile 128 rows x BN tokens x 64 k (two units), 8 warps as 4 (rows) x 2 (tokens), warp tile
//    32 x BN/2. A GQ_S-stage cp.async pipeline brings the raw quantized tile (quants, scales) and the f16 activation
//    tile (XOR-swizzled, read with ldmatrix) into shared memory, two tiles ahead of the tensor cores. The weights are
//    never written back as f16: each thread reads its 32-bit word of a unit row from shared memory and turns it into
//    four half2 fragment registers with the 0x6400 exponent trick (lop3, hsub2, hmul2/hfma2). Q4_K / Q6_K scales are
//    decoded once per (row, unit) per tile into a small table (one thread each) one tile ahead.
//    Grid: x = token tiles (fastest), y = row tiles, so the blocks sharing a weight tile run together (weights read
//    from DRAM once, the f16 activations stay in L2).

constexpr int GQ_BM = 128, GQ_BK = 64, GQ_S = 4;

// Position p of a unit in the converted activations holds element gq_perm(p) of the unit: for k16 step s = p / 16,
// fragment slot j = p % 16 (thread t = (j % 8) / 2, e = j % 2, high half h = j / 8), element 8t + 2s + h + 4e, i.e.
// nibble (2s + h) + 4e of the unit's 32-bit word t.
__host__ __device__ constexpr int gq_perm(int p) { return 8 * ((p % 8) / 2) + 2 * (p / 16) + (p % 16) / 8 + 4 * (p % 2); }

// x [n_units * 32] f32 (token rows of n_in, n_in % 32 == 0, so unit i is x[32i, 32i + 32)) -> x16, same size, f16.
__global__ void __launch_bounds__(kThreads) convert_x16(const float *__restrict__ x, int64_t n_units, bool xvec,
                                                        uint4 *__restrict__ x16) {
    const int64_t i = (int64_t) blockIdx.x * kThreads + threadIdx.x;
    if (i >= n_units) return;
    float v[32];
    const float *p = x + 32 * i;
    if (xvec) {
#pragma unroll
        for (int k = 0; k < 32; k += 4) {
            float4 f = __ldg(reinterpret_cast<const float4 *>(p + k));
            v[k] = f.x; v[k + 1] = f.y; v[k + 2] = f.z; v[k + 3] = f.w;
        }
    } else {
#pragma unroll
        for (int k = 0; k < 32; k++) v[k] = __ldg(p + k);
    }
#pragma unroll
    for (int c = 0; c < 4; c++) {
        uint32_t h[4];
#pragma unroll
        for (int k = 0; k < 4; k++) h[k] = pack_half2(v[gq_perm(8 * c + 2 * k)], v[gq_perm(8 * c + 2 * k + 1)]);
        x16[4 * i + c] = make_uint4(h[0], h[1], h[2], h[3]);
    }
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, uint32_t bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_async4(uint32_t dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ __half2 u2h2(uint32_t v) { return *reinterpret_cast<__half2 *>(&v); }
__device__ __forceinline__ uint32_t h22u(__half2 v) { return *reinterpret_cast<uint32_t *>(&v); }

// Shared-memory tile of one stage: the f16 activations [BN][64] (128-byte rows), then plane 0 as [2 units][128 rows]
// [UB bytes], then A1 (Q4_0 / Q8_0: fp16 d of the two units [128][4 B]; Q4_K: the super-block header [128][16 B];
// Q6_K: the high bits of the two units [128][16 B]), then A2 (Q6_K: the four int8 scales [128][4 B]).
template <int T> struct GQ;
template <> struct GQ<Q4_0> { static constexpr int UB = 16, A1 = GQ_BM * 4, A2 = 0; static constexpr bool kPrep = false; };
template <> struct GQ<Q8_0> { static constexpr int UB = 32, A1 = GQ_BM * 4, A2 = 0; static constexpr bool kPrep = false; };
template <> struct GQ<Q4_K> { static constexpr int UB = 16, A1 = GQ_BM * 16, A2 = 0; static constexpr bool kPrep = true; };
template <> struct GQ<Q6_K> { static constexpr int UB = 16, A1 = GQ_BM * 16, A2 = GQ_BM * 4; static constexpr bool kPrep = true; };

template <int T, int BN> constexpr int gq_stage() { return BN * 128 + 2 * GQ_BM * GQ<T>::UB + GQ<T>::A1 + GQ<T>::A2; }
// Stages plus the scale table ([2][128 rows][2 units] half2) of Q4_K / Q6_K. At most 99 KB (the sm_86 / sm_89 limit
// per block): Q8_0 at BN = 128 takes 98 KB.
template <int T, int BN> constexpr size_t gq_smem() {
    return (size_t) GQ_S * gq_stage<T, BN>() + (GQ<T>::kPrep ? 2 * GQ_BM * 2 * 4 : 0);
}

// The four A-fragment half2 of one row and one unit for thread t: P[m] = (element 8t + m, element 8t + m + 4).
// sa: plane-0 tile, s1: A1 tile, tab: this tile's scale table.
template <int T>
__device__ __forceinline__ void gq_decode(const uint8_t *sa, const uint8_t *s1, const uint32_t *tab, int R, int u, int t,
                                          uint32_t *P) {
    if constexpr (T == Q4_0 || T == Q4_K || T == Q6_K) {
        const uint32_t w = *reinterpret_cast<const uint32_t *>(sa + (u * GQ_BM + R) * 16 + 4 * t);
        if constexpr (T == Q4_0) {
            const uint32_t d = *reinterpret_cast<const unsigned short *>(s1 + R * 4 + 2 * u);
            const __half2 dd = u2h2(d | d << 16), off = u2h2(0x64086408u); // 1032 = 1024 + 8
#pragma unroll
            for (int m = 0; m < 4; m++) {
                uint32_t v = ((w >> (4 * m)) & 0x000F000Fu) | 0x64006400u;
                P[m] = h22u(__hmul2(__hsub2(u2h2(v), off), dd));
            }
        } else if constexpr (T == Q4_K) {
            const __half2 dm = u2h2(tab[R * 2 + u]); // (d1, m1)
            const __half2 d1 = __low2half2(dm), nm1 = __hneg2(__high2half2(dm)), off = u2h2(0x64006400u);
#pragma unroll
            for (int m = 0; m < 4; m++) {
                uint32_t v = ((w >> (4 * m)) & 0x000F000Fu) | 0x64006400u;
                P[m] = h22u(__hfma2(__hsub2(u2h2(v), off), d1, nm1));
            }
        } else {
            const uint32_t hw = *reinterpret_cast<const uint32_t *>(s1 + R * 16 + u * 8 + 4 * (t >> 1)) >> (4 * (t & 1));
            const __half2 ss = u2h2(tab[R * 2 + u]); // (d * scale of elements 0-15, d * scale of 16-31)
            const __half2 sc = t < 2 ? __low2half2(ss) : __high2half2(ss), off = u2h2(0x64206420u); // 1056 = 1024 + 32
#pragma unroll
            for (int m = 0; m < 4; m++) {
                uint32_t hi = (hw >> (8 * (m >> 1) + 2 * (m & 1))) & 0x00030003u;
                uint32_t v = ((w >> (4 * m)) & 0x000F000Fu) | (hi << 4) | 0x64006400u;
                P[m] = h22u(__hmul2(__hsub2(u2h2(v), off), sc));
            }
        }
    } else { // Q8_0: word 2t = elements 8t + {0,2,4,6}, word 2t+1 = 8t + {1,3,5,7}
        const uint2 q = *reinterpret_cast<const uint2 *>(sa + (u * GQ_BM + R) * 32 + 8 * t);
        const uint32_t d = *reinterpret_cast<const unsigned short *>(s1 + R * 4 + 2 * u);
        const __half2 dd = u2h2(d | d << 16), off = u2h2(0x64806480u); // 1152 = 1024 + 128
        const uint32_t a = q.x ^ 0x80808080u, b = q.y ^ 0x80808080u;   // int8 + 128 as unsigned bytes
        const uint32_t v[4] = {__byte_perm(a, 0x64646464u, 0x4240), __byte_perm(b, 0x64646464u, 0x4240),
                               __byte_perm(a, 0x64646464u, 0x4341), __byte_perm(b, 0x64646464u, 0x4341)};
#pragma unroll
        for (int m = 0; m < 4; m++) P[m] = h22u(__hmul2(__hsub2(u2h2(v[m]), off), dd));
    }
}

template <int T, int BN>
__global__ void __launch_bounds__(kThreads, 2) gemm_q(const uint8_t *__restrict__ w, Layout L, int64_t n_out,
                                                      int64_t n_in, const __half *__restrict__ x16, int64_t n_tok,
                                                      float *__restrict__ y) {
    using G = GQ<T>;
    constexpr int WN = BN / 2, NT8 = WN / 8, MT = 2;
    constexpr int SB = BN * 128, SA0 = 2 * GQ_BM * G::UB, STAGE = gq_stage<T, BN>();
    constexpr int BCH = BN * 8 / kThreads, ACH = SA0 / 16 / kThreads; // 16-byte copies per thread and tile
    static_assert(BCH >= 1 && ACH >= 1 && NT8 % 2 == 0, "tile shape");
    static_assert(gq_smem<T, BN>() <= 99 * 1024, "shared memory of sm_86 / sm_89");
    extern __shared__ uint4 smem[];
    uint8_t *sm = reinterpret_cast<uint8_t *>(smem);
    uint32_t *tab = reinterpret_cast<uint32_t *>(sm + GQ_S * STAGE); // [2][128][2]
    const uint32_t sbase = (uint32_t) __cvta_generic_to_shared(sm);

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wm = warp >> 1, wn = warp & 1;
    const int g = lane >> 2, t = lane & 3;
    const int64_t n0 = (int64_t) blockIdx.x * BN, m0 = (int64_t) blockIdx.y * GQ_BM;
    const int ktiles = (int) (n_in / GQ_BK);

    // Loader sources at k tile 0 (each thread copies the same tile positions every k step). Activations: copy i is
    // token (tid >> 3) + 32 i, 16-byte chunk tid & 7; a token past n_tok is zero-filled (source size 0).
    const int btok = tid >> 3, bc = tid & 7;
    const __half *bsrc = x16 + (n0 + btok) * n_in + bc * 8;
    const int64_t bstep = 32 * n_in;
    const uint32_t bdst = btok * 128 + ((bc ^ (btok & 7)) << 4); // + 32 * 128 per copy (same swizzle row & 7)
    // Quants, in [unit][row][UB]: 16-byte part apart of row arow, unit aunit + i * USTEP for copy i.
    constexpr int per = G::UB / 16, USTEP = kThreads / (GQ_BM * per);
    static_assert(ACH * USTEP == 2, "the two units of a tile");
    const int arow = (tid / per) % GQ_BM, apart = tid % per, aunit = tid / (GQ_BM * per);
    const uint8_t *asrc = w + L.off[0] + min(m0 + arow, n_out - 1) * L.row[0] + aunit * G::UB + apart * 16;
    const uint32_t adst = SB + (aunit * GQ_BM + arow) * G::UB + apart * 16;
    const int lrow = tid & (GQ_BM - 1);
    const int64_t lgrow = min(m0 + lrow, n_out - 1);
    const uint8_t *s1src = tid < GQ_BM ? w + L.off[1] + lgrow * L.row[1] : w + L.off[2] + lgrow * L.row[2];

    auto load = [&](int kt, int st) {
        const uint32_t sb = sbase + st * STAGE;
#pragma unroll
        for (int i = 0; i < BCH; i++) {
            const bool ok = n0 + btok + 32 * i < n_tok;
            cp_async16(sb + bdst + i * 32 * 128, ok ? bsrc + i * bstep + kt * GQ_BK : x16, ok ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < ACH; i++)
            cp_async16(sb + adst + i * USTEP * GQ_BM * G::UB, asrc + (2 * kt + i * USTEP) * G::UB, 16);
        const uint32_t s1 = sb + SB + SA0 + lrow * (G::A1 / GQ_BM);
        if (tid < GQ_BM) {
            if constexpr (T == Q4_0 || T == Q8_0) cp_async4(s1, s1src + kt * 4);
            else if constexpr (T == Q4_K) cp_async16(s1, s1src + (kt >> 2) * 16, 16);
            else cp_async16(s1, s1src + kt * 16, 16);
        } else if constexpr (T == Q6_K) {
            cp_async4(sb + SB + SA0 + G::A1 + lrow * 4, s1src + (kt >> 2) * 16 + (kt & 3) * 4);
        }
    };
    // Scale table of tile kt (one (row, unit) per thread), from stage st.
    auto prep = [&](int kt, int st) {
        if constexpr (G::kPrep) {
            const int row = tid >> 1, unit = tid & 1;
            const uint8_t *s1 = sm + st * STAGE + SB + SA0;
            uint32_t out;
            if constexpr (T == Q4_K) {
                typename Q<Q4_K>::Raw r;
                r.h = *reinterpret_cast<const uint4 *>(s1 + row * 16);
                r.j = (2 * kt + unit) & 7;
                int sc, mn;
                Q<Q4_K>::scale_min(r, sc, mn);
                out = pack_half2(h2f(r.h.x & 0xFFFF) * (float) sc, h2f(r.h.x >> 16) * (float) mn);
            } else {
                const uint32_t scw = *reinterpret_cast<const uint32_t *>(s1 + G::A1 + row * 4) >> (16 * unit);
                const int64_t grow = min(m0 + row, n_out - 1);
                const float d = h2f(ld2(w + L.off[3] + grow * L.row[3] + (kt >> 2) * 2));
                out = pack_half2(d * (float) (signed char) (scw & 0xFF), d * (float) (signed char) ((scw >> 8) & 0xFF));
            }
            tab[(kt & 1) * GQ_BM * 2 + tid] = out; // tid = row * 2 + unit
        }
    };

    float acc[MT][NT8][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT8; j++)
#pragma unroll
            for (int k = 0; k < 4; k++) acc[i][j][k] = 0.0f;

#pragma unroll
    for (int s = 0; s < GQ_S - 1; s++) {
        if (s < ktiles) load(s, s);
        cp_async_commit();
    }
    cp_async_wait<GQ_S - 2>(); // tile 0
    __syncthreads();
    prep(0, 0);

    const int lm = lane >> 3, lr = lane & 7;
    for (int kt = 0; kt < ktiles; kt++) {
        cp_async_wait<GQ_S - 3>(); // tile kt + 1 (this thread's copies)
        __syncthreads();           // everyone's copies of kt + 1; everyone done with tile kt - 1 (its stage is free)
        if (kt + GQ_S - 1 < ktiles) load(kt + GQ_S - 1, (kt + GQ_S - 1) % GQ_S);
        cp_async_commit();
        if (kt + 1 < ktiles) prep(kt + 1, (kt + 1) % GQ_S);

        const int st = kt % GQ_S;
        const uint8_t *sa = sm + st * STAGE + SB, *s1 = sa + SA0;
        const uint32_t *tb = tab + (kt & 1) * GQ_BM * 2;
        const uint32_t bs = sbase + st * STAGE;
#pragma unroll
        for (int u = 0; u < 2; u++) {
            uint32_t P[MT][2][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int hr = 0; hr < 2; hr++) gq_decode<T>(sa, s1, tb, wm * 32 + mt * 16 + hr * 8 + g, u, t, P[mt][hr]);
#pragma unroll
            for (int s = 0; s < 2; s++) {
                const int ks = 2 * u + s;
                uint32_t bf[NT8][2];
#pragma unroll
                for (int np = 0; np < NT8 / 2; np++) { // tokens 0-7 k 0-7, k 8-15, tokens 8-15 k 0-7, k 8-15
                    int r = wn * WN + np * 16 + (lm >> 1) * 8 + lr, chunk = ks * 2 + (lm & 1);
                    ldmatrix_x4(bs + (uint32_t) (r * 128 + ((chunk ^ (r & 7)) << 4)), bf[2 * np][0], bf[2 * np][1],
                                bf[2 * np + 1][0], bf[2 * np + 1][1]);
                }
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    const uint32_t a[4] = {P[mt][0][2 * s], P[mt][1][2 * s], P[mt][0][2 * s + 1], P[mt][1][2 * s + 1]};
#pragma unroll
                    for (int nt = 0; nt < NT8; nt++) mma16816(acc[mt][nt], a, bf[nt][0], bf[nt][1]);
                }
            }
        }
    }
    cp_async_wait<0>();

#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT8; nt++) {
            int64_t o = m0 + wm * 32 + mt * 16 + g;
            int64_t tk = n0 + wn * WN + nt * 8 + 2 * t;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                int64_t oo = o + (k >> 1) * 8, tt = tk + (k & 1);
                if (oo < n_out && tt < n_tok) y[tt * n_out + oo] = acc[mt][nt][k];
            }
        }
}

// ---------------------------------------------------------------------------------------------------------------
// Integer tensor-core matmul (mmq) for 9..64 tokens: Q4_0, Q8_0, Q4_K, Q6_K, IQ4_NL. See the top of the file for the
// fixed reduction order that makes every token's result independent of the batch.
//
// Warp tile: MT m16 tiles of weight rows (SwiGLU: the same 16 output rows of gate and of up) x 8 * NT8 / TH tokens,
// over one chain of units. Per unit: the weights unpacked to int8 A fragments (Q4_0 as q - 8, so no offset term), one
// mma.m16n8k32 (Q6_K: two m16n8k16, one per 16-weight half with its own scale) per token tile, C initialised to the
// bits of MQ_C = 1.5 * 2^23, so that D read as a float is exactly MQ_C + dot; then per element
//   acc = fma(dx, fma(s, D, -s * MQ_C), acc)                          (Q4_0, Q8_0, IQ4_NL)
//   acc = fma(dx, fma(s, D, -s * MQ_C), fma(-m, sx, acc))             (Q4_K: s = d * sc, m = dmin * min)
//   acc = fma(dx, fma(s1, D1 - MQ_C, fma(s0, D0, -s0 * MQ_C)), acc)   (Q6_K: s0, s1 = d * scale of each half)
// where fma(s, D, -s * MQ_C) is exactly s * (float) dot rounded once (s * MQ_C is exact: s has at most 19
// significant bits), i.e. no int-to-float conversion instruction (a quarter-rate unit) is needed.
// Block: 8 warps, 16 * MT rows per row group. LOCAL (the template's SPLIT = false; not launched: gemv_int is faster
// at 1..8 tokens; to be removed or used for a mode where 1..64 tokens must all agree): warps = chains (cw, the power
// of two >= NG) x row groups, every chain of the block's rows in one block, the chain partials summed in shared
// memory. SPLIT (9..64 tokens, MT = 2): the warps are row groups of one chain (8 of them, or 4 x TH = 2 token halves
// at 33..64 tokens: 256 or 128 weight rows a block), the grid is (NG chains, row tiles); on sm_90 a thread-block
// cluster of the NG blocks of a row tile sums the partials through distributed shared memory, elsewhere they go to
// a workspace in the scratch buffer and mq_combine sums them (one more launch).
// Loads: a cp.async pipeline of S stages of MQ_SU units: per row group its rows' quants ([row][unit][16 B], the unit
// slot XOR-swizzled by row so that the 4-byte fragment reads hit 32 distinct banks) and raw scales, per chain the
// activation tile [unit][token][32 B int8] and [unit][token] (dx, sx). Per stage each warp first turns its raw
// scales into a float2 table (prep), then runs the MMAs.

constexpr int MQ_SU = 4;                    // units per pipeline stage
constexpr int MQ_MAXC = 8;                  // chains per row at most
constexpr int MQ_MAX_TOK = 64;              // most tokens the integer matmul takes
constexpr uint32_t MQ_MAGIC = 0x4B400000u;  // the bits of MQ_C; as int32, MQ_MAGIC + i has the bits of MQ_C + i
constexpr float MQ_C = 12582912.0f;         // 1.5 * 2^23
constexpr int MQ_SMEM_LIMIT = 99 * 1024;    // shared memory per block on sm_86 / sm_89

// The fixed K partition (a function of U = n_in / 32 alone): the row's units in blocks of 8, S8 = ceil(U / 8) blocks,
// NG = min(S8, 8) chains, chain c = blocks [c * S8 / NG, (c + 1) * S8 / NG) (the last one cut at U).
__host__ __device__ inline int mq_chains(int U) {
    const int s8 = (U + 7) / 8;
    return s8 < MQ_MAXC ? s8 : MQ_MAXC;
}
__host__ __device__ inline int mq_chain_begin(int U, int c) {
    return 8 * (int) ((int64_t) c * ((U + 7) / 8) / mq_chains(U));
}
__host__ __device__ inline int mq_chain_end(int U, int c) {
    const int e = mq_chain_begin(U, c + 1);
    return e < U ? e : U;
}

// Per type: QB quant bytes and SB raw scale bytes a row takes per stage (MQ_SU units).
//   Q4_0, IQ4_NL, Q8_0: SB = the four fp16 d.  Q4_K: the super-block header (16 B).
//   Q6_K: the high bits of the four units (32 B), their int8 scales (8 B), the aligned 4 bytes holding fp16 d.
template <int T> struct MQ;
template <> struct MQ<Q4_0> { static constexpr int QB = 64, SB = 8; };
template <> struct MQ<IQ4_NL> { static constexpr int QB = 64, SB = 8; };
template <> struct MQ<Q8_0> { static constexpr int QB = 128, SB = 8; };
template <> struct MQ<Q4_K> { static constexpr int QB = 64, SB = 16; };
template <> struct MQ<Q6_K> { static constexpr int QB = 64, SB = 44; };

// Block shape: TH = 2 token halves at 64 tokens (the warps of a row group share its weight tile and each takes 32
// tokens, which keeps the accumulators at 32 x 32 per warp), else 1. Row groups: 8 / (TH * chains per block).
template <int NT8> constexpr int mq_th() { return NT8 == 8 ? 2 : 1; }

// Shared memory of mmq<T, NT8, MT, ..., SPLIT>: S stages of (the 8 / TH row groups' weight tiles, CWM activation
// tiles), then the per-warp scale tables; the chain partials (after the last stage) reuse the stages. S is the most
// stages (<= 4) that fit in 99 KB, so that every instance runs on every architecture (two blocks per SM on sm_90).
template <int T, int NT8, int MT, bool SPLIT> struct MqSize {
    static constexpr int TH = mq_th<NT8>(), R = 16 * MT, TT = 8 * NT8, CWM = SPLIT ? 1 : MQ_MAXC;
    static constexpr int WST = R * (MQ<T>::QB + MQ<T>::SB);       // one row group's weight tile of a stage
    static constexpr int ACT = MQ_SU * TT * 40;                    // one chain's activation tile of a stage
    static constexpr int STAGE = kWarps / TH * WST + CWM * ACT;
    static constexpr int PREP = kWarps * R * MQ_SU * 8;
    static constexpr int PART = TT * (kWarps / TH * R + 4 * CWM) * 4; // [cw][TT][rows + 4] floats, at most
    static constexpr int fit(int s) { return s * STAGE + PREP; }
    static constexpr int S = fit(4) <= MQ_SMEM_LIMIT ? 4 : fit(3) <= MQ_SMEM_LIMIT ? 3 : 2;
    static constexpr int BYTES = fit(S) > PART ? fit(S) : PART;
    static_assert(BYTES <= MQ_SMEM_LIMIT && WST % 16 == 0, "mmq tile");
};

// mmq's job: the same fields as gemv_int's (so that the entry points fill one struct for either kernel), with its
// own tiles: plain mode: tiles [first[j], first[j+1]) compute weight j; SwiGLU mode: w[0] = gate, w[1] = up (same
// shape, L[0]), n_w = 2, first[1..4] = all tiles.
using MqJob = GemvJob;

struct MqArgs {
    const uint4 *xq;  // the activations quantized (quantize_x's layout) for nt tokens of U units
    int U, nt, ng;    // units per row, tokens, chains (mq_chains(U))
    int cw;           // LOCAL: chains per block (a power of two >= ng)
    int tile0;        // SPLIT: the first tile of this launch (blockIdx.y = tile - tile0)
    int64_t ws_rows;  // SPLIT workspace mode: rows of one (chain, token) plane of ws (tiles * RBw)
    float *ws;        // SPLIT workspace mode: the partials [chain][token][tile * RBw + row]; nullptr: cluster mode
};

__device__ __forceinline__ void cp_async8(uint32_t dst, const void *src, uint32_t bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}

__device__ __forceinline__ void mma_k32(uint32_t *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(MQ_MAGIC), "r"(MQ_MAGIC), "r"(MQ_MAGIC),
          "r"(MQ_MAGIC));
}
__device__ __forceinline__ void mma_k16(uint32_t *d, uint32_t a0, uint32_t a1, uint32_t b) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a0), "r"(a1), "r"(b), "r"(MQ_MAGIC), "r"(MQ_MAGIC), "r"(MQ_MAGIC), "r"(MQ_MAGIC));
}


// Nibble word of row r, unit slot uu in a warp's quant tile (16 bytes per unit, slot uu ^ ((r >> 1) & 3)).
__device__ __forceinline__ uint32_t mq_word(const uint8_t *q, int r, int uu, int w) {
    return *reinterpret_cast<const uint32_t *>(q + r * 64 + ((uu ^ ((r >> 1) & 3)) << 4) + 4 * w);
}

// A 4-bit word (8 sequential nibbles) as its two interleaved int8 words, q - 8 (Q4_0) or q (Q4_K).
template <bool kSub8> __device__ __forceinline__ void mq_split4(uint32_t w, uint32_t &even, uint32_t &odd) {
    even = w & 0x0F0F0F0Fu;
    odd = (w >> 4) & 0x0F0F0F0Fu;
    if constexpr (kSub8) { // per byte b + 0x78 <= 0x87 (no carry), then flipping bit 7 gives b - 8
        even = (even + 0x78787878u) ^ 0x80808080u;
        odd = (odd + 0x78787878u) ^ 0x80808080u;
    }
}

// The scale table entry of row r, unit uu of the stage starting at unit ub, from the raw scales sd ([R] rows):
// Q4_0 / IQ4_NL / Q8_0: (d, 0); Q4_K: (d * sc, dmin * min); Q6_K: (d * scale0, d * scale1). Every product is exact.
template <int T>
__device__ __forceinline__ float2 mq_prep(const uint8_t *sd, int R, int r, int uu, int ub) {
    if constexpr (T == Q4_K) {
        typename Q<Q4_K>::Raw raw;
        raw.h = *reinterpret_cast<const uint4 *>(sd + r * 16);
        raw.j = (ub + uu) & 7;
        int sc, mn;
        Q<Q4_K>::scale_min(raw, sc, mn);
        return make_float2(__fmul_rn(h2f(raw.h.x & 0xFFFF), (float) sc), __fmul_rn(h2f(raw.h.x >> 16), (float) mn));
    } else if constexpr (T == Q6_K) {
        const uint32_t sc = *reinterpret_cast<const unsigned short *>(sd + R * 32 + r * 8 + uu * 2);
        const uint32_t dw = *reinterpret_cast<const uint32_t *>(sd + R * 40 + r * 4);
        const float d = h2f((dw >> (16 * ((ub >> 3) & 1))) & 0xFFFF);
        return make_float2(__fmul_rn(d, (float) (signed char) (sc & 0xFF)), __fmul_rn(d, (float) (signed char) (sc >> 8)));
    } else {
        return make_float2(h2f(*reinterpret_cast<const unsigned short *>(sd + r * 8 + uu * 2)), 0.0f);
    }
}

template <int T, int NT8, int MT, bool SWI, bool SPLIT>
__global__ void __launch_bounds__(kThreads, 2) mmq(const __grid_constant__ MqJob job, const MqArgs a) {
    using Z = MqSize<T, NT8, MT, SPLIT>;
    constexpr int TH = Z::TH, NTW = NT8 / TH; // token halves; token tiles of a warp
    constexpr int R = Z::R, TT = Z::TT, QB = MQ<T>::QB, WST = Z::WST, ACT = Z::ACT, STAGE = Z::STAGE, S = Z::S;
    constexpr int RPW = SWI ? 16 : R; // output rows per row group
    static_assert(!SWI || MT == 2, "SwiGLU: one m-tile of gate, one of up");
    extern __shared__ uint4 mq_smem[];
    uint8_t *sm = reinterpret_cast<uint8_t *>(mq_smem);
    const uint32_t sbase = (uint32_t) __cvta_generic_to_shared(sm);

    // warp = (rg * cw + cc) * TH + th: token half th of row group rg of chain column cc.
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int cw = SPLIT ? 1 : a.cw, rw = kWarps / TH / cw, th = warp % TH, wt = warp / TH, cc = wt % cw, rg = wt / cw;
    const int64_t tile = SPLIT ? (int64_t) a.tile0 + blockIdx.y : (int64_t) blockIdx.x;
    int j = 0;
#pragma unroll
    for (int i = 1; i < 4; i++)
        if (i < job.n_w && tile >= job.first[i]) j = i;
    const int64_t n_out = job.n_out[j];
    const int RBo = rw * RPW;                                // output rows of the block
    const int64_t orow0 = (tile - job.first[j]) * RBo;      // the block's first output row
    const int64_t wrow0 = orow0 + rg * RPW;                  // the row group's first output row
    const int U = a.U, nt = a.nt, ng = a.ng;
    const int chain = SPLIT ? (int) blockIdx.x : cc;
    const bool active = chain < ng;
    const int cu0 = active ? mq_chain_begin(U, chain) : 0, cu1 = active ? mq_chain_end(U, chain) : 0;
    const int nst = (cu1 - cu0 + MQ_SU - 1) / MQ_SU; // this warp's (and chain's) stages
    int NST = nst;                                    // the block's
    if (!SPLIT) {
        NST = 0;
        for (int c = 0; c < ng; c++) NST = max(NST, (mq_chain_end(U, c) - mq_chain_begin(U, c) + MQ_SU - 1) / MQ_SU);
    }
    const Layout &L = job.L[j];
    // Weight and row of the row group's row r (rows past n_out read the last row; their results are dropped).
    auto wrow = [&](int r, const uint8_t *&wp) -> int64_t {
        const int64_t o = wrow0 + (SWI ? (r & 15) : r);
        wp = SWI ? job.w[r >> 4] : job.w[j];
        return o < n_out ? o : n_out - 1;
    };

    auto load = [&](int s, int b) {
        if (!active || s >= nst) return;
        const int ub = cu0 + MQ_SU * s;
        // The row group's weight tile, copied by its TH warps (thread rt of TH * 32).
        const uint32_t wst = sbase + b * STAGE + wt * WST;
        const int rt = th * 32 + lane;
        if constexpr (T == Q8_0) { // 32 bytes a unit: eight 16-byte chunks a row, chunk c at c ^ (r & 7)
#pragma unroll
            for (int k = 0; k < R * 8 / (32 * TH); k++) {
                const int p = rt + 32 * TH * k, r = p >> 3, c = p & 7, u = ub + (c >> 1);
                const uint8_t *wp;
                const int64_t row = wrow(r, wp);
                const bool ok = u < cu1;
                cp_async16(wst + r * 128 + ((c ^ (r & 7)) << 4),
                           ok ? wp + L.off[0] + row * L.row[0] + (int64_t) u * 32 + (c & 1) * 16 : (const void *) wp,
                           ok ? 16 : 0);
            }
        } else {
#pragma unroll
            for (int k = 0; k < R * 4 / (32 * TH); k++) {
                const int p = rt + 32 * TH * k, r = p >> 2, uu = p & 3, u = ub + uu;
                const uint8_t *wp;
                const int64_t row = wrow(r, wp);
                const bool ok = u < cu1;
                cp_async16(wst + r * 64 + ((uu ^ ((r >> 1) & 3)) << 4),
                           ok ? wp + L.off[0] + row * L.row[0] + (int64_t) u * 16 : (const void *) wp, ok ? 16 : 0);
            }
        }
        if (rt < R) { // raw scales, one row a thread (in the rows' zero padding past U)
            const int r = rt;
            const uint8_t *wp;
            const int64_t row = wrow(r, wp);
            const uint32_t sd = wst + R * QB;
            if constexpr (T == Q4_K) {
                cp_async16(sd + r * 16, wp + L.off[1] + row * L.row[1] + (int64_t) (ub >> 3) * 16, 16);
            } else if constexpr (T == Q6_K) {
                const uint8_t *hp = wp + L.off[1] + row * L.row[1] + (int64_t) ub * 8;
                cp_async16(sd + r * 32, hp, 16);
                cp_async16(sd + r * 32 + 16, hp + 16, 16);
                cp_async8(sd + R * 32 + r * 8, wp + L.off[2] + row * L.row[2] + (int64_t) (ub >> 3) * 16 + (ub & 7) * 2, 8);
                cp_async4(sd + R * 40 + r * 4, wp + L.off[3] + row * L.row[3] + (int64_t) ((ub >> 3) & ~1) * 2);
            } else {
                cp_async8(sd + r * 8, wp + L.off[1] + row * L.row[1] + (int64_t) ub * 2, 8);
            }
        }
        // The chain's activations, copied by the threads of the chain's warps; zeros past nt and past the chain.
        const uint32_t act = sbase + b * STAGE + kWarps / TH * WST + cc * ACT;
        const int ct = (rg * TH + th) * 32 + lane, cn = rw * TH * 32;
        constexpr int NP = MQ_SU * TT;
        for (int p = ct; p < 3 * NP; p += cn) {
            const int kind = p / NP, q = p - kind * NP, tok = q / MQ_SU, uu = q % MQ_SU, u = ub + uu;
            const bool ok = tok < nt && u < cu1;
            const size_t idx = (size_t) tok * U + u;
            if (kind < 2) {
                cp_async16(act + (uu * TT + tok) * 32 + kind * 16, ok ? a.xq + (size_t) kind * nt * U + idx : a.xq,
                           ok ? 16 : 0);
            } else {
                const float2 *xs = reinterpret_cast<const float2 *>(a.xq + (size_t) 2 * nt * U);
                cp_async8(act + NP * 32 + (uu * TT + tok) * 8, ok ? (const void *) (xs + idx) : (const void *) a.xq,
                          ok ? 8 : 0);
            }
        }
    };

    float acc[MT][NTW][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int n = 0; n < NTW; n++)
#pragma unroll
            for (int k = 0; k < 4; k++) acc[m][n][k] = 0.0f;

    float2 *pw = reinterpret_cast<float2 *>(sm + S * STAGE) + warp * (MQ_SU * R); // [MQ_SU][R], this warp's
    auto compute = [&](int s, int b) {
        if (!active || s >= nst) return;
        const int ub = cu0 + MQ_SU * s, nu = min(MQ_SU, cu1 - ub);
        const uint8_t *wq = sm + b * STAGE + wt * WST, *sd = wq + R * QB;
        const uint8_t *act = sm + b * STAGE + kWarps / TH * WST + cc * ACT;
        const float *axs = reinterpret_cast<const float *>(act + MQ_SU * TT * 32);
#pragma unroll
        for (int k = 0; k < MQ_SU * R / 32; k++) {
            const int p = lane + 32 * k;
            pw[p] = mq_prep<T>(sd, R, p % R, p / R, ub);
        }
        __syncwarp();
#pragma unroll 1
        for (int uu = 0; uu < nu; uu++) {
            // A fragments and scales of the MT m-tiles: rows ra = 16m + g and ra + 8.
            uint32_t A[MT][4];
            float sc[MT][2], nsc[MT][2], x2[MT][2];
#pragma unroll
            for (int m = 0; m < MT; m++) {
                const int ra = 16 * m + g;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const float2 e = pw[uu * R + ra + 8 * h];
                    sc[m][h] = e.x;
                    nsc[m][h] = -__fmul_rn(e.x, MQ_C);
                    x2[m][h] = T == Q4_K ? -e.y : e.y;
                }
                if constexpr (T == Q8_0) {
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const int r = ra + 8 * h;
                        const uint2 v = *reinterpret_cast<const uint2 *>(wq + r * 128 +
                                                                          (((2 * uu + (t >> 1)) ^ (r & 7)) << 4) + 8 * (t & 1));
                        A[m][h] = v.x;     // word 2t
                        A[m][2 + h] = v.y; // word 2t + 1
                    }
                } else if constexpr (T == Q6_K) { // A[m][2h + 0/1] = int8 word 4h + t of rows ra / ra + 8, q - 32
#pragma unroll
                    for (int rr = 0; rr < 2; rr++) {
                        const int r = ra + 8 * rr;
                        const uint2 hb = *reinterpret_cast<const uint2 *>(sd + r * 32 + uu * 8);
#pragma unroll
                        for (int h = 0; h < 2; h++) {
                            const uint32_t lo = (mq_word(wq, r, uu, 2 * h + (t >> 1)) >> (4 * (t & 1))) & 0x0F0F0F0Fu;
                            const uint32_t hi = ((h ? hb.y : hb.x) >> (2 * t)) & 0x03030303u;
                            A[m][2 * h + rr] = ((lo | hi << 4) + 0x60606060u) ^ 0x80808080u;
                        }
                    }
                } else {
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const uint32_t w = mq_word(wq, ra + 8 * h, uu, t);
                        if constexpr (T == IQ4_NL) {
                            A[m][h] = (uint32_t) Q<IQ4_NL>::lookup4(w & 0xFFFFu);
                            A[m][2 + h] = (uint32_t) Q<IQ4_NL>::lookup4(w >> 16);
                        } else {
                            mq_split4<T == Q4_0>(w, A[m][h], A[m][2 + h]);
                        }
                    }
                }
            }
#pragma unroll
            for (int n = 0; n < NTW; n++) {
                const int tok0 = (th * NTW + n) * 8; // the token tile's first token in the block
                const uint8_t *tb = act + (uu * TT + tok0 + g) * 32;
                const float4 dxs = *reinterpret_cast<const float4 *>(axs + 2 * (uu * TT + tok0 + 2 * t));
                const float dx[2] = {dxs.x, dxs.z}, sx[2] = {dxs.y, dxs.w};
                if constexpr (T == Q6_K) {
                    const uint32_t b0 = *reinterpret_cast<const uint32_t *>(tb + 4 * t);      // word t
                    const uint32_t b1 = *reinterpret_cast<const uint32_t *>(tb + 16 + 4 * t); // word 4 + t
#pragma unroll
                    for (int m = 0; m < MT; m++) {
                        uint32_t d[4];
                        float pa[4];
                        mma_k16(d, A[m][0], A[m][1], b0);
#pragma unroll
                        for (int k = 0; k < 4; k++) pa[k] = __fmaf_rn(sc[m][k >> 1], __uint_as_float(d[k]), nsc[m][k >> 1]);
                        mma_k16(d, A[m][2], A[m][3], b1);
#pragma unroll
                        for (int k = 0; k < 4; k++) {
                            const float part = __fmaf_rn(x2[m][k >> 1], __fsub_rn(__uint_as_float(d[k]), MQ_C), pa[k]);
                            acc[m][n][k] = __fmaf_rn(dx[k & 1], part, acc[m][n][k]);
                        }
                    }
                } else {
                    const uint2 bv = *reinterpret_cast<const uint2 *>(tb + 8 * t); // words 2t, 2t + 1
#pragma unroll
                    for (int m = 0; m < MT; m++) {
                        uint32_t d[4];
                        mma_k32(d, A[m], bv.x, bv.y);
#pragma unroll
                        for (int k = 0; k < 4; k++) {
                            const int h = k >> 1, c = k & 1;
                            const float part = __fmaf_rn(sc[m][h], __uint_as_float(d[k]), nsc[m][h]);
                            float base = acc[m][n][k];
                            if constexpr (T == Q4_K) base = __fmaf_rn(x2[m][h], sx[c], base);
                            acc[m][n][k] = __fmaf_rn(dx[c], part, base);
                        }
                    }
                }
            }
        }
    };

    // The pipeline (as gemm_q): stage i + S - 1 is loaded while stage i is computed.
#pragma unroll
    for (int s = 0; s < S - 1; s++) {
        if (s < NST) load(s, s);
        cp_async_commit();
    }
    for (int i = 0; i < NST; i++) {
        cp_async_wait<S - 2>(); // stage i (this thread's copies)
        __syncthreads();        // everyone's copies of stage i; everyone done with stage i - 1 (its buffer is free)
        if (i + S - 1 < NST) load(i + S - 1, (i + S - 1) % S);
        cp_async_commit();
        compute(i, i % S);
    }
    cp_async_wait<0>();

    // Chain partials. Row index in the block's tile: row group rg's rows rg * R + (16 m + g + 8 h); SwiGLU rows
    // rg * 32 + (0..15) are gate, + 16 up. part = [cw][TT][RBw + 4] floats (conflict-free fragment stores).
    const int RBw = rw * R, PS = RBw + 4;
    auto rl_of = [&](int o) { return SWI ? (o >> 4) * 32 + (o & 15) : o; }; // output row -> tile row (gate)
    if (SPLIT && a.ws != nullptr) {
        if (active) {
            float *base = a.ws + (size_t) blockIdx.y * RBw + rg * R;
#pragma unroll
            for (int m = 0; m < MT; m++)
#pragma unroll
                for (int n = 0; n < NTW; n++)
#pragma unroll
                    for (int k = 0; k < 4; k++) {
                        const int tok = (th * NTW + n) * 8 + 2 * t + (k & 1);
                        if (tok < nt)
                            base[((size_t) chain * nt + tok) * a.ws_rows + 16 * m + g + 8 * (k >> 1)] = acc[m][n][k];
                    }
        }
        return; // mq_combine sums the chains
    }
    __syncthreads(); // every warp is done with the stages: the partials reuse them
    float *part = reinterpret_cast<float *>(sm);
    if (active) {
        float *pc = part + (size_t) cc * TT * PS + rg * R;
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int n = 0; n < NTW; n++)
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const int tok = (th * NTW + n) * 8 + 2 * t + (k & 1);
                    if (tok < nt) pc[tok * PS + 16 * m + g + 8 * (k >> 1)] = acc[m][n][k];
                }
    }
    float *y = job.y[j];
    if constexpr (!SPLIT) {
        __syncthreads();
        for (int e = tid; e < nt * RBo; e += kThreads) {
            const int tok = e / RBo, o = e - tok * RBo;
            const int64_t orow = orow0 + o;
            if (orow >= n_out) continue;
            const float *p = part + tok * PS + rl_of(o);
            float v = p[0];
            for (int c = 1; c < ng; c++) v = __fadd_rn(v, p[(size_t) c * TT * PS]);
            if constexpr (SWI) {
                float u = p[16];
                for (int c = 1; c < ng; c++) u = __fadd_rn(u, p[(size_t) c * TT * PS + 16]);
                v = silu_mul(v, u);
            }
            y[(int64_t) tok * n_out + orow] = v;
        }
    } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        // Cluster of the ng chain blocks of this row tile: block q sums rows [q RBo / ng, (q + 1) RBo / ng) over the
        // chains in order, reading each chain's partials from that block's shared memory.
        cg::cluster_group cluster = cg::this_cluster();
        cluster.sync();
        const int q = (int) cluster.block_rank(), o0 = q * RBo / ng, nr = (q + 1) * RBo / ng - o0;
        for (int e = tid; e < nt * nr; e += kThreads) {
            const int tok = e / nr, o = o0 + (e - tok * nr);
            const int64_t orow = orow0 + o;
            if (orow >= n_out) continue;
            const int idx = tok * PS + rl_of(o);
            float v = cluster.map_shared_rank(part, 0)[idx];
            for (int c = 1; c < ng; c++) v = __fadd_rn(v, cluster.map_shared_rank(part, c)[idx]);
            if constexpr (SWI) {
                float u = cluster.map_shared_rank(part, 0)[idx + 16];
                for (int c = 1; c < ng; c++) u = __fadd_rn(u, cluster.map_shared_rank(part, c)[idx + 16]);
                v = silu_mul(v, u);
            }
            y[(int64_t) tok * n_out + orow] = v;
        }
        cluster.sync(); // the other blocks read this block's partials until here
#else
        __trap(); // cluster mode is only launched on sm_90 and later
#endif
    }
}

// Workspace mode of the SPLIT kernel: y = the chains' partials summed in order (then SwiGLU), for `tiles` tiles of
// RBw weight rows (RBo output rows) from a.tile0.
template <bool SWI>
__global__ void __launch_bounds__(kThreads) mq_combine(const __grid_constant__ MqJob job, const MqArgs a, int tiles,
                                                       int RBw) {
    const int RBo = SWI ? RBw / 2 : RBw, nt = a.nt, ng = a.ng;
    const int64_t total = (int64_t) tiles * nt * RBo, plane = (int64_t) nt * a.ws_rows;
    for (int64_t e = (int64_t) blockIdx.x * kThreads + threadIdx.x; e < total; e += (int64_t) gridDim.x * kThreads) {
        const int o = (int) (e % RBo);
        const int64_t rest = e / RBo;
        const int tok = (int) (rest % nt), tl = (int) (rest / nt);
        const int64_t tile = (int64_t) a.tile0 + tl;
        int j = 0;
#pragma unroll
        for (int i = 1; i < 4; i++)
            if (i < job.n_w && tile >= job.first[i]) j = i;
        const int64_t n_out = job.n_out[j], orow = (tile - job.first[j]) * RBo + o;
        if (orow >= n_out) continue;
        const float *p = a.ws + (int64_t) tok * a.ws_rows + (int64_t) tl * RBw + (SWI ? (o >> 4) * 32 + (o & 15) : o);
        float v = p[0];
        for (int c = 1; c < ng; c++) v = __fadd_rn(v, p[c * plane]);
        if constexpr (SWI) {
            float u = p[16];
            for (int c = 1; c < ng; c++) u = __fadd_rn(u, p[c * plane + 16]);
            v = silu_mul(v, u);
        }
        job.y[j][(int64_t) tok * n_out + orow] = v;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Embedding lookup: one block per id, one thread per 32-weight unit.

template <int T>
__global__ void __launch_bounds__(kThreads) embed_kernel(const uint8_t *__restrict__ w, Layout L, int64_t n_rows,
                                                         int64_t n_cols, const int32_t *__restrict__ ids,
                                                         float *__restrict__ out, bool ovec) {
    __shared__ float lut[16];
    if constexpr (T == NF4) {
        if (threadIdx.x < 16) lut[threadIdx.x] = kNf4Levels[threadIdx.x];
        __syncthreads();
    }
    const int64_t r = blockIdx.x;
    const int32_t id = ids[r];
    const bool valid = id >= 0 && id < n_rows;
    const int64_t units = (n_cols + 31) / 32;
    float *orow = out + r * n_cols;
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
        float v[32];
        if (valid) {
            Unit<T>::to_float(Unit<T>::load(w, L, id, u, n_cols), v, lut);
        } else {
#pragma unroll
            for (int i = 0; i < 32; i++) v[i] = 0.0f;
        }
        if (ovec && 32 * u + 32 <= n_cols) {
#pragma unroll
            for (int i = 0; i < 32; i += 4)
                *reinterpret_cast<float4 *>(orow + 32 * u + i) = make_float4(v[i], v[i + 1], v[i + 2], v[i + 3]);
        } else {
#pragma unroll
            for (int i = 0; i < 32; i++)
                if (32 * u + i < n_cols) orow[32 * u + i] = v[i];
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Host side.

// Calls fn(std::integral_constant<int, T>) for the runtime type t; false for an unknown type.
template <class Fn>
bool dispatch(int32_t t, Fn &&fn) {
    switch (t) {
        case F32: fn(std::integral_constant<int, F32>()); return true;
        case F16: fn(std::integral_constant<int, F16>()); return true;
        case Q4_0: fn(std::integral_constant<int, Q4_0>()); return true;
        case Q8_0: fn(std::integral_constant<int, Q8_0>()); return true;
        case Q4_K: fn(std::integral_constant<int, Q4_K>()); return true;
        case Q6_K: fn(std::integral_constant<int, Q6_K>()); return true;
        case IQ4_NL: fn(std::integral_constant<int, IQ4_NL>()); return true;
        case BF16: fn(std::integral_constant<int, BF16>()); return true;
        case NF4: fn(std::integral_constant<int, NF4>()); return true;
        default: return false;
    }
}

template <int T> constexpr bool has_int_path() {
    return T == Q4_0 || T == Q8_0 || T == Q4_K || T == Q6_K || T == IQ4_NL;
}

// Per-device caches of kernel attributes, so that no call queries or sets them again (nor during a graph capture).
constexpr int kMaxDevices = 64;

// Raises a kernel's dynamic shared-memory limit to `smem` once per device, before its first launch, whenever its
// static shared memory plus smem passes the default 48 KB (gemm<NF4, 64>: 48 KB dynamic + the 64-byte codebook).
// `done` is that kernel's own per-device flags; it records the largest smem already allowed (a race only repeats the
// set). Neither call is a stream operation, so this is also safe while a graph is being captured.
template <class K>
nb_status ensure_smem(nb_cuda *ctx, K kernel, size_t smem, int *done, const char *what) {
    int dev = ctx->device;
    const bool cache = dev >= 0 && dev < kMaxDevices;
    if (smem == 0 || (cache && (size_t) done[dev] >= smem)) return NB_OK;
    cudaFuncAttributes fa;
    nb_status s = nb_cuda_check(ctx, cudaFuncGetAttributes(&fa, kernel), what);
    if (s != NB_OK) return s;
    if (fa.sharedSizeBytes + smem > 48 * 1024 && (size_t) fa.maxDynamicSharedSizeBytes < smem)
        s = nb_cuda_check(ctx, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int) smem), what);
    if (s == NB_OK && cache) done[dev] = (int) smem;
    return s;
}

// Blocks for a persistent float GEMV: all that can be resident, but no more than there are tasks for.
// `cached` is that kernel's own per-device occupancy.
template <class K>
int gemv_grid(nb_cuda *ctx, K kernel, int64_t n_out, int *cached) {
    int dev = ctx->device, per_sm = dev >= 0 && dev < kMaxDevices ? cached[dev] : 0;
    if (per_sm == 0) {
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0) != cudaSuccess || per_sm < 1)
            per_sm = 1;
        if (dev >= 0 && dev < kMaxDevices) cached[dev] = per_sm;
    }
    int64_t want = ((n_out + kRows - 1) / kRows + kWarps - 1) / kWarps;
    int64_t have = (int64_t) per_sm * (ctx->sm_count > 0 ? ctx->sm_count : 1);
    return (int) (want < have ? want : have);
}

// Quantizes n_tok (<= MQ_MAX_TOK) activation rows into the scratch buffer for gemv_int or mmq.
nb_status quantize_activations(nb_cuda *ctx, const float *x, int64_t n_in, int64_t n_tok, bool xvec) {
    const int U = (int) (n_in / 32);
    int64_t total = n_tok * U * 4;
    quantize_x<<<(unsigned) ((total + kThreads - 1) / kThreads), kThreads, 0, ctx->stream>>>(
        x, n_in, (int) n_tok, U, xvec, (uint4 *) ctx->scratch);
    return nb_cuda_launched(ctx, "quantize_x");
}

// Whether gemv_int takes this call: 1..8 tokens, and their int8 activations fit in the first cap bytes of the scratch
// buffer (the unfused SwiGLU keeps the rest for its outputs).
bool gemv_int_fits(int64_t n_in, int64_t n_tok, size_t cap = (size_t) NB_CUDA_SCRATCH_BYTES) {
    return n_tok >= 1 && n_tok <= 8 && n_in % 32 == 0 && n_in / 32 <= 0x7FFFFFFF / 64 &&
           xq_bytes(n_tok, n_in / 32) <= cap;
}

// Launches gemv_int for a job whose n_w, w, L, n_out and y are set; fills job.first. quantize_activations must
// have run first.
template <int T>
nb_status launch_gemv_int(nb_cuda *ctx, GemvJob job, bool swiglu, int64_t n_in, int64_t n_tok) {
    const int U = (int) (n_in / 32), steps = (U + 31) / 32;
    const int rpg = swiglu ? kRows / 2 : kRows;
    int64_t groups = 0;
    for (int j = 0; j < job.n_w; j++) groups += (job.n_out[j] + rpg - 1) / rpg;
    // K slices per row group: split until the warps make about one full wave (24 warps per SM), keeping every slice
    // at least one 32-unit step.
    const int64_t target = (int64_t) (ctx->sm_count > 0 ? ctx->sm_count : 1) * 24;
    int ks = 1;
    while (ks < kWarps && groups * ks < target && ks * 2 <= steps) ks *= 2;
    const int su = (steps + ks - 1) / ks * 32, per_block = (kWarps / ks) * rpg;
    int64_t at = 0;
    for (int j = 0; j < 4; j++) {
        job.first[j] = at;
        if (j < job.n_w) at += (job.n_out[j] + per_block - 1) / per_block;
    }
    job.first[4] = at;
    if (at > 0x7FFFFFFF) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "nb_cuda_matmul: too many rows");

    const uint4 *xq = (const uint4 *) ctx->scratch;
    const int nt = (int) n_tok;
    auto go = [&](auto kernel) { kernel<<<(unsigned) at, kThreads, 0, ctx->stream>>>(job, xq, U, su, ks, nt); };
    if (swiglu) {
        if (n_tok <= 1) go(gemv_int<T, 1, true>);
        else if (n_tok <= 2) go(gemv_int<T, 2, true>);
        else if (n_tok <= 4) go(gemv_int<T, 4, true>);
        else go(gemv_int<T, 8, true>);
    } else {
        if (n_tok <= 1) go(gemv_int<T, 1, false>);
        else if (n_tok <= 2) go(gemv_int<T, 2, false>);
        else if (n_tok <= 4) go(gemv_int<T, 4, false>);
        else go(gemv_int<T, 8, false>);
    }
    return nb_cuda_launched(ctx, "gemv_int");
}

// One weight, one GEMV; xq_ready: the scratch buffer already holds x quantized (left by the previous call).
template <int T>
nb_status launch_gemv_int1(nb_cuda *ctx, const uint8_t *w, const Layout &L, int64_t n_out, int64_t n_in,
                           int64_t n_tok, float *y, const float *x, bool xvec, bool xq_ready) {
    nb_status s = xq_ready ? NB_OK : quantize_activations(ctx, x, n_in, n_tok, xvec);
    if (s != NB_OK) return s;
    GemvJob job = {};
    job.n_w = 1;
    job.w[0] = w;
    job.L[0] = L;
    job.n_out[0] = n_out;
    job.y[0] = y;
    return launch_gemv_int<T>(ctx, job, false, n_in, n_tok);
}

// Whether mmq takes this call: 9..MQ_MAX_TOK tokens (gemv_int takes fewer), and their int8 activations fit in half
// of the first cap bytes of the scratch buffer (the rest is for the SPLIT workspace).
bool mmq_fits(int64_t n_in, int64_t n_tok, size_t cap = (size_t) NB_CUDA_SCRATCH_BYTES) {
    return n_tok > 8 && n_tok <= MQ_MAX_TOK && n_in % 32 == 0 && n_in / 32 <= 0x7FFFFFFF / 64 &&
           xq_bytes(n_tok, n_in / 32) <= cap / 2;
}

// Whether one of the integer kernels takes n_tok tokens of n_in (gemv_int up to 8, mmq 9..64).
bool int_fits(int64_t n_in, int64_t n_tok, size_t cap = (size_t) NB_CUDA_SCRATCH_BYTES) {
    return n_tok <= 8 ? gemv_int_fits(n_in, n_tok, cap) : mmq_fits(n_in, n_tok, cap);
}

// Fills job.first with tiles of `rows` output rows (SwiGLU: all tiles are weight 0's, the gate's); false when there
// are more tiles than `limit`.
bool mq_tiles(MqJob &job, bool swiglu, int64_t rows, int64_t limit) {
    int64_t at = 0;
    for (int j = 0; j < 4; j++) {
        job.first[j] = at;
        if (j < (swiglu ? 1 : job.n_w)) at += (job.n_out[j] + rows - 1) / rows;
    }
    job.first[4] = at;
    return at <= limit;
}

// Whether a cluster launch of `kernel` with ng blocks per cluster can run on this device (cached per device and ng).
template <class K>
bool mq_cluster_ok(nb_cuda *ctx, K kernel, int ng, size_t smem, int (*cache)[MQ_MAXC + 1]) {
    const int dev = ctx->device;
    if (ctx->compute_capability < 90 || ctx->mm_portable) return false;
    if (dev >= 0 && dev < kMaxDevices && cache[dev][ng] != 0) return cache[dev][ng] > 0;
    // No query while a graph is being captured: a cluster of <= 8 blocks of <= 99 KB always fits an sm_90 GPC (the
    // launch would report it otherwise); the next eager call fills the cache.
    if (ctx->capturing) return true;
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned) ng;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.gridDim = dim3((unsigned) ng, 1, 1);
    cfg.blockDim = dim3(kThreads, 1, 1);
    cfg.dynamicSmemBytes = smem;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    const bool ok = cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) == cudaSuccess && clusters >= 1;
    cudaGetLastError(); // a refused query is not an error of the next launch
    if (dev >= 0 && dev < kMaxDevices) cache[dev][ng] = ok ? 1 : -1;
    return ok;
}

// SPLIT (9..64 tokens): grid (ng chains, tiles of RBw weight rows). On sm_90 a cluster of the ng blocks of a tile sums
// the chains; elsewhere the chains go to a workspace after the quantized activations and mq_combine sums them, as
// many tiles per launch as the first cap bytes of the scratch buffer hold.
template <int T, int NT8, bool SWI>
nb_status mq_split(nb_cuda *ctx, MqJob job, MqArgs a, size_t cap) {
    auto kernel = mmq<T, NT8, 2, SWI, true>;
    constexpr size_t smem = MqSize<T, NT8, 2, true>::BYTES;
    constexpr int RBw = kWarps / mq_th<NT8>() * 32, RBo = SWI ? RBw / 2 : RBw; // weight / output rows of a tile
    static int done[kMaxDevices] = {};
    static int cluster_cache[kMaxDevices][MQ_MAXC + 1] = {};
    nb_status s = ensure_smem(ctx, kernel, smem, done, "mmq: shared memory");
    if (s != NB_OK) return s;
    if (!mq_tiles(job, SWI, RBo, 65535)) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "nb_cuda_matmul: too many rows");
    const int tiles = (int) job.first[4];
    a.cw = 1;
    if (mq_cluster_ok(ctx, kernel, a.ng, smem, cluster_cache)) {
        a.tile0 = 0;
        a.ws = nullptr;
        a.ws_rows = 0;
        cudaLaunchConfig_t cfg = {};
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = (unsigned) a.ng;
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
        cfg.gridDim = dim3((unsigned) a.ng, (unsigned) tiles, 1);
        cfg.blockDim = dim3(kThreads, 1, 1);
        cfg.dynamicSmemBytes = smem;
        cfg.stream = ctx->stream;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        s = nb_cuda_check(ctx, cudaLaunchKernelEx(&cfg, kernel, job, a), "mmq (cluster)");
        return s == NB_OK ? nb_cuda_launched(ctx, "mmq") : s;
    }
    const size_t ws_off = (xq_bytes(a.nt, a.U) + 255) / 256 * 256;
    const size_t per_tile = (size_t) a.ng * a.nt * RBw * sizeof(float);
    const int64_t batch = ws_off < cap ? (int64_t) ((cap - ws_off) / per_tile) : 0;
    if (batch < 1) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "nb_cuda_matmul: n_in too large");
    a.ws = (float *) ((uint8_t *) ctx->scratch + ws_off);
    for (int t0 = 0; t0 < tiles; t0 += (int) batch) {
        const int cnt = (int) (tiles - t0 < batch ? tiles - t0 : batch);
        a.tile0 = t0;
        a.ws_rows = (int64_t) cnt * RBw;
        kernel<<<dim3((unsigned) a.ng, (unsigned) cnt), kThreads, smem, ctx->stream>>>(job, a);
        s = nb_cuda_launched(ctx, "mmq");
        if (s != NB_OK) return s;
        const int64_t total = (int64_t) cnt * a.nt * RBo;
        const int64_t blocks = (total + kThreads - 1) / kThreads, most = (int64_t) (ctx->sm_count > 0 ? ctx->sm_count : 1) * 8;
        mq_combine<SWI><<<(unsigned) (blocks < most ? blocks : most), kThreads, 0, ctx->stream>>>(job, a, cnt, RBw);
        s = nb_cuda_launched(ctx, "mq_combine");
        if (s != NB_OK) return s;
    }
    return NB_OK;
}

// mmq for a job whose n_w, w, L, n_out and y are set (SwiGLU: gate, up), 9..64 tokens; the activations must be in
// the scratch buffer already (quantize_activations, or the rmsnorm before).
template <int T>
nb_status launch_mmq(nb_cuda *ctx, const MqJob &job, bool swiglu, int64_t n_in, int64_t n_tok,
                     size_t cap = (size_t) NB_CUDA_SCRATCH_BYTES) {
    MqArgs a = {};
    a.xq = (const uint4 *) ctx->scratch;
    a.U = (int) (n_in / 32);
    a.nt = (int) n_tok;
    a.ng = mq_chains(a.U);
    // 9..64 tokens (mmq_fits); gemv_int takes 1..8.
    if (n_tok <= 16) return swiglu ? mq_split<T, 2, true>(ctx, job, a, cap) : mq_split<T, 2, false>(ctx, job, a, cap);
    if (n_tok <= 32) return swiglu ? mq_split<T, 4, true>(ctx, job, a, cap) : mq_split<T, 4, false>(ctx, job, a, cap);
    return swiglu ? mq_split<T, 8, true>(ctx, job, a, cap) : mq_split<T, 8, false>(ctx, job, a, cap);
}

// One weight; xq_ready: the scratch buffer already holds x quantized (left by the previous call).
template <int T>
nb_status launch_mmq1(nb_cuda *ctx, const uint8_t *w, const Layout &L, int64_t n_out, int64_t n_in, int64_t n_tok,
                      float *y, const float *x, bool xvec, bool xq_ready, size_t cap) {
    nb_status s = xq_ready ? NB_OK : quantize_activations(ctx, x, n_in, n_tok, xvec);
    if (s != NB_OK) return s;
    MqJob job = {};
    job.n_w = 1;
    job.w[0] = w;
    job.L[0] = L;
    job.n_out[0] = n_out;
    job.y[0] = y;
    return launch_mmq<T>(ctx, job, false, n_in, n_tok, cap);
}

template <int T, int NT>
nb_status launch_gemv_float(nb_cuda *ctx, const uint8_t *w, const Layout &L, int64_t n_out, int64_t n_in,
                            const float *x, int64_t n_tok, bool xvec, float *y) {
    auto kernel = gemv_float<T, NT>;
    static int cached[kMaxDevices] = {}; // one per instantiation, i.e. per kernel
    int grid = gemv_grid(ctx, kernel, n_out, cached);
    for (int64_t t0 = 0; t0 < n_tok; t0 += NT) {
        int nt = (int) (n_tok - t0 < NT ? n_tok - t0 : NT);
        kernel<<<grid, kThreads, 0, ctx->stream>>>(w, L, n_out, n_in, x + t0 * n_in, nt, xvec, y + t0 * n_out);
        nb_status s = nb_cuda_launched(ctx, "gemv_float");
        if (s != NB_OK) return s;
    }
    return NB_OK;
}

template <int T, int BN>
nb_status launch_gemm(nb_cuda *ctx, const uint8_t *w, const Layout &L, int64_t n_out, int64_t n_in, const float *x,
                      int64_t n_tok, bool xvec, float *y) {
    auto kernel = gemm<T, BN>;
    constexpr size_t smem = gemm_smem<BN>();
    static int done[kMaxDevices] = {}; // one per instantiation, i.e. per kernel
    nb_status s = ensure_smem(ctx, kernel, smem, done, "gemm: shared memory");
    if (s != NB_OK) return s;
    int64_t gy = (n_tok + BN - 1) / BN, gx = (n_out + BM - 1) / BM;
    if (gy > 65535 || gx > 0x7FFFFFFF) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "nb_cuda_matmul: too many tokens or rows");
    kernel<<<dim3((unsigned) gx, (unsigned) gy), kThreads, smem, ctx->stream>>>(w, L, n_out, n_in, x, n_tok, xvec, y);
    return nb_cuda_launched(ctx, "gemm");
}

template <int T> constexpr bool has_gemm_q() { return T == Q4_0 || T == Q8_0 || T == Q4_K || T == Q6_K; }
bool gemm_q_fits(int64_t n_out, int64_t n_in) { return n_in % GQ_BK == 0 && (n_out + GQ_BM - 1) / GQ_BM <= 65535; }

template <int T, int BN>
nb_status launch_gemm_q(nb_cuda *ctx, const uint8_t *w, const Layout &L, int64_t n_out, int64_t n_in,
                        const __half *x16, int64_t n_tok, float *y) {
    auto kernel = gemm_q<T, BN>;
    constexpr size_t smem = gq_smem<T, BN>();
    static int done[kMaxDevices] = {};
    nb_status s = ensure_smem(ctx, kernel, smem, done, "gemm_q: shared memory");
    if (s != NB_OK) return s;
    int64_t gx = (n_tok + BN - 1) / BN, gy = (n_out + GQ_BM - 1) / GQ_BM;
    if (gx > 0x7FFFFFFF || gy > 65535) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "nb_cuda_matmul: too many tokens or rows");
    kernel<<<dim3((unsigned) gx, (unsigned) gy), kThreads, smem, ctx->stream>>>(w, L, n_out, n_in, x16, n_tok, y);
    return nb_cuda_launched(ctx, "gemm_q");
}

// The quantized GEMM: the activations converted to f16 into the first x16_cap bytes of the scratch buffer, as many
// tokens at a time as fit, each chunk followed by its GEMM.
template <int T>
nb_status run_gemm_q(nb_cuda *ctx, const uint8_t *w, const Layout &L, int64_t n_out, int64_t n_in, const float *x,
                     int64_t n_tok, bool xvec, float *y, size_t x16_cap) {
    const int64_t chunk = (int64_t) (x16_cap / ((size_t) n_in * 2));
    if (chunk < 1) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "nb_cuda_matmul: n_in %lld too large", (long long) n_in);
    __half *x16 = (__half *) ctx->scratch;
    for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
        const int64_t nt = n_tok - t0 < chunk ? n_tok - t0 : chunk, units = nt * n_in / 32;
        convert_x16<<<(unsigned) ((units + kThreads - 1) / kThreads), kThreads, 0, ctx->stream>>>(
            x + t0 * n_in, units, xvec, (uint4 *) x16);
        nb_status s = nb_cuda_launched(ctx, "convert_x16");
        if (s == NB_OK) {
            // The widest token tile that still gives at least half as many blocks as SMs (a 4096-row weight at 128
            // tokens: BN = 128 would make 32 blocks, BN = 32 makes 128).
            const int64_t row_tiles = (n_out + GQ_BM - 1) / GQ_BM, half_sms = (ctx->sm_count > 0 ? ctx->sm_count : 2) / 2;
            auto blocks = [&](int64_t bn) { return (nt + bn - 1) / bn * row_tiles; };
            if (nt > 64 && blocks(128) >= half_sms) s = launch_gemm_q<T, 128>(ctx, w, L, n_out, n_in, x16, nt, y + t0 * n_out);
            else if (nt > 32 && blocks(64) >= half_sms) s = launch_gemm_q<T, 64>(ctx, w, L, n_out, n_in, x16, nt, y + t0 * n_out);
            else s = launch_gemm_q<T, 32>(ctx, w, L, n_out, n_in, x16, nt, y + t0 * n_out);
        }
        if (s != NB_OK) return s;
    }
    return NB_OK;
}

// y = W x for one weight, everything checked; the body of nb_cuda_matmul. The kernels may use the first cap bytes
// of the scratch buffer. xq_ready: the scratch buffer holds d_x quantized already (only nb_cuda_matmul passes it).
nb_status matmul(nb_cuda *ctx, int32_t wtype, const uint8_t *w, const Layout &L, int64_t n_out, int64_t n_in,
                 const float *d_x, int64_t n_tok, float *d_y, size_t cap = (size_t) NB_CUDA_SCRATCH_BYTES,
                 bool xq_ready = false) {
    const bool xvec = (n_in % 4) == 0 && ((uintptr_t) d_x & 15) == 0; // every activation row 16-byte aligned
    nb_status s = NB_OK;
    dispatch(wtype, [&](auto tc) {
        constexpr int T = decltype(tc)::value;
        if constexpr (has_int_path<T>()) {
            if (gemv_int_fits(n_in, n_tok, cap)) {
                s = launch_gemv_int1<T>(ctx, w, L, n_out, n_in, n_tok, d_y, d_x, xvec, xq_ready);
                return;
            }
            if (mmq_fits(n_in, n_tok, cap)) {
                s = launch_mmq1<T>(ctx, w, L, n_out, n_in, n_tok, d_y, d_x, xvec, xq_ready, cap);
                return;
            }
        } else if (n_tok <= 8) {
            if (n_tok <= 1) s = launch_gemv_float<T, 1>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y);
            else if (n_tok <= 2) s = launch_gemv_float<T, 2>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y);
            else if (n_tok <= 4) s = launch_gemv_float<T, 4>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y);
            else s = launch_gemv_float<T, 8>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y);
            return;
        }
        if constexpr (has_gemm_q<T>()) {
            if (gemm_q_fits(n_out, n_in)) {
                s = run_gemm_q<T>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y, cap);
                return;
            }
        }
        if (n_tok <= 64) s = launch_gemm<T, 64>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y);
        else s = launch_gemm<T, 128>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y);
    });
    return s;
}

// out = silu(g) * u, n floats (the tail of the unfused nb_cuda_matmul_swiglu).
__global__ void swiglu_kernel(const float *__restrict__ g, const float *__restrict__ u, int64_t n,
                              float *__restrict__ out) {
    for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t) gridDim.x * blockDim.x) {
        float v = g[i];
        out[i] = v / (1.0f + expf(-v)) * u[i];
    }
}

// The argument checks every matmul entry point shares; fills L.
nb_status check_weight(nb_cuda *ctx, const char *fn, int32_t wtype, const void *d_w, int64_t n_out, int64_t n_in,
                       Layout *L) {
    if (block_size(wtype) == 0) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "%s: type %d", fn, wtype);
    NB_CUDA_REQUIRE(ctx, d_w != nullptr, "%s: null weight", fn);
    NB_CUDA_REQUIRE(ctx, n_out >= 1 && n_in >= 1, "%s: bad sizes %lld x %lld", fn, (long long) n_out, (long long) n_in);
    NB_CUDA_REQUIRE(ctx, layout_of(wtype, n_out, n_in, L), "%s: n_in %lld not a multiple of %d", fn, (long long) n_in,
                    block_size(wtype));
    NB_CUDA_REQUIRE(ctx, ((uintptr_t) d_w & 15) == 0, "%s: weight not 16-byte aligned", fn);
    return NB_OK;
}

} // namespace

extern "C" NB_API int64_t nb_cuda_weight_bytes(int32_t wtype, int64_t n_out, int64_t n_in) {
    Layout L;
    return layout_of(wtype, n_out, n_in, &L) ? L.total : -1;
}

extern "C" NB_API nb_status nb_cuda_upload_weight(nb_cuda *ctx, int32_t wtype, const void *src, int64_t n_out,
                                                  int64_t n_in, void *d_dst) {
    if (nb_status b = nb_cuda_use(ctx)) return b;
    NB_CUDA_REQUIRE(ctx, src != nullptr && d_dst != nullptr, "nb_cuda_upload_weight: null pointer");
    NB_CUDA_REQUIRE(ctx, !ctx->capturing, "nb_cuda_upload_weight: not allowed while a graph is being captured");
    if (block_size(wtype) == 0) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "nb_cuda_upload_weight: type %d", wtype);
    Layout L;
    NB_CUDA_REQUIRE(ctx, layout_of(wtype, n_out, n_in, &L),
                    "nb_cuda_upload_weight: bad shape %lld x %lld for type %d", (long long) n_out, (long long) n_in, wtype);
    NB_CUDA_REQUIRE(ctx, ((uintptr_t) d_dst & 15) == 0, "nb_cuda_upload_weight: destination not 16-byte aligned");
    const int64_t raw_row = n_in / block_size(wtype) * block_bytes(wtype);
    uint8_t *dst = (uint8_t *) d_dst;
    nb_status s = nb_cuda_memset(ctx, dst, 0, L.total); // the padding of float rows and of the planes reads as 0
    if (s != NB_OK) return s;
    if (is_float_type(wtype) && raw_row == L.row[0]) return nb_cuda_upload(ctx, dst, src, raw_row * n_out);

    // Through a temporary buffer: a chunk of whole rows, then a pitched copy (float types) or the repack kernel.
    const int64_t chunk_bytes = (int64_t) 32 << 20;
    int64_t rows_per_chunk = chunk_bytes / raw_row;
    if (rows_per_chunk < 1) rows_per_chunk = 1;
    if (rows_per_chunk > n_out) rows_per_chunk = n_out;
    void *tmp = nullptr;
    s = nb_cuda_check(ctx, cudaMalloc(&tmp, (size_t) (rows_per_chunk * raw_row)), "nb_cuda_upload_weight: scratch");
    if (s != NB_OK) return s;
    for (int64_t r0 = 0; r0 < n_out && s == NB_OK; r0 += rows_per_chunk) {
        int64_t rows = n_out - r0 < rows_per_chunk ? n_out - r0 : rows_per_chunk;
        // nb_cuda_upload returns when its copies are done; the kernel below is on the same stream, so the next
        // chunk's upload is ordered after it.
        s = nb_cuda_upload(ctx, tmp, (const uint8_t *) src + r0 * raw_row, rows * raw_row);
        if (s != NB_OK) break;
        if (is_float_type(wtype)) {
            s = nb_cuda_check(ctx, cudaMemcpy2DAsync(dst + L.off[0] + r0 * L.row[0], (size_t) L.row[0], tmp,
                                                     (size_t) raw_row, (size_t) raw_row, (size_t) rows,
                                                     cudaMemcpyDeviceToDevice, ctx->stream),
                              "nb_cuda_upload_weight: copy");
        } else {
            int64_t bpr = n_in / block_size(wtype), n = rows * bpr;
            dispatch(wtype, [&](auto tc) {
                constexpr int T = decltype(tc)::value;
                if constexpr (!is_float_type(T)) {
                    repack_kernel<T><<<(unsigned) ((n + 255) / 256), 256, 0, ctx->stream>>>(
                        (const uint8_t *) tmp, rows, bpr, r0, L, dst);
                    s = nb_cuda_launched(ctx, "repack");
                }
            });
        }
        if (s == NB_OK) s = nb_cuda_check(ctx, cudaStreamSynchronize(ctx->stream), "nb_cuda_upload_weight");
    }
    cudaError_t e = cudaFree(tmp);
    if (s == NB_OK) s = nb_cuda_check(ctx, e, "nb_cuda_upload_weight: free scratch");
    return s;
}

extern "C" NB_API nb_status nb_cuda_matmul(nb_cuda *ctx, int32_t wtype, const void *d_w, int64_t n_out, int64_t n_in,
                                           const float *d_x, int64_t n_tok, float *d_y) {
    if (nb_status b = nb_cuda_use(ctx)) return b;
    Layout L;
    if (nb_status s = check_weight(ctx, "nb_cuda_matmul", wtype, d_w, n_out, n_in, &L)) return s;
    NB_CUDA_REQUIRE(ctx, d_x != nullptr && d_y != nullptr, "nb_cuda_matmul: null pointer");
    NB_CUDA_REQUIRE(ctx, n_tok >= 1, "nb_cuda_matmul: bad token count %lld", (long long) n_tok);
    NB_CUDA_REQUIRE(ctx, ((uintptr_t) d_x & 3) == 0 && ((uintptr_t) d_y & 3) == 0, "nb_cuda_matmul: misaligned x or y");
    // The previous call (an rmsnorm writing d_x) may have left d_x quantized in the scratch buffer: host-side record,
    // capture-safe (see struct nb_cuda).
    return matmul(ctx, wtype, (const uint8_t *) d_w, L, n_out, n_in, d_x, n_tok, d_y, (size_t) NB_CUDA_SCRATCH_BYTES,
                  nb_cuda_xq_ready(ctx, d_x, n_tok, n_in));
}

extern "C" NB_API nb_status nb_cuda_matmul_shared_input(nb_cuda *ctx, int32_t n_w, const int32_t *wtypes,
                                                        const void *const *d_ws, const int64_t *n_outs, int64_t n_in,
                                                        const float *d_x, int64_t n_tok, float *const *d_ys) {
    static const char *fn = "nb_cuda_matmul_shared_input";
    if (nb_status b = nb_cuda_use(ctx)) return b;
    NB_CUDA_REQUIRE(ctx, n_w >= 1 && n_w <= 4, "%s: n_w %d not in [1, 4]", fn, n_w);
    NB_CUDA_REQUIRE(ctx, wtypes != nullptr && d_ws != nullptr && n_outs != nullptr && d_ys != nullptr && d_x != nullptr,
                    "%s: null pointer", fn);
    NB_CUDA_REQUIRE(ctx, n_tok >= 1, "%s: bad token count %lld", fn, (long long) n_tok);
    NB_CUDA_REQUIRE(ctx, ((uintptr_t) d_x & 3) == 0, "%s: misaligned x", fn);
    Layout L[4];
    for (int j = 0; j < n_w; j++) {
        if (nb_status s = check_weight(ctx, fn, wtypes[j], d_ws[j], n_outs[j], n_in, &L[j])) return s;
        NB_CUDA_REQUIRE(ctx, d_ys[j] != nullptr && ((uintptr_t) d_ys[j] & 3) == 0, "%s: null or misaligned y", fn);
    }
    bool int_path = int_fits(n_in, n_tok);
    for (int j = 0; j < n_w && int_path; j++)
        dispatch(wtypes[j], [&](auto tc) { if constexpr (!has_int_path<decltype(tc)::value>()) int_path = false; });
    if (!int_path) { // the GEMMs (or float GEMVs) one weight at a time
        for (int j = 0; j < n_w; j++) {
            nb_status s = matmul(ctx, wtypes[j], (const uint8_t *) d_ws[j], L[j], n_outs[j], n_in, d_x, n_tok, d_ys[j]);
            if (s != NB_OK) return s;
        }
        return NB_OK;
    }
    // Integer kernels (gemv_int up to 8 tokens, else mmq): the activations quantized once (or by the previous call, an
    // rmsnorm writing d_x: host-side record, capture-safe, see struct nb_cuda), then one launch per distinct weight
    // type.
    const bool xvec = (n_in % 4) == 0 && ((uintptr_t) d_x & 15) == 0;
    nb_status s = nb_cuda_xq_ready(ctx, d_x, n_tok, n_in) ? NB_OK : quantize_activations(ctx, d_x, n_in, n_tok, xvec);
    bool done[4] = {false, false, false, false};
    for (int j = 0; j < n_w && s == NB_OK; j++) {
        if (done[j]) continue;
        MqJob job = {};
        for (int k = j; k < n_w; k++) {
            if (done[k] || wtypes[k] != wtypes[j]) continue;
            job.w[job.n_w] = (const uint8_t *) d_ws[k];
            job.L[job.n_w] = L[k];
            job.n_out[job.n_w] = n_outs[k];
            job.y[job.n_w] = d_ys[k];
            job.n_w++;
            done[k] = true;
        }
        dispatch(wtypes[j], [&](auto tc) {
            constexpr int T = decltype(tc)::value;
            if constexpr (has_int_path<T>()) {
                if (n_tok <= 8) s = launch_gemv_int<T>(ctx, job, false, n_in, n_tok);
                else s = launch_mmq<T>(ctx, job, false, n_in, n_tok);
            }
        });
    }
    return s;
}

extern "C" NB_API nb_status nb_cuda_matmul_swiglu(nb_cuda *ctx, int32_t wtype, const void *d_gate, const void *d_up,
                                                  int64_t n_out, int64_t n_in, const float *d_x, int64_t n_tok,
                                                  float *d_y) {
    static const char *fn = "nb_cuda_matmul_swiglu";
    if (nb_status b = nb_cuda_use(ctx)) return b;
    Layout L;
    if (nb_status s = check_weight(ctx, fn, wtype, d_gate, n_out, n_in, &L)) return s;
    NB_CUDA_REQUIRE(ctx, d_up != nullptr && ((uintptr_t) d_up & 15) == 0, "%s: null or misaligned up weight", fn);
    NB_CUDA_REQUIRE(ctx, d_x != nullptr && d_y != nullptr, "%s: null pointer", fn);
    NB_CUDA_REQUIRE(ctx, n_tok >= 1, "%s: bad token count %lld", fn, (long long) n_tok);
    NB_CUDA_REQUIRE(ctx, ((uintptr_t) d_x & 3) == 0 && ((uintptr_t) d_y & 3) == 0, "%s: misaligned x or y", fn);
    bool fused = false;
    nb_status s = NB_OK;
    if (int_fits(n_in, n_tok)) {
        dispatch(wtype, [&](auto tc) {
            constexpr int T = decltype(tc)::value;
            if constexpr (has_int_path<T>()) {
                fused = true;
                const bool xvec = (n_in % 4) == 0 && ((uintptr_t) d_x & 15) == 0;
                // Skipped when the previous call (an rmsnorm writing d_x) left d_x quantized in the scratch buffer:
                // host-side record, capture-safe (see struct nb_cuda).
                if (!nb_cuda_xq_ready(ctx, d_x, n_tok, n_in)) s = quantize_activations(ctx, d_x, n_in, n_tok, xvec);
                if (s != NB_OK) return;
                MqJob job = {};
                job.n_w = 2;
                job.w[0] = (const uint8_t *) d_gate;
                job.w[1] = (const uint8_t *) d_up;
                job.L[0] = job.L[1] = L;
                job.n_out[0] = job.n_out[1] = n_out;
                job.y[0] = job.y[1] = d_y;
                if (n_tok <= 8) s = launch_gemv_int<T>(ctx, job, true, n_in, n_tok);
                else s = launch_mmq<T>(ctx, job, true, n_in, n_tok);
            }
        });
    }
    if (fused) return s;
    // Unfused: G x and U x for a chunk of tokens into the scratch buffer, then silu(g) * u into y. The first part of
    // the scratch buffer is left to the matmuls for the chunk's f16 or int8 activations (and mmq's workspace).
    const int64_t per_tok = 2 * n_out * (int64_t) sizeof(float) + n_in * 2;
    int64_t chunk = (NB_CUDA_SCRATCH_BYTES - 256) / per_tok;
    if (chunk < 1) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "%s: n_out %lld too large", fn, (long long) n_out);
    const size_t x16_cap = (size_t) (chunk * n_in * 2 + 255) / 256 * 256;
    float *g = (float *) ((uint8_t *) ctx->scratch + x16_cap);
    for (int64_t t0 = 0; t0 < n_tok && s == NB_OK; t0 += chunk) {
        int64_t nt = n_tok - t0 < chunk ? n_tok - t0 : chunk;
        float *u = g + nt * n_out;
        s = matmul(ctx, wtype, (const uint8_t *) d_gate, L, n_out, n_in, d_x + t0 * n_in, nt, g, x16_cap);
        if (s == NB_OK) s = matmul(ctx, wtype, (const uint8_t *) d_up, L, n_out, n_in, d_x + t0 * n_in, nt, u, x16_cap);
        if (s == NB_OK) {
            int64_t n = nt * n_out, blocks = (n + kThreads - 1) / kThreads;
            int grid = (int) (blocks < 4096 ? blocks : 4096);
            swiglu_kernel<<<grid, kThreads, 0, ctx->stream>>>(g, u, n, d_y + t0 * n_out);
            s = nb_cuda_launched(ctx, "swiglu");
        }
    }
    return s;
}

extern "C" NB_API nb_status nb_cuda_embed(nb_cuda *ctx, int32_t wtype, const void *d_table, int64_t n_rows,
                                          int64_t n_cols, const int32_t *d_ids, int64_t n_ids, float *d_out) {
    if (nb_status b = nb_cuda_use(ctx)) return b;
    NB_CUDA_REQUIRE(ctx, d_table != nullptr && d_ids != nullptr && d_out != nullptr, "nb_cuda_embed: null pointer");
    NB_CUDA_REQUIRE(ctx, n_rows >= 1 && n_cols >= 1 && n_ids >= 0, "nb_cuda_embed: bad sizes");
    if (block_size(wtype) == 0) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "nb_cuda_embed: type %d", wtype);
    Layout L;
    NB_CUDA_REQUIRE(ctx, layout_of(wtype, n_rows, n_cols, &L), "nb_cuda_embed: n_cols %lld not a multiple of %d",
                    (long long) n_cols, block_size(wtype));
    NB_CUDA_REQUIRE(ctx, ((uintptr_t) d_table & 15) == 0, "nb_cuda_embed: table not 16-byte aligned");
    NB_CUDA_REQUIRE(ctx, n_ids <= 0x7FFFFFFF, "nb_cuda_embed: too many ids");
    if (n_ids == 0) return NB_OK;
    const bool ovec = (n_cols % 4) == 0 && ((uintptr_t) d_out & 15) == 0;
    nb_status s = NB_OK;
    dispatch(wtype, [&](auto tc) {
        constexpr int T = decltype(tc)::value;
        embed_kernel<T><<<(unsigned) n_ids, kThreads, 0, ctx->stream>>>((const uint8_t *) d_table, L, n_rows, n_cols,
                                                                        d_ids, d_out, ovec);
        s = nb_cuda_launched(ctx, "embed");
    });
    return s;
}
