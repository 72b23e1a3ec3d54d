// Causal attention with grouped query heads over an f16 KV cache (nb_cuda_attention).
//
// Main path (head_dim 64 or 128, 16-byte aligned cache rows): a tensor-core kernel (mma.sync m16n8k16, f16
// operands, f32 accumulation) in the flash-attention style. For kv head h the query "rows" are the pairs
// (token t, query head h*G + g), flattened as r = t*G + g, so that every key/value tile staged in shared
// memory serves all G query heads of the group (and several tokens) at once. Q is pre-scaled by
// scale*log2(e) and rounded to f16 into registers; scores and the running max/sum are f32 in base 2.
//
//   * Few rows (n_tok*G <= 16, the decode case): one warp-row of 16 query rows, the four warps of a
//     block splitting each 64-key tile between them (16 keys each), their partial results merged in
//     shared memory at the end.
//   * More rows: four warps of 16 query rows each share every 64-key tile.
//
// Split-K (flash-decoding) when n_tok <= NB_ATT_SPLIT_MAX_TOK: the cache positions 0..n_kv-1 are cut into
// chunks of NB_ATT_SPLIT_KEYS; grid x runs over every chunk of n_kv (the filled length is only known on
// the device), and a block whose chunk starts past the largest position of its rows exits at once. Each
// block writes (max, sum, unnormalised output) per row to d_work; a combine kernel merges, per (token,
// query head), only the chunks up to that token's position. Otherwise a single pass writes d_out directly.
//
// Fallback (other head_dim, unaligned strides or pointers): one warp per (token, query head), f32 online
// softmax over the keys one by one; correct for every valid input, not fast.
#include <math.h>
#include <stdint.h>
#include "nb_cuda_internal.cuh"

#define NB_ATT_SPLIT_MAX_TOK 4 /* n_tok up to this uses split-K */
#define NB_ATT_SPLIT_KEYS 128  /* cache positions per split (a multiple of NB_ATT_TILE) */
#define NB_ATT_TILE 64         /* keys per shared-memory tile */

namespace {

constexpr float LOG2E = 1.4426950408889634f;
constexpr int ATT_THREADS = 128;
static_assert(NB_ATT_SPLIT_KEYS % NB_ATT_TILE == 0, "split must be whole tiles");

struct AttArgs {
    const float *q;
    const int32_t *pos;
    const __half *k, *v;
    float *out;
    float *work_o;   // [n_tok*n_heads][n_splits][head_dim] unnormalised partial outputs
    float2 *work_ml; // [n_tok*n_heads][n_splits] (max, sum) in base 2
    int n_tok, n_heads, group, n_kv, n_splits, head_dim;
    int64_t kv_stride;
    float qscale; // scale * log2(e)
};

int64_t splits_for(int64_t n_tok, int64_t n_kv) {
    if (n_tok > NB_ATT_SPLIT_MAX_TOK) return 1;
    int64_t s = (n_kv + NB_ATT_SPLIT_KEYS - 1) / NB_ATT_SPLIT_KEYS;
    return s > 1 ? s : 1;
}

// ------------------------------------------------------------------------------- PTX helpers

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16-byte global -> shared copy, bypassing L1; zero-fills the destination when !valid. */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool valid) {
    const int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* Waits until at most N of this thread's committed groups are still in flight. */
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3,
                                                  uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

/* c += a * b, m16n8k16, f16 inputs, f32 accumulators. */
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi); // .x (low 16 bits) = lo: the lower column of the fragment pair
    return *reinterpret_cast<uint32_t *>(&h);
}

/* Sum of the two halves of a packed pair, as f32 (the f16-rounded probabilities the mma will use). */
__device__ __forceinline__ float half2_sum(uint32_t u) {
    __half2 h = *reinterpret_cast<__half2 *>(&u);
    return __low2float(h) + __high2float(h);
}

// ------------------------------------------------------------------------------- tensor-core kernel

/* grid (x: split, y: kv head, z: row tile, heaviest causal tiles first); ATT_THREADS threads.
 * WR warps along query rows (16 rows each), WK warps along the keys of a tile; WR * WK = 4. */
template <int D, int WR, int WK>
__global__ void __launch_bounds__(ATT_THREADS) att_mma_kernel(const AttArgs a) {
    constexpr int RT = 16 * WR;      // query rows per block
    constexpr int KT = NB_ATT_TILE;  // keys per tile
    constexpr int KW = KT / WK;      // keys per warp per tile
    constexpr int NT = KW / 8;       // score n-tiles per warp
    constexpr int KS = D / 16;       // k-steps over head_dim
    constexpr int DT = D / 8;        // output n-tiles
    constexpr int LD = D + 8;        // shared row stride in halves: 16 bytes of padding, conflict-free ldmatrix
    constexpr int CPR = D / 8;       // 16-byte chunks per cache row
    static_assert(WR * WK * 32 == ATT_THREADS, "four warps");
    static_assert(KW % 16 == 0 && D % 16 == 0, "tile shapes");
    static_assert(WK == 1 || (size_t)WK * 16 * (D + 2) * 4 <= (size_t)2 * KT * LD * 2, "combine fits in smem");

    __shared__ __align__(16) __half sKV[2 * KT * LD]; // K tile then V tile; reused by the cross-warp combine
    __shared__ int sPos[RT];
    __half *sK = sKV, *sV = sKV + KT * LD;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wr = warp / WK, wk = warp % WK;
    const int split = blockIdx.x, h = blockIdx.y;
    const int rt = gridDim.z - 1 - blockIdx.z;
    const int G = a.group, n_rows = a.n_tok * G, row_base = rt * RT;

    if (tid < RT) {
        const int r = row_base + tid;
        int p = -1;
        if (r < n_rows) {
            p = a.pos[r / G];
            p = p < a.n_kv - 1 ? p : a.n_kv - 1;
            p = p < 0 ? -1 : p;
        }
        sPos[tid] = p;
    }
    __syncthreads();
    int pmax = -1;
#pragma unroll 8
    for (int i = 0; i < RT; i++) pmax = max(pmax, sPos[i]);
    const int kend = pmax + 1; // keys [0, kend) are wanted by some row of this block
    int kbeg = 0, klim = kend;
    if (a.n_splits > 1) {
        kbeg = split * NB_ATT_SPLIT_KEYS;
        if (kbeg >= kend) return; // whole block: nothing of this chunk is visible to its rows
        klim = min(kbeg + NB_ATT_SPLIT_KEYS, kend);
    }

    const int lr = wr * 16 + (lane >> 2); // this lane's rows: lr and lr + 8
    const int pos_lo = sPos[lr], pos_hi = sPos[lr + 8];

    // Q fragments (A operand, row-major 16 x D), pre-scaled, f16.
    uint32_t qf[KS][4];
    {
        const int r_lo = row_base + lr, r_hi = r_lo + 8;
        const float *q_lo = r_lo < n_rows
                                ? a.q + ((int64_t)(r_lo / G) * a.n_heads + (int64_t)h * G + r_lo % G) * D
                                : nullptr;
        const float *q_hi = r_hi < n_rows
                                ? a.q + ((int64_t)(r_hi / G) * a.n_heads + (int64_t)h * G + r_hi % G) * D
                                : nullptr;
        const float s = a.qscale;
#pragma unroll
        for (int ks = 0; ks < KS; ks++) {
            const int c = ks * 16 + (lane & 3) * 2;
            float2 x0 = make_float2(0.f, 0.f), x1 = x0, x2 = x0, x3 = x0;
            if (q_lo) {
                x0 = *reinterpret_cast<const float2 *>(q_lo + c);
                x2 = *reinterpret_cast<const float2 *>(q_lo + c + 8);
            }
            if (q_hi) {
                x1 = *reinterpret_cast<const float2 *>(q_hi + c);
                x3 = *reinterpret_cast<const float2 *>(q_hi + c + 8);
            }
            qf[ks][0] = pack_half2(x0.x * s, x0.y * s);
            qf[ks][1] = pack_half2(x1.x * s, x1.y * s);
            qf[ks][2] = pack_half2(x2.x * s, x2.y * s);
            qf[ks][3] = pack_half2(x3.x * s, x3.y * s);
        }
    }

    float o[DT][4];
#pragma unroll
    for (int i = 0; i < DT; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f; // l: this lane's share of the row sum

    const __half *kbase = a.k + (int64_t)h * D, *vbase = a.v + (int64_t)h * D;
    const int kw0 = wk * KW; // this warp's keys within a tile
    for (int j0 = kbeg; j0 < klim; j0 += KT) {
        __syncthreads(); // the previous tile is consumed
        // K and V in two groups: the scores are computed while V is still arriving.
        for (int c = tid; c < KT * CPR; c += ATT_THREADS) {
            const int r = c / CPR, cc = c % CPR;
            const int j = j0 + r;
            const bool ok = j < klim; // past it: zeros (never read unwritten cache rows, NaN * 0 = NaN)
            cp_async16(smem_addr(sK + r * LD + cc * 8), kbase + (int64_t)(ok ? j : 0) * a.kv_stride + cc * 8, ok);
        }
        cp_async_commit();
        for (int c = tid; c < KT * CPR; c += ATT_THREADS) {
            const int r = c / CPR, cc = c % CPR;
            const int j = j0 + r;
            const bool ok = j < klim;
            cp_async16(smem_addr(sV + r * LD + cc * 8), vbase + (int64_t)(ok ? j : 0) * a.kv_stride + cc * 8, ok);
        }
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();

        const bool active = j0 + kw0 < klim; // warp-uniform: false when this warp's keys are all past the end
        uint32_t pf[NT / 2][4];              // P as A fragments, 16 keys per k-step
        if (active) {
            // S = Q K^T for 16 rows x KW keys.
            float s[NT][4];
#pragma unroll
            for (int i = 0; i < NT; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
            {
                const int mi = lane >> 3;
                const int krow = kw0 + (lane & 7) + ((mi >> 1) << 3);
                const int kcol = (mi & 1) << 3;
#pragma unroll
                for (int ks = 0; ks < KS; ks++) {
#pragma unroll
                    for (int np = 0; np < NT / 2; np++) {
                        uint32_t b0, b1, b2, b3;
                        ldmatrix_x4(b0, b1, b2, b3, smem_addr(sK + (krow + np * 16) * LD + ks * 16 + kcol));
                        mma16816(s[2 * np], qf[ks], b0, b1);
                        mma16816(s[2 * np + 1], qf[ks], b2, b3);
                    }
                }
            }

            // Causal / length mask and online softmax (base 2).
            float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int key = j0 + kw0 + nt * 8 + (lane & 3) * 2 + e;
                    const bool in = key < klim;
                    if (!(in && key <= pos_lo)) s[nt][e] = -INFINITY;
                    if (!(in && key <= pos_hi)) s[nt][2 + e] = -INFINITY;
                    mx_lo = fmaxf(mx_lo, s[nt][e]);
                    mx_hi = fmaxf(mx_hi, s[nt][2 + e]);
                }
            }
            mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 1));
            mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 2));
            mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 1));
            mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 2));
            const float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
            const float mu_lo = mn_lo == -INFINITY ? 0.0f : mn_lo, mu_hi = mn_hi == -INFINITY ? 0.0f : mn_hi;
            const float al_lo = exp2f(m_lo - mu_lo), al_hi = exp2f(m_hi - mu_hi);
            m_lo = mn_lo;
            m_hi = mn_hi;
            l_lo *= al_lo;
            l_hi *= al_hi;
#pragma unroll
            for (int i = 0; i < DT; i++) {
                o[i][0] *= al_lo;
                o[i][1] *= al_lo;
                o[i][2] *= al_hi;
                o[i][3] *= al_hi;
            }
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                const uint32_t lo = pack_half2(exp2f(s[nt][0] - mu_lo), exp2f(s[nt][1] - mu_lo));
                const uint32_t hi = pack_half2(exp2f(s[nt][2] - mu_hi), exp2f(s[nt][3] - mu_hi));
                l_lo += half2_sum(lo);
                l_hi += half2_sum(hi);
                pf[nt >> 1][(nt & 1) * 2] = lo;
                pf[nt >> 1][(nt & 1) * 2 + 1] = hi;
            }
        }
        cp_async_wait<0>();
        __syncthreads();
        if (!active) continue;

        // O += P V.
        {
            const int mi = lane >> 3;
            const int vrow = kw0 + (lane & 7) + ((mi & 1) << 3);
            const int vcol = (mi >> 1) << 3;
#pragma unroll
            for (int kk = 0; kk < NT / 2; kk++) {
#pragma unroll
                for (int dp = 0; dp < DT / 2; dp++) {
                    uint32_t b0, b1, b2, b3;
                    ldmatrix_x4_trans(b0, b1, b2, b3, smem_addr(sV + (vrow + kk * 16) * LD + dp * 16 + vcol));
                    mma16816(o[2 * dp], pf[kk], b0, b1);
                    mma16816(o[2 * dp + 1], pf[kk], b2, b3);
                }
            }
        }
    }

    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 1);
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 2);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 1);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 2);

    const int H = a.n_heads, ns = a.n_splits;
    if (WK == 1) {
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int gr = row_base + lr + hf * 8;
            if (gr >= n_rows) continue;
            const int64_t orow = (int64_t)(gr / G) * H + (int64_t)h * G + gr % G;
            const float l = hf ? l_hi : l_lo, m = hf ? m_hi : m_lo;
            if (ns == 1) {
                const float inv = l > 0.0f ? 1.0f / l : 0.0f;
                float *dst = a.out + orow * D + (lane & 3) * 2;
#pragma unroll
                for (int i = 0; i < DT; i++)
                    *reinterpret_cast<float2 *>(dst + i * 8) = make_float2(o[i][2 * hf] * inv, o[i][2 * hf + 1] * inv);
            } else {
                const int64_t pidx = orow * ns + split;
                float *dst = a.work_o + pidx * D + (lane & 3) * 2;
#pragma unroll
                for (int i = 0; i < DT; i++)
                    *reinterpret_cast<float2 *>(dst + i * 8) = make_float2(o[i][2 * hf], o[i][2 * hf + 1]);
                if ((lane & 3) == 0) a.work_ml[pidx] = make_float2(m, l);
            }
        }
    } else {
        // Merge the WK warps (same 16 rows, different keys) through shared memory.
        float *sO = reinterpret_cast<float *>(sKV); // [WK][16][D]
        float *sM = sO + WK * 16 * D, *sL = sM + WK * 16;
        __syncthreads();
        const int r0 = lane >> 2;
#pragma unroll
        for (int i = 0; i < DT; i++) {
            const int c = i * 8 + (lane & 3) * 2;
            *reinterpret_cast<float2 *>(sO + (wk * 16 + r0) * D + c) = make_float2(o[i][0], o[i][1]);
            *reinterpret_cast<float2 *>(sO + (wk * 16 + r0 + 8) * D + c) = make_float2(o[i][2], o[i][3]);
        }
        if ((lane & 3) == 0) {
            sM[wk * 16 + r0] = m_lo;
            sM[wk * 16 + r0 + 8] = m_hi;
            sL[wk * 16 + r0] = l_lo;
            sL[wk * 16 + r0 + 8] = l_hi;
        }
        __syncthreads();
        for (int i = tid; i < 16 * D; i += ATT_THREADS) {
            const int r = i / D, d = i % D;
            const int gr = row_base + r;
            if (gr >= n_rows) continue;
            float M = -INFINITY;
#pragma unroll
            for (int w = 0; w < WK; w++) M = fmaxf(M, sM[w * 16 + r]);
            const float Mu = M == -INFINITY ? 0.0f : M;
            float L = 0.0f, acc = 0.0f;
#pragma unroll
            for (int w = 0; w < WK; w++) {
                const float sc = exp2f(sM[w * 16 + r] - Mu);
                L += sL[w * 16 + r] * sc;
                acc += sO[(w * 16 + r) * D + d] * sc;
            }
            const int64_t orow = (int64_t)(gr / G) * H + (int64_t)h * G + gr % G;
            if (ns == 1) {
                a.out[orow * D + d] = L > 0.0f ? acc / L : 0.0f;
            } else {
                const int64_t pidx = orow * ns + split;
                a.work_o[pidx * D + d] = acc;
                if (d == 0) a.work_ml[pidx] = make_float2(M, L);
            }
        }
    }
}

/* One block per (token, query head): merges the split partials of the chunks up to the token's position. */
__global__ void __launch_bounds__(64) att_combine_kernel(const AttArgs a) {
    const int64_t idx = blockIdx.x; // t * n_heads + query head
    const int t = (int)(idx / a.n_heads), D = a.head_dim, ns = a.n_splits;
    int p = a.pos[t];
    p = p < a.n_kv - 1 ? p : a.n_kv - 1;
    float *o = a.out + idx * D;
    if (p < 0) {
        for (int d = threadIdx.x; d < D; d += blockDim.x) o[d] = 0.0f;
        return;
    }
    const int used = p / NB_ATT_SPLIT_KEYS + 1; // <= ns since p < n_kv
    const float2 *ml = a.work_ml + idx * ns;
    const float *wo = a.work_o + idx * ns * D;
    float M = -INFINITY;
    for (int s = 0; s < used; s++) M = fmaxf(M, ml[s].x);
    const float Mu = M == -INFINITY ? 0.0f : M;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float L = 0.0f, acc = 0.0f;
        for (int s = 0; s < used; s++) {
            const float2 e = ml[s];
            const float sc = exp2f(e.x - Mu);
            L += e.y * sc;
            acc += wo[(int64_t)s * D + d] * sc;
        }
        o[d] = L > 0.0f ? acc / L : 0.0f;
    }
}

// ------------------------------------------------------------------------------- fallback kernel

/* One warp per (token, query head); lane owns dims lane + 32 i. f32 throughout, any alignment. */
__global__ void __launch_bounds__(128) att_simple_kernel(const AttArgs a) {
    const int64_t idx = (int64_t)blockIdx.x * 4 + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (idx >= (int64_t)a.n_tok * a.n_heads) return;
    const int t = (int)(idx / a.n_heads), qh = (int)(idx % a.n_heads), h = qh / a.group, D = a.head_dim;
    const int nd = D >> 5;
    int p = a.pos[t];
    p = p < a.n_kv - 1 ? p : a.n_kv - 1;
    const float *qr = a.q + idx * D;
    float q[8], acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        q[i] = i < nd ? qr[lane + 32 * i] * a.qscale : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j <= p; j++) {
        const __half *kr = a.k + (int64_t)j * a.kv_stride + (int64_t)h * D;
        const __half *vr = a.v + (int64_t)j * a.kv_stride + (int64_t)h * D;
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (i < nd) s += q[i] * __half2float(kr[lane + 32 * i]);
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        const float mn = fmaxf(m, s);
        const float al = exp2f(m - mn), pe = exp2f(s - mn);
        l = l * al + pe;
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (i < nd) acc[i] = acc[i] * al + pe * __half2float(vr[lane + 32 * i]);
        m = mn;
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float *orow = a.out + idx * D;
#pragma unroll
    for (int i = 0; i < 8; i++)
        if (i < nd) orow[lane + 32 * i] = acc[i] * inv;
}

template <int D>
void launch_mma(const AttArgs &a, int64_t n_kv_heads, cudaStream_t stream) {
    const int64_t rows = (int64_t)a.n_tok * a.group;
    if (rows <= 16) {
        const dim3 grid((unsigned)a.n_splits, (unsigned)n_kv_heads, 1);
        att_mma_kernel<D, 1, 4><<<grid, ATT_THREADS, 0, stream>>>(a);
    } else {
        const dim3 grid((unsigned)a.n_splits, (unsigned)n_kv_heads, (unsigned)((rows + 63) / 64));
        att_mma_kernel<D, 4, 1><<<grid, ATT_THREADS, 0, stream>>>(a);
    }
}

bool aligned(const void *p, uintptr_t n) { return ((uintptr_t)p & (n - 1)) == 0; }

} // namespace

extern "C" NB_API int64_t nb_cuda_attention_work_bytes(int64_t n_tok, int64_t n_heads, int64_t head_dim,
                                                       int64_t n_kv) {
    if (n_tok < 0 || n_heads <= 0 || head_dim <= 0 || n_kv < 0) return -1;
    const int64_t ns = splits_for(n_tok, n_kv);
    if (ns <= 1) return 0;
    // n_tok <= NB_ATT_SPLIT_MAX_TOK here; head_dim and n_heads are checked again by nb_cuda_attention.
    if (head_dim > 4096 || n_heads > ((int64_t)1 << 24) || ns > ((int64_t)1 << 26)) return -1;
    return n_tok * n_heads * ns * (head_dim * 4 + 8);
}

extern "C" NB_API nb_status nb_cuda_attention(nb_cuda *ctx, const float *d_q, int64_t n_tok, const int32_t *d_pos,
                                              int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                              const uint16_t *d_k, const uint16_t *d_v, int64_t n_kv,
                                              int64_t kv_stride, float scale, void *d_work, int64_t work_bytes,
                                              float *d_out) {
    if (!ctx) return NB_ERR_ARGUMENT;
    ctx->error[0] = 0;
    NB_CUDA_REQUIRE(ctx, d_q && d_pos && d_k && d_v && d_out, "nb_cuda_attention: null pointer");
    NB_CUDA_REQUIRE(ctx, n_tok >= 0 && n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0,
                    "nb_cuda_attention: bad heads (n_heads %lld, n_kv_heads %lld) or n_tok %lld", (long long)n_heads,
                    (long long)n_kv_heads, (long long)n_tok);
    NB_CUDA_REQUIRE(ctx, head_dim > 0 && head_dim <= 256 && head_dim % 32 == 0,
                    "nb_cuda_attention: head_dim %lld (must be a multiple of 32, <= 256)", (long long)head_dim);
    NB_CUDA_REQUIRE(ctx, n_kv >= 0 && n_kv <= 0x7fffffff && kv_stride >= n_kv_heads * head_dim &&
                             kv_stride <= ((int64_t)1 << 40) / (n_kv > 0 ? n_kv : 1),
                    "nb_cuda_attention: bad cache shape (n_kv %lld, kv_stride %lld)", (long long)n_kv,
                    (long long)kv_stride);
    NB_CUDA_REQUIRE(ctx, n_tok * n_heads <= 0x7fffffff && n_kv_heads <= 65535,
                    "nb_cuda_attention: too many tokens/heads (n_tok %lld, n_heads %lld)", (long long)n_tok,
                    (long long)n_heads);
    NB_CUDA_REQUIRE(ctx, isfinite(scale), "nb_cuda_attention: scale not finite");
    if (n_tok == 0) return NB_OK;
    const int64_t need = nb_cuda_attention_work_bytes(n_tok, n_heads, head_dim, n_kv);
    NB_CUDA_REQUIRE(ctx, need >= 0, "nb_cuda_attention: sizes too large");
    if (need > 0)
        NB_CUDA_REQUIRE(ctx, d_work && work_bytes >= need && aligned(d_work, 16),
                        "nb_cuda_attention: d_work must hold %lld bytes, 16-byte aligned (got %lld)", (long long)need,
                        (long long)work_bytes);
    if (n_kv == 0) // nothing visible: every output is zero
        return nb_cuda_check(ctx, cudaMemsetAsync(d_out, 0, (size_t)(n_tok * n_heads * head_dim) * 4, ctx->stream),
                             "nb_cuda_attention: memset");

    AttArgs a;
    a.q = d_q;
    a.pos = d_pos;
    a.k = reinterpret_cast<const __half *>(d_k);
    a.v = reinterpret_cast<const __half *>(d_v);
    a.out = d_out;
    a.n_tok = (int)n_tok;
    a.n_heads = (int)n_heads;
    a.group = (int)(n_heads / n_kv_heads);
    a.n_kv = (int)n_kv;
    a.head_dim = (int)head_dim;
    a.kv_stride = kv_stride;
    a.qscale = scale * LOG2E;

    const bool mma_ok = (head_dim == 64 || head_dim == 128) && kv_stride % 8 == 0 && aligned(d_k, 16) &&
                        aligned(d_v, 16) && aligned(d_q, 8) && aligned(d_out, 8) &&
                        (n_tok * (n_heads / n_kv_heads) + 63) / 64 <= 65535;
    if (!mma_ok) {
        a.n_splits = 1;
        a.work_o = nullptr;
        a.work_ml = nullptr;
        att_simple_kernel<<<(unsigned)((n_tok * n_heads + 3) / 4), 128, 0, ctx->stream>>>(a);
        return nb_cuda_launched(ctx, "nb_cuda_attention (fallback)");
    }
    a.n_splits = (int)splits_for(n_tok, n_kv);
    a.work_o = a.n_splits > 1 ? reinterpret_cast<float *>(d_work) : nullptr;
    a.work_ml = a.n_splits > 1
                    ? reinterpret_cast<float2 *>(reinterpret_cast<char *>(d_work) + n_tok * n_heads * a.n_splits * head_dim * 4)
                    : nullptr;
    if (head_dim == 64)
        launch_mma<64>(a, n_kv_heads, ctx->stream);
    else
        launch_mma<128>(a, n_kv_heads, ctx->stream);
    nb_status st = nb_cuda_launched(ctx, "nb_cuda_attention");
    if (st != NB_OK || a.n_splits == 1) return st;
    att_combine_kernel<<<(unsigned)(n_tok * n_heads), 64, 0, ctx->stream>>>(a);
    return nb_cuda_launched(ctx, "nb_cuda_attention (combine)");
}
