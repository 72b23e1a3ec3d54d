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
#define NB_ERR_FAULT 5  /* CPU: the memory a kernel read or wrote faulted (SIGBUS), see "Faults" below */

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
#define NB_CPU_AVX512VL (1u << 7)
NB_API uint32_t nb_cpu_features(void);

/* ---------------------------------------------------------------------------------------------
 * CPU kernels (libnibble_cpu; its nb_version() is 200: every kernel takes an nb_cpu context).
 *
 * Conventions: matrices are row-major; sizes are int64_t element counts and must be >= 0 (a size of
 * 0 is a no-op that returns NB_OK); every pointer argument must be non-null unless documented as
 * optional. Arguments are validated and errors returned as NB_ERR_ARGUMENT / NB_ERR_UNSUPPORTED;
 * no entry point allocates or prints on its hot path.
 *
 * Contexts. The library keeps no process-wide mutable state: an nb_cpu context owns a worker pool, a
 * scratch buffer, a lock and an instruction-set path, and every kernel takes one as its first argument
 * (the pure ones too, so that the path is chosen per context). Several contexts live side by side in one
 * process and run at the same time, each on its own threads. Calls that use the pool or the scratch
 * (marked [pool]) are serialised by the context's mutex, so threads may share a context safely but
 * its [pool] calls do not overlap; the other kernels run on the calling thread and never block.
 * Only CPUID facts (nb_cpu_features, nb_isa_best) and the NIBBLE_ISA default are process-wide, and they
 * never change. nb_type_size and nb_quantize_row need no context.
 *
 * Faults. Kernels read weights in place, typically from a memory-mapped model file. If that file shrinks while a kernel
 * runs, the pages past its new end raise SIGBUS. The library installs a SIGBUS handler once, when it loads, that turns
 * such a fault inside a kernel of a context (on the calling thread or on a pool worker) into the status NB_ERR_FAULT
 * for that call: the call is abandoned (its outputs are partly written), the pool reaches its barrier and the context
 * stays usable, so the next call on memory that is intact computes normally. A SIGBUS anywhere else goes to the
 * handler installed before ours (the JVM's, which turns a Java read of a truncated mapping into InternalError), or
 * gets the default action. SIGSEGV is not handled: it means a bug. nb_quantize_row is not guarded.
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

/* Instruction-set paths. A new context starts on the best one the CPU has, or on the one named by the
 * environment variable NIBBLE_ISA=scalar|avx2|avx512 (read once per process) when the CPU has it. */
#define NB_ISA_SCALAR 0
#define NB_ISA_AVX2 1   /* AVX2 + FMA + F16C */
#define NB_ISA_AVX512 2 /* AVX-512 F/BW/VL + VNNI (and the AVX2 path's extensions) */
/* Highest path this CPU supports. */
NB_API int32_t nb_isa_best(void);

typedef struct nb_cpu nb_cpu;

/* Opens a context whose worker pool has n_threads threads in total, the calling thread included
 * (n_threads <= 0: one per CPU the process may use, i.e. its affinity mask, fewer under a cgroup v2 CPU quota;
 * at most 256). NB_ERR_MEMORY when its threads cannot be started; *ctx is NULL on any error. Idle workers poll
 * for about 100 microseconds after a call, then sleep. */
NB_API nb_status nb_cpu_open(int32_t n_threads, nb_cpu **ctx);
/* Stops the context's workers and frees it (NULL: nothing). No call on ctx may be in flight or follow. */
NB_API void nb_cpu_close(nb_cpu *ctx);
/* Threads of the context's pool, the caller included (0 for NULL). */
NB_API int32_t nb_cpu_threads(const nb_cpu *ctx);
/* Path the context uses now (-1 for NULL). */
NB_API int32_t nb_cpu_isa(const nb_cpu *ctx);
/* Forces the context's path (tests run every path the machine has); NB_ERR_UNSUPPORTED when the CPU
 * lacks it. Waits for the context's [pool] call in flight, if any; other contexts are not affected. */
NB_API nb_status nb_cpu_set_isa(nb_cpu *ctx, int32_t isa);

/* Bytes that n elements of a type take (n must be a multiple of the type's block size), or -1 for an
 * unknown type or bad n. Java checks segment bounds with the same rule. */
NB_API int64_t nb_type_size(int32_t wtype, int64_t n);

/* [pool] y[t*n_out + o] = sum_i W[o][i] * x[t*n_in + i] for t < n_tok, o < n_out.
 * W: n_out rows of n_in weights of type wtype, rows contiguous (row o at byte o * nb_type_size(wtype, n_in)),
 * ggml block layout; n_in must be a multiple of the block size. For Q4_0, Q8_0, IQ4_NL, Q4_K and Q6_K
 * the SIMD paths quantize x to 8 bits per 32-element block (absmax scaling) and use integer dot products
 * (relative error ~0.5% of the norm of the products); other types and the scalar path compute in f32.
 * NaN and infinities propagate on every path: an output that a non-finite weight or activation enters is NaN or
 * infinite, never finite (a quantized block of activations holding one makes its outputs NaN).
 * The quantized activations live in the context's scratch buffer, which grows when a call needs more than
 * any call before it (NB_ERR_MEMORY if that fails), so steady-state calls do not allocate. */
NB_API nb_status nb_matmul(nb_cpu *ctx, int32_t wtype, const void *w, int64_t n_out, int64_t n_in,
                           const float *x, int64_t n_tok, float *y);

/* out[r*n_cols + c] = row ids[r] of the typed table (n_rows x n_cols) as float; an id outside
 * [0, n_rows) is NB_ERR_ARGUMENT (nothing is written then). */
NB_API nb_status nb_embed(nb_cpu *ctx, int32_t wtype, const void *table, int64_t n_rows, int64_t n_cols,
                          const int32_t *ids, int64_t n_ids, float *out);

/* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for n_rows rows of n floats. y may equal x. */
NB_API nb_status nb_rmsnorm(nb_cpu *ctx, const float *x, const float *w, int64_t n_rows, int64_t n, float eps,
                            float *y);

/* Rotary embedding in place on x[n_tok][n_heads][head_dim], rotating adjacent pairs (x[2i], x[2i+1])
 * for 2i < head_dim (GGUF llama files, whose Q/K rows the converter permuted) by angle
 * pos[t] * freq_scale * theta^(-2i/head_dim) / freq_factors[i]. freq_factors (head_dim/2 floats, the
 * Llama 3.1 "rope_freqs" tensor) is optional (NULL: all 1). head_dim must be even. */
NB_API nb_status nb_rope(nb_cpu *ctx, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim,
                         const int32_t *pos, float theta, float freq_scale, const float *freq_factors);

/* In-place softmax over each of n_rows rows of n floats. */
NB_API nb_status nb_softmax(nb_cpu *ctx, float *x, int64_t n_rows, int64_t n);

/* [pool] Causal attention with grouped query heads, for tokens of one or several sequences.
 * q: [n_tok][n_heads][head_dim] f32; out: same shape. Token t's sequence begins at cache row
 * b = start[t] (start NULL: b = 0 for every token), and holds its positions 0..n_kv-1 there: key of
 * position j, kv head h at k + ((b + j) * kv_stride + h * head_dim) elements (likewise v), elements of
 * type kv_type (NB_F32 or NB_F16); kv_stride >= n_kv_heads * head_dim. Query head g uses kv head
 * g / (n_heads / n_kv_heads); n_heads must be a multiple of n_kv_heads. Query t (at position pos[t])
 * attends to its sequence's positions 0..min(pos[t], n_kv-1) with scores q.k * scale, softmaxed.
 * head_dim <= 512; pos and start are >= 0 (NB_ERR_ARGUMENT otherwise). */
NB_API nb_status nb_attention(nb_cpu *ctx, const float *q, int64_t n_tok, const int32_t *pos, const int32_t *start,
                              int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int32_t kv_type, const void *k,
                              const void *v, int64_t n_kv, int64_t kv_stride, float scale, float *out);

/* out = silu(gate) * up, n floats. out may alias either input. */
NB_API nb_status nb_swiglu(nb_cpu *ctx, const float *gate, const float *up, int64_t n, float *out);

/* out = a + b, n floats. out may alias either input. */
NB_API nb_status nb_add(nb_cpu *ctx, const float *a, const float *b, int64_t n, float *out);

/* Conversions (round to nearest even), n elements. */
NB_API nb_status nb_f32_to_f16(nb_cpu *ctx, const float *src, int64_t n, uint16_t *dst);
NB_API nb_status nb_f16_to_f32(nb_cpu *ctx, const uint16_t *src, int64_t n, float *dst);

/* Quantizes one row of n finite floats (n a multiple of the block size) into nb_type_size(type, n) bytes at dst, exactly
 * as the converter's Java quantizers do (same search, same rounding: byte-identical output). Types: NB_Q4_K and NB_Q6_K,
 * else NB_ERR_UNSUPPORTED; a bad n, a null pointer or a non-finite weight is NB_ERR_ARGUMENT. Needs no context: runs on
 * the calling thread without a lock and without allocating, so several threads may quantize rows at once.
 * nb_quantize_row uses the process's default path (the best the CPU has, or NIBBLE_ISA's); nb_quantize_row_isa the
 * path named (tests hold every path to the same bytes; NB_ERR_UNSUPPORTED when the CPU lacks it). */
NB_API nb_status nb_quantize_row(int32_t type, const float *src, int64_t n, void *dst);
NB_API nb_status nb_quantize_row_isa(int32_t isa, int32_t type, const float *src, int64_t n, void *dst);

/* ---------------------------------------------------------------------------------------------
 * CUDA (libnibble_cuda).
 *
 * A context (nb_cuda) is one device and one stream with its own error text; the library keeps no
 * process-wide mutable state, so several contexts (devices, models) live side by side. A context is
 * used by one thread at a time. Pointers named d_* are device memory allocated on the context's
 * device. Kernels are queued on the context's stream and return at once: NB_OK means the arguments
 * were valid and the launch was accepted; a fault inside a kernel surfaces at the next nb_cuda_read
 * or nb_cuda_sync. On any non-OK status nb_cuda_error(ctx) says what failed.
 * Every kernel entry point takes only device pointers and sizes (never reads host memory nor
 * allocates), so a sequence of them can be captured into a CUDA graph and replayed.
 * Activations are f32 rows, contiguous; the KV cache is f16. Each context owns a device scratch buffer of
 * NB_CUDA_SCRATCH_BYTES that kernels may use between their own launches (activations converted to f16 or int8):
 * work on one stream is ordered, so one call's use never overlaps another's.
 * ------------------------------------------------------------------------------------------- */
#define NB_CUDA_SCRATCH_BYTES ((int64_t) 64 << 20)
typedef struct nb_cuda nb_cuda;

/* CUDART_VERSION the library was built with, e.g. 13000. */
NB_API int32_t nb_cuda_version(void);
/* Writes the number of visible CUDA devices to *count; returns NB_ERR_DEVICE when the driver is absent
 * or too old (then *count is 0). */
NB_API nb_status nb_cuda_device_count(int32_t *count);
/* Describes device `device`: its name (NUL-terminated, at most name_cap bytes), total and free memory
 * in bytes, compute capability as major*10+minor, and multiprocessor count. */
NB_API nb_status nb_cuda_device_info(int32_t device, char *name, int32_t name_cap, int64_t *total_bytes,
                                     int64_t *free_bytes, int32_t *compute_capability, int32_t *sm_count);
/* Text of the driver or runtime error that made the last nb_cuda_device_* or nb_cuda_open call fail. */
NB_API const char *nb_cuda_last_open_error(void);

/* Opens a context on `device` (its own non-blocking stream and pinned staging buffers). */
NB_API nb_status nb_cuda_open(int32_t device, nb_cuda **ctx);
/* Waits for queued work and frees the context (not the memory allocated through it). */
NB_API void nb_cuda_close(nb_cuda *ctx);
/* What the last failing call on this context did wrong, one line; "" when nothing failed. */
NB_API const char *nb_cuda_error(const nb_cuda *ctx);
/* Free and total bytes of the context's device now. */
NB_API nb_status nb_cuda_mem_info(nb_cuda *ctx, int64_t *free_bytes, int64_t *total_bytes);

/* Device memory (cudaMalloc, 256-byte aligned); NB_ERR_MEMORY when the device has too little free. */
NB_API nb_status nb_cuda_alloc(nb_cuda *ctx, int64_t bytes, void **d_out);
NB_API nb_status nb_cuda_free(nb_cuda *ctx, void *d);
/* Sets `bytes` bytes at d to `byte` (queued). */
NB_API nb_status nb_cuda_memset(nb_cuda *ctx, void *d, int32_t byte, int64_t bytes);
/* Copies `bytes` from host memory (any: a file mapping too) to the device through the context's pinned
 * staging buffers, the host copy of one chunk overlapping the transfer of the previous; returns when done. */
NB_API nb_status nb_cuda_upload(nb_cuda *ctx, void *d_dst, const void *src, int64_t bytes);
/* Queues a small host-to-device copy (token ids, positions); src may be reused as soon as this returns. */
NB_API nb_status nb_cuda_write(nb_cuda *ctx, void *d_dst, const void *src, int64_t bytes);
/* Waits for everything queued on the stream, then copies device memory to the host: the one point where
 * results reach the host. A kernel fault queued earlier is reported here. */
NB_API nb_status nb_cuda_read(nb_cuda *ctx, void *dst, const void *d_src, int64_t bytes);
/* Waits for everything queued on the stream. */
NB_API nb_status nb_cuda_sync(nb_cuda *ctx);

/* Graphs: between nb_cuda_capture_begin and nb_cuda_capture_end, kernel calls on ctx are recorded,
 * not run; capture_end instantiates them as an executable graph that nb_cuda_graph_launch queues whole. */
NB_API nb_status nb_cuda_capture_begin(nb_cuda *ctx);
NB_API nb_status nb_cuda_capture_end(nb_cuda *ctx, void **graph);
NB_API nb_status nb_cuda_graph_launch(nb_cuda *ctx, void *graph);
NB_API void nb_cuda_graph_free(void *graph);

/* Weights on the device. A weight may be stored in a layout of the library's choosing (repacked for
 * aligned, coalesced loads): nb_cuda_weight_bytes gives its size on the device, -1 for an unsupported
 * type or an n_in that is not a multiple of the block size. nb_cuda_upload_weight copies a weight in
 * ggml layout (n_out rows of nb_type_size(wtype, n_in) bytes, host memory such as the file mapping) into
 * d_dst, which holds nb_cuda_weight_bytes bytes; returns when done. */
NB_API int64_t nb_cuda_weight_bytes(int32_t wtype, int64_t n_out, int64_t n_in);
NB_API nb_status nb_cuda_upload_weight(nb_cuda *ctx, int32_t wtype, const void *src, int64_t n_out, int64_t n_in,
                                       void *d_dst);

/* y[t*n_out + o] = sum_i W[o][i] * x[t*n_in + i] for t < n_tok, o < n_out; W as uploaded by
 * nb_cuda_upload_weight. Quantized types (Q4_0, Q8_0, Q4_K, Q6_K, IQ4_NL) and n_tok <= 64: activations quantized
 * to 8 bits per block of 32 (each token alone), each weight read once for all tokens; n_tok <= 8: a dp4a GEMV,
 * 9..64: int8 tensor cores. Batch invariance, row t of y against row t of another call on the same weights:
 *   - both calls with 9..64 tokens: bit-identical (on any GPU, and through the fused entry points below);
 *   - both with 1..8 tokens: bit-identical through the same entry point with the same weights on GPUs of the same
 *     multiprocessor count (not across entry points: a fused call splits the K sum differently);
 *   - one with 1..8 and one with 9..64, or either against more than 64 tokens: not bit-identical (rounding only).
 * Float types with n_tok <= 8: f32 GEMV. Otherwise a tensor-core kernel (f16 operands, f32 accumulation)
 * dequantizing weight tiles in registers, not batch-invariant. */
NB_API nb_status nb_cuda_matmul(nb_cuda *ctx, int32_t wtype, const void *d_w, int64_t n_out, int64_t n_in,
                                const float *d_x, int64_t n_tok, float *d_y);
/* Several weights of one input in one launch (Q, K and V of a layer): y_j = W_j x for j < n_w (n_w <= 4), each W_j
 * of type wtypes[j] with n_outs[j] rows of n_in, each y_j n_tok rows of n_outs[j]. The host arrays are read during
 * the call only. Same results as n_w calls of nb_cuda_matmul (bit for bit: quantized types at 9..64 tokens). */
NB_API nb_status nb_cuda_matmul_shared_input(nb_cuda *ctx, int32_t n_w, const int32_t *wtypes, const void *const *d_ws,
                                             const int64_t *n_outs, int64_t n_in, const float *d_x, int64_t n_tok,
                                             float *const *d_ys);
/* The feed-forward's first half in one launch: y = silu(G x) * (U x), G and U both of type wtype, n_out rows of n_in;
 * y is n_tok rows of n_out. Same results as two nb_cuda_matmul calls and nb_cuda_swiglu (bit for bit: quantized
 * types at 9..64 tokens). */
NB_API nb_status nb_cuda_matmul_swiglu(nb_cuda *ctx, int32_t wtype, const void *d_gate, const void *d_up,
                                       int64_t n_out, int64_t n_in, const float *d_x, int64_t n_tok, float *d_y);
/* out[r*n_cols + c] = row ids[r] of the uploaded table (n_rows x n_cols) as f32. An id outside [0, n_rows)
 * writes a row of zeros (ids are checked on the host before they are written to the device). */
NB_API nb_status nb_cuda_embed(nb_cuda *ctx, int32_t wtype, const void *d_table, int64_t n_rows, int64_t n_cols,
                               const int32_t *d_ids, int64_t n_ids, float *d_out);

/* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for n_rows rows of n floats; y may equal x. */
NB_API nb_status nb_cuda_rmsnorm(nb_cuda *ctx, const float *d_x, const float *d_w, int64_t n_rows, int64_t n,
                                 float eps, float *d_y);
/* Residual add fused with the next norm: x += b, then y = rmsnorm(x) * w (x updated in place). */
NB_API nb_status nb_cuda_add_rmsnorm(nb_cuda *ctx, float *d_x, const float *d_b, const float *d_w, int64_t n_rows,
                                     int64_t n, float eps, float *d_y);
/* Rotary embedding in place, exactly as nb_rope (adjacent pairs; d_pos int32 per token; d_freq_factors
 * optional, head_dim/2 floats). */
NB_API nb_status nb_cuda_rope(nb_cuda *ctx, float *d_x, int64_t n_tok, int64_t n_heads, int64_t head_dim,
                              const int32_t *d_pos, float theta, float freq_scale, const float *d_freq_factors);
/* out = silu(gate) * up, n floats; out may alias either input. */
NB_API nb_status nb_cuda_swiglu(nb_cuda *ctx, const float *d_gate, const float *d_up, int64_t n, float *d_out);
/* out = a + b, n floats; out may alias either input. */
NB_API nb_status nb_cuda_add(nb_cuda *ctx, const float *d_a, const float *d_b, int64_t n, float *d_out);
/* Stores n_tok rows of row_len f32 into the f16 cache: row t at cache row r = d_start[t] + d_pos[t] (int32 on the
 * device; d_start NULL: r = d_pos[t]), cache[r*row_len + i] = (half) src[t*row_len + i]; a row r outside
 * [0, capacity) is skipped. */
NB_API nb_status nb_cuda_kv_store(nb_cuda *ctx, const float *d_src, int64_t n_tok, int64_t row_len,
                                  const int32_t *d_pos, const int32_t *d_start, uint16_t *d_cache, int64_t capacity);
/* RoPE and the cache write of one layer in one launch: rotates q ([n_tok][n_heads][head_dim]) in place as nb_cuda_rope
 * does (angle from d_pos[t]), rotates k ([n_tok][n_kv_heads][head_dim]) and stores it and v (same shape) as f16 into
 * rows d_start[t] + d_pos[t] of the caches (d_start NULL: rows d_pos[t]; row length n_kv_heads*head_dim; a row
 * outside [0, capacity) is not stored). k is left unchanged. */
NB_API nb_status nb_cuda_rope_store(nb_cuda *ctx, float *d_q, const float *d_k, const float *d_v, int64_t n_tok,
                                    int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, const int32_t *d_pos,
                                    const int32_t *d_start, float theta, float freq_scale,
                                    const float *d_freq_factors, uint16_t *d_k_cache, uint16_t *d_v_cache,
                                    int64_t capacity);
/* Causal attention with grouped query heads over an f16 cache, the semantics of nb_attention:
 * q, out: [n_tok][n_heads][head_dim] f32. Token t's sequence begins at cache row b = d_start[t] (d_start NULL:
 * b = 0 for every token, one sequence): key of its position j, kv head h at d_k[(b + j)*kv_stride + h*head_dim]
 * (likewise d_v). Query t attends to positions 0..min(pos[t], n_kv-1) of its sequence; d_pos and d_start are
 * on the device, so that a captured graph replays for any positions and rows, and n_kv is only an upper bound:
 * the most positions one sequence holds (without d_start e.g. the cache capacity). Nothing here can read them:
 * the caller guarantees b + min(pos[t], n_kv-1) is a row of the cache. A token with a negative position or start
 * row sees nothing (zeros). Scores q.k * scale, softmaxed in f32. head_dim <= 256 and a multiple of 32 (64 and
 * 128: Llama). Without d_start the tokens' query rows share each key tile loaded; with d_start each token's
 * rows are on their own. Few blocks: split-K (flash-decoding) over chunks of the keys, partial results merged in
 * a thread-block cluster (sm_90) or through d_work.
 * nb_cuda_attention_work_bytes(n_tok, n_heads, head_dim, n_kv): d_work bytes enough for ANY call with at most
 * n_tok tokens, with or without d_start, over sequences of at most n_kv positions (0: none needed); a call needs
 * at most that for its own n_tok, so one workspace sized for the largest batch serves every call. */
NB_API int64_t nb_cuda_attention_work_bytes(int64_t n_tok, int64_t n_heads, int64_t head_dim, int64_t n_kv);
NB_API nb_status nb_cuda_attention(nb_cuda *ctx, const float *d_q, int64_t n_tok, const int32_t *d_pos,
                                   const int32_t *d_start, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                   const uint16_t *d_k, const uint16_t *d_v, int64_t n_kv, int64_t kv_stride,
                                   float scale, void *d_work, int64_t work_bytes, float *d_out);

#ifdef __cplusplus
}
#endif

#endif /* NIBBLE_H */
