package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.kernels.NativeLibrary;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** The CUDA library as the build packs it: it loads and binds on any machine, with or without a GPU. */
class CudaLibraryTest {

    @Test
    void theBuiltLibraryLoadsAndBindsEverySymbolWithOrWithoutAGpu() {
        Assumptions.assumeTrue(getClass().getResource("/native/" + NativeLibrary.platform() + "/libnibble_cuda.so") != null,
                "this build has no CUDA library (nvcc was not on the PATH when it was built)");
        String why = NibbleCuda.unavailable().orElse("");
        assertFalse(why.startsWith("libnibble_cuda does not load") || why.startsWith("this build"), why);
        assertEquals(200, NibbleCuda.version());
        assertTrue(NibbleCuda.runtimeVersion() >= 12000, "CUDA runtime " + NibbleCuda.runtimeVersion());
    }

    @Test
    void withoutADriverTheReasonSaysSoInOneLine() {
        String why = NibbleCuda.unavailable().orElse(null);
        Assumptions.assumeTrue(why != null, "this machine has a usable GPU");
        assertFalse(why.contains("\n"), why);
        assertFalse(why.isBlank());
    }
}
