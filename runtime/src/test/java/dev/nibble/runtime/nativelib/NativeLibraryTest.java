package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.kernels.NativeLibrary;
import org.junit.jupiter.api.Test;

class NativeLibraryTest {

    @Test
    void cpuLibraryIsLoadedFromTheKernelsJarAndAnswers() {
        assertTrue(NativeLibrary.load("nibble_cpu").isPresent(), "libnibble_cpu is packaged for " + NativeLibrary.platform());
        assertEquals(200, NibbleCpu.version());
    }

    @Test
    void featureBitsDescribeWhatCpuidReports() {
        int bits = NibbleCpu.cpuFeatures();
        assertEquals(0, bits & ~0xff, "only bits defined in nibble.h are set");
        if ((bits & NibbleCpu.AVX512VNNI) != 0) {
            assertTrue((bits & NibbleCpu.AVX512F) != 0, "VNNI on 512-bit vectors implies AVX-512F");
        }
        assertEquals("scalar", NibbleCpu.describeFeatures(0));
        assertEquals("avx2 fma", NibbleCpu.describeFeatures(NibbleCpu.AVX2 | NibbleCpu.FMA));
    }

    @Test
    void eachLibraryIsLoadedOncePerProcess() {
        // the converter's quantizer and the runtime's kernels share one copy, bound once per process
        assertTrue(NativeLibrary.load("nibble_cpu").get() == NativeLibrary.load("nibble_cpu").get());
    }

    @Test
    void unknownLibraryIsReportedAbsentNotThrown() {
        assertTrue(NativeLibrary.load("nibble_does_not_exist").isEmpty());
    }
}
