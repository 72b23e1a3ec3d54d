// What every CUDA source of libnibble_cuda shares: the context and the argument/launch checks.
#ifndef NB_CUDA_INTERNAL_CUH
#define NB_CUDA_INTERNAL_CUH

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <stdarg.h>
#include <stdio.h>
#include "nibble.h"

#define NB_STAGING_CHUNK ((size_t) 8 << 20) /* bytes of one pinned staging buffer (two of them) */

struct nb_cuda {
    int device;
    int sm_count;
    int compute_capability; /* major * 10 + minor */
    cudaStream_t stream;
    void *staging[2];          /* pinned host buffers for nb_cuda_upload */
    cudaEvent_t staged[2];     /* recorded after the copy out of staging[i] was queued */
    void *scratch;             /* NB_CUDA_SCRATCH_BYTES of device memory for the kernels' own intermediate data */
    int capturing;
    char error[512];
};

/* Makes the context's device current and clears its error: every entry point starts with it, since a context may
 * be used from another thread than the one that opened it. */
static inline nb_status nb_cuda_use(nb_cuda *ctx) {
    if (ctx == nullptr) return NB_ERR_ARGUMENT;
    ctx->error[0] = 0;
    cudaError_t err = cudaSetDevice(ctx->device);
    if (err == cudaSuccess) return NB_OK;
    snprintf(ctx->error, sizeof ctx->error, "cudaSetDevice(%d): %s", ctx->device, cudaGetErrorString(err));
    return NB_ERR_DEVICE;
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
