/* Persistent worker pool, one per nb_cpu context.
 *
 * Workers spin briefly on a generation counter, then sleep on a condition variable. Tasks pull their work from a
 * shared counter, so the caller never waits for a worker that has not started: after doing what it could itself,
 * it closes the run, and waits only for workers already inside the task. On a machine shared with other programs
 * a preempted worker then costs at most the piece of work it holds. */
#include <stdlib.h>
#include <unistd.h>

#include "nb_internal.h"

/* About 100 microseconds of polling: covers the gap between the kernels of one forward pass. */
#define NB_SPIN 20000

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* The atomics below are sequentially consistent on purpose: each sleep/wake pair is a Dekker handshake (one side
 * writes its flag then reads the other's), so that no wake-up is lost. */
static void *worker_main(void *arg) {
    nb_worker *self = arg;
    nb_pool *pool = self->pool;
    int ith = self->ith;
    uint64_t seen = pool->start_generation;
    for (;;) {
        int spins = 0;
        while (atomic_load(&pool->generation) == seen && spins < NB_SPIN) {
            cpu_relax();
            spins++;
        }
        if (atomic_load(&pool->generation) == seen) {
            pthread_mutex_lock(&pool->lock);
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->generation) == seen) pthread_cond_wait(&pool->work, &pool->lock);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->lock);
        }
        seen = atomic_load(&pool->generation);
        if (atomic_load(&pool->stop)) return NULL;
        atomic_fetch_add(&pool->active, 1);
        if (atomic_load(&pool->open)) pool->fn(pool->ctx, ith, pool->n);
        if (atomic_fetch_sub(&pool->active, 1) == 1 && atomic_load(&pool->caller_waiting)) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->lock);
        }
    }
}

/* The mutex and broadcast are only needed when a worker went to sleep; spinning workers see the counter. */
static void wake_workers(nb_pool *pool) {
    atomic_fetch_add(&pool->generation, 1);
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->work);
        pthread_mutex_unlock(&pool->lock);
    }
}

static void stop_workers(nb_pool *pool) {
    if (pool->n <= 1) return;
    atomic_store(&pool->stop, 1);
    wake_workers(pool);
    for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i], NULL);
    atomic_store(&pool->stop, 0);
    pool->n = 1;
}

void nb_pool_run(nb_pool *pool, nb_task fn, void *ctx) {
    if (pool->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store(&pool->open, 1);
    wake_workers(pool);
    fn(ctx, 0, pool->n);
    atomic_store(&pool->open, 0);
    int spins = 0;
    while (atomic_load(&pool->active) != 0 && spins < NB_SPIN) {
        cpu_relax();
        spins++;
    }
    if (atomic_load(&pool->active) != 0) {
        pthread_mutex_lock(&pool->lock);
        atomic_store(&pool->caller_waiting, 1);
        while (atomic_load(&pool->active) != 0) pthread_cond_wait(&pool->done, &pool->lock);
        atomic_store(&pool->caller_waiting, 0);
        pthread_mutex_unlock(&pool->lock);
    }
}

nb_status nb_pool_start(nb_pool *pool, int32_t n_threads) {
    if (n_threads <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = cpus > 0 ? (int32_t)(cpus < NB_MAX_THREADS ? cpus : NB_MAX_THREADS) : 1;
    }
    if (n_threads > NB_MAX_THREADS) n_threads = NB_MAX_THREADS;
    pool->n = 1;
    atomic_init(&pool->generation, 0);
    pool->start_generation = 0;
    atomic_init(&pool->open, 0);
    atomic_init(&pool->active, 0);
    atomic_init(&pool->stop, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->caller_waiting, 0);
    pool->fn = NULL;
    pool->ctx = NULL;
    if (pthread_mutex_init(&pool->lock, NULL) != 0) return NB_ERR_MEMORY;
    if (pthread_cond_init(&pool->work, NULL) != 0) {
        pthread_mutex_destroy(&pool->lock);
        return NB_ERR_MEMORY;
    }
    if (pthread_cond_init(&pool->done, NULL) != 0) {
        pthread_cond_destroy(&pool->work);
        pthread_mutex_destroy(&pool->lock);
        return NB_ERR_MEMORY;
    }
    pool->n = n_threads;
    for (int i = 1; i < n_threads; i++) {
        pool->workers[i] = (nb_worker){.pool = pool, .ith = i};
        if (pthread_create(&pool->threads[i], NULL, worker_main, &pool->workers[i]) != 0) {
            pool->n = i;
            nb_pool_stop(pool);
            return NB_ERR_MEMORY;
        }
    }
    return NB_OK;
}

void nb_pool_stop(nb_pool *pool) {
    stop_workers(pool);
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->work);
    pthread_mutex_destroy(&pool->lock);
}
