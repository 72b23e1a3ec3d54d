/* Library identity and CPU feature detection. */
#include <stdatomic.h>

#include "nibble.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t detect_features(void) {
    unsigned a, b, c, d;
    uint32_t f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1;
    if (!osxsave) return 0;
    uint64_t xcr0 = read_xcr0();
    int ymm_ok = (xcr0 & 0x6) == 0x6;
    int zmm_ok = (xcr0 & 0xe6) == 0xe6;
    if (ymm_ok && ((c >> 12) & 1)) f |= NB_CPU_FMA;
    if (ymm_ok && ((c >> 29) & 1)) f |= NB_CPU_F16C;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    if (ymm_ok && ((b >> 5) & 1)) f |= NB_CPU_AVX2;
    if (zmm_ok && ((b >> 16) & 1)) f |= NB_CPU_AVX512F;
    if (zmm_ok && ((b >> 30) & 1)) f |= NB_CPU_AVX512BW;
    if (zmm_ok && ((b >> 31) & 1)) f |= NB_CPU_AVX512VL;
    if (zmm_ok && ((c >> 11) & 1)) f |= NB_CPU_AVX512VNNI;
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && ymm_ok && ((a >> 4) & 1)) f |= NB_CPU_AVXVNNI;
    return f;
}
#else
static uint32_t detect_features(void) { return 0; }
#endif

NB_API int32_t nb_version(void) { return 200; }

/* Detected on first use; every thread that races to detect them writes the same value. */
NB_API uint32_t nb_cpu_features(void) {
    static _Atomic uint32_t cached = UINT32_MAX;
    uint32_t f = atomic_load_explicit(&cached, memory_order_relaxed);
    if (f == UINT32_MAX) {
        f = detect_features();
        atomic_store_explicit(&cached, f, memory_order_relaxed);
    }
    return f;
}
