package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** nb_matmul against a float64 reference over every weight type, odd shapes and every instruction-set path. */
class MatmulKernelTest {

    /*
     * The SIMD paths quantize activations to 8 bits per 32 values: each value moves by at most absmax/254, an RMS of
     * about 0.4% of a uniform value, so each output moves by about 0.4% of the norm of its terms w_i * x_i (0.3-0.5%
     * measured). The error is measured against that norm rather than against the output itself, which cancellation
     * can make arbitrarily small when there are few outputs. A wrong block layout or scale gives errors of order 1.
     * Float math (scalar path, float weight types) stays near 1e-6 of ‖ref‖.
     */
    private static final double INT8_TOLERANCE = 1e-2;
    private static final double FLOAT_TOLERANCE = 2e-5;

    private static NibbleCpu cpu;

    @BeforeAll
    static void twoThreads() {
        cpu = NibbleCpu.open(2);
    }

    @AfterAll
    static void close() {
        cpu.close();
    }

    static Stream<Arguments> cases() {
        List<Arguments> list = new ArrayList<>();
        // 67 tokens span two token groups of the prefill kernels; 33 and 100 rows leave partial 16-row blocks
        int[][] shapes32 = {{1, 32, 1}, {3, 64, 2}, {7, 96, 3}, {33, 160, 9}, {100, 320, 1}, {5, 4128, 17}, {19, 64, 67}};
        int[][] shapes256 = {{1, 256, 1}, {3, 512, 2}, {7, 256, 9}, {33, 768, 3}, {100, 256, 17}, {19, 256, 67}};
        int[][] shapesFloat = {{1, 1, 1}, {3, 7, 2}, {7, 33, 3}, {33, 300, 9}, {5, 1031, 17}};
        for (int isa : KernelData.paths().toArray()) {
            for (GgmlType type : GgmlType.values()) {
                int[][] shapes = type.blockSize() == 32 ? shapes32 : type.blockSize() == 256 ? shapes256 : shapesFloat;
                for (int[] s : shapes) {
                    list.add(Arguments.of(NibbleCpu.isaName(isa), type, s[0], s[1], s[2]));
                }
            }
        }
        return list.stream();
    }

    @ParameterizedTest(name = "{0} {1} nOut={2} nIn={3} nTok={4}")
    @MethodSource("cases")
    void matmulMatchesFloat64Reference(String isa, GgmlType type, int nOut, int nIn, int nTok) {
        cpu.setIsa(isaId(isa));
        Random rnd = new Random(31L * nOut + 7L * nIn + nTok + type.id());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment w = KernelData.randomWeights(arena, rnd, type, nOut, nIn);
            float[] x = KernelData.randomFloats(rnd, nTok * nIn, 1.5f);
            MemorySegment y = KernelData.poisoned(arena, (long) nTok * nOut);
            cpu.matmul(type, w, nOut, nIn, KernelData.floats(arena, x), nTok, y);

            KernelData.MatmulReference ref = KernelData.matmul(KernelData.dequantize(type, w, nOut, nIn), x, nOut, nIn,
                    nTok);
            float[] out = KernelData.toArray(y, nTok * nOut);
            boolean int8 = type.isQuantized() && type != GgmlType.NF4 && isaId(isa) != NibbleCpu.ISA_SCALAR;
            double err = int8 ? ref.errorAgainstTerms(out) : KernelData.relativeError(out, ref.out());
            double tolerance = int8 ? INT8_TOLERANCE : FLOAT_TOLERANCE;
            assertTrue(err < tolerance, "relative error " + err + " exceeds " + tolerance);
        }
    }

    @Test
    void resultsDoNotDependOnThreadCount() {
        Random rnd = new Random(5);
        try (Arena arena = Arena.ofConfined()) {
            int nOut = 517, nIn = 512, nTok = 5;
            MemorySegment w = KernelData.randomWeights(arena, rnd, GgmlType.Q4_K, nOut, nIn);
            MemorySegment x = KernelData.floats(arena, KernelData.randomFloats(rnd, nTok * nIn, 1));
            float[][] outs = new float[3][];
            int[] threads = {1, 3, 2};
            for (int i = 0; i < threads.length; i++) {
                try (NibbleCpu c = NibbleCpu.open(threads[i])) {
                    assertEquals(threads[i], c.threads());
                    MemorySegment y = KernelData.poisoned(arena, nTok * nOut);
                    c.matmul(GgmlType.Q4_K, w, nOut, nIn, x, nTok, y);
                    outs[i] = KernelData.toArray(y, nTok * nOut);
                }
            }
            assertArrayEquals(outs[0], outs[1]);
            assertArrayEquals(outs[0], outs[2]);
        }
    }

    static int isaId(String name) {
        for (int i = NibbleCpu.ISA_SCALAR; i <= NibbleCpu.ISA_AVX512; i++) {
            if (NibbleCpu.isaName(i).equals(name)) {
                return i;
            }
        }
        throw new IllegalArgumentException(name);
    }
}
