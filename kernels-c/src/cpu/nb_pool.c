/* Persistent worker pool, one per nb_cpu context.
 *
 * Workers poll a generation counter for up to NB_SPIN_NS, then sleep on a condition variable. Tasks pull their work
 * from a shared counter, so the caller never waits for a worker that has not started: after doing what it could
 * itself, it closes the run, and waits only for workers already inside the task. On a machine shared with other
 * programs a preempted worker then costs at most the piece of work it holds. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT_S, pthread_setname_np (Linux) */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "nb_internal.h"

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Polls *v until it differs from `seen`, for at most NB_SPIN_NS; returns its last value. Bounded by the clock, not by
 * a count of pauses, whose latency varies from 10 to 150 cycles between CPUs. The clock (a vDSO read) is looked at
 * every 64 pauses only. */
static uint64_t spin_while_equal(_Atomic uint64_t *v, uint64_t seen) {
    uint64_t deadline = now_ns() + NB_SPIN_NS;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            uint64_t cur = atomic_load(v);
            if (cur != seen) return cur;
            cpu_relax();
        }
        if (now_ns() >= deadline) return atomic_load(v);
    }
}

/* Polls *v until it is 0, for at most NB_SPIN_NS; returns its last value. */
static int spin_until_zero(_Atomic int *v) {
    uint64_t deadline = now_ns() + NB_SPIN_NS;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            int cur = atomic_load(v);
            if (cur == 0) return 0;
            cpu_relax();
        }
        if (now_ns() >= deadline) return atomic_load(v);
    }
}

/* The atomics below are sequentially consistent on purpose: each sleep/wake pair is a Dekker handshake (one side
 * writes its flag then reads the other's), so that no wake-up is lost. */
static void *worker_main(void *arg) {
    nb_worker *self = arg;
#if defined(__linux__)
    pthread_setname_np(pthread_self(), "nb-worker"); /* for top -H, perf, and the tests that watch idle workers */
#endif
    nb_pool *pool = self->pool;
    int ith = self->ith;
    nb_fault_unblock();
    uint64_t seen = pool->start_generation;
    for (;;) {
        if (spin_while_equal(&pool->generation, seen) == seen) {
            pthread_mutex_lock(&pool->lock);
            atomic_fetch_add(&pool->sleepers, 1);
            while (atomic_load(&pool->generation) == seen) pthread_cond_wait(&pool->work, &pool->lock);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->lock);
        }
        seen = atomic_load(&pool->generation);
        if (atomic_load(&pool->stop)) return NULL;
        atomic_fetch_add(&pool->active, 1);
        if (atomic_load(&pool->open) && nb_guarded(pool->fn, pool->ctx, ith, pool->n) != NB_OK)
            atomic_store(&pool->fault, 1); /* seen by the caller once `active` is 0 */
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

nb_status nb_pool_run(nb_pool *pool, nb_task fn, void *ctx) {
    if (pool->n == 1) return nb_guarded(fn, ctx, 0, 1);
    pool->fn = fn;
    pool->ctx = ctx;
    if (atomic_load_explicit(&pool->fault, memory_order_relaxed)) atomic_store(&pool->fault, 0); /* no store per run */
    atomic_store(&pool->open, 1);
    wake_workers(pool);
    nb_status status = nb_guarded(fn, ctx, 0, pool->n);
    atomic_store(&pool->open, 0);
    if (spin_until_zero(&pool->active) != 0) {
        pthread_mutex_lock(&pool->lock);
        atomic_store(&pool->caller_waiting, 1);
        while (atomic_load(&pool->active) != 0) pthread_cond_wait(&pool->done, &pool->lock);
        atomic_store(&pool->caller_waiting, 0);
        pthread_mutex_unlock(&pool->lock);
    }
    return atomic_load(&pool->fault) ? NB_ERR_FAULT : status;
}

/* CPUs this process may run on: its affinity mask (taskset, cpusets, a container's --cpuset-cpus), not the CPUs
 * online, so that a pool never has more threads than CPUs to run them (a thread more than that only waits, and the
 * caller waits for it). Masks of more than CPU_SETSIZE CPUs are read with a larger set. */
static int affinity_cpus(void) {
#if defined(__linux__)
    for (int n = CPU_SETSIZE; n <= 65536; n *= 2) {
        cpu_set_t *set = CPU_ALLOC(n);
        if (!set) break;
        size_t size = CPU_ALLOC_SIZE(n);
        int count = sched_getaffinity(0, size, set) == 0 ? CPU_COUNT_S(size, set) : -1;
        CPU_FREE(set);
        if (count > 0) return count;
        if (count == 0) break;
    }
#endif
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (int)(cpus < 65536 ? cpus : 65536) : 1;
}

/* CPUs' worth of time a cgroup v2 quota grants ("QUOTA PERIOD" in cpu.max; "max" is none): ceil(quota / period),
 * or 0 without a quota. A container limited to 2 CPUs on a 64-CPU host then gets 2 threads, not 64 that the
 * scheduler throttles in turn. */
#if defined(__linux__)
static int cgroup_quota_cpus(const char *dir) {
    char path[4096 + 32];
    snprintf(path, sizeof path, "%s/cpu.max", dir);
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    char quota[32];
    unsigned long long period = 0;
    int fields = fscanf(f, "%31s %llu", quota, &period);
    fclose(f);
    if (fields != 2 || period == 0 || strcmp(quota, "max") == 0) return 0;
    char *end;
    unsigned long long q = strtoull(quota, &end, 10);
    if (*end != '\0' || q == 0) return 0;
    unsigned long long cpus = (q + period - 1) / period;
    return cpus < 65536 ? (int)cpus : 65536;
}

/* The smallest cgroup v2 quota on the path from this process's cgroup up to the root (a parent's quota binds its
 * children too), or 0 when there is none. The process's cgroup is the "0::PATH" line of /proc/self/cgroup; in a
 * container with its own cgroup namespace that is "/", and the container's limit is in /sys/fs/cgroup/cpu.max. */
static int cgroup_cpus(void) {
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f) return 0;
    char line[4096], rel[4096] = "";
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(rel, sizeof rel, "%s", line + 3);
            break;
        }
    }
    fclose(f);
    char dir[4096 + 16];
    snprintf(dir, sizeof dir, "/sys/fs/cgroup%s", strcmp(rel, "/") == 0 ? "" : rel);
    int best = 0;
    for (;;) {
        int q = cgroup_quota_cpus(dir);
        if (q > 0 && (best == 0 || q < best)) best = q;
        char *slash = strrchr(dir, '/');
        if (!slash || slash - dir < (ptrdiff_t)strlen("/sys/fs/cgroup")) break;
        *slash = '\0';
    }
    return best;
}
#else
static int cgroup_cpus(void) { return 0; }
#endif

int32_t nb_usable_cpus(void) {
    int cpus = affinity_cpus();
    int quota = cgroup_cpus();
    if (quota > 0 && quota < cpus) cpus = quota;
    return cpus < 1 ? 1 : cpus;
}

nb_status nb_pool_start(nb_pool *pool, int32_t n_threads) {
    if (n_threads <= 0) n_threads = nb_usable_cpus();
    if (n_threads > NB_MAX_THREADS) n_threads = NB_MAX_THREADS;
    pool->n = 1;
    atomic_init(&pool->generation, 0);
    pool->start_generation = 0;
    atomic_init(&pool->open, 0);
    atomic_init(&pool->active, 0);
    atomic_init(&pool->stop, 0);
    atomic_init(&pool->sleepers, 0);
    atomic_init(&pool->caller_waiting, 0);
    atomic_init(&pool->fault, 0);
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
