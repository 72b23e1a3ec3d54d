/* Kernel benchmark: nb_matmul GB/s and GFLOP/s for a weight type and shape on the default path
 * (the best the CPU has, or NIBBLE_ISA's), in one nb_cpu context of THREADS threads.
 * Usage: nb_kernel_bench TYPE N_OUT N_IN N_TOK THREADS [REPS]   (TYPE: a GGUF type id, e.g. 2 = Q4_0)
 * Cycles through copies of the weights totalling >= 256 MB, so that they stream from memory as in a real model
 * (one 4096x4096 Q4_0 matrix alone would sit in L3; set NB_BENCH_CACHED=1 to measure exactly that). Also checks the result against the scalar path once. Built with: cmake --build B --target nb_kernel_bench */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nibble.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the whole process: on a shared machine, work per CPU-second is steadier than per wall-second. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* Random bytes with every fp16 field set to a sane small scale. */
static void fill_weights(int type, uint8_t *w, int64_t n_out, int64_t n_in) {
    int64_t bytes = nb_type_size(type, n_in) * n_out;
    for (int64_t i = 0; i < bytes; i++) w[i] = (uint8_t)next();
    uint16_t scale = 0x2000 + (next() & 0x3ff); /* ~ 0.008 */
    int64_t be = 0, bb = 0, off[2] = {-1, -1};
    switch (type) {
    case NB_Q4_0: case NB_IQ4_NL: be = 32; bb = 18; off[0] = 0; break;
    case NB_Q8_0: be = 32; bb = 34; off[0] = 0; break;
    case NB_Q4_K: be = 256; bb = 144; off[0] = 0; off[1] = 2; break;
    case NB_Q6_K: be = 256; bb = 210; off[0] = 208; break;
    case NB_NF4: be = 256; bb = 134; off[0] = 0; break;
    case NB_F16:
        for (int64_t i = 0; i < bytes / 2; i++) ((uint16_t *)w)[i] = (uint16_t)(0x3000 + (next() & 0x3ff) + ((next() & 1) << 15));
        return;
    case NB_F32:
        for (int64_t i = 0; i < bytes / 4; i++) ((float *)w)[i] = (float)(next() % 2001) / 1000.0f - 1.0f;
        return;
    case NB_BF16:
        for (int64_t i = 0; i < bytes / 2; i++) ((uint16_t *)w)[i] = (uint16_t)(0x3e00 + (next() & 0xff) + ((next() & 1) << 15));
        return;
    default: return;
    }
    for (int64_t b = 0; b < bytes / bb; b++)
        for (int k = 0; k < 2; k++)
            if (off[k] >= 0) memcpy(w + b * bb + off[k], &scale, 2);
    (void)be;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s TYPE N_OUT N_IN N_TOK THREADS [REPS]\n", argv[0]);
        return 2;
    }
    int type = atoi(argv[1]);
    int64_t n_out = atoll(argv[2]), n_in = atoll(argv[3]), n_tok = atoll(argv[4]);
    int threads = atoi(argv[5]), reps = argc > 6 ? atoi(argv[6]) : 10;
    int64_t wbytes = nb_type_size(type, n_in) * n_out;
    int64_t copies = getenv("NB_BENCH_CACHED") ? 1 : ((int64_t)256 << 20) / wbytes + 1; /* NB_BENCH_CACHED: one copy */
    uint8_t *w = malloc((size_t)(wbytes * copies));
    float *x = malloc((size_t)(n_tok * n_in) * 4), *y = malloc((size_t)(n_tok * n_out) * 4),
          *yr = malloc((size_t)(n_tok * n_out) * 4);
    fill_weights(type, w, n_out, n_in);
    for (int64_t c = 1; c < copies; c++) memcpy(w + c * wbytes, w, (size_t)wbytes);
    for (int64_t i = 0; i < n_tok * n_in; i++) x[i] = (float)(next() % 20001) / 10000.0f - 1.0f;
    nb_cpu *ctx;
    if (nb_cpu_open(threads, &ctx) != NB_OK) {
        fprintf(stderr, "nb_cpu_open(%d) failed\n", threads);
        return 1;
    }
    int isa = nb_cpu_isa(ctx);
    nb_cpu_set_isa(ctx, NB_ISA_SCALAR);
    if (n_out * n_in * n_tok <= (int64_t)1 << 31) nb_matmul(ctx, type, w, n_out, n_in, x, n_tok, yr);
    nb_cpu_set_isa(ctx, isa);
    if (nb_matmul(ctx, type, w, n_out, n_in, x, n_tok, y) != NB_OK) {
        fprintf(stderr, "nb_matmul failed\n");
        return 1;
    }
    double num = 0, den = 0;
    for (int64_t i = 0; i < n_tok * n_out; i++) {
        num += (double)(y[i] - yr[i]) * (y[i] - yr[i]);
        den += (double)yr[i] * yr[i];
    }
    double best = 1e30, total = 0, best_cpu = 1e30;
    reps = reps < 2 * (int)copies && n_tok == 1 ? 2 * (int)copies : reps;
    for (int r = 0; r < reps; r++) {
        double t0 = now(), c0 = cpu_now();
        nb_matmul(ctx, type, w + (r % copies) * wbytes, n_out, n_in, x, n_tok, y);
        double dt = now() - t0, dc = cpu_now() - c0;
        if (dc < best_cpu) best_cpu = dc;
        total += dt;
        if (dt < best) best = dt;
    }
    double med = total / reps;
    double flop = 2.0 * (double)n_out * (double)n_in * (double)n_tok;
    printf("type=%d n_out=%lld n_in=%lld n_tok=%lld threads=%d isa=%d: best %.3f ms (mean %.3f)  %.1f GB/s  %.1f GFLOP/s"
           "  | per CPU-second: %.1f GB, %.1f GFLOP  | rel.err vs scalar %.2e\n",
           type, (long long)n_out, (long long)n_in, (long long)n_tok, threads, isa, best * 1e3, med * 1e3,
           (double)wbytes / best / 1e9, flop / best / 1e9, (double)wbytes / best_cpu / 1e9, flop / best_cpu / 1e9,
           den > 0 ? sqrt(num / den) : NAN);
    nb_cpu_close(ctx);
    free(w);
    free(x);
    free(y);
    free(yr);
    return 0;
}
