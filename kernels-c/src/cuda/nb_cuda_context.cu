// The CUDA library's identity, device queries, contexts, memory, copies and graphs.
#include <stdlib.h>
#include <string.h>
#include "nb_cuda_internal.cuh"

extern "C" NB_API int32_t nb_version(void) { return 200; }

extern "C" NB_API int32_t nb_cuda_version(void) { return CUDART_VERSION; }

// Device queries and nb_cuda_open run before any context exists; their last error is kept per thread.
static thread_local char open_error[512];

static nb_status open_fail(cudaError_t err, const char *what) {
    snprintf(open_error, sizeof open_error, "%s: %s (%s)", what, cudaGetErrorString(err), cudaGetErrorName(err));
    return err == cudaErrorMemoryAllocation ? NB_ERR_MEMORY : NB_ERR_DEVICE;
}

extern "C" NB_API const char *nb_cuda_last_open_error(void) { return open_error; }

extern "C" NB_API nb_status nb_cuda_device_count(int32_t *count) {
    if (count == nullptr) return NB_ERR_ARGUMENT;
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        *count = 0;
        return open_fail(err, "cudaGetDeviceCount");
    }
    *count = n;
    return NB_OK;
}

extern "C" NB_API nb_status nb_cuda_device_info(int32_t device, char *name, int32_t name_cap, int64_t *total_bytes,
                                                int64_t *free_bytes, int32_t *compute_capability, int32_t *sm_count) {
    if (name == nullptr || name_cap < 1 || total_bytes == nullptr || free_bytes == nullptr
            || compute_capability == nullptr || sm_count == nullptr) {
        return NB_ERR_ARGUMENT;
    }
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess) return open_fail(err, "cudaGetDeviceProperties");
    int previous = 0;
    cudaGetDevice(&previous);
    if ((err = cudaSetDevice(device)) != cudaSuccess) return open_fail(err, "cudaSetDevice");
    size_t free_now = 0, total = 0;
    err = cudaMemGetInfo(&free_now, &total);
    cudaSetDevice(previous);
    if (err != cudaSuccess) return open_fail(err, "cudaMemGetInfo");
    snprintf(name, (size_t) name_cap, "%s", prop.name);
    *total_bytes = (int64_t) total;
    *free_bytes = (int64_t) free_now;
    *compute_capability = prop.major * 10 + prop.minor;
    *sm_count = prop.multiProcessorCount;
    return NB_OK;
}

extern "C" NB_API nb_status nb_cuda_open(int32_t device, nb_cuda **out) {
    if (out == nullptr) return NB_ERR_ARGUMENT;
    *out = nullptr;
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceProperties(&prop, device);
    if (err != cudaSuccess) return open_fail(err, "cudaGetDeviceProperties");
    if ((err = cudaSetDevice(device)) != cudaSuccess) return open_fail(err, "cudaSetDevice");
    nb_cuda *ctx = (nb_cuda *) calloc(1, sizeof(nb_cuda));
    if (ctx == nullptr) {
        snprintf(open_error, sizeof open_error, "out of host memory for a CUDA context");
        return NB_ERR_MEMORY;
    }
    ctx->device = device;
    ctx->sm_count = prop.multiProcessorCount;
    ctx->compute_capability = prop.major * 10 + prop.minor;
    err = cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking);
    if (err == cudaSuccess) err = cudaMalloc(&ctx->scratch, (size_t) NB_CUDA_SCRATCH_BYTES);
    for (int i = 0; i < 2 && err == cudaSuccess; i++) {
        err = cudaHostAlloc(&ctx->staging[i], NB_STAGING_CHUNK, cudaHostAllocDefault);
        if (err == cudaSuccess) err = cudaEventCreateWithFlags(&ctx->staged[i], cudaEventDisableTiming);
    }
    if (err != cudaSuccess) {
        nb_status status = open_fail(err, "opening a CUDA context");
        nb_cuda_close(ctx);
        return status;
    }
    *out = ctx;
    return NB_OK;
}

extern "C" NB_API void nb_cuda_close(nb_cuda *ctx) {
    if (ctx == nullptr) return;
    cudaSetDevice(ctx->device);
    if (ctx->stream != nullptr) cudaStreamSynchronize(ctx->stream);
    for (int i = 0; i < 2; i++) {
        if (ctx->staged[i] != nullptr) cudaEventDestroy(ctx->staged[i]);
        if (ctx->staging[i] != nullptr) cudaFreeHost(ctx->staging[i]);
    }
    if (ctx->scratch != nullptr) cudaFree(ctx->scratch);
    if (ctx->stream != nullptr) cudaStreamDestroy(ctx->stream);
    free(ctx);
}

extern "C" NB_API const char *nb_cuda_error(const nb_cuda *ctx) { return ctx == nullptr ? "no context" : ctx->error; }


extern "C" NB_API nb_status nb_cuda_mem_info(nb_cuda *ctx, int64_t *free_bytes, int64_t *total_bytes) {
    nb_status s = nb_cuda_use(ctx);
    if (s != NB_OK) return s;
    NB_CUDA_REQUIRE(ctx, free_bytes != nullptr && total_bytes != nullptr, "nb_cuda_mem_info: null output");
    size_t f = 0, t = 0;
    if ((s = nb_cuda_check(ctx, cudaMemGetInfo(&f, &t), "cudaMemGetInfo")) != NB_OK) return s;
    *free_bytes = (int64_t) f;
    *total_bytes = (int64_t) t;
    return NB_OK;
}

extern "C" NB_API nb_status nb_cuda_alloc(nb_cuda *ctx, int64_t bytes, void **d_out) {
    nb_status s = nb_cuda_use(ctx);
    if (s != NB_OK) return s;
    NB_CUDA_REQUIRE(ctx, d_out != nullptr && bytes > 0, "nb_cuda_alloc: %lld bytes", (long long) bytes);
    *d_out = nullptr;
    cudaError_t err = cudaMalloc(d_out, (size_t) bytes);
    if (err != cudaSuccess) {
        cudaGetLastError(); // an allocation failure is not sticky; clear it so later launches are not blamed
        return nb_cuda_fail(ctx, NB_ERR_MEMORY, "cannot allocate %lld bytes on CUDA device %d: %s", (long long) bytes,
                            ctx->device, cudaGetErrorString(err));
    }
    return NB_OK;
}

extern "C" NB_API nb_status nb_cuda_free(nb_cuda *ctx, void *d) {
    nb_status s = nb_cuda_use(ctx);
    if (s != NB_OK) return s;
    return nb_cuda_check(ctx, cudaFree(d), "cudaFree");
}

extern "C" NB_API nb_status nb_cuda_memset(nb_cuda *ctx, void *d, int32_t byte, int64_t bytes) {
    nb_status s = nb_cuda_use(ctx);
    if (s != NB_OK) return s;
    NB_CUDA_REQUIRE(ctx, d != nullptr && bytes >= 0, "nb_cuda_memset: bad arguments");
    return nb_cuda_check(ctx, cudaMemsetAsync(d, byte, (size_t) bytes, ctx->stream), "cudaMemsetAsync");
}

extern "C" NB_API nb_status nb_cuda_upload(nb_cuda *ctx, void *d_dst, const void *src, int64_t bytes) {
    nb_status s = nb_cuda_use(ctx);
    if (s != NB_OK) return s;
    NB_CUDA_REQUIRE(ctx, !ctx->capturing, "nb_cuda_upload: not allowed while a graph is being captured");
    NB_CUDA_REQUIRE(ctx, d_dst != nullptr && src != nullptr && bytes >= 0, "nb_cuda_upload: bad arguments");
    // Double buffering: while chunk i is copied from staging[i % 2] by the GPU, the CPU fills the other buffer
    // from the source (for a file mapping, this is where the pages are read).
    int64_t done = 0;
    for (int i = 0; done < bytes; i ^= 1) {
        size_t n = (size_t) (bytes - done < (int64_t) NB_STAGING_CHUNK ? bytes - done : (int64_t) NB_STAGING_CHUNK);
        if ((s = nb_cuda_check(ctx, cudaEventSynchronize(ctx->staged[i]), "waiting for a staging buffer")) != NB_OK) {
            return s;
        }
        memcpy(ctx->staging[i], (const char *) src + done, n);
        s = nb_cuda_check(ctx, cudaMemcpyAsync((char *) d_dst + done, ctx->staging[i], n, cudaMemcpyHostToDevice,
                                               ctx->stream), "cudaMemcpyAsync (upload)");
        if (s == NB_OK) s = nb_cuda_check(ctx, cudaEventRecord(ctx->staged[i], ctx->stream), "cudaEventRecord");
        if (s != NB_OK) return s;
        done += (int64_t) n;
    }
    return nb_cuda_check(ctx, cudaStreamSynchronize(ctx->stream), "upload");
}

extern "C" NB_API nb_status nb_cuda_write(nb_cuda *ctx, void *d_dst, const void *src, int64_t bytes) {
    nb_status s = nb_cuda_use(ctx);
    if (s != NB_OK) return s;
    NB_CUDA_REQUIRE(ctx, d_dst != nullptr && src != nullptr && bytes >= 0, "nb_cuda_write: bad arguments");
    // From pageable memory the runtime stages the bytes before returning, so src is free to reuse at once.
    return nb_cuda_check(ctx, cudaMemcpyAsync(d_dst, src, (size_t) bytes, cudaMemcpyHostToDevice, ctx->stream),
                         "cudaMemcpyAsync (write)");
}

extern "C" NB_API nb_status nb_cuda_read(nb_cuda *ctx, void *dst, const void *d_src, int64_t bytes) {
    nb_status s = nb_cuda_use(ctx);
    if (s != NB_OK) return s;
    NB_CUDA_REQUIRE(ctx, dst != nullptr && d_src != nullptr && bytes >= 0, "nb_cuda_read: bad arguments");
    if ((s = nb_cuda_check(ctx, cudaStreamSynchronize(ctx->stream), "running queued kernels")) != NB_OK) return s;
    return nb_cuda_check(ctx, cudaMemcpy(dst, d_src, (size_t) bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (read)");
}

extern "C" NB_API nb_status nb_cuda_sync(nb_cuda *ctx) {
    nb_status s = nb_cuda_use(ctx);
    if (s != NB_OK) return s;
    return nb_cuda_check(ctx, cudaStreamSynchronize(ctx->stream), "running queued kernels");
}

extern "C" NB_API nb_status nb_cuda_capture_begin(nb_cuda *ctx) {
    nb_status s = nb_cuda_use(ctx);
    if (s != NB_OK) return s;
    NB_CUDA_REQUIRE(ctx, !ctx->capturing, "nb_cuda_capture_begin: a capture is already under way");
    // Thread-local mode: other threads may keep using their own contexts while this one records.
    s = nb_cuda_check(ctx, cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    if (s == NB_OK) ctx->capturing = 1;
    return s;
}

extern "C" NB_API nb_status nb_cuda_capture_end(nb_cuda *ctx, void **graph) {
    nb_status s = nb_cuda_use(ctx);
    if (s != NB_OK) return s;
    NB_CUDA_REQUIRE(ctx, ctx->capturing && graph != nullptr, "nb_cuda_capture_end: no capture under way");
    ctx->capturing = 0;
    *graph = nullptr;
    cudaGraph_t g = nullptr;
    if ((s = nb_cuda_check(ctx, cudaStreamEndCapture(ctx->stream, &g), "cudaStreamEndCapture")) != NB_OK) return s;
    cudaGraphExec_t exec = nullptr;
    s = nb_cuda_check(ctx, cudaGraphInstantiate(&exec, g, 0), "cudaGraphInstantiate");
    cudaGraphDestroy(g);
    if (s == NB_OK) *graph = exec;
    return s;
}

extern "C" NB_API nb_status nb_cuda_graph_launch(nb_cuda *ctx, void *graph) {
    nb_status s = nb_cuda_use(ctx);
    if (s != NB_OK) return s;
    NB_CUDA_REQUIRE(ctx, graph != nullptr, "nb_cuda_graph_launch: no graph");
    return nb_cuda_check(ctx, cudaGraphLaunch((cudaGraphExec_t) graph, ctx->stream), "cudaGraphLaunch");
}

extern "C" NB_API void nb_cuda_graph_free(void *graph) {
    if (graph != nullptr) cudaGraphExecDestroy((cudaGraphExec_t) graph);
}
