/* Internal declarations shared by the CPU kernel translation units. */
#ifndef NB_INTERNAL_H
#define NB_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nibble.h"

/* Activations for integer paths are quantized per 32 elements (absmax / 127). */
#define NB_QBLOCK 32
/* Columns dequantized at a time by the float paths: a multiple of every block size. */
#define NB_CHUNK 256
#define NB_MAX_HEAD_DIM 512

/* One matmul, as the API received it, plus the quantized activations when the path uses them. */
typedef struct {
    int32_t wtype;
    const uint8_t *w;
    int64_t n_out, n_in, row_bytes;
    const float *x;
    int64_t n_tok;
    float *y;
    const int8_t *qx;  /* [n_tok][n_in] */
    const float *dx;   /* [n_tok][n_in/32] block scales */
    const int32_t *sx; /* [n_tok][n_in/16] negated sums of each 16 quantized values */
    /* Packed layout instead (AVX-512 VNNI), block-major so one block of every token is contiguous:
     * xp [n_in/32][n_tok][32] quantized values (+ 128 as u8 for signed weight types), dx [n_in/32][n_tok],
     * dxs = dx * -(sum of the block's q), xcorr [n_in/32][n_tok][2] = -offset * (sum of the q of each half block):
     * the weight type's zero point (8 for Q4_0, 128 for Q8_0 and IQ4_NL, 32 for Q6_K, 0 for Q4_K). */
    int packed;
    const uint8_t *xp;
    const float *dxs;
    const int32_t *xcorr;
} nb_mm_args;

typedef struct {
    const float *q;
    int64_t n_tok;
    const int32_t *pos;
    const int32_t *start; /* NULL: every token's sequence begins at row 0 */
    int64_t n_heads, n_kv_heads, head_dim;
    int32_t kv_type;
    const void *k, *v;
    int64_t n_kv, kv_stride;
    float scale;
    float *out;
} nb_attn_args;

/* The kernels of one instruction-set path. */
typedef struct {
    const char *name;
    /* Whether matmul with this weight type wants quantized activations on this path. */
    int (*wants_q8)(int32_t wtype);
    void (*quantize_x)(const float *x, int64_t n, int8_t *qx, float *dx, int32_t *sx);
    /* Whether a matmul of n_tok tokens uses the packed prefill kernels (then quantize with quantize_x_packed). */
    int (*wants_packed)(int32_t wtype, int64_t n_tok);
    /* Token t of n_tok into the packed layout (see nb_mm_args). */
    void (*quantize_x_packed)(const nb_mm_args *a, int64_t t);
    /* Rows [r0, r1) of y for all tokens. */
    void (*matmul_rows)(const nb_mm_args *a, int64_t r0, int64_t r1);
    /* n elements (a multiple of the block size) of a row, from element 0, as floats. */
    void (*dequant_row)(int32_t wtype, const uint8_t *row, int64_t n, float *out);
    void (*rmsnorm)(const float *x, const float *w, int64_t n, float eps, float *y);
    void (*rope)(float *x, int64_t n_heads, int64_t head_dim, int32_t pos, float theta, float freq_scale,
                 const float *freq_factors);
    void (*softmax)(float *x, int64_t n);
    /* Query token t, kv head h (all query heads of its group). */
    void (*attention_one)(const nb_attn_args *a, int64_t t, int64_t h);
    void (*swiglu)(const float *gate, const float *up, int64_t n, float *out);
    void (*add)(const float *a, const float *b, int64_t n, float *out);
    void (*f32_to_f16)(const float *src, int64_t n, uint16_t *dst);
    void (*f16_to_f32)(const uint16_t *src, int64_t n, float *dst);
} nb_kernels;

extern const nb_kernels nb_kernels_scalar;
#if defined(__x86_64__)
extern const nb_kernels nb_kernels_avx2;
extern const nb_kernels nb_kernels_avx512;
#else /* other machines build only the scalar path (CPUID reports no x86 features there) */
#define nb_kernels_avx2 nb_kernels_scalar
#define nb_kernels_avx512 nb_kernels_scalar
#endif

/* Worker pool: runs fn(ctx, ith, nth) on the caller (ith = 0) and on whichever of the pool's workers join in time.
 * fn must take its work from a shared counter in ctx until none is left: any subset of the threads may run it.
 * Each nb_cpu context embeds one pool; a pool runs one task at a time (its context's lock serialises callers). */
typedef void (*nb_task)(void *ctx, int ith, int nth);

#define NB_MAX_THREADS 256
/* How long an idle worker polls for the next task (and the caller for the last worker) before it sleeps on the pool's
 * condition variable: covers the gaps between the kernels of one forward pass without burning a core between passes. */
#define NB_SPIN_NS 100000

typedef struct nb_pool nb_pool;
typedef struct {
    nb_pool *pool;
    int ith;
} nb_worker;

struct nb_pool {
    int n;
    pthread_t threads[NB_MAX_THREADS];
    nb_worker workers[NB_MAX_THREADS];
    _Atomic uint64_t generation;
    uint64_t start_generation; /* what new workers have seen: set before they start */
    _Atomic int open;           /* the current run still accepts workers */
    _Atomic int active;         /* workers inside (or about to enter) the current task */
    _Atomic int stop;
    _Atomic int sleepers;       /* workers blocked (or about to block) on `work` */
    _Atomic int caller_waiting; /* the caller blocked (or about to block) on `done` */
    _Atomic int fault;          /* a worker's part of the current run hit a SIGBUS */
    nb_task fn;
    void *ctx;
    pthread_mutex_t lock;
    pthread_cond_t work, done;
};

/* CPUs this process may use: those of its affinity mask, fewer if a cgroup v2 CPU quota (cpu.max) grants fewer
 * CPUs' worth of time (rounded up); at least 1. */
int32_t nb_usable_cpus(void);
/* Initialises p and starts its n_threads - 1 workers (n_threads <= 0: nb_usable_cpus(); at most NB_MAX_THREADS).
 * NB_ERR_MEMORY when the threads or the pool's mutex cannot be made (p is then torn down). */
nb_status nb_pool_start(nb_pool *p, int32_t n_threads);
/* Stops and joins the workers and destroys the mutex and condition variables. */
void nb_pool_stop(nb_pool *p);
/* Runs fn on the pool; NB_ERR_FAULT when any thread's part hit a SIGBUS (each thread's part runs under nb_guarded,
 * so every thread still reaches the end of the run), else NB_OK. */
nb_status nb_pool_run(nb_pool *p, nb_task fn, void *ctx);
static inline int nb_pool_size(const nb_pool *p) { return p->n; }

/* SIGBUS recovery (nb_fault.c). nb_fault_install installs the handler once per process (it also runs when the library
 * loads). nb_guarded runs fn(ctx, ith, nth) on this thread and returns NB_OK, or NB_ERR_FAULT when a SIGBUS hit this
 * thread inside it (fn is then abandoned where it was: it must hold no lock and own no allocation while it runs).
 * nb_fault_unblock makes sure this thread can take a SIGBUS (pool workers inherit their creator's mask). */
void nb_fault_install(void);
nb_status nb_guarded(nb_task fn, void *ctx, int ith, int nth);
void nb_fault_unblock(void);

/* The path NIBBLE_ISA names if the CPU has it, else the best one: read once per process (immutable after). */
int32_t nb_isa_default(void);
const nb_kernels *nb_kernels_for(int32_t isa);

/* Block layout facts. */
int64_t nb_block_elems(int32_t wtype); /* 0 for unknown types */
int64_t nb_block_bytes(int32_t wtype);

#endif
