/* nibble.h: the one contract between the Java runtime and the native kernels.
 * Every entry point returns an nb_status (0 = success) unless it is a pure query. */
#ifndef NIBBLE_H
#define NIBBLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define NB_API __declspec(dllexport)
#else
#define NB_API __attribute__((visibility("default")))
#endif

typedef int32_t nb_status;
#define NB_OK 0
#define NB_ERR_ARGUMENT 1
#define NB_ERR_UNSUPPORTED 2
#define NB_ERR_DEVICE 3
#define NB_ERR_MEMORY 4 /* the library could not allocate its scratch or start its threads */

/* Version of the kernel library, encoded as major * 10000 + minor * 100 + patch. */
NB_API int32_t nb_version(void);

/* CPU feature bits found by CPUID at load time. */
#define NB_CPU_AVX2 (1u << 0)
#define NB_CPU_FMA (1u << 1)
#define NB_CPU_F16C (1u << 2)
#define NB_CPU_AVX512F (1u << 3)
#define NB_CPU_AVX512BW (1u << 4)
#define NB_CPU_AVX512VNNI (1u << 5)
#define NB_CPU_AVXVNNI (1u << 6)
NB_API uint32_t nb_cpu_features(void);

/* ---------------------------------------------------------------------------------------------
 * CPU kernels (libnibble_cpu).
 *
 * Conventions: matrices are row-major; sizes are int64_t element counts and must be >= 0 (a size of
 * 0 is a no-op that returns NB_OK); every pointer argument must be non-null unless documented as
 * optional. Arguments are validated and errors returned as NB_ERR_ARGUMENT / NB_ERR_UNSUPPORTED;
 * no entry point allocates or prints on its hot path. Calls that use the worker pool (marked [pool])
 * are serialised by a library mutex, so concurrent callers are safe but do not overlap.
 * ------------------------------------------------------------------------------------------- */

/* Weight types: the GGUF/ggml type ids (NB_NF4 is nibble's own extension, see GgmlType.NF4). */
#define NB_F32 0
#define NB_F16 1
#define NB_Q4_0 2
#define NB_Q8_0 8
#define NB_Q4_K 12
#define NB_Q6_K 14
#define NB_IQ4_NL 20
#define NB_BF16 30
#define NB_NF4 1024

/* Instruction-set paths. The library starts on the best one the CPU has, or on the one named by the
 * environment variable NIBBLE_ISA=scalar|avx2|avx512 when the CPU has it. */
#define NB_ISA_SCALAR 0
#define NB_ISA_AVX2 1   /* AVX2 + FMA + F16C */
#define NB_ISA_AVX512 2 /* AVX-512 F/BW/VL + VNNI */
/* Highest path this CPU supports. */
NB_API int32_t nb_isa_best(void);
/* Path in use now. */
NB_API int32_t nb_isa(void);
/* Forces a path (tests run every path the machine has); NB_ERR_UNSUPPORTED when the CPU lacks it. */
NB_API nb_status nb_set_isa(int32_t isa);

/* Starts (or restarts with a new size) the persistent worker pool: n_threads in total, the calling
 * thread included; n_threads <= 0 means one per online CPU. Without a call the pool has 1 thread. */
NB_API nb_status nb_pool_init(int32_t n_threads);
NB_API int32_t nb_pool_threads(void);

/* Bytes that n elements of a type take (n must be a multiple of the type's block size), or -1 for an
 * unknown type or bad n. Java checks segment bounds with the same rule. */
NB_API int64_t nb_type_size(int32_t wtype, int64_t n);

/* [pool] y[t*n_out + o] = sum_i W[o][i] * x[t*n_in + i] for t < n_tok, o < n_out.
 * W: n_out rows of n_in weights of type wtype, rows contiguous (row o at byte o * nb_type_size(wtype, n_in)),
 * ggml block layout; n_in must be a multiple of the block size. For Q4_0, Q8_0, IQ4_NL, Q4_K and Q6_K
 * the SIMD paths quantize x to 8 bits per 32-element block (absmax scaling) and use integer dot products
 * (relative error ~0.5% of the norm of the products); other types and the scalar path compute in f32.
 * The quantized activations live in a library-owned buffer that grows when a call needs more than any
 * call before it (NB_ERR_MEMORY if that fails), so steady-state calls do not allocate. */
NB_API nb_status nb_matmul(int32_t wtype, const void *w, int64_t n_out, int64_t n_in,
                           const float *x, int64_t n_tok, float *y);

/* out[r*n_cols + c] = row ids[r] of the typed table (n_rows x n_cols) as float; an id outside
 * [0, n_rows) is NB_ERR_ARGUMENT (nothing is written then). */
NB_API nb_status nb_embed(int32_t wtype, const void *table, int64_t n_rows, int64_t n_cols,
                          const int32_t *ids, int64_t n_ids, float *out);

/* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for n_rows rows of n floats. y may equal x. */
NB_API nb_status nb_rmsnorm(const float *x, const float *w, int64_t n_rows, int64_t n, float eps, float *y);

/* Rotary embedding in place on x[n_tok][n_heads][head_dim], rotating adjacent pairs (x[2i], x[2i+1])
 * for 2i < head_dim (GGUF llama files, whose Q/K rows the converter permuted) by angle
 * pos[t] * freq_scale * theta^(-2i/head_dim) / freq_factors[i]. freq_factors (head_dim/2 floats, the
 * Llama 3.1 "rope_freqs" tensor) is optional (NULL: all 1). head_dim must be even. */
NB_API nb_status nb_rope(float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, const int32_t *pos,
                         float theta, float freq_scale, const float *freq_factors);

/* In-place softmax over each of n_rows rows of n floats. */
NB_API nb_status nb_softmax(float *x, int64_t n_rows, int64_t n);

/* [pool] Causal attention with grouped query heads.
 * q: [n_tok][n_heads][head_dim] f32; out: same shape. The cache holds positions 0..n_kv-1: key of
 * position j, kv head h at k + (j * kv_stride + h * head_dim) elements (likewise v), elements of type
 * kv_type (NB_F32 or NB_F16); kv_stride >= n_kv_heads * head_dim. Query head g uses kv head
 * g / (n_heads / n_kv_heads); n_heads must be a multiple of n_kv_heads. Query t (at position pos[t])
 * attends to cache positions 0..min(pos[t], n_kv-1) with scores q.k * scale, softmaxed.
 * head_dim <= 512. */
NB_API nb_status nb_attention(const float *q, int64_t n_tok, const int32_t *pos, int64_t n_heads,
                              int64_t n_kv_heads, int64_t head_dim, int32_t kv_type, const void *k,
                              const void *v, int64_t n_kv, int64_t kv_stride, float scale, float *out);

/* out = silu(gate) * up, n floats. out may alias either input. */
NB_API nb_status nb_swiglu(const float *gate, const float *up, int64_t n, float *out);

/* out = a + b, n floats. out may alias either input. */
NB_API nb_status nb_add(const float *a, const float *b, int64_t n, float *out);

/* Conversions (round to nearest even), n elements. */
NB_API nb_status nb_f32_to_f16(const float *src, int64_t n, uint16_t *dst);
NB_API nb_status nb_f16_to_f32(const uint16_t *src, int64_t n, float *dst);

/* Quantizes one row of n finite floats (n a multiple of the block size) into nb_type_size(type, n) bytes at dst, exactly
 * as the converter's Java quantizers do (same search, same rounding: byte-identical output). Types: NB_Q4_K and NB_Q6_K,
 * else NB_ERR_UNSUPPORTED; a bad n, a null pointer or a non-finite weight is NB_ERR_ARGUMENT. Runs on the calling thread
 * without the library mutex and without allocating, so several threads may quantize rows at once. */
NB_API nb_status nb_quantize_row(int32_t type, const float *src, int64_t n, void *dst);

/* CUDA library queries (libnibble_cuda only). */
NB_API int32_t nb_cuda_version(void);
/* Writes the number of visible CUDA devices to *count; returns NB_ERR_DEVICE when the driver is absent. */
NB_API nb_status nb_cuda_device_count(int32_t *count);

#ifdef __cplusplus
}
#endif

#endif /* NIBBLE_H */
