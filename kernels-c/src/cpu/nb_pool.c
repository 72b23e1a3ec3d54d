/* Persistent worker pool: workers spin briefly on a generation counter, then sleep on a condition variable. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "nb_internal.h"

#define NB_MAX_THREADS 256
/* About 100 microseconds of polling: covers the gap between the kernels of one forward pass. */
#define NB_SPIN 20000

static struct {
    int n;
    pthread_t threads[NB_MAX_THREADS];
    _Atomic uint64_t generation;
    uint64_t start_generation; /* what new workers have seen: set before they start */
    _Atomic int pending;
    _Atomic int stop;
    nb_task fn;
    void *ctx;
    pthread_mutex_t lock;
    pthread_cond_t work, done;
} pool = {.n = 1, .lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *arg) {
    int ith = (int)(intptr_t)arg;
    uint64_t seen = pool.start_generation;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&pool.generation, memory_order_acquire) == seen && spins < NB_SPIN) {
            cpu_relax();
            spins++;
        }
        if (atomic_load_explicit(&pool.generation, memory_order_acquire) == seen) {
            pthread_mutex_lock(&pool.lock);
            while (atomic_load(&pool.generation) == seen) pthread_cond_wait(&pool.work, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = atomic_load(&pool.generation);
        if (atomic_load(&pool.stop)) return NULL;
        pool.fn(pool.ctx, ith, pool.n);
        if (atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
}

static void wake_workers(void) {
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    pthread_mutex_lock(&pool.lock);
    pthread_cond_broadcast(&pool.work);
    pthread_mutex_unlock(&pool.lock);
}

static void stop_workers(void) {
    if (pool.n <= 1) return;
    atomic_store(&pool.stop, 1);
    wake_workers();
    for (int i = 1; i < pool.n; i++) pthread_join(pool.threads[i], NULL);
    atomic_store(&pool.stop, 0);
    pool.n = 1;
}

void nb_pool_run(nb_task fn, void *ctx) {
    if (pool.n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_store_explicit(&pool.pending, pool.n - 1, memory_order_relaxed);
    wake_workers();
    fn(ctx, 0, pool.n);
    int spins = 0;
    while (atomic_load_explicit(&pool.pending, memory_order_acquire) != 0 && spins < NB_SPIN) {
        cpu_relax();
        spins++;
    }
    if (atomic_load_explicit(&pool.pending, memory_order_acquire) != 0) {
        pthread_mutex_lock(&pool.lock);
        while (atomic_load(&pool.pending) != 0) pthread_cond_wait(&pool.done, &pool.lock);
        pthread_mutex_unlock(&pool.lock);
    }
}

int nb_pool_size(void) { return pool.n; }

/* Called with the API mutex held. */
nb_status nb_pool_resize(int32_t n_threads) {
    if (n_threads <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = cpus > 0 ? (int32_t)cpus : 1;
    }
    if (n_threads > NB_MAX_THREADS) n_threads = NB_MAX_THREADS;
    if (n_threads == pool.n) return NB_OK;
    stop_workers();
    pool.n = n_threads;
    pool.start_generation = atomic_load(&pool.generation);
    for (int i = 1; i < n_threads; i++) {
        if (pthread_create(&pool.threads[i], NULL, worker_main, (void *)(intptr_t)i) != 0) {
            pool.n = i;
            stop_workers();
            return NB_ERR_MEMORY;
        }
    }
    return NB_OK;
}
