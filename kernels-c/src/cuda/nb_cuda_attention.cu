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
// Split-K (flash-decoding) when n_tok <= NB_ATT_SPLIT_MAX_TOK: the grid is fixed on the host (X splits per kv
// head and row tile, about two blocks per SM in all; graph replay means the filled length is only known on the
// device). The 64-key tiles below pmax + 1 (pmax read from d_pos) are dealt round-robin to the X splits, so a short
// context in a large cache costs one tile per active split, not a grid sized for the capacity; when they fit one
// tile, split 0 alone writes d_out and nothing is exchanged. Otherwise the active splits' partial results (max, sum,
// unnormalised output per row) are merged
//   * on sm_90 images: inside the kernel, the X blocks being one thread-block cluster: each block pushes its rows
//     into the shared memory of the block owning them (one cluster barrier), which merges and writes d_out;
//   * otherwise: through d_work and a combine kernel that reads only the active splits.
// The per-block instruction count is what bounds this kernel (four warps, one or two blocks per SM): each thread's
// copy addresses are computed once, full tiles copy without per-row checks, and the mask is skipped where every
// row sees every key of a warp's slice.
// More tokens: one block per 64-row tile covers all its keys and writes d_out directly (double-buffered tiles).
//
// With start rows (d_start, tokens of several sequences in one cache pool; the SEQ instantiations): a row tile never
// spans two tokens, since their keys may be of different sequences. Each token's G rows of a kv head get their own
// tile(s) (16 rows when G <= 16, else 64), whose keys start at row d_start[t] and end at the token's own position, so
// a block loads only its sequence's rows and short sequences cost few tiles. Nothing else changes: one token runs
// exactly the grid and split plan of the call without starts. Split-K is then allowed for any token count while the
// grid is small (about two blocks per SM, see plan_splits): e.g. 70B (8 kv heads) splits up to 16 tokens, 7B (32)
// only up to 4; larger decode batches already fill the GPU with one block per (kv head, token). In d_work the
// tokens x splits stay within NB_ATT_SPLIT_BUDGET, which bounds nb_cuda_attention_work_bytes for any batch.
//
// Fallback (other head_dim, unaligned strides or pointers): one warp per (token, query head), f32 online
// softmax over the keys one by one; correct for every valid input, not fast.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include "nb_cuda_internal.cuh"

#define NB_ATT_SPLIT_MAX_TOK 4 /* n_tok up to this uses split-K */
#define NB_ATT_MAX_SPLITS 64   /* splits per (kv head, row tile) through d_work */
#define NB_ATT_SPLIT_UNIT 16   /* a split's key range is a multiple of this many keys */
#define NB_ATT_TILE 64         /* keys per shared-memory tile */
#define NB_ATT_SPLIT_BUDGET 256 /* with d_start: tokens x splits through d_work at most (bounds d_work) */

namespace {

enum { MODE_DIRECT = 0, MODE_WORK = 1, MODE_CLUSTER = 2 };

constexpr float LOG2E = 1.4426950408889634f;
constexpr int ATT_THREADS = 128;

struct AttArgs {
    const float *q;
    const int32_t *pos;
    const __half *k, *v;
    float *out;
    float *work_o;   // MODE_WORK: [n_tok*n_heads][n_splits][head_dim] unnormalised partial outputs
    float2 *work_ml; // MODE_WORK: [n_tok*n_heads][n_splits] (max, sum) in base 2
    int n_tok, n_heads, group, n_kv, n_splits, head_dim;
    int rt_rows;     // query rows per block of the tensor-core kernel
    int64_t kv_stride;
    float qscale; // scale * log2(e)
    const int32_t *start; // per token, the cache row its sequence begins at (the SEQ kernels); nullptr: row 0
};

/* The most splits per (kv head, row tile) a call of n_tok tokens may write to d_work (1: it uses no d_work): one per
 * NB_ATT_SPLIT_UNIT keys of n_kv, at most NB_ATT_MAX_SPLITS; without starts (seq false) only up to the split-K token
 * count. With starts also at most one per key tile (plan_splits never makes more), and only as many as keep
 * n_tok x splits within NB_ATT_SPLIT_BUDGET (a power of two of splits: 64 up to NB_ATT_SPLIT_MAX_TOK tokens). */
int64_t work_splits(int64_t n_tok, int64_t n_kv, bool seq) {
    if (!seq && n_tok > NB_ATT_SPLIT_MAX_TOK) return 1;
    int64_t s = (n_kv + NB_ATT_SPLIT_UNIT - 1) / NB_ATT_SPLIT_UNIT;
    s = s < 1 ? 1 : s > NB_ATT_MAX_SPLITS ? NB_ATT_MAX_SPLITS : s;
    if (seq) {
        const int64_t tiles = (n_kv + NB_ATT_TILE - 1) / NB_ATT_TILE;
        int64_t cap = 1;
        while (cap * 2 * n_tok <= NB_ATT_SPLIT_BUDGET) cap *= 2;
        s = s < cap ? s : cap;
        s = s < tiles ? s : tiles < 1 ? 1 : tiles;
    }
    return s;
}

/* d_work bytes one call of n_tok tokens uses: per (token, query head) and split, D partial floats and (max, sum). */
int64_t call_work_bytes(int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t n_kv, bool seq) {
    const int64_t ns = work_splits(n_tok, n_kv, seq);
    return ns <= 1 ? 0 : n_tok * n_heads * ns * (head_dim * 4 + 8);
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

/* Key tiles of NB_ATT_TILE keys are dealt to the X splits of a (kv head, row tile) round-robin: split s takes tiles
 * s, s + X, s + 2X, ... below kend. Splits holding at least one tile (at least split 0): */
__host__ __device__ __forceinline__ int active_splits(int kend, int X) {
    const int nt = (kend + NB_ATT_TILE - 1) / NB_ATT_TILE;
    return nt < 1 ? 1 : nt < X ? nt : X;
}

/* With starts: the last position token t sees (min(pos, n_kv - 1)), or -1 (it sees nothing, its output is zeros) for a
 * negative position or start row b = a.start[t]. */
__device__ __forceinline__ int seq_last(const AttArgs &a, int t, int b) {
    int p = a.pos[t];
    p = p < a.n_kv - 1 ? p : a.n_kv - 1;
    return p < 0 || b < 0 ? -1 : p;
}

/* Dynamic shared memory of att_mma_kernel: ST stages of a K tile and a V tile; in cluster mode a receive area after
 * them (16 partial rows of D floats and their (max, sum)) that the other blocks of the cluster write into. */
template <int D, int ST> __host__ __device__ constexpr size_t att_stage_bytes() { return (size_t)ST * 2 * NB_ATT_TILE * (D + 8) * 2; }
constexpr int CL_SLOTS = 16;
template <int D, int ST, int MODE> __host__ __device__ constexpr size_t att_smem_bytes() {
    return att_stage_bytes<D, ST>() + (MODE == MODE_CLUSTER ? (size_t)CL_SLOTS * (D * 4 + 8) : 0);
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ void cluster_arrive_relaxed() { asm volatile("barrier.cluster.arrive.relaxed;\n" ::: "memory"); }
__device__ __forceinline__ void cluster_arrive_release() { asm volatile("barrier.cluster.arrive.release;\n" ::: "memory"); }
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.acquire;\n" ::: "memory"); }
__device__ __forceinline__ uint32_t cluster_rank() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
/* The address of the same shared-memory location in block `rank` of the cluster (shared::cluster window). */
__device__ __forceinline__ uint32_t cluster_map(uint32_t saddr, uint32_t rank) {
    uint32_t r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(saddr), "r"(rank));
    return r;
}
__device__ __forceinline__ void st_cluster_f4(uint32_t addr, float4 v) {
    asm volatile("st.shared::cluster.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "f"(v.x), "f"(v.y), "f"(v.z),
                 "f"(v.w)
                 : "memory");
}
__device__ __forceinline__ void st_cluster_f2(uint32_t addr, float2 v) {
    asm volatile("st.shared::cluster.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(v.x), "f"(v.y) : "memory");
}
#endif

/* grid (x: split, y: kv head, z: row tile, heaviest causal tiles first); ATT_THREADS threads; dynamic shared memory
 * att_smem_bytes<D, ST, MODE>(). WR warps along query rows (16 rows each), WK warps along the keys of a tile
 * (WR * WK = 4); ST-stage cp.async pipeline over the key tiles. MODE: MODE_DIRECT (one block per row tile covers all
 * its keys and writes d_out), MODE_WORK (gridDim.x splits write partials to d_work, att_combine_kernel merges them),
 * MODE_CLUSTER (the gridDim.x splits form one thread-block cluster; each pushes its partial rows into the block that
 * owns them, row r belonging to block r % X, which merges and writes d_out). In the split modes, when the visible
 * keys fit one tile (one active split), split 0 writes d_out itself and no block exchanges anything. */
template <int D, int WR, int WK, int ST, int MODE, bool SEQ>
__global__ void __launch_bounds__(ATT_THREADS) att_mma_kernel(const AttArgs a) {
    constexpr int RT = 16 * WR;      // query rows per block
    constexpr int KT = NB_ATT_TILE;  // keys per tile
    constexpr int KW = KT / WK;      // keys per warp per tile
    constexpr int NT = KW / 8;       // score n-tiles per warp
    constexpr int KS = D / 16;       // k-steps over head_dim
    constexpr int DT = D / 8;        // output n-tiles
    constexpr int LD = D + 8;        // shared row stride in halves: 16 bytes of padding, conflict-free ldmatrix
    constexpr int CPR = D / 8;       // 16-byte chunks per cache row
    constexpr int RPI = ATT_THREADS / CPR; // cache rows one pass of the block copies
    constexpr int NI = KT / RPI;     // passes per tile
    constexpr int STAGE = 2 * KT * LD; // halves per stage (K tile, V tile)
    static_assert(WR * WK * 32 == ATT_THREADS, "four warps");
    static_assert(KW % 16 == 0 && D % 16 == 0 && ST >= 2 && KT % RPI == 0, "tile shapes");
    static_assert(((size_t)WK * RT * D + 3 * WK * RT) * 4 <= att_stage_bytes<D, ST>(), "merge fits in smem");
    static_assert(MODE != MODE_CLUSTER || (RT == CL_SLOTS && WK > 1), "cluster mode: the decode shape");

    extern __shared__ __align__(16) unsigned char att_smem[];
    __half *const smem_h = reinterpret_cast<__half *>(att_smem);
    __shared__ int sPos[RT];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wr = warp / WK, wk = warp % WK;
    const int split = MODE == MODE_DIRECT ? 0 : (int)blockIdx.x;
    const int X = MODE == MODE_DIRECT ? 1 : (int)gridDim.x;
    const int h = blockIdx.y;
    const int rt = gridDim.z - 1 - blockIdx.z;
    const int G = a.group, H = a.n_heads;
    // Rows of this block. Shared tiles: rows row_base + i of the flattened (token, group head) rows. SEQ: rows g0 + i
    // of the group of token tok only, so that every key the block loads is of that token's sequence (base row kb).
    int n_rows = 0, row_base = 0, nvr, pmax, pmin, tok = 0, g0 = 0, kb = 0;
    if constexpr (SEQ) {
        const int tpt = (G + RT - 1) / RT; // row tiles per token
        tok = rt / tpt;
        g0 = (rt % tpt) * RT;
        nvr = min(RT, G - g0);
        const int b = a.start[tok];
        pmax = pmin = seq_last(a, tok, b);
        kb = b < 0 ? 0 : b;
    } else {
        n_rows = a.n_tok * G;
        row_base = rt * RT;
        nvr = min(RT, n_rows - row_base); // valid rows of this block
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
        // Largest position of the block's rows (keys [0, kend) are wanted by some row) and smallest (keys up to it
        // are wanted by every row: no mask needed).
        int v0 = lane < RT ? sPos[lane] : -1, v1 = lane < RT ? sPos[lane] : 0x7fffffff;
        if (lane >= nvr) v1 = 0x7fffffff;
        if (RT > 32) {
            const int u = sPos[(lane + 32) % RT];
            v0 = max(v0, u);
            if (lane + 32 < nvr) v1 = min(v1, u);
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            v0 = max(v0, __shfl_xor_sync(0xffffffffu, v0, off));
            v1 = min(v1, __shfl_xor_sync(0xffffffffu, v1, off));
        }
        pmax = v0;
        pmin = v1;
    }
    // Local row i (< nvr): its row of q and out ([n_tok][n_heads] rows of D).
    auto qrow = [&](int i) -> int64_t {
        if constexpr (SEQ) return (int64_t)tok * H + (int64_t)h * G + g0 + i;
        else {
            const int gr = row_base + i;
            return (int64_t)(gr / G) * H + (int64_t)h * G + gr % G;
        }
    };
    const int kend = pmax + 1, klim = kend;
    const int A = MODE == MODE_DIRECT ? 1 : active_splits(kend, X); // uniform over the X blocks
    const bool direct = MODE == MODE_DIRECT || A == 1;
    if (MODE == MODE_WORK && split >= A) return; // the combine reads only the active splits
    if (MODE == MODE_CLUSTER && direct && split != 0) return; // split 0 alone: no exchange, no cluster barrier
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (MODE == MODE_CLUSTER && !direct) cluster_arrive_relaxed(); // "started": waited for before any remote store
#endif
    const int ntiles = split * KT < kend ? ((kend + KT - 1) / KT - 1 - split) / X + 1 : 0;

    // Copies: this thread moves 16-byte chunk (tid % CPR) of rows tid / CPR + k * RPI, k < NI, of each tile.
    const int64_t stride = a.kv_stride;
    const int crow = tid / CPR;
    const int64_t coff = (int64_t)crow * stride + (tid % CPR) * 8 + (int64_t)h * D;
    // (SEQ: the keys of the token's sequence begin at row kb; k0/v0 below are row 0 of the cache itself)
    const int64_t kboff = SEQ ? (int64_t)kb * stride : 0;
    const __half *const kp = a.k + (coff + kboff), *const vp = a.v + (coff + kboff);
    const __half *const k0 = a.k + (coff - (int64_t)crow * stride), *const v0 = a.v + (coff - (int64_t)crow * stride);
    const uint32_t sdst = smem_addr(smem_h + crow * LD + (tid % CPR) * 8);
    // Tile i (keys (split + i X) KT ...) into stage i % ST; rows at or past klim are zero-filled (never read unwritten
    // cache rows: NaN * 0 = NaN).
    auto load_tile = [&](int i) {
        const int j0 = (split + i * X) * KT;
        const uint32_t dk = sdst + (uint32_t)((i % ST) * STAGE * 2), dv = dk + KT * LD * 2;
        const __half *ks = kp + (int64_t)j0 * stride, *vs = vp + (int64_t)j0 * stride;
        if (j0 + KT <= klim) {
#pragma unroll
            for (int k = 0; k < NI; k++) {
                cp_async16(dk + k * RPI * LD * 2, ks, true);
                cp_async16(dv + k * RPI * LD * 2, vs, true);
                ks += RPI * stride;
                vs += RPI * stride;
            }
        } else {
#pragma unroll
            for (int k = 0; k < NI; k++) {
                const bool ok = j0 + crow + k * RPI < klim;
                cp_async16(dk + k * RPI * LD * 2, ok ? ks : k0, ok); // (row 0 exists: nothing is read)
                cp_async16(dv + k * RPI * LD * 2, ok ? vs : v0, ok);
                ks += RPI * stride;
                vs += RPI * stride;
            }
        }
    };
#pragma unroll
    for (int i = 0; i < ST - 1; i++) {
        if (i < ntiles) load_tile(i);
        cp_async_commit();
    }

    const int lr = wr * 16 + (lane >> 2); // this lane's rows: lr and lr + 8
    // Rows past the valid ones take the widest mask (their results are never stored).
    const int pos_lo = SEQ ? pmax : lr < nvr ? sPos[lr] : pmax;
    const int pos_hi = SEQ ? pmax : lr + 8 < nvr ? sPos[lr + 8] : pmax;

    // Q fragments (A operand, row-major 16 x D), pre-scaled, f16 (loaded while the first tiles arrive).
    uint32_t qf[KS][4];
    {
        const int r_lo = row_base + lr, r_hi = r_lo + 8;
        const float *q_lo, *q_hi;
        if constexpr (SEQ) {
            q_lo = lr < nvr ? a.q + qrow(lr) * D : nullptr;
            q_hi = lr + 8 < nvr ? a.q + qrow(lr + 8) * D : nullptr;
        } else {
            q_lo = r_lo < n_rows ? a.q + ((int64_t)(r_lo / G) * a.n_heads + (int64_t)h * G + r_lo % G) * D : nullptr;
            q_hi = r_hi < n_rows ? a.q + ((int64_t)(r_hi / G) * a.n_heads + (int64_t)h * G + r_hi % G) * D : nullptr;
        }
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

    const int kw0 = wk * KW; // this warp's keys within a tile
    for (int it = 0; it < ntiles; it++) {
        cp_async_wait<ST - 2>(); // this thread's copies of tile `it` have landed
        __syncthreads();         // everyone's have; and tile it-1 is consumed, so its stage can be refilled
        if (it + ST - 1 < ntiles) load_tile(it + ST - 1);
        cp_async_commit(); // (possibly empty: keeps the group count uniform)

        const __half *sK = smem_h + (it % ST) * STAGE, *sV = sK + KT * LD;
        const int j0 = (split + it * X) * KT;
        if (j0 + kw0 >= klim) continue; // warp-uniform: this warp's keys are all past the end

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

        // Causal / length mask (only where some key of this warp's slice is past some row's position) and online
        // softmax (base 2).
        if (j0 + kw0 + KW - 1 > pmin) { // warp-uniform
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int key = j0 + kw0 + nt * 8 + (lane & 3) * 2 + e;
                    const bool in = key < klim;
                    if (!(in && key <= pos_lo)) s[nt][e] = -INFINITY;
                    if (!(in && key <= pos_hi)) s[nt][2 + e] = -INFINITY;
                }
            }
        }
        float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            mx_lo = fmaxf(mx_lo, fmaxf(s[nt][0], s[nt][1]));
            mx_hi = fmaxf(mx_hi, fmaxf(s[nt][2], s[nt][3]));
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
        uint32_t pf[NT / 2][4]; // P as A fragments, 16 keys per k-step
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const uint32_t lo = pack_half2(exp2f(s[nt][0] - mu_lo), exp2f(s[nt][1] - mu_lo));
            const uint32_t hi = pack_half2(exp2f(s[nt][2] - mu_hi), exp2f(s[nt][3] - mu_hi));
            l_lo += half2_sum(lo);
            l_hi += half2_sum(hi);
            pf[nt >> 1][(nt & 1) * 2] = lo;
            pf[nt >> 1][(nt & 1) * 2 + 1] = hi;
        }

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
    cp_async_wait<0>();
    __syncthreads(); // the stages are free: the merge below reuses them

    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 1);
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 2);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 1);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 2);

    if (WK == 1) {
        // Each warp owns its 16 rows: straight from the registers.
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int gr = row_base + lr + hf * 8; // (SEQ: row_base 0, and lr + hf * 8 < nvr tells a valid row)
            if (SEQ ? gr >= nvr : gr >= n_rows) continue;
            const int64_t orow = qrow(lr + hf * 8);
            const float l = hf ? l_hi : l_lo, m = hf ? m_hi : m_lo;
            if (direct) {
                const float inv = l > 0.0f ? 1.0f / l : 0.0f;
                float *dst = a.out + orow * D + (lane & 3) * 2;
#pragma unroll
                for (int i = 0; i < DT; i++)
                    *reinterpret_cast<float2 *>(dst + i * 8) = make_float2(o[i][2 * hf] * inv, o[i][2 * hf + 1] * inv);
            } else {
                const int64_t pidx = orow * X + split;
                float *dst = a.work_o + pidx * D + (lane & 3) * 2;
#pragma unroll
                for (int i = 0; i < DT; i++)
                    *reinterpret_cast<float2 *>(dst + i * 8) = make_float2(o[i][2 * hf], o[i][2 * hf + 1]);
                if ((lane & 3) == 0) a.work_ml[pidx] = make_float2(m, l);
            }
        }
        return;
    }

    // Through shared memory: sO [WK][RT][D] per-warp partials, sM/sL [WK][RT] their max and sum, sF [WK][RT] each
    // warp's factor in the block's merged row (divided by the row sum when the block writes d_out).
    float *sO = reinterpret_cast<float *>(att_smem);
    float *sM = sO + WK * RT * D, *sL = sM + WK * RT, *sF = sL + WK * RT;
    const bool has_keys = ntiles > 0;
    if (has_keys) {
        const int r0 = wr * 16 + (lane >> 2);
#pragma unroll
        for (int i = 0; i < DT; i++) {
            const int c = i * 8 + (lane & 3) * 2;
            *reinterpret_cast<float2 *>(sO + (wk * RT + r0) * D + c) = make_float2(o[i][0], o[i][1]);
            *reinterpret_cast<float2 *>(sO + (wk * RT + r0 + 8) * D + c) = make_float2(o[i][2], o[i][3]);
        }
        if ((lane & 3) == 0) {
            sM[wk * RT + r0] = m_lo;
            sM[wk * RT + r0 + 8] = m_hi;
            sL[wk * RT + r0] = l_lo;
            sL[wk * RT + r0 + 8] = l_hi;
        }
    }
    __syncthreads();
    float rowM = -INFINITY, rowL = 0.0f; // (thread tid < nvr: row tid)
    if (has_keys && tid < nvr) {
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < WK; w++) M = fmaxf(M, sM[w * RT + tid]);
        const float Mu = M == -INFINITY ? 0.0f : M;
        float f[WK], L = 0.0f;
#pragma unroll
        for (int w = 0; w < WK; w++) {
            f[w] = exp2f(sM[w * RT + tid] - Mu);
            L += sL[w * RT + tid] * f[w];
        }
        const float inv = direct ? (L > 0.0f ? 1.0f / L : 0.0f) : 1.0f;
#pragma unroll
        for (int w = 0; w < WK; w++) sF[w * RT + tid] = f[w] * inv;
        rowM = M;
        rowL = L;
    }
    __syncthreads();
    constexpr int D4 = D / 4;
    if (direct) {
        if (split != 0) return; // (A == 1: only split 0 holds keys; it writes every row, zeros where none)
        for (int g = tid; g < nvr * D4; g += ATT_THREADS) {
            const int r = g / D4, d = (g % D4) * 4;
            float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
            if (has_keys) {
#pragma unroll
                for (int w = 0; w < WK; w++) {
                    const float f = sF[w * RT + r];
                    const float4 x = *reinterpret_cast<const float4 *>(sO + (w * RT + r) * D + d);
                    acc.x += x.x * f, acc.y += x.y * f, acc.z += x.z * f, acc.w += x.w * f;
                }
            }
            float *dst = a.out + qrow(r) * D + d;
            *reinterpret_cast<float2 *>(dst) = make_float2(acc.x, acc.y);
            *reinterpret_cast<float2 *>(dst + 2) = make_float2(acc.z, acc.w);
        }
        return;
    }
    if (MODE == MODE_WORK) { // an active split (split < A): its merged partial rows to d_work
        for (int g = tid; g < nvr * D4; g += ATT_THREADS) {
            const int r = g / D4, d = (g % D4) * 4;
            float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int w = 0; w < WK; w++) {
                const float f = sF[w * RT + r];
                const float4 x = *reinterpret_cast<const float4 *>(sO + (w * RT + r) * D + d);
                acc.x += x.x * f, acc.y += x.y * f, acc.z += x.z * f, acc.w += x.w * f;
            }
            const int64_t pidx = qrow(r) * X + split;
            *reinterpret_cast<float4 *>(a.work_o + pidx * D + d) = acc;
        }
        if (tid < nvr) {
            a.work_ml[qrow(tid) * X + split] = make_float2(rowM, rowL);
        }
        return;
    }
    if (MODE == MODE_CLUSTER) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        // Receive area (in every block): slot (r / X) * X + s holds split s's partial of row r (r % X == rank).
        float *rO = reinterpret_cast<float *>(att_smem + att_stage_bytes<D, ST>());
        float2 *rML = reinterpret_cast<float2 *>(rO + CL_SLOTS * D);
        cluster_wait(); // every block of the cluster has started: its receive area exists
        if (split < A) {
            const uint32_t rO_s = smem_addr(rO), rML_s = smem_addr(rML);
            for (int g = tid; g < nvr * D4; g += ATT_THREADS) {
                const int r = g / D4, d = (g % D4) * 4;
                float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
                for (int w = 0; w < WK; w++) {
                    const float f = sF[w * RT + r];
                    const float4 x = *reinterpret_cast<const float4 *>(sO + (w * RT + r) * D + d);
                    acc.x += x.x * f, acc.y += x.y * f, acc.z += x.z * f, acc.w += x.w * f;
                }
                const int slot = (r / X) * X + split;
                st_cluster_f4(cluster_map(rO_s + (uint32_t)((slot * D + d) * 4), (uint32_t)(r % X)), acc);
            }
            if (tid < nvr) {
                const int slot = (tid / X) * X + split;
                st_cluster_f2(cluster_map(rML_s + (uint32_t)(slot * 8), (uint32_t)(tid % X)),
                              make_float2(rowM, rowL));
            }
        }
        cluster_arrive_release();
        cluster_wait(); // every partial has landed
        const int rank = (int)cluster_rank();
        const int nown = rank < nvr ? (nvr - 1 - rank) / X + 1 : 0; // rows rank, rank + X, ...
        for (int g = tid; g < nown * D4; g += ATT_THREADS) {
            const int lrow = g / D4, d = (g % D4) * 4;
            const float2 *ml = rML + lrow * X;
            const float *po = rO + (size_t)lrow * X * D + d;
            float M = -INFINITY;
            for (int s = 0; s < A; s++) M = fmaxf(M, ml[s].x);
            const float Mu = M == -INFINITY ? 0.0f : M;
            float L = 0.0f;
            float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
            for (int s = 0; s < A; s++) {
                const float f = exp2f(ml[s].x - Mu);
                L += ml[s].y * f;
                const float4 x = *reinterpret_cast<const float4 *>(po + (size_t)s * D);
                acc.x += x.x * f, acc.y += x.y * f, acc.z += x.z * f, acc.w += x.w * f;
            }
            const float inv = L > 0.0f ? 1.0f / L : 0.0f;
            float *dst = a.out + qrow(rank + lrow * X) * D + d;
            *reinterpret_cast<float2 *>(dst) = make_float2(acc.x * inv, acc.y * inv);
            *reinterpret_cast<float2 *>(dst + 2) = make_float2(acc.z * inv, acc.w * inv);
        }
#else
        __trap(); // never launched: the host launches cluster mode only on an sm_90 image
#endif
    }
}

/* MODE_WORK: one block (head_dim threads) per (token, query head) merges the partials of the active splits
 * (recomputing the key range of the main kernel's row tile: SEQ, the token's own); nothing to do when only split 0
 * held keys (it wrote d_out itself). */
template <bool SEQ> __global__ void __launch_bounds__(128) att_combine_kernel(const AttArgs a) {
    __shared__ int s_kend;
    const int64_t idx = blockIdx.x; // t * n_heads + query head
    const int H = a.n_heads, G = a.group, D = a.head_dim, X = a.n_splits;
    const int t = (int)(idx / H), qh = (int)(idx % H);
    const int n_rows = a.n_tok * G;
    const int row_base = (t * G + qh % G) / a.rt_rows * a.rt_rows;
    if (SEQ) { // the row tile holds this token's rows only
        if (threadIdx.x == 0) s_kend = seq_last(a, t, a.start[t]) + 1;
    } else if (threadIdx.x < 32) {
        int pm = -1;
        for (int i = threadIdx.x; i < a.rt_rows; i += 32) {
            const int r = row_base + i;
            if (r >= n_rows) break;
            int p = a.pos[r / G];
            p = p < a.n_kv - 1 ? p : a.n_kv - 1;
            pm = max(pm, p);
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) pm = max(pm, __shfl_xor_sync(0xffffffffu, pm, off));
        if (threadIdx.x == 0) s_kend = pm + 1;
    }
    __syncthreads();
    const int used = active_splits(s_kend, X);
    if (used <= 1) return;
    const float2 *ml = a.work_ml + idx * X;
    const float *wo = a.work_o + idx * X * D;
    float M = -INFINITY;
#pragma unroll 8
    for (int s = 0; s < used; s++) M = fmaxf(M, ml[s].x);
    const float Mu = M == -INFINITY ? 0.0f : M;
    float *o = a.out + idx * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float L = 0.0f, acc = 0.0f;
#pragma unroll 8
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

/* One warp per (token, query head); lane owns dims lane + 32 i. f32 throughout, any alignment; keys from the token's
 * start row (a.start, when given). */
__global__ void __launch_bounds__(128) att_simple_kernel(const AttArgs a) {
    const int64_t idx = (int64_t)blockIdx.x * 4 + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (idx >= (int64_t)a.n_tok * a.n_heads) return;
    const int t = (int)(idx / a.n_heads), qh = (int)(idx % a.n_heads), h = qh / a.group, D = a.head_dim;
    const int nd = D >> 5;
    int p = a.pos[t];
    p = p < a.n_kv - 1 ? p : a.n_kv - 1;
    int64_t b = 0; // first cache row of the token's sequence
    if (a.start) {
        b = a.start[t];
        if (b < 0) p = -1;
    }
    const float *qr = a.q + idx * D;
    float q[8], acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        q[i] = i < nd ? qr[lane + 32 * i] * a.qscale : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j <= p; j++) {
        const __half *kr = a.k + (b + j) * a.kv_stride + (int64_t)h * D;
        const __half *vr = a.v + (b + j) * a.kv_stride + (int64_t)h * D;
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

bool aligned(const void *p, uintptr_t n) { return ((uintptr_t)p & (n - 1)) == 0; }

constexpr int MAX_DEVICES = 64;

/* Once per device and kernel: the dynamic shared memory attribute. */
template <int D, int WR, int WK, int ST, int MODE, bool SEQ>
nb_status prepare_kernel(nb_cuda *ctx) {
    static int ready[MAX_DEVICES]; // 1: attribute set on that device (a benign race: every writer writes 1)
    const int dev = ctx->device;
    if (dev >= 0 && dev < MAX_DEVICES && __atomic_load_n(&ready[dev], __ATOMIC_ACQUIRE)) return NB_OK;
    nb_status st = nb_cuda_check(ctx,
                                 cudaFuncSetAttribute(att_mma_kernel<D, WR, WK, ST, MODE, SEQ>,
                                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                      (int)att_smem_bytes<D, ST, MODE>()),
                                 "nb_cuda_attention: cudaFuncSetAttribute");
    if (st == NB_OK && MODE == MODE_CLUSTER)
        (void)cudaFuncSetAttribute(att_mma_kernel<D, WR, WK, ST, MODE, SEQ>,
                                   cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    (void)cudaGetLastError();
    if (st == NB_OK && dev >= 0 && dev < MAX_DEVICES) __atomic_store_n(&ready[dev], 1, __ATOMIC_RELEASE);
    return st;
}

/* Cluster-mode kernel (decode shape; SEQ: its variant with start rows): for cluster sizes 2, 4, 8, 16, how many such
 * clusters fit on the device at once (cudaOccupancyMaxActiveClusters; 0: that size cannot be launched); all 0 when
 * there is no sm_90 image or the device has no clusters. Determined once per device. */
template <int D, bool SEQ>
const int *cluster_capacity(nb_cuda *ctx) {
    static int known[MAX_DEVICES]; // 1 once cap[dev] is filled
    static int cap[MAX_DEVICES][5];
    static int none[5];
    const int dev = ctx->device;
    if (dev < 0 || dev >= MAX_DEVICES) return none;
    if (__atomic_load_n(&known[dev], __ATOMIC_ACQUIRE)) return cap[dev];
    int c[5] = {0, 0, 0, 0, 0};
    if (ctx->compute_capability >= 90) {
        auto kern = att_mma_kernel<D, 1, 4, 3, MODE_CLUSTER, SEQ>;
        cudaFuncAttributes fa;
        if (cudaFuncGetAttributes(&fa, kern) == cudaSuccess && fa.ptxVersion >= 90 && fa.binaryVersion >= 90 &&
            cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)att_smem_bytes<D, 3, MODE_CLUSTER>()) == cudaSuccess) {
            const bool nonportable =
                cudaFuncSetAttribute(kern, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) == cudaSuccess;
            for (int i = 1; i <= 4; i++) {
                const int size = 1 << i;
                if (size > 8 && !nonportable) break;
                cudaLaunchConfig_t cfg = {};
                cudaLaunchAttribute attr;
                attr.id = cudaLaunchAttributeClusterDimension;
                attr.val.clusterDim.x = (unsigned)size;
                attr.val.clusterDim.y = 1;
                attr.val.clusterDim.z = 1;
                cfg.gridDim = dim3((unsigned)size, 1, 1);
                cfg.blockDim = dim3(ATT_THREADS, 1, 1);
                cfg.dynamicSmemBytes = att_smem_bytes<D, 3, MODE_CLUSTER>();
                cfg.attrs = &attr;
                cfg.numAttrs = 1;
                int n = 0;
                if (cudaOccupancyMaxActiveClusters(&n, kern, &cfg) == cudaSuccess && n > 0) c[i] = n;
            }
        }
        (void)cudaGetLastError(); // a refused query is not an error of the caller's
    }
    for (int i = 0; i < 5; i++) cap[dev][i] = c[i];
    __atomic_store_n(&known[dev], 1, __ATOMIC_RELEASE);
    return cap[dev];
}

/* Path override for tests: -1 not yet read, 0 automatic, 1 d_work + combine even where clusters are available.
 * Initialised once from NIBBLE_CUDA_ATTENTION_CLUSTER=0 (same meaning as 1), or set by
 * nb_cuda_attention_test_path. */
int g_att_path = -1;

int att_path() {
    int p = __atomic_load_n(&g_att_path, __ATOMIC_ACQUIRE);
    if (p >= 0) return p;
    const char *env = getenv("NIBBLE_CUDA_ATTENTION_CLUSTER");
    int want = env && env[0] == '0' ? 1 : 0, expected = -1;
    __atomic_compare_exchange_n(&g_att_path, &expected, want, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    return __atomic_load_n(&g_att_path, __ATOMIC_ACQUIRE);
}

struct Plan {
    int X;       // splits per (kv head, row tile)
    int cluster; // 1: MODE_CLUSTER (X blocks per cluster)
    int capacity; // clusters of X blocks the device holds at once (cluster mode)
};

/* Row tiles (grid z) of RT rows: the flattened (token, group head) rows; SEQ: each token's group rows on their own. */
template <int RT, bool SEQ> int64_t row_tiles(int64_t n_tok, int64_t group) {
    return SEQ ? n_tok * ((group + RT - 1) / RT) : (n_tok * group + RT - 1) / RT;
}

/* Splits per (kv head, row tile): about two blocks per SM in all, at most one per key tile of n_kv; in cluster mode
 * a power of two <= 16 such that every cluster of the grid is resident at once (one wave). Without start rows only up
 * to NB_ATT_SPLIT_MAX_TOK tokens; with them for any count, as long as the grid is still small (each token has its own
 * row tiles: 32 kv heads x 8 tokens already fill two blocks per SM of a 132-SM GPU, split or not). */
template <int D, int WR, bool SEQ>
Plan plan_splits(nb_cuda *ctx, const AttArgs &a, int64_t n_kv_heads, int64_t work_splits_avail) {
    constexpr int RT = 16 * WR;
    const int64_t rtn = row_tiles<RT, SEQ>(a.n_tok, a.group);
    Plan p = {1, 0, 0};
    if (!SEQ && a.n_tok > NB_ATT_SPLIT_MAX_TOK) return p;
    const int *cap = WR == 1 && att_path() == 0 ? cluster_capacity<D, SEQ>(ctx) : nullptr;
    const bool cluster = cap && cap[1] > 0;
    const int64_t xmax = cluster ? 16 : work_splits_avail;
    const int64_t units = ((int64_t)a.n_kv + NB_ATT_TILE - 1) / NB_ATT_TILE;
    const int64_t target = 2 * (int64_t)(ctx->sm_count > 0 ? ctx->sm_count : 1);
    int X = 1;
    while (X * 2 <= xmax && X * 2 <= units && n_kv_heads * rtn * X * 2 <= target) X *= 2;
    if (cluster) {
        int lg = 0;
        while ((1 << lg) < X) lg++;
        while (lg > 0 && (cap[lg] <= 0 || n_kv_heads * rtn > cap[lg])) lg--;
        X = 1 << lg;
        p.cluster = X > 1;
        p.capacity = X > 1 ? cap[lg] : 0;
    }
    p.X = X;
    return p;
}

template <int D, int WR, int WK, int ST, int MODE, bool SEQ>
nb_status launch_kernel(nb_cuda *ctx, const AttArgs &a, dim3 grid) {
    nb_status st = prepare_kernel<D, WR, WK, ST, MODE, SEQ>(ctx);
    if (st != NB_OK) return st;
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr;
    cfg.gridDim = grid;
    cfg.blockDim = dim3(ATT_THREADS, 1, 1);
    cfg.dynamicSmemBytes = att_smem_bytes<D, ST, MODE>();
    cfg.stream = ctx->stream;
    if (MODE == MODE_CLUSTER) {
        attr.id = cudaLaunchAttributeClusterDimension;
        attr.val.clusterDim.x = grid.x;
        attr.val.clusterDim.y = 1;
        attr.val.clusterDim.z = 1;
        cfg.attrs = &attr;
        cfg.numAttrs = 1;
    }
    st = nb_cuda_check(ctx, cudaLaunchKernelEx(&cfg, att_mma_kernel<D, WR, WK, ST, MODE, SEQ>, a), "nb_cuda_attention");
    return st != NB_OK ? st : nb_cuda_launched(ctx, "nb_cuda_attention");
}

/* Picks the mode and the number of splits, launches the tensor-core kernel (and the combine in MODE_WORK). */
template <int D, int WR, int WK, bool SEQ>
nb_status launch_mma(nb_cuda *ctx, AttArgs &a, int64_t n_kv_heads, int64_t work_splits_avail) {
    constexpr int RT = 16 * WR;
    const int64_t rtn = row_tiles<RT, SEQ>(a.n_tok, a.group);
    a.rt_rows = RT;
    const Plan p = plan_splits<D, WR, SEQ>(ctx, a, n_kv_heads, work_splits_avail);
    const int X = p.X;
    a.n_splits = X;
    const dim3 grid((unsigned)X, (unsigned)n_kv_heads, (unsigned)rtn);
    if (X == 1) return launch_kernel<D, WR, WK, 2, MODE_DIRECT, SEQ>(ctx, a, grid);
    if (WR == 1 && p.cluster) return launch_kernel<D, 1, 4, 3, MODE_CLUSTER, SEQ>(ctx, a, grid);
    nb_status st = launch_kernel<D, WR, WK, 3, MODE_WORK, SEQ>(ctx, a, grid);
    if (st != NB_OK) return st;
    att_combine_kernel<SEQ><<<(unsigned)(a.n_tok * a.n_heads), D, 0, ctx->stream>>>(a);
    return nb_cuda_launched(ctx, "nb_cuda_attention (combine)");
}

/* Shape of the tensor-core kernel: WR = 1 (16 rows a block, the four warps splitting each key tile) when the rows
 * that share a block are few: n_tok * G <= 16 without starts, G <= 16 with (each token's rows alone). */
bool few_rows(int64_t n_tok, int64_t group, bool seq) { return (seq ? group : n_tok * group) <= 16; }

template <int D> nb_status launch_mma_any(nb_cuda *ctx, AttArgs &a, int64_t n_kv_heads, int64_t ns, bool seq) {
    if (seq)
        return few_rows(a.n_tok, a.group, true) ? launch_mma<D, 1, 4, true>(ctx, a, n_kv_heads, ns)
                                                : launch_mma<D, 4, 1, true>(ctx, a, n_kv_heads, ns);
    return few_rows(a.n_tok, a.group, false) ? launch_mma<D, 1, 4, false>(ctx, a, n_kv_heads, ns)
                                             : launch_mma<D, 4, 1, false>(ctx, a, n_kv_heads, ns);
}

template <int D> Plan plan_any(nb_cuda *ctx, const AttArgs &a, int64_t n_kv_heads, int64_t ns, bool seq) {
    if (seq)
        return few_rows(a.n_tok, a.group, true) ? plan_splits<D, 1, true>(ctx, a, n_kv_heads, ns)
                                                : plan_splits<D, 4, true>(ctx, a, n_kv_heads, ns);
    return few_rows(a.n_tok, a.group, false) ? plan_splits<D, 1, false>(ctx, a, n_kv_heads, ns)
                                             : plan_splits<D, 4, false>(ctx, a, n_kv_heads, ns);
}

} // namespace

/* Test hooks (not in nibble.h; nb_cuda_check_attention declares them). nb_cuda_attention_test_path: 0 automatic,
 * 1 the d_work + combine path even where clusters are available. nb_cuda_attention_test_plan: the split count the
 * decode path picks for these sizes (out[0]), 1 if through a cluster (out[1]), and how many such clusters the device
 * holds at once (out[2]), for calls without start rows (with_start 0) or with (1); -1 when the tensor-core path does
 * not apply. */
extern "C" NB_API void nb_cuda_attention_test_path(int32_t path) {
    __atomic_store_n(&g_att_path, path == 1 ? 1 : 0, __ATOMIC_RELEASE);
}

extern "C" NB_API int32_t nb_cuda_attention_test_plan(nb_cuda *ctx, int64_t n_tok, int64_t n_heads, int64_t n_kv_heads,
                                                      int64_t head_dim, int64_t n_kv, int32_t with_start,
                                                      int32_t *out) {
    if (!ctx || !out || n_tok <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads || (head_dim != 64 && head_dim != 128))
        return -1;
    if (nb_cuda_use(ctx) != NB_OK) return -1;
    AttArgs a = {};
    a.n_tok = (int)n_tok;
    a.group = (int)(n_heads / n_kv_heads);
    a.n_kv = (int)n_kv;
    const bool seq = with_start != 0;
    const int64_t ns = work_splits(n_tok, n_kv, seq);
    const Plan p =
        head_dim == 64 ? plan_any<64>(ctx, a, n_kv_heads, ns, seq) : plan_any<128>(ctx, a, n_kv_heads, ns, seq);
    out[0] = p.X;
    out[1] = p.cluster;
    out[2] = p.capacity;
    return 0;
}

extern "C" NB_API int64_t nb_cuda_attention_work_bytes(int64_t n_tok, int64_t n_heads, int64_t head_dim,
                                                       int64_t n_kv) {
    if (n_tok < 0 || n_heads <= 0 || head_dim <= 0 || n_kv < 0) return -1;
    if (work_splits(1, n_kv, false) <= 1) return 0; // no call over so few positions splits
    // head_dim and n_heads are checked again by nb_cuda_attention.
    if (head_dim > 4096 || n_heads > ((int64_t)1 << 24)) return -1;
    // The most any call of up to n_tok tokens uses, with or without starts (past NB_ATT_SPLIT_BUDGET / 2 tokens none
    // splits through d_work).
    int64_t most = 0;
    const int64_t last = n_tok < NB_ATT_SPLIT_BUDGET ? n_tok : NB_ATT_SPLIT_BUDGET;
    for (int64_t t = 1; t <= last; t++) {
        const int64_t shared = call_work_bytes(t, n_heads, head_dim, n_kv, false);
        const int64_t own = call_work_bytes(t, n_heads, head_dim, n_kv, true);
        most = shared > most ? shared : most;
        most = own > most ? own : most;
    }
    return most;
}

extern "C" NB_API nb_status nb_cuda_attention(nb_cuda *ctx, const float *d_q, int64_t n_tok, const int32_t *d_pos,
                                              const int32_t *d_start, int64_t n_heads, int64_t n_kv_heads,
                                              int64_t head_dim, const uint16_t *d_k, const uint16_t *d_v,
                                              int64_t n_kv, int64_t kv_stride, float scale, void *d_work,
                                              int64_t work_bytes, float *d_out) {
    nb_status st = nb_cuda_use(ctx);
    if (st != NB_OK) return st;
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
    const bool seq = d_start != nullptr;
    const int64_t need = call_work_bytes(n_tok, n_heads, head_dim, n_kv, seq); // (<= the public bound for n_tok)
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
    a.n_splits = 1;
    a.rt_rows = 1;
    a.start = d_start;
    const int64_t ns = work_splits(n_tok, n_kv, seq);
    a.work_o = ns > 1 ? reinterpret_cast<float *>(d_work) : nullptr;
    a.work_ml = ns > 1 ? reinterpret_cast<float2 *>(reinterpret_cast<char *>(d_work) + n_tok * n_heads * ns * head_dim * 4)
                       : nullptr;

    const int64_t G = n_heads / n_kv_heads;
    const int64_t tiles = !seq ? (n_tok * G + 63) / 64
                          : few_rows(n_tok, G, true) ? row_tiles<16, true>(n_tok, G) : row_tiles<64, true>(n_tok, G);
    const bool mma_ok = (head_dim == 64 || head_dim == 128) && kv_stride % 8 == 0 && aligned(d_k, 16) &&
                        aligned(d_v, 16) && aligned(d_q, 8) && aligned(d_out, 8) && tiles <= 65535;
    if (!mma_ok) {
        att_simple_kernel<<<(unsigned)((n_tok * n_heads + 3) / 4), 128, 0, ctx->stream>>>(a);
        return nb_cuda_launched(ctx, "nb_cuda_attention (fallback)");
    }
    return head_dim == 64 ? launch_mma_any<64>(ctx, a, n_kv_heads, ns, seq)
                          : launch_mma_any<128>(ctx, a, n_kv_heads, ns, seq);
}
