// What every CUDA source of libnibble_cuda shares: the context and the argument/launch checks.
#ifndef NB_CUDA_INTERNAL_CUH
#define NB_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <stdarg.h>
#include <stdio.h>
#include "nibble.h"

#define NB_STAGING_CHUNK ((size_t) 8 << 20) /* bytes of one pinned staging buffer (two of them) */

/* Activations that ctx->scratch holds already quantized for the integer GEMV (the layout quantize_x of
 * nb_cuda_matmul.cu writes for x, rows tokens, n_in = n); x == nullptr: none. */
struct nb_cuda_xq {
    const float *x;
    int64_t rows, n;
};

struct nb_cuda {
    int device;
    int sm_count;
    int compute_capability; /* major * 10 + minor */
    cudaStream_t stream;
    void *staging[2];          /* pinned host buffers for nb_cuda_upload */
    cudaEvent_t staged[2];     /* recorded after the copy out of staging[i] was queued */
    void *scratch;             /* NB_CUDA_SCRATCH_BYTES of device memory for the kernels' own intermediate data */
    int capturing;
    /* Host-side record of quantized activations left in the scratch buffer. xq: written by the current call (the
     * rmsnorms, when they quantize their output too); xq_prev: what the previous call on this context left, the only
     * one a call may use. nb_cuda_use, which every entry point calls first, shifts xq into xq_prev and clears xq, so
     * that any call in between (a kernel, memset, write, upload, sync, graph launch, capture begin/end...) makes
     * the record stale. This is all host state, decided per call from the call sequence alone: a captured graph
     * records exactly the launches (with or without quantize_x) that the same calls made eagerly, so it is
     * capture-safe, and the graph replays them in the same order. */
    nb_cuda_xq xq, xq_prev;
    /* Tests only (nb_cuda_check_matmul sets it): the integer tensor-core matmul (mmq, 9..64 tokens) takes its portable
     * form (workspace + mq_combine) where it would use thread-block clusters, so that one GPU checks both. calloc
     * leaves it 0. */
    int mm_portable;
    char error[512];
};

/* Makes the context's device current and clears its error: every entry point starts with it, since a context may
 * be used from another thread than the one that opened it. */
static inline nb_status nb_cuda_use(nb_cuda *ctx) {
    if (ctx == nullptr) return NB_ERR_ARGUMENT;
    ctx->error[0] = 0;
    ctx->xq_prev = ctx->xq;
    ctx->xq = nb_cuda_xq{nullptr, 0, 0};
    cudaError_t err = cudaSetDevice(ctx->device);
    if (err == cudaSuccess) return NB_OK;
    snprintf(ctx->error, sizeof ctx->error, "cudaSetDevice(%d): %s", ctx->device, cudaGetErrorString(err));
    return NB_ERR_DEVICE;
}

/* Whether the integer matmuls' int8 activations of rows tokens of n floats fit the scratch buffer (and its index
 * range): 40 bytes per 32 floats per token, see quantize_x, gemv_int_fits (1..8 tokens) and mmq_fits (9..64, in half
 * the buffer) in nb_cuda_matmul.cu; half the buffer for every count, so that whatever this accepts both accept. */
static inline bool nb_cuda_xq_fits(int64_t rows, int64_t n) {
    return rows >= 1 && rows <= 64 && n >= 32 && n % 32 == 0 && n / 32 <= 0x7FFFFFFF / 64 &&
           (size_t) rows * (size_t) (n / 32) * 40 <= (size_t) NB_CUDA_SCRATCH_BYTES / 2;
}

/* The producer's side: this call has written the quantized activations of x (rows x n) into the scratch buffer. */
static inline void nb_cuda_xq_set(nb_cuda *ctx, const float *x, int64_t rows, int64_t n) {
    ctx->xq = nb_cuda_xq{x, rows, n};
}

/* The consumer's side: whether the previous call on ctx left the quantized activations of exactly (x, rows, n) in
 * the scratch buffer, so that quantize_x may be skipped. */
static inline bool nb_cuda_xq_ready(const nb_cuda *ctx, const float *x, int64_t rows, int64_t n) {
    return x != nullptr && ctx->xq_prev.x == x && ctx->xq_prev.rows == rows && ctx->xq_prev.n == n;
}

/* Records a formatted message in ctx->error and returns status. */
static inline nb_status nb_cuda_fail(nb_cuda *ctx, nb_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(ctx->error, sizeof ctx->error, fmt, args);
    va_end(args);
    return status;
}

/* Turns a CUDA runtime error into NB_ERR_DEVICE (NB_ERR_MEMORY for cudaErrorMemoryAllocation) with a message. */
static inline nb_status nb_cuda_check(nb_cuda *ctx, cudaError_t err, const char *what) {
    if (err == cudaSuccess) return NB_OK;
    return nb_cuda_fail(ctx, err == cudaErrorMemoryAllocation ? NB_ERR_MEMORY : NB_ERR_DEVICE, "%s: %s (%s)", what,
                        cudaGetErrorString(err), cudaGetErrorName(err));
}

/* Checks that the launch just queued was accepted (bad configuration, missing kernel image, ...). */
static inline nb_status nb_cuda_launched(nb_cuda *ctx, const char *kernel) {
    return nb_cuda_check(ctx, cudaGetLastError(), kernel);
}

#define NB_CUDA_REQUIRE(ctx, cond, ...) \
    do { if (!(cond)) return nb_cuda_fail((ctx), NB_ERR_ARGUMENT, __VA_ARGS__); } while (0)

#endif
