// Weights on the device: upload (with repacking, see nb_cuda_quant.cuh), matmul and embedding lookup.
//
// matmul picks one of three kernels:
//  * gemv_int (Q4_0, Q8_0, Q4_K, Q6_K, IQ4_NL; n_tok <= 8): each block first quantizes the activations of up to 8
//    tokens to int8 blocks of 32 in shared memory (the ggml q8 idea: a 4-bit weight then costs 1/4 of a dp4a, and
//    shared-memory traffic per weight is 1 byte, not 4). Each warp then owns 4 rows at a time; lane l reads unit
//    k + l of each row (16-byte coalesced loads, 2 or 4 steps of 32 units in flight per row), turns each unit into int8
//    words once and reuses them for every token, and reuses each activation word for the 4 rows. One warp-shuffle
//    reduction per task. Blocks are persistent (grid = what fits on the device), so the activations are quantized once
//    per resident block, and the first weight batch is loaded before that staging so the two latencies overlap.
//  * gemv_float (F32, F16, BF16, NF4; n_tok <= 8): the same shape with f32 math and the activations read through L1.
//  * gemm (any type, n_tok > 8, or when the int8 activations of one token would not fit in shared memory): a
//    128 x BN x 64 tile per block of 8 warps, mma.sync m16n8k16 (f16 in, f32 accumulate). Each K step, every thread
//    loads one 32-weight unit and 16 or 32 activations into registers for the next tile while the tensor cores work on
//    the current one, then dequantizes/converts them to f16 into the other half of a double-buffered, XOR-swizzled
//    shared tile that ldmatrix reads without bank conflicts.
#include <stdint.h>
#include <type_traits>
#include "nb_cuda_internal.cuh"
#include "nb_cuda_quant.cuh"

using namespace nbq;

namespace {

constexpr int kThreads = 256; // every kernel here runs 8 warps per block
constexpr int kWarps = kThreads / 32;
constexpr int kRows = 4;      // rows per warp task in the GEMVs
// Steps of 32 units per row loaded before use in the GEMVs: 4 (a whole 4096-wide Q4_0 row in one round trip) for one
// token and a small unit, else 2, which keeps the kernel at <= ~128 registers (2 blocks per SM, 64 KB in flight).
template <int NT, class Raw> constexpr int depth() { return NT == 1 && sizeof(Raw) <= 20 ? 4 : 2; }

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
// Integer GEMV (see the top of the file). Shared memory, for each of NT tokens: plane A (int8 words 0-3 of every
// unit), plane B (words 4-7), then (dx, sx) per unit. Splitting a unit's 32 bytes over two planes makes the 16-byte
// reads of consecutive lanes contiguous, hence free of bank conflicts.

template <int NT>
__host__ __device__ inline size_t gemv_int_smem(int64_t units) { return (size_t) NT * units * (16 + 16 + 8); }

template <int T, int NT>
__global__ void __launch_bounds__(kThreads) gemv_int(const uint8_t *__restrict__ w, Layout L, int64_t n_out,
                                                     int64_t n_in, const float *__restrict__ x, int nt, bool xvec,
                                                     float *__restrict__ y) {
    using QT = Q<T>;
    using Raw = typename QT::Raw;
    constexpr int kDepth = depth<NT, Raw>();
    extern __shared__ uint4 smem[];
    const int U = (int) (n_in / 32);
    uint4 *xa = smem, *xb = smem + (size_t) NT * U;
    float2 *xs = reinterpret_cast<float2 *>(smem + (size_t) 2 * NT * U);
    const int lane = threadIdx.x & 31;
    const int64_t tasks = (n_out + kRows - 1) / kRows, stride = (int64_t) gridDim.x * kWarps;
    int64_t task = (int64_t) blockIdx.x * kWarps + (threadIdx.x >> 5);

    Raw raw[kDepth][kRows];
    auto load_batch = [&](int64_t tk, int k0) {
#pragma unroll
        for (int s = 0; s < kDepth; s++) {
            int u = k0 + s * 32 + lane;
#pragma unroll
            for (int r = 0; r < kRows; r++) {
                int64_t row = min(tk * kRows + r, n_out - 1); // rows past the end: read a valid row, drop the result
                if (u < U) raw[s][r] = QT::load(w, L, row, u);
            }
        }
    };
    if (task < tasks) load_batch(task, 0); // in flight while the activations are staged

    // Stage: 4 threads per unit, 8 activations each -> int8 words 2p (even positions) and 2p+1 (odd positions).
    const int total = NT * U * 4;
    for (int base = 0; base < total; base += kThreads) { // uniform trip count: the shuffles see full warps
        int c = base + threadIdx.x;
        bool ok = c < total;
        int t = ok ? c / (4 * U) : 0, rem = c - t * 4 * U, u = rem >> 2, part = rem & 3;
        float v[8];
        if (ok && t < nt) {
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
    __syncthreads();

    while (task < tasks) { // warp-uniform
        float acc[kRows][NT];
#pragma unroll
        for (int r = 0; r < kRows; r++)
#pragma unroll
            for (int t = 0; t < NT; t++) acc[r][t] = 0.0f;
        for (int k0 = 0; k0 < U; k0 += 32 * kDepth) {
            if (k0 > 0) load_batch(task, k0);
#pragma unroll
            for (int s = 0; s < kDepth; s++) {
                int u = k0 + s * 32 + lane;
                if (u >= U) continue;
                IntUnit iu[kRows];
#pragma unroll
                for (int r = 0; r < kRows; r++) QT::to_int(raw[s][r], iu[r]);
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    uint4 a = xa[t * U + u], b = xb[t * U + u];
                    float2 ds = xs[t * U + u];
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
                        float part = iu[r].s0 * (float) s0 + iu[r].s1 * (float) s1;
                        acc[r][t] = fmaf(ds.x, part, fmaf(-iu[r].m, ds.y, acc[r][t]));
                    }
                }
            }
        }
        const int64_t row0 = task * kRows;
        task += stride;
        if (task < tasks) load_batch(task, 0); // next task's first batch overlaps this reduction
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
                        float xv[V::CH];
                        load_x<V::CH>(x + (int64_t) t * n_in, v * V::VW + c * V::CH, n_in, xvec, xv);
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

// Blocks for a persistent GEMV: all that can be resident, but no more than there are tasks for.
template <class K>
int gemv_grid(nb_cuda *ctx, K kernel, size_t smem, int64_t n_out) {
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem) != cudaSuccess || per_sm < 1)
        per_sm = 1;
    int64_t want = ((n_out + kRows - 1) / kRows + kWarps - 1) / kWarps;
    int64_t have = (int64_t) per_sm * (ctx->sm_count > 0 ? ctx->sm_count : 1);
    return (int) (want < have ? want : have);
}

template <int T, int NT>
nb_status launch_gemv_int(nb_cuda *ctx, const uint8_t *w, const Layout &L, int64_t n_out, int64_t n_in,
                          const float *x, int64_t n_tok, bool xvec, float *y) {
    auto kernel = gemv_int<T, NT>;
    size_t smem = gemv_int_smem<NT>(n_in / 32);
    if (smem > 48 * 1024) {
        nb_status s = nb_cuda_check(ctx, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                              (int) smem), "gemv_int: shared memory");
        if (s != NB_OK) return s;
    }
    int grid = gemv_grid(ctx, kernel, smem, n_out);
    for (int64_t t0 = 0; t0 < n_tok; t0 += NT) {
        int nt = (int) (n_tok - t0 < NT ? n_tok - t0 : NT);
        kernel<<<grid, kThreads, smem, ctx->stream>>>(w, L, n_out, n_in, x + t0 * n_in, nt, xvec, y + t0 * n_out);
        nb_status s = nb_cuda_launched(ctx, "gemv_int");
        if (s != NB_OK) return s;
    }
    return NB_OK;
}

template <int T, int NT>
nb_status launch_gemv_float(nb_cuda *ctx, const uint8_t *w, const Layout &L, int64_t n_out, int64_t n_in,
                            const float *x, int64_t n_tok, bool xvec, float *y) {
    auto kernel = gemv_float<T, NT>;
    int grid = gemv_grid(ctx, kernel, 0, n_out);
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
    nb_status s = nb_cuda_check(ctx, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                          (int) smem), "gemm: shared memory");
    if (s != NB_OK) return s;
    int64_t gy = (n_tok + BN - 1) / BN, gx = (n_out + BM - 1) / BM;
    if (gy > 65535 || gx > 0x7FFFFFFF) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "nb_cuda_matmul: too many tokens or rows");
    kernel<<<dim3((unsigned) gx, (unsigned) gy), kThreads, smem, ctx->stream>>>(w, L, n_out, n_in, x, n_tok, xvec, y);
    return nb_cuda_launched(ctx, "gemm");
}

// Largest tokens-per-pass (8, 4, 2, 1) whose int8 activations fit in the shared memory a block may use; 0 if none.
int gemv_int_tokens(nb_cuda *ctx, int64_t n_in, int64_t n_tok) {
    int optin = 48 * 1024;
    cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, ctx->device);
    int want = n_tok <= 1 ? 1 : n_tok <= 2 ? 2 : n_tok <= 4 ? 4 : 8;
    for (int nt = want; nt >= 1; nt /= 2)
        if (gemv_int_smem<1>(n_in / 32) * nt <= (size_t) optin) return nt;
    return 0;
}

// Makes the context's device current: the caller's thread may have used another device since.
nb_status bind(nb_cuda *ctx) { return nb_cuda_check(ctx, cudaSetDevice(ctx->device), "cudaSetDevice"); }

} // namespace

extern "C" NB_API int64_t nb_cuda_weight_bytes(int32_t wtype, int64_t n_out, int64_t n_in) {
    Layout L;
    return layout_of(wtype, n_out, n_in, &L) ? L.total : -1;
}

extern "C" NB_API nb_status nb_cuda_upload_weight(nb_cuda *ctx, int32_t wtype, const void *src, int64_t n_out,
                                                  int64_t n_in, void *d_dst) {
    if (ctx == nullptr) return NB_ERR_ARGUMENT;
    NB_CUDA_REQUIRE(ctx, src != nullptr && d_dst != nullptr, "nb_cuda_upload_weight: null pointer");
    NB_CUDA_REQUIRE(ctx, !ctx->capturing, "nb_cuda_upload_weight: not allowed while a graph is being captured");
    if (block_size(wtype) == 0) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "nb_cuda_upload_weight: type %d", wtype);
    Layout L;
    NB_CUDA_REQUIRE(ctx, layout_of(wtype, n_out, n_in, &L),
                    "nb_cuda_upload_weight: bad shape %lld x %lld for type %d", (long long) n_out, (long long) n_in, wtype);
    NB_CUDA_REQUIRE(ctx, ((uintptr_t) d_dst & 15) == 0, "nb_cuda_upload_weight: destination not 16-byte aligned");
    if (nb_status b = bind(ctx)) return b;
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
    if (ctx == nullptr) return NB_ERR_ARGUMENT;
    NB_CUDA_REQUIRE(ctx, d_w != nullptr && d_x != nullptr && d_y != nullptr, "nb_cuda_matmul: null pointer");
    NB_CUDA_REQUIRE(ctx, n_out >= 1 && n_in >= 1 && n_tok >= 1, "nb_cuda_matmul: bad sizes %lld x %lld, %lld tokens",
                    (long long) n_out, (long long) n_in, (long long) n_tok);
    if (block_size(wtype) == 0) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "nb_cuda_matmul: type %d", wtype);
    Layout L;
    NB_CUDA_REQUIRE(ctx, layout_of(wtype, n_out, n_in, &L), "nb_cuda_matmul: n_in %lld not a multiple of %d",
                    (long long) n_in, block_size(wtype));
    NB_CUDA_REQUIRE(ctx, ((uintptr_t) d_w & 15) == 0, "nb_cuda_matmul: weight not 16-byte aligned");
    NB_CUDA_REQUIRE(ctx, ((uintptr_t) d_x & 3) == 0 && ((uintptr_t) d_y & 3) == 0, "nb_cuda_matmul: misaligned x or y");
    const uint8_t *w = (const uint8_t *) d_w;
    const bool xvec = (n_in % 4) == 0 && ((uintptr_t) d_x & 15) == 0; // every activation row 16-byte aligned
    if (nb_status b = bind(ctx)) return b;
    nb_status s = NB_OK;
    dispatch(wtype, [&](auto tc) {
        constexpr int T = decltype(tc)::value;
        if (n_tok <= 8) {
            if constexpr (has_int_path<T>()) {
                switch (gemv_int_tokens(ctx, n_in, n_tok)) {
                    case 1: s = launch_gemv_int<T, 1>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y); return;
                    case 2: s = launch_gemv_int<T, 2>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y); return;
                    case 4: s = launch_gemv_int<T, 4>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y); return;
                    case 8: s = launch_gemv_int<T, 8>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y); return;
                    default: break; // rows too long for shared memory: the GEMM handles any shape
                }
            } else {
                if (n_tok <= 1) s = launch_gemv_float<T, 1>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y);
                else if (n_tok <= 2) s = launch_gemv_float<T, 2>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y);
                else if (n_tok <= 4) s = launch_gemv_float<T, 4>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y);
                else s = launch_gemv_float<T, 8>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y);
                return;
            }
        }
        if (n_tok <= 64) s = launch_gemm<T, 64>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y);
        else s = launch_gemm<T, 128>(ctx, w, L, n_out, n_in, d_x, n_tok, xvec, d_y);
    });
    return s;
}

extern "C" NB_API nb_status nb_cuda_embed(nb_cuda *ctx, int32_t wtype, const void *d_table, int64_t n_rows,
                                          int64_t n_cols, const int32_t *d_ids, int64_t n_ids, float *d_out) {
    if (ctx == nullptr) return NB_ERR_ARGUMENT;
    NB_CUDA_REQUIRE(ctx, d_table != nullptr && d_ids != nullptr && d_out != nullptr, "nb_cuda_embed: null pointer");
    NB_CUDA_REQUIRE(ctx, n_rows >= 1 && n_cols >= 1 && n_ids >= 0, "nb_cuda_embed: bad sizes");
    if (block_size(wtype) == 0) return nb_cuda_fail(ctx, NB_ERR_UNSUPPORTED, "nb_cuda_embed: type %d", wtype);
    Layout L;
    NB_CUDA_REQUIRE(ctx, layout_of(wtype, n_rows, n_cols, &L), "nb_cuda_embed: n_cols %lld not a multiple of %d",
                    (long long) n_cols, block_size(wtype));
    NB_CUDA_REQUIRE(ctx, ((uintptr_t) d_table & 15) == 0, "nb_cuda_embed: table not 16-byte aligned");
    NB_CUDA_REQUIRE(ctx, n_ids <= 0x7FFFFFFF, "nb_cuda_embed: too many ids");
    if (n_ids == 0) return NB_OK;
    if (nb_status b = bind(ctx)) return b;
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
