/* Public entry points: argument checks, path selection, scratch for quantized activations, work splitting. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "nb_internal.h"

/* One context: its worker pool, its scratch for quantized activations, its lock and its instruction-set path. */
struct nb_cpu {
    nb_pool pool;
    /* Serialises the calls that use the pool or the scratch; kept off the cache lines the workers poll. */
    _Alignas(64) pthread_mutex_t lock;
    const nb_kernels *_Atomic k;
    /* Grows only when a call needs more than any before it (so not on a steady-state hot path). */
    void *scratch;
    size_t scratch_size;
};

/* A path needs every extension its objects are compiled with (NB_FLAGS_* in kernels-c/CMakeLists.txt): the compiler
 * may use any of them anywhere, e.g. EVEX-encoded 256-bit instructions (AVX512VL) in the AVX-512 build's AVX2 code. */
NB_API int32_t nb_isa_best(void) {
    uint32_t f = nb_cpu_features();
    uint32_t avx512 =
        NB_CPU_AVX512F | NB_CPU_AVX512BW | NB_CPU_AVX512VL | NB_CPU_AVX512VNNI | NB_CPU_AVX2 | NB_CPU_FMA | NB_CPU_F16C;
    uint32_t avx2 = NB_CPU_AVX2 | NB_CPU_FMA | NB_CPU_F16C;
    if ((f & avx512) == avx512) return NB_ISA_AVX512;
    if ((f & avx2) == avx2) return NB_ISA_AVX2;
    return NB_ISA_SCALAR;
}

const nb_kernels *nb_kernels_for(int32_t isa) {
    switch (isa) {
    case NB_ISA_AVX512: return &nb_kernels_avx512;
    case NB_ISA_AVX2: return &nb_kernels_avx2;
    default: return &nb_kernels_scalar;
    }
}

static pthread_once_t isa_once = PTHREAD_ONCE_INIT;
static int32_t isa_default; /* written once under isa_once, read-only after */

static void choose_isa(void) {
    int32_t isa = nb_isa_best();
    const char *env = getenv("NIBBLE_ISA");
    if (env) {
        int32_t want = strcmp(env, "scalar") == 0 ? NB_ISA_SCALAR
                       : strcmp(env, "avx2") == 0 ? NB_ISA_AVX2
                       : strcmp(env, "avx512") == 0 ? NB_ISA_AVX512
                                                     : -1;
        if (want >= 0 && want <= isa) isa = want; /* a path the CPU lacks is never chosen */
    }
    isa_default = isa;
}

int32_t nb_isa_default(void) {
    pthread_once(&isa_once, choose_isa);
    return isa_default;
}

/* The context's kernels. set_isa may swap them at any time; every table stays valid, so a relaxed load suffices. */
static inline const nb_kernels *K(const nb_cpu *ctx) { return atomic_load_explicit(&ctx->k, memory_order_relaxed); }

NB_API nb_status nb_cpu_open(int32_t n_threads, nb_cpu **out) {
    if (!out) return NB_ERR_ARGUMENT;
    *out = NULL;
    nb_fault_install(); /* done when the library loads; again here in case a constructor did not run */
    nb_cpu *ctx = NULL;
    if (posix_memalign((void **)&ctx, 64, sizeof *ctx) != 0) return NB_ERR_MEMORY;
    memset(ctx, 0, sizeof *ctx);
    atomic_init(&ctx->k, nb_kernels_for(nb_isa_default()));
    if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
        free(ctx);
        return NB_ERR_MEMORY;
    }
    nb_status s = nb_pool_start(&ctx->pool, n_threads);
    if (s != NB_OK) {
        pthread_mutex_destroy(&ctx->lock);
        free(ctx);
        return s;
    }
    *out = ctx;
    return NB_OK;
}

NB_API void nb_cpu_close(nb_cpu *ctx) {
    if (!ctx) return;
    nb_pool_stop(&ctx->pool);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx->scratch);
    free(ctx);
}

NB_API int32_t nb_cpu_threads(const nb_cpu *ctx) { return ctx ? nb_pool_size(&ctx->pool) : 0; }

NB_API int32_t nb_cpu_isa(const nb_cpu *ctx) {
    if (!ctx) return -1;
    const nb_kernels *k = K(ctx);
    return k == &nb_kernels_avx512 ? NB_ISA_AVX512 : k == &nb_kernels_avx2 ? NB_ISA_AVX2 : NB_ISA_SCALAR;
}

NB_API nb_status nb_cpu_set_isa(nb_cpu *ctx, int32_t isa) {
    if (!ctx || isa < NB_ISA_SCALAR || isa > NB_ISA_AVX512) return NB_ERR_ARGUMENT;
    if (isa > nb_isa_best()) return NB_ERR_UNSUPPORTED;
    /* Under the lock, so that a pooled call in flight finishes on the path it started with before this returns. */
    pthread_mutex_lock(&ctx->lock);
    atomic_store_explicit(&ctx->k, nb_kernels_for(isa), memory_order_relaxed);
    pthread_mutex_unlock(&ctx->lock);
    return NB_OK;
}

int64_t nb_block_elems(int32_t wtype) {
    switch (wtype) {
    case NB_F32: case NB_F16: case NB_BF16: return 1;
    case NB_Q4_0: case NB_Q8_0: case NB_IQ4_NL: return 32;
    case NB_Q4_K: case NB_Q6_K: case NB_NF4: return 256;
    default: return 0;
    }
}

int64_t nb_block_bytes(int32_t wtype) {
    switch (wtype) {
    case NB_F32: return 4;
    case NB_F16: case NB_BF16: return 2;
    case NB_Q4_0: case NB_IQ4_NL: return 18;
    case NB_Q8_0: return 34;
    case NB_Q4_K: return 144;
    case NB_Q6_K: return 210;
    case NB_NF4: return 134;
    default: return 0;
    }
}

NB_API int64_t nb_type_size(int32_t wtype, int64_t n) {
    int64_t be = nb_block_elems(wtype);
    int64_t r;
    if (be == 0 || n < 0 || n % be != 0) return -1;
    if (__builtin_mul_overflow(n / be, nb_block_bytes(wtype), &r)) return -1;
    return r;
}

/* True when a * b * c fits in int64 (all >= 0). */
static int fits(int64_t a, int64_t b, int64_t c) {
    int64_t r;
    return !__builtin_mul_overflow(a, b, &r) && !__builtin_mul_overflow(r, c, &r);
}

/* ------------------------------------------------------------------ matmul */

/* Called with the context's lock held. */
static int reserve_scratch(nb_cpu *ctx, size_t bytes) {
    if (bytes <= ctx->scratch_size) return 1;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) return 0;
    free(ctx->scratch);
    ctx->scratch = p;
    ctx->scratch_size = bytes;
    return 1;
}

typedef struct {
    nb_mm_args a;
    const nb_kernels *k;
    int64_t chunk;
    _Atomic int64_t next;
    _Atomic int64_t next_tok;
} mm_task;

static void quantize_task(void *ctx, int ith, int nth) {
    (void)ith, (void)nth;
    mm_task *m = ctx;
    const nb_mm_args *a = &m->a;
    for (int64_t t; (t = atomic_fetch_add(&m->next_tok, 1)) < a->n_tok;) {
        if (a->packed)
            m->k->quantize_x_packed(a, t);
        else
            m->k->quantize_x(a->x + t * a->n_in, a->n_in, (int8_t *)a->qx + t * a->n_in,
                             (float *)a->dx + t * (a->n_in / 32), (int32_t *)a->sx + t * (a->n_in / 16));
    }
}

/* Rows are handed out in chunks from a shared counter, so a thread slowed by other load takes fewer. */
static void matmul_task(void *ctx, int ith, int nth) {
    (void)ith, (void)nth;
    mm_task *m = ctx;
    for (;;) {
        int64_t r0 = atomic_fetch_add(&m->next, m->chunk);
        if (r0 >= m->a.n_out) return;
        int64_t r1 = r0 + m->chunk < m->a.n_out ? r0 + m->chunk : m->a.n_out;
        m->k->matmul_rows(&m->a, r0, r1);
    }
}

NB_API nb_status nb_matmul(nb_cpu *ctx, int32_t wtype, const void *w, int64_t n_out, int64_t n_in, const float *x,
                           int64_t n_tok, float *y) {
    if (!ctx || !w || !x || !y || n_out < 0 || n_in < 0 || n_tok < 0) return NB_ERR_ARGUMENT;
    int64_t be = nb_block_elems(wtype);
    if (be == 0) return NB_ERR_UNSUPPORTED;
    if (n_in % be != 0 || !fits(n_out, n_in, 4) || !fits(n_tok, n_in, 4) || !fits(n_tok, n_out, 4))
        return NB_ERR_ARGUMENT;
    if (n_out == 0 || n_tok == 0) return NB_OK;
    if (n_in == 0) {
        memset(y, 0, (size_t)(n_tok * n_out) * 4);
        return NB_OK;
    }
    pthread_mutex_lock(&ctx->lock);
    mm_task m = {.a = {.wtype = wtype, .w = w, .n_out = n_out, .n_in = n_in, .row_bytes = nb_type_size(wtype, n_in),
                       .x = x, .n_tok = n_tok, .y = y},
                 .k = K(ctx)};
    if (m.k->wants_q8(wtype)) {
        size_t nq = (size_t)(n_tok * n_in), nd = (size_t)(n_tok * (n_in / 32)), ns = (size_t)(n_tok * (n_in / 16));
        size_t qbytes = (nq + 63) / 64 * 64;
        if (!reserve_scratch(ctx, qbytes + nd * 4 + (ns > 3 * nd ? ns : 3 * nd) * 4)) {
            pthread_mutex_unlock(&ctx->lock);
            return NB_ERR_MEMORY;
        }
        void *scratch = ctx->scratch;
        if (m.k->wants_packed(wtype, n_tok)) {
            m.a.packed = 1;
            m.a.xp = scratch;
            m.a.dx = (const float *)((char *)scratch + qbytes);
            m.a.dxs = (const float *)((char *)scratch + qbytes + nd * 4);
            m.a.xcorr = (const int32_t *)((char *)scratch + qbytes + 2 * nd * 4);
        } else {
            m.a.qx = scratch;
            m.a.dx = (const float *)((char *)scratch + qbytes);
            m.a.sx = (const int32_t *)((char *)scratch + qbytes + nd * 4);
        }
        atomic_store(&m.next_tok, 0);
        /* x is the caller's memory too, which may be a mapping: a fault there ends the call as one in W does */
        nb_status s = n_tok < 4 ? nb_guarded(quantize_task, &m, 0, 1) /* too little work to wake the pool for */
                                : nb_pool_run(&ctx->pool, quantize_task, &m);
        if (s != NB_OK) {
            pthread_mutex_unlock(&ctx->lock);
            return s;
        }
    }
    int nth = nb_pool_size(&ctx->pool);
    /* Several chunks per thread, so that a thread the OS preempts holds up little work; whole 16-row blocks. One
     * token: ~4 per thread, as the decode kernels prefetch within a chunk only and each chunk starts cold. */
    int64_t per = n_tok == 1 ? 4 : 16;
    int64_t chunk = (n_out + per * nth - 1) / (per * nth);
    chunk = (chunk + 15) / 16 * 16;
    m.chunk = chunk;
    atomic_store(&m.next, 0);
    nb_status s = nb_pool_run(&ctx->pool, matmul_task, &m);
    pthread_mutex_unlock(&ctx->lock);
    return s;
}

/* ------------------------------------------------------------------ attention */

typedef struct {
    nb_attn_args a;
    const nb_kernels *k;
    _Atomic int64_t next;
} attn_task;

static void attention_task(void *ctx, int ith, int nth) {
    (void)ith, (void)nth;
    attn_task *m = ctx;
    int64_t total = m->a.n_tok * m->a.n_kv_heads;
    for (;;) {
        int64_t i = atomic_fetch_add(&m->next, 1);
        if (i >= total) return;
        m->k->attention_one(&m->a, i / m->a.n_kv_heads, i % m->a.n_kv_heads);
    }
}

NB_API nb_status nb_attention(nb_cpu *ctx, const float *q, int64_t n_tok, const int32_t *pos, const int32_t *start,
                              int64_t n_heads, int64_t n_kv_heads, int64_t head_dim, int32_t kv_type, const void *k,
                              const void *v, int64_t n_kv, int64_t kv_stride, float scale, float *out) {
    if (!ctx || !q || !pos || !k || !v || !out || n_tok < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_kv < 0)
        return NB_ERR_ARGUMENT;
    if (kv_type != NB_F32 && kv_type != NB_F16) return NB_ERR_UNSUPPORTED;
    if (n_heads % n_kv_heads != 0 || head_dim > NB_MAX_HEAD_DIM || kv_stride < n_kv_heads * head_dim ||
        !fits(n_tok, n_heads, head_dim) || !fits(n_kv, kv_stride, 4))
        return NB_ERR_ARGUMENT;
    for (int64_t t = 0; t < n_tok; t++)
        if (pos[t] < 0 || (start && start[t] < 0)) return NB_ERR_ARGUMENT;
    if (n_tok == 0) return NB_OK;
    pthread_mutex_lock(&ctx->lock);
    attn_task m = {.a = {.q = q, .n_tok = n_tok, .pos = pos, .start = start, .n_heads = n_heads, .n_kv_heads = n_kv_heads,
                         .head_dim = head_dim, .kv_type = kv_type, .k = k, .v = v, .n_kv = n_kv,
                         .kv_stride = kv_stride, .scale = scale, .out = out},
                   .k = K(ctx)};
    atomic_store(&m.next, 0);
    nb_status s = nb_pool_run(&ctx->pool, attention_task, &m);
    pthread_mutex_unlock(&ctx->lock);
    return s;
}

/* ------------------------------------------------------------------ single-threaded kernels */

/* The arguments of a kernel that runs on the calling thread, for nb_guarded: a SIGBUS in its reads (embed's table,
 * rmsnorm's weight and rope's factors are usually the model's mapping) ends the call with NB_ERR_FAULT. */
typedef struct {
    const nb_kernels *k;
    int32_t wtype, op;
    const void *a, *b, *c;
    int64_t n_rows, n, n_heads;
    float f0, f1;
    void *out;
} one_task;

enum { OP_EMBED, OP_RMSNORM, OP_ROPE, OP_SOFTMAX, OP_SWIGLU, OP_ADD, OP_F32_TO_F16, OP_F16_TO_F32 };

static void one_body(void *arg, int ith, int nth) {
    (void)ith, (void)nth;
    const one_task *t = arg;
    const nb_kernels *k = t->k;
    switch (t->op) {
    case OP_EMBED: { /* a: table, b: ids, n_rows: ids, n: columns */
        const int32_t *ids = t->b;
        int64_t row_bytes = nb_type_size(t->wtype, t->n);
        for (int64_t i = 0; i < t->n_rows; i++)
            k->dequant_row(t->wtype, (const uint8_t *)t->a + ids[i] * row_bytes, t->n, (float *)t->out + i * t->n);
        break;
    }
    case OP_RMSNORM: /* a: x, b: w, f0: eps */
        for (int64_t r = 0; r < t->n_rows; r++)
            k->rmsnorm((const float *)t->a + r * t->n, t->b, t->n, t->f0, (float *)t->out + r * t->n);
        break;
    case OP_ROPE: { /* out: x, a: pos, c: freq factors, n_rows: tokens, n: head_dim, f0: theta, f1: freq scale */
        const int32_t *pos = t->a;
        for (int64_t i = 0; i < t->n_rows; i++)
            k->rope((float *)t->out + i * t->n_heads * t->n, t->n_heads, t->n, pos[i], t->f0, t->f1, t->c);
        break;
    }
    case OP_SOFTMAX:
        for (int64_t r = 0; r < t->n_rows; r++) k->softmax((float *)t->out + r * t->n, t->n);
        break;
    case OP_SWIGLU: k->swiglu(t->a, t->b, t->n, t->out); break;
    case OP_ADD: k->add(t->a, t->b, t->n, t->out); break;
    case OP_F32_TO_F16: k->f32_to_f16(t->a, t->n, t->out); break;
    case OP_F16_TO_F32: k->f16_to_f32(t->a, t->n, t->out); break;
    }
}

static nb_status run_one(one_task t) { return nb_guarded(one_body, &t, 0, 1); }

NB_API nb_status nb_embed(nb_cpu *ctx, int32_t wtype, const void *table, int64_t n_rows, int64_t n_cols,
                          const int32_t *ids, int64_t n_ids, float *out) {
    if (!ctx || !table || !ids || !out || n_rows < 0 || n_cols < 0 || n_ids < 0) return NB_ERR_ARGUMENT;
    int64_t be = nb_block_elems(wtype);
    if (be == 0) return NB_ERR_UNSUPPORTED;
    if (n_cols % be != 0 || !fits(n_rows, n_cols, 4) || !fits(n_ids, n_cols, 4)) return NB_ERR_ARGUMENT;
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= n_rows) return NB_ERR_ARGUMENT;
    return run_one((one_task){.k = K(ctx), .op = OP_EMBED, .wtype = wtype, .a = table, .b = ids, .n_rows = n_ids,
                              .n = n_cols, .out = out});
}

NB_API nb_status nb_rmsnorm(nb_cpu *ctx, const float *x, const float *w, int64_t n_rows, int64_t n, float eps, float *y) {
    if (!ctx || !x || !w || !y || n_rows < 0 || n < 0 || !fits(n_rows, n, 4) || !(eps >= 0.0f)) return NB_ERR_ARGUMENT;
    if (n == 0) return NB_OK;
    return run_one((one_task){.k = K(ctx), .op = OP_RMSNORM, .a = x, .b = w, .n_rows = n_rows, .n = n, .f0 = eps, .out = y});
}

NB_API nb_status nb_rope(nb_cpu *ctx, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, const int32_t *pos,
                         float theta, float freq_scale, const float *freq_factors) {
    if (!ctx || !x || !pos || n_tok < 0 || n_heads < 0 || head_dim < 0 || head_dim % 2 != 0 || head_dim > NB_MAX_HEAD_DIM ||
        !fits(n_tok, n_heads, head_dim) || !(theta > 0.0f))
        return NB_ERR_ARGUMENT;
    return run_one((one_task){.k = K(ctx), .op = OP_ROPE, .a = pos, .c = freq_factors, .n_rows = n_tok,
                              .n_heads = n_heads, .n = head_dim, .f0 = theta, .f1 = freq_scale, .out = x});
}

NB_API nb_status nb_softmax(nb_cpu *ctx, float *x, int64_t n_rows, int64_t n) {
    if (!ctx || !x || n_rows < 0 || n < 0 || !fits(n_rows, n, 4)) return NB_ERR_ARGUMENT;
    if (n == 0) return NB_OK;
    return run_one((one_task){.k = K(ctx), .op = OP_SOFTMAX, .n_rows = n_rows, .n = n, .out = x});
}

NB_API nb_status nb_swiglu(nb_cpu *ctx, const float *gate, const float *up, int64_t n, float *out) {
    if (!ctx || !gate || !up || !out || n < 0) return NB_ERR_ARGUMENT;
    return run_one((one_task){.k = K(ctx), .op = OP_SWIGLU, .a = gate, .b = up, .n = n, .out = out});
}

NB_API nb_status nb_add(nb_cpu *ctx, const float *a, const float *b, int64_t n, float *out) {
    if (!ctx || !a || !b || !out || n < 0) return NB_ERR_ARGUMENT;
    return run_one((one_task){.k = K(ctx), .op = OP_ADD, .a = a, .b = b, .n = n, .out = out});
}

NB_API nb_status nb_f32_to_f16(nb_cpu *ctx, const float *src, int64_t n, uint16_t *dst) {
    if (!ctx || !src || !dst || n < 0) return NB_ERR_ARGUMENT;
    return run_one((one_task){.k = K(ctx), .op = OP_F32_TO_F16, .a = src, .n = n, .out = dst});
}

NB_API nb_status nb_f16_to_f32(nb_cpu *ctx, const uint16_t *src, int64_t n, float *dst) {
    if (!ctx || !src || !dst || n < 0) return NB_ERR_ARGUMENT;
    return run_one((one_task){.k = K(ctx), .op = OP_F16_TO_F32, .a = src, .n = n, .out = dst});
}
