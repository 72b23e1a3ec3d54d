/* SIGBUS recovery for the kernels of an nb_cpu context (NB_ERR_FAULT in nibble.h).
 *
 * Weights are read in place from a memory-mapped model file. When that file is truncated while a kernel runs (e.g.
 * `cp other.gguf model.gguf`, which truncates before it writes), the pages past the new end are no longer backed and
 * the next read raises SIGBUS, whose default action kills the process. Here each thread's part of a kernel call runs
 * under a guard (nb_guarded): sigsetjmp at its start, and a thread-local pointer to the guard while it runs. A SIGBUS
 * raised by the hardware while this thread's pointer is set jumps back to that start (siglongjmp), and the call
 * returns NB_ERR_FAULT: on the calling thread and on each pool worker alike, so the pool still reaches its barrier.
 * Any other SIGBUS goes to the handler that was installed before ours (chained), with the same arguments.
 *
 * The JVM. HotSpot installs its SIGSEGV and SIGBUS handlers when it starts; ours comes later, when this library
 * loads, and keeps HotSpot's as the previous one. HotSpot's own use of SIGBUS (a Java read of a truncated mapping
 * through Unsafe, a MappedByteBuffer or a MemorySegment throws InternalError) happens outside our guards and is
 * chained to it, so it keeps working. With libjsig preloaded, libjsig keeps HotSpot's handler installed and records
 * ours as chained: HotSpot then calls ours for a SIGBUS it does not recognise as its own, which is the case for ours,
 * and the jump leaves HotSpot's handler frame, which holds no lock. -Xcheck:jni reports the replaced handler once
 * ("Warning: SIGBUS handler modified!"), harmless; -Xrs changes only the JVM's use of SIGQUIT, SIGHUP, SIGINT and
 * SIGTERM, not SIGBUS. SIGSEGV is not touched: nibble's kernels only read memory Java checked the bounds of, so a
 * SIGSEGV inside one is a bug that must crash loudly, and HotSpot's frequent SIGSEGVs (implicit null checks) pass
 * through no extra handler.
 *
 * Async-signal-safety. The handler reads one initial-exec thread-local (a %fs-relative load: no call, no lazy
 * allocation, safe on every thread, JVM threads included), and otherwise writes only the guard on its own thread's
 * stack and calls siglongjmp (leaving a handler by a jump is allowed) or the previous handler. What the jump unwinds
 * is nibble's kernel code and whatever it called (libc's memcpy, libm): none of it takes a lock or allocates. The locks
 * of a call are taken outside the guarded part: the context's mutex is held by the caller across nb_guarded and
 * released after it returns normally; the pool's mutex and condition variables are used only between tasks, never
 * inside one. sigsetjmp does not save the signal mask (saving it is a system call per call); the handler instead
 * records the mask of the interrupted code (the ucontext's) and the thread restores it after the jump, outside the
 * handler. Cost on the hot path: per call and per participating thread, one sigsetjmp (a few register stores) and
 * two thread-local stores; nothing per row.
 *
 * What stays unsafe: a SIGBUS raised by a signal handler of someone else that interrupted a guarded kernel on the same
 * thread (it would be unwound as ours); faults in the CUDA library's host copies; faults in Java code. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <ucontext.h>

#include "nb_internal.h"

typedef struct nb_guard {
    sigjmp_buf env;
    struct nb_guard *prev; /* the guard this one is nested in, or NULL */
    sigset_t mask;         /* the thread's signal mask when the fault hit */
    void *addr;            /* the faulting address */
} nb_guard;

/* The innermost guard of this thread, NULL outside guarded code. Initial-exec: the handler reads it with one
 * thread-pointer-relative load, without __tls_get_addr (which may allocate on a thread's first access). */
static __thread nb_guard *current __attribute__((tls_model("initial-exec")));

static struct sigaction previous; /* written once before our handler is installed, read-only after */
static pthread_once_t install_once = PTHREAD_ONCE_INIT;

/* Gives the signal to the handler installed before ours, as the kernel would have. */
static void chain(int sig, siginfo_t *info, void *uc) {
    struct sigaction old = previous;
    if (old.sa_flags & SA_SIGINFO) {
        if (old.sa_sigaction) old.sa_sigaction(sig, info, uc);
        return;
    }
    if (old.sa_handler == SIG_IGN && info->si_code <= 0) return; /* a sent signal, ignored */
    if (old.sa_handler != SIG_IGN && old.sa_handler != SIG_DFL) {
        old.sa_handler(sig);
        return;
    }
    /* The default action (also for a fault under SIG_IGN, which the kernel does not let a process ignore):
     * terminate with a core dump. A fault re-runs its instruction when this returns and dies of it; a sent signal is
     * blocked while this runs and is delivered, with the default action, as soon as it returns. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (info->si_code <= 0) raise(sig);
}

static void on_sigbus(int sig, siginfo_t *info, void *uc) {
    nb_guard *g = current;
    /* si_code > 0: raised by the kernel for this thread's own access, not sent by kill or tgkill. */
    if (g && info && info->si_code > 0) {
        current = g->prev;
        g->addr = info->si_addr;
        g->mask = ((ucontext_t *)uc)->uc_sigmask;
        siglongjmp(g->env, 1);
    }
    chain(sig, info, uc);
}

static void install(void) {
    struct sigaction old;
    if (sigaction(SIGBUS, NULL, &old) != 0) return;
    previous = old;
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_sigaction = on_sigbus;
    /* The previous handler's mask and stack flags, so that it runs, when chained, as it would have alone (HotSpot's
     * uses the thread's own stack); SA_RESETHAND is not copied: ours must stay. */
    act.sa_mask = old.sa_mask;
    act.sa_flags = SA_SIGINFO | (old.sa_flags & (SA_ONSTACK | SA_RESTART | SA_NODEFER));
    sigaction(SIGBUS, &act, NULL);
}

__attribute__((constructor)) static void install_at_load(void) { nb_fault_install(); }

void nb_fault_install(void) { pthread_once(&install_once, install); }

nb_status nb_guarded(nb_task fn, void *ctx, int ith, int nth) {
    nb_guard g;
    g.prev = current;
    if (sigsetjmp(g.env, 0) != 0) {
        /* Here after a fault: the handler has put `current` back to g.prev. */
        pthread_sigmask(SIG_SETMASK, &g.mask, NULL);
        return NB_ERR_FAULT;
    }
    atomic_signal_fence(memory_order_seq_cst);
    current = &g;
    atomic_signal_fence(memory_order_seq_cst);
    fn(ctx, ith, nth);
    atomic_signal_fence(memory_order_seq_cst);
    current = g.prev;
    atomic_signal_fence(memory_order_seq_cst);
    return NB_OK;
}

void nb_fault_unblock(void) {
    sigset_t bus;
    sigemptyset(&bus);
    sigaddset(&bus, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
}
