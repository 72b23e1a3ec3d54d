/* nibble.h: the one contract between the Java runtime and the native kernels.
 * Every entry point returns an nb_status (0 = success) unless it is a pure query. */
#ifndef NIBBLE_H
#define NIBBLE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define NB_API __declspec(dllexport)
#else
#define NB_API __attribute__((visibility("default")))
#endif

typedef int32_t nb_status;
#define NB_OK 0
#define NB_ERR_ARGUMENT 1
#define NB_ERR_UNSUPPORTED 2
#define NB_ERR_DEVICE 3

/* Version of the kernel library, encoded as major * 10000 + minor * 100 + patch. */
NB_API int32_t nb_version(void);

/* CPU feature bits found by CPUID at load time. */
#define NB_CPU_AVX2 (1u << 0)
#define NB_CPU_FMA (1u << 1)
#define NB_CPU_F16C (1u << 2)
#define NB_CPU_AVX512F (1u << 3)
#define NB_CPU_AVX512BW (1u << 4)
#define NB_CPU_AVX512VNNI (1u << 5)
#define NB_CPU_AVXVNNI (1u << 6)
NB_API uint32_t nb_cpu_features(void);

/* CUDA library queries (libnibble_cuda only). */
NB_API int32_t nb_cuda_version(void);
/* Writes the number of visible CUDA devices to *count; returns NB_ERR_DEVICE when the driver is absent. */
NB_API nb_status nb_cuda_device_count(int32_t *count);

#ifdef __cplusplus
}
#endif

#endif /* NIBBLE_H */
