package dev.nibble.runtime.nativelib;

import org.junit.jupiter.api.Assumptions;

/** How GPU tests skip on a machine without a usable GPU (as CI is): one line on the console saying why, then skip. */
public final class GpuTests {

    private GpuTests() {}

    /** Skips the calling test class, printing one line with the reason, unless CUDA can be used here. */
    public static void assumeGpu(Class<?> testClass) {
        String why = NibbleCuda.unavailable().orElse(null);
        if (why != null) {
            System.out.println("nibble: " + testClass.getSimpleName() + " skipped (it needs a GPU): " + why);
        }
        Assumptions.assumeTrue(why == null, () -> "needs a GPU: " + why);
    }
}
