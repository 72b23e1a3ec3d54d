// CUDA library identity and device queries.
#include <cuda_runtime.h>
#include "nibble.h"

extern "C" NB_API int32_t nb_version(void) { return 100; }

extern "C" NB_API int32_t nb_cuda_version(void) { return CUDART_VERSION; }

extern "C" NB_API nb_status nb_cuda_device_count(int32_t *count) {
    if (count == nullptr) return NB_ERR_ARGUMENT;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        *count = 0;
        return NB_ERR_DEVICE;
    }
    *count = n;
    return NB_OK;
}
