// Element-wise and row kernels of libnibble_cuda: rmsnorm, add_rmsnorm, rope, swiglu, add, kv_store, rope_store.
// All f32 except the f16 KV cache. Each entry point validates, launches on ctx->stream and returns.
#include <stdint.h>
#include "nb_cuda_internal.cuh"

namespace {

/* True when a * b * c fits in int64 (all >= 0). */
bool fits3(int64_t a, int64_t b, int64_t c) {
    int64_t r;
    return !__builtin_mul_overflow(a, b, &r) && !__builtin_mul_overflow(r, c, &r);
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* Grid for a grid-stride loop over `items` work items of `block` threads each: enough blocks to fill
 * the device a few times over, never more than the items need. */
unsigned grid_for(const nb_cuda *ctx, int64_t items, int block) {
    int64_t need = (items + block - 1) / block;
    int64_t cap = (int64_t)(ctx->sm_count > 0 ? ctx->sm_count : 1) * 16;
    if (need > cap) need = cap;
    return (unsigned)(need > 0 ? need : 1);
}

// ------------------------------------------------------------------------------- rmsnorm

constexpr int NORM_THREADS = 256;
constexpr int NORM_CACHE = 8; // float4 kept in registers per thread: rows up to 8192 are read once

__device__ __forceinline__ float block_sum(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? red[lane] : 0.0f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) red[32] = v;
    }
    __syncthreads();
    return red[32];
}

/* The integer GEMV's int8 form of one float4 of a normalized row: float4 i of row t (floats 4i..4i+3), into the
 * layout quantize_x of nb_cuda_matmul.cu writes, with the same arithmetic, so the bytes are identical: unit u = i / 8
 * (32 floats: the same float4 slot of 8 consecutive lanes), part (i / 2) % 4 (8 floats: a lane pair). amax and sum
 * meet over the 8 lanes, the pair's int8 words over the 2. All 32 lanes of the warp call it (those past the row with
 * ok = false); the row length is a multiple of 32 floats, so a unit's 8 lanes are all in the row or all past it. */
__device__ __forceinline__ void quantize4(float4 v, int64_t i, bool ok, int64_t t, int64_t U, uint4 *xa, uint4 *xb,
                                          float2 *xs) {
    float amax = 0.0f;
    amax = fmaxf(amax, fabsf(v.x));
    amax = fmaxf(amax, fabsf(v.y));
    amax = fmaxf(amax, fabsf(v.z));
    amax = fmaxf(amax, fabsf(v.w));
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    const int q0 = __float2int_rn(v.x * inv), q1 = __float2int_rn(v.y * inv), q2 = __float2int_rn(v.z * inv),
              q3 = __float2int_rn(v.w * inv);
    int sum = q0 + q1 + q2 + q3;
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    // The even lane holds values 0-3 of the part, the odd one 4-7; word x takes the even-indexed values, word y the
    // odd ones (quantize_x's pk).
    const uint32_t ex = (uint32_t)(q0 & 0xFF) | (uint32_t)(q2 & 0xFF) << 8;
    const uint32_t ey = (uint32_t)(q1 & 0xFF) | (uint32_t)(q3 & 0xFF) << 8;
    const uint32_t ox = __shfl_xor_sync(0xffffffffu, ex, 1), oy = __shfl_xor_sync(0xffffffffu, ey, 1);
    if (ok && (i & 1) == 0) {
        const int64_t u = i >> 3;
        const int part = (int)((i >> 1) & 3);
        reinterpret_cast<uint2 *>((part < 2 ? xa : xb) + t * U + u)[part & 1] = make_uint2(ex | ox << 16, ey | oy << 16);
        if (part == 0) {
            const float dx = amax / 127.0f;
            xs[t * U + u] = make_float2(dx, dx * (float)sum);
        }
    }
}

/* One block per row. ADD: x += b first (written back to x). VEC: n % 4 == 0 and 16-byte aligned rows. Q (VEC only,
 * n % 32 == 0): y is also written to xq in the integer GEMV's int8 layout for n_rows tokens (quantize4). */
template <bool ADD, bool VEC, bool Q = false>
__global__ void __launch_bounds__(NORM_THREADS) rmsnorm_kernel(float *x, const float *b, const float *w,
                                                               int64_t n, float eps, float *y, uint4 *xq = nullptr) {
    __shared__ float red[33];
    const int64_t row = blockIdx.x;
    float *xr = x + row * n;
    const float *br = ADD ? b + row * n : nullptr;
    float *yr = y + row * n;
    const int tid = threadIdx.x;
    float ss = 0.0f;
    if (VEC) {
        const int64_t n4 = n >> 2;
        // Q: planes A and B, then the (dx, sx) pairs, of gridDim.x tokens of U units (quantize_x's layout).
        const int64_t U = n >> 5, nu = (int64_t)gridDim.x * U;
        uint4 *xa = xq, *xb = Q ? xq + nu : nullptr;
        float2 *xs = Q ? reinterpret_cast<float2 *>(xq + 2 * nu) : nullptr;
        float4 cache[NORM_CACHE];
#pragma unroll
        for (int c = 0; c < NORM_CACHE; c++) {
            const int64_t i = tid + (int64_t)c * NORM_THREADS;
            if (i < n4) {
                float4 v = reinterpret_cast<const float4 *>(xr)[i];
                if (ADD) {
                    const float4 a = reinterpret_cast<const float4 *>(br)[i];
                    v.x += a.x, v.y += a.y, v.z += a.z, v.w += a.w;
                    reinterpret_cast<float4 *>(xr)[i] = v;
                }
                cache[c] = v;
                ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            }
        }
        for (int64_t i = tid + (int64_t)NORM_CACHE * NORM_THREADS; i < n4; i += NORM_THREADS) {
            float4 v = reinterpret_cast<const float4 *>(xr)[i];
            if (ADD) {
                const float4 a = reinterpret_cast<const float4 *>(br)[i];
                v.x += a.x, v.y += a.y, v.z += a.z, v.w += a.w;
                reinterpret_cast<float4 *>(xr)[i] = v;
            }
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
        const float s = 1.0f / sqrtf(block_sum(ss, red) / (float)n + eps);
#pragma unroll
        for (int c = 0; c < NORM_CACHE; c++) {
            const int64_t i = tid + (int64_t)c * NORM_THREADS;
            float4 r = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (i < n4) {
                const float4 v = cache[c], g = reinterpret_cast<const float4 *>(w)[i];
                r = make_float4(v.x * s * g.x, v.y * s * g.y, v.z * s * g.z, v.w * s * g.w);
                reinterpret_cast<float4 *>(yr)[i] = r;
            }
            // Block-uniform condition: the whole warp takes part in quantize4's shuffles.
            if (Q && (int64_t)c * NORM_THREADS < n4) quantize4(r, i, i < n4, row, U, xa, xb, xs);
        }
        // Beyond the cached part: x was written by this same thread above (or is unchanged), read it again. The loop
        // runs the same number of times in every thread (quantize4's shuffles).
        for (int64_t i0 = (int64_t)NORM_CACHE * NORM_THREADS; i0 < n4; i0 += NORM_THREADS) {
            const int64_t i = i0 + tid;
            float4 r = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (i < n4) {
                const float4 v = reinterpret_cast<const float4 *>(xr)[i], g = reinterpret_cast<const float4 *>(w)[i];
                r = make_float4(v.x * s * g.x, v.y * s * g.y, v.z * s * g.z, v.w * s * g.w);
                reinterpret_cast<float4 *>(yr)[i] = r;
            }
            if (Q) quantize4(r, i, i < n4, row, U, xa, xb, xs);
        }
    } else {
        for (int64_t i = tid; i < n; i += NORM_THREADS) {
            float v = xr[i];
            if (ADD) {
                v += br[i];
                xr[i] = v;
            }
            ss += v * v;
        }
        const float s = 1.0f / sqrtf(block_sum(ss, red) / (float)n + eps);
        for (int64_t i = tid; i < n; i += NORM_THREADS) yr[i] = xr[i] * s * w[i];
    }
}

/* When the rows are few enough for the integer GEMV (nb_cuda_xq_fits) and the vector path runs, the kernel also
 * leaves y quantized in the scratch buffer and the call records it (nb_cuda_xq_set), so that a matmul on y as the
 * very next call skips its quantize_x launch: one graph node fewer per rmsnorm + matmul pair in decoding. */
template <bool ADD>
nb_status launch_rmsnorm(nb_cuda *ctx, float *x, const float *b, const float *w, int64_t n_rows, int64_t n, float eps,
                         float *y, const char *name) {
    NB_CUDA_REQUIRE(ctx, x && w && y && (!ADD || b), "%s: null pointer", name);
    NB_CUDA_REQUIRE(ctx, n_rows >= 0 && n >= 0 && fits3(n_rows, n, 4), "%s: bad size (n_rows %lld, n %lld)", name,
                    (long long)n_rows, (long long)n);
    NB_CUDA_REQUIRE(ctx, eps >= 0.0f, "%s: eps must be >= 0", name);
    NB_CUDA_REQUIRE(ctx, n_rows <= 0x7fffffff, "%s: too many rows (%lld)", name, (long long)n_rows);
    if (n_rows == 0 || n == 0) return NB_OK;
    const bool vec = n % 4 == 0 && aligned16(x) && aligned16(w) && aligned16(y) && (!ADD || aligned16(b));
    const bool quant = vec && nb_cuda_xq_fits(n_rows, n);
    if (quant)
        rmsnorm_kernel<ADD, true, true><<<(unsigned)n_rows, NORM_THREADS, 0, ctx->stream>>>(x, b, w, n, eps, y,
                                                                                           (uint4 *)ctx->scratch);
    else if (vec)
        rmsnorm_kernel<ADD, true><<<(unsigned)n_rows, NORM_THREADS, 0, ctx->stream>>>(x, b, w, n, eps, y);
    else
        rmsnorm_kernel<ADD, false><<<(unsigned)n_rows, NORM_THREADS, 0, ctx->stream>>>(x, b, w, n, eps, y);
    nb_status st = nb_cuda_launched(ctx, name);
    if (st == NB_OK && quant) nb_cuda_xq_set(ctx, y, n_rows, n);
    return st;
}

// ------------------------------------------------------------------------------- rope

constexpr int ROPE_MAX_HALF = 256; // head_dim <= 512, as nb_rope
constexpr int ROPE_THREADS = 256;
constexpr int ROPE_STORE_HEADS = 8; // heads (of q, k and v together) per block of rope_store_kernel

/* cos/sin of the head_dim/2 angles of position pos, into shared memory (computed in double, as nb_rope, so that
 * positions in the tens of thousands keep full f32 accuracy). Shared by rope_kernel and rope_store_kernel, so
 * that both give the same bits. */
__device__ __forceinline__ void rope_table(int32_t pos, int head_dim, float theta, float freq_scale,
                                           const float *freq_factors, float *cs, float *sn) {
    const int half = head_dim >> 1;
    const double p = (double)pos * (double)freq_scale;
    const double lt = log2((double)theta);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const double inv_freq = exp2(lt * (-2.0 * (double)i / (double)head_dim));
        double angle = p * inv_freq;
        if (freq_factors) angle /= (double)freq_factors[i];
        double s, c;
        sincos(angle, &s, &c);
        cs[i] = (float)c;
        sn[i] = (float)s;
    }
}

/* The rotation of one pair, rounded the same way wherever it is used (explicit fma: no contraction choices). */
__device__ __forceinline__ float2 rope_pair(float a, float b, float c, float s) {
    return make_float2(__fmaf_rn(a, c, -__fmul_rn(b, s)), __fmaf_rn(a, s, __fmul_rn(b, c)));
}

/* One block per token: the cos/sin pairs are computed once, then applied to every head. */
__global__ void __launch_bounds__(ROPE_THREADS) rope_kernel(float *x, int n_heads, int head_dim, const int32_t *pos,
                                                            float theta, float freq_scale, const float *freq_factors) {
    __shared__ float cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
    const int64_t t = blockIdx.x;
    const int half = head_dim >> 1;
    rope_table(pos[t], head_dim, theta, freq_scale, freq_factors, cs, sn);
    __syncthreads();
    float *xt = x + t * (int64_t)n_heads * head_dim;
    const int total = n_heads * half;
    for (int k = threadIdx.x; k < total; k += blockDim.x) {
        const int h = k / half, i = k - h * half;
        float *v = xt + (int64_t)h * head_dim + 2 * i;
        const float2 r = rope_pair(v[0], v[1], cs[i], sn[i]);
        v[0] = r.x;
        v[1] = r.y;
    }
}

/* grid (x: token, y: groups of ROPE_STORE_HEADS heads over the n_heads q heads, then the n_kv k heads, then the n_kv
 * v heads). q rotated in place by the angle of pos[t]; k rotated and v as is, rounded to f16 into cache row
 * start[t] + pos[t] (start nullptr: pos[t]; skipped when that row is outside [0, capacity)). */
__global__ void __launch_bounds__(ROPE_THREADS) rope_store_kernel(float *q, const float *k, const float *v,
                                                                  int n_heads, int n_kv, int head_dim,
                                                                  const int32_t *pos, const int32_t *start,
                                                                  float theta, float freq_scale,
                                                                  const float *freq_factors, __half *kc, __half *vc,
                                                                  int64_t capacity) {
    __shared__ float cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
    const int64_t t = blockIdx.x;
    const int half = head_dim >> 1;
    const int32_t p = pos[t];
    const int64_t crow = (int64_t)p + (start ? start[t] : 0); // the cache row
    const bool store = crow >= 0 && crow < capacity;
    const int h0 = blockIdx.y * ROPE_STORE_HEADS;
    const int h1 = min(h0 + ROPE_STORE_HEADS, n_heads + 2 * n_kv);
    if (h0 < n_heads + n_kv) { // some q or k head: the table is needed
        rope_table(p, head_dim, theta, freq_scale, freq_factors, cs, sn);
        __syncthreads();
    }
    const int64_t row = (int64_t)n_kv * head_dim; // cache row length
    const int total = (h1 - h0) * half;
    for (int e = threadIdx.x; e < total; e += blockDim.x) {
        const int hh = h0 + e / half, i = e % half;
        if (hh < n_heads) {
            float *x = q + (t * n_heads + hh) * (int64_t)head_dim + 2 * i;
            const float2 r = rope_pair(x[0], x[1], cs[i], sn[i]);
            x[0] = r.x;
            x[1] = r.y;
        } else if (!store) {
            continue;
        } else if (hh < n_heads + n_kv) {
            const int kh = hh - n_heads;
            const float *x = k + (t * n_kv + kh) * (int64_t)head_dim + 2 * i;
            const float2 r = rope_pair(x[0], x[1], cs[i], sn[i]);
            __half *d = kc + crow * row + (int64_t)kh * head_dim + 2 * i;
            d[0] = __float2half_rn(r.x);
            d[1] = __float2half_rn(r.y);
        } else {
            const int vh = hh - n_heads - n_kv;
            const float *x = v + (t * n_kv + vh) * (int64_t)head_dim + 2 * i;
            __half *d = vc + crow * row + (int64_t)vh * head_dim + 2 * i;
            d[0] = __float2half_rn(x[0]);
            d[1] = __float2half_rn(x[1]);
        }
    }
}

// ------------------------------------------------------------------------------- swiglu, add

template <bool VEC>
__global__ void swiglu_kernel(const float *gate, const float *up, int64_t n, float *out) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (VEC) {
        for (int64_t i = start; i < (n >> 2); i += stride) {
            const float4 g = reinterpret_cast<const float4 *>(gate)[i], u = reinterpret_cast<const float4 *>(up)[i];
            reinterpret_cast<float4 *>(out)[i] =
                make_float4(g.x / (1.0f + expf(-g.x)) * u.x, g.y / (1.0f + expf(-g.y)) * u.y,
                            g.z / (1.0f + expf(-g.z)) * u.z, g.w / (1.0f + expf(-g.w)) * u.w);
        }
    } else {
        for (int64_t i = start; i < n; i += stride) {
            const float g = gate[i];
            out[i] = g / (1.0f + expf(-g)) * up[i];
        }
    }
}

template <bool VEC>
__global__ void add_kernel(const float *a, const float *b, int64_t n, float *out) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (VEC) {
        for (int64_t i = start; i < (n >> 2); i += stride) {
            const float4 x = reinterpret_cast<const float4 *>(a)[i], y = reinterpret_cast<const float4 *>(b)[i];
            reinterpret_cast<float4 *>(out)[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
        }
    } else {
        for (int64_t i = start; i < n; i += stride) out[i] = a[i] + b[i];
    }
}

// ------------------------------------------------------------------------------- kv_store

/* One block per token (grid x), looping over the row; row t to cache row start[t] + pos[t] (start nullptr: pos[t]),
 * skipped outside [0, capacity). VEC: row_len % 4 == 0 and 16/8-byte aligned rows. */
template <bool VEC>
__global__ void kv_store_kernel(const float *src, int64_t row_len, const int32_t *pos, const int32_t *start,
                                __half *cache, int64_t capacity) {
    const int64_t t = blockIdx.x;
    const int64_t slot = (int64_t)pos[t] + (start ? start[t] : 0);
    if (slot < 0 || slot >= capacity) return;
    const float *s = src + t * row_len;
    __half *d = cache + slot * row_len;
    if (VEC) {
        for (int64_t i = threadIdx.x; i < (row_len >> 2); i += blockDim.x) {
            const float4 v = reinterpret_cast<const float4 *>(s)[i];
            __half2 lo = __floats2half2_rn(v.x, v.y), hi = __floats2half2_rn(v.z, v.w);
            uint2 packed;
            packed.x = *reinterpret_cast<uint32_t *>(&lo);
            packed.y = *reinterpret_cast<uint32_t *>(&hi);
            reinterpret_cast<uint2 *>(d)[i] = packed;
        }
    } else {
        for (int64_t i = threadIdx.x; i < row_len; i += blockDim.x) d[i] = __float2half_rn(s[i]);
    }
}

} // namespace

extern "C" NB_API nb_status nb_cuda_rmsnorm(nb_cuda *ctx, const float *d_x, const float *d_w, int64_t n_rows, int64_t n,
                                            float eps, float *d_y) {
    nb_status st_ = nb_cuda_use(ctx);
    if (st_ != NB_OK) return st_;
    return launch_rmsnorm<false>(ctx, const_cast<float *>(d_x), nullptr, d_w, n_rows, n, eps, d_y, "nb_cuda_rmsnorm");
}

extern "C" NB_API nb_status nb_cuda_add_rmsnorm(nb_cuda *ctx, float *d_x, const float *d_b, const float *d_w,
                                                int64_t n_rows, int64_t n, float eps, float *d_y) {
    nb_status st_ = nb_cuda_use(ctx);
    if (st_ != NB_OK) return st_;
    return launch_rmsnorm<true>(ctx, d_x, d_b, d_w, n_rows, n, eps, d_y, "nb_cuda_add_rmsnorm");
}

extern "C" NB_API nb_status nb_cuda_rope(nb_cuda *ctx, float *d_x, int64_t n_tok, int64_t n_heads, int64_t head_dim,
                                         const int32_t *d_pos, float theta, float freq_scale,
                                         const float *d_freq_factors) {
    nb_status st_ = nb_cuda_use(ctx);
    if (st_ != NB_OK) return st_;
    NB_CUDA_REQUIRE(ctx, d_x && d_pos, "nb_cuda_rope: null pointer");
    NB_CUDA_REQUIRE(ctx, n_tok >= 0 && n_heads >= 0 && head_dim >= 0 && head_dim % 2 == 0 &&
                             head_dim <= 2 * ROPE_MAX_HALF && fits3(n_tok, n_heads, head_dim),
                    "nb_cuda_rope: bad size (n_tok %lld, n_heads %lld, head_dim %lld: even, <= %d)", (long long)n_tok,
                    (long long)n_heads, (long long)head_dim, 2 * ROPE_MAX_HALF);
    NB_CUDA_REQUIRE(ctx, n_heads * head_dim <= 0x7fffffff && n_tok <= 0x7fffffff, "nb_cuda_rope: too large");
    NB_CUDA_REQUIRE(ctx, theta > 0.0f, "nb_cuda_rope: theta must be > 0");
    if (n_tok == 0 || n_heads == 0 || head_dim == 0) return NB_OK;
    rope_kernel<<<(unsigned)n_tok, ROPE_THREADS, 0, ctx->stream>>>(d_x, (int)n_heads, (int)head_dim, d_pos, theta,
                                                                   freq_scale, d_freq_factors);
    return nb_cuda_launched(ctx, "nb_cuda_rope");
}

extern "C" NB_API nb_status nb_cuda_swiglu(nb_cuda *ctx, const float *d_gate, const float *d_up, int64_t n,
                                           float *d_out) {
    nb_status st_ = nb_cuda_use(ctx);
    if (st_ != NB_OK) return st_;
    NB_CUDA_REQUIRE(ctx, d_gate && d_up && d_out, "nb_cuda_swiglu: null pointer");
    NB_CUDA_REQUIRE(ctx, n >= 0 && fits3(n, 4, 1), "nb_cuda_swiglu: bad size %lld", (long long)n);
    if (n == 0) return NB_OK;
    if (n % 4 == 0 && aligned16(d_gate) && aligned16(d_up) && aligned16(d_out))
        swiglu_kernel<true><<<grid_for(ctx, n / 4, 256), 256, 0, ctx->stream>>>(d_gate, d_up, n, d_out);
    else
        swiglu_kernel<false><<<grid_for(ctx, n, 256), 256, 0, ctx->stream>>>(d_gate, d_up, n, d_out);
    return nb_cuda_launched(ctx, "nb_cuda_swiglu");
}

extern "C" NB_API nb_status nb_cuda_add(nb_cuda *ctx, const float *d_a, const float *d_b, int64_t n, float *d_out) {
    nb_status st_ = nb_cuda_use(ctx);
    if (st_ != NB_OK) return st_;
    NB_CUDA_REQUIRE(ctx, d_a && d_b && d_out, "nb_cuda_add: null pointer");
    NB_CUDA_REQUIRE(ctx, n >= 0 && fits3(n, 4, 1), "nb_cuda_add: bad size %lld", (long long)n);
    if (n == 0) return NB_OK;
    if (n % 4 == 0 && aligned16(d_a) && aligned16(d_b) && aligned16(d_out))
        add_kernel<true><<<grid_for(ctx, n / 4, 256), 256, 0, ctx->stream>>>(d_a, d_b, n, d_out);
    else
        add_kernel<false><<<grid_for(ctx, n, 256), 256, 0, ctx->stream>>>(d_a, d_b, n, d_out);
    return nb_cuda_launched(ctx, "nb_cuda_add");
}

extern "C" NB_API nb_status nb_cuda_kv_store(nb_cuda *ctx, const float *d_src, int64_t n_tok, int64_t row_len,
                                             const int32_t *d_pos, const int32_t *d_start, uint16_t *d_cache,
                                             int64_t capacity) {
    nb_status st_ = nb_cuda_use(ctx);
    if (st_ != NB_OK) return st_;
    NB_CUDA_REQUIRE(ctx, d_src && d_pos && d_cache, "nb_cuda_kv_store: null pointer");
    NB_CUDA_REQUIRE(ctx, n_tok >= 0 && row_len >= 0 && capacity >= 0 && fits3(n_tok, row_len, 4) &&
                             fits3(capacity, row_len, 2),
                    "nb_cuda_kv_store: bad size (n_tok %lld, row_len %lld, capacity %lld)", (long long)n_tok,
                    (long long)row_len, (long long)capacity);
    NB_CUDA_REQUIRE(ctx, n_tok <= 0x7fffffff, "nb_cuda_kv_store: n_tok %lld too large", (long long)n_tok);
    if (n_tok == 0 || row_len == 0 || capacity == 0) return NB_OK;
    const bool vec = row_len % 4 == 0 && aligned16(d_src) && ((uintptr_t)d_cache & 7) == 0;
    if (vec)
        kv_store_kernel<true><<<(unsigned)n_tok, 256, 0, ctx->stream>>>(
            d_src, row_len, d_pos, d_start, reinterpret_cast<__half *>(d_cache), capacity);
    else
        kv_store_kernel<false><<<(unsigned)n_tok, 256, 0, ctx->stream>>>(
            d_src, row_len, d_pos, d_start, reinterpret_cast<__half *>(d_cache), capacity);
    return nb_cuda_launched(ctx, "nb_cuda_kv_store");
}

extern "C" NB_API nb_status nb_cuda_rope_store(nb_cuda *ctx, float *d_q, const float *d_k, const float *d_v,
                                               int64_t n_tok, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                               const int32_t *d_pos, const int32_t *d_start, float theta,
                                               float freq_scale, const float *d_freq_factors, uint16_t *d_k_cache,
                                               uint16_t *d_v_cache, int64_t capacity) {
    nb_status st_ = nb_cuda_use(ctx);
    if (st_ != NB_OK) return st_;
    NB_CUDA_REQUIRE(ctx, d_q && d_k && d_v && d_pos && d_k_cache && d_v_cache, "nb_cuda_rope_store: null pointer");
    NB_CUDA_REQUIRE(ctx, n_tok >= 0 && n_heads >= 0 && n_kv_heads >= 0 && head_dim >= 0 && head_dim % 2 == 0 &&
                             head_dim <= 2 * ROPE_MAX_HALF && capacity >= 0 && fits3(n_tok, n_heads, head_dim) &&
                             fits3(n_tok, n_kv_heads, head_dim) && fits3(capacity, n_kv_heads, head_dim * 2),
                    "nb_cuda_rope_store: bad size (n_tok %lld, n_heads %lld, n_kv_heads %lld, head_dim %lld: even, "
                    "<= %d, capacity %lld)",
                    (long long)n_tok, (long long)n_heads, (long long)n_kv_heads, (long long)head_dim,
                    2 * ROPE_MAX_HALF, (long long)capacity);
    NB_CUDA_REQUIRE(ctx, n_heads <= 0x7fffffff && n_kv_heads <= 0x7fffffff &&
                             (n_heads + 2 * n_kv_heads) * head_dim <= 0x7fffffff && n_tok <= 0x7fffffff &&
                             (n_heads + 2 * n_kv_heads + ROPE_STORE_HEADS - 1) / ROPE_STORE_HEADS <= 65535,
                    "nb_cuda_rope_store: too large");
    NB_CUDA_REQUIRE(ctx, theta > 0.0f, "nb_cuda_rope_store: theta must be > 0");
    if (n_tok == 0 || head_dim == 0 || n_heads + n_kv_heads == 0) return NB_OK;
    const dim3 grid((unsigned)n_tok, (unsigned)((n_heads + 2 * n_kv_heads + ROPE_STORE_HEADS - 1) / ROPE_STORE_HEADS));
    rope_store_kernel<<<grid, ROPE_THREADS, 0, ctx->stream>>>(
        d_q, d_k, d_v, (int)n_heads, (int)n_kv_heads, (int)head_dim, d_pos, d_start, theta, freq_scale, d_freq_factors,
        reinterpret_cast<__half *>(d_k_cache), reinterpret_cast<__half *>(d_v_cache), capacity);
    return nb_cuda_launched(ctx, "nb_cuda_rope_store");
}
