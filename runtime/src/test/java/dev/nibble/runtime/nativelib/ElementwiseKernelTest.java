package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The small kernels (norm, rope, softmax, swiglu, add, conversions, embedding) against float64 references, on every path. */
class ElementwiseKernelTest {

    private static final int[] SIZES = {1, 2, 7, 8, 9, 31, 64, 100, 1031, 4096};

    private static NibbleCpu cpu;

    @BeforeAll
    static void open() {
        cpu = NibbleCpu.open(1);
    }

    @AfterAll
    static void close() {
        cpu.close();
    }

    static int[] paths() {
        return KernelData.paths().toArray();
    }

    @ParameterizedTest
    @MethodSource("paths")
    void rmsnormMatchesReference(int isa) {
        cpu.setIsa(isa);
        Random rnd = new Random(11);
        try (Arena arena = Arena.ofConfined()) {
            for (int n : SIZES) {
                int rows = 3;
                float[] x = KernelData.randomFloats(rnd, rows * n, 4);
                float[] w = KernelData.randomFloats(rnd, n, 2);
                float eps = 1e-5f;
                MemorySegment y = KernelData.poisoned(arena, rows * n);
                cpu.rmsnorm(KernelData.floats(arena, x), KernelData.floats(arena, w), rows, n, eps, y);
                double[] ref = new double[rows * n];
                for (int r = 0; r < rows; r++) {
                    double ss = 0;
                    for (int i = 0; i < n; i++) {
                        ss += (double) x[r * n + i] * x[r * n + i];
                    }
                    double s = 1 / Math.sqrt(ss / n + eps);
                    for (int i = 0; i < n; i++) {
                        ref[r * n + i] = x[r * n + i] * s * w[i];
                    }
                }
                assertClose(ref, y, 1e-6, "rmsnorm n=" + n);
            }
        }
    }

    @ParameterizedTest
    @MethodSource("paths")
    void rmsnormWorksInPlace(int isa) {
        cpu.setIsa(isa);
        Random rnd = new Random(12);
        try (Arena arena = Arena.ofConfined()) {
            int n = 33;
            float[] x = KernelData.randomFloats(rnd, n, 3);
            float[] w = KernelData.randomFloats(rnd, n, 1);
            MemorySegment xs = KernelData.floats(arena, x);
            MemorySegment separate = KernelData.poisoned(arena, n);
            cpu.rmsnorm(xs, KernelData.floats(arena, w), 1, n, 1e-6f, separate);
            cpu.rmsnorm(xs, KernelData.floats(arena, w), 1, n, 1e-6f, xs);
            assertEquals(java.util.Arrays.toString(KernelData.toArray(separate, n)), java.util.Arrays.toString(KernelData.toArray(xs, n)));
        }
    }

    @ParameterizedTest
    @MethodSource("paths")
    void ropeRotatesAdjacentPairsWithScalingAndFactors(int isa) {
        cpu.setIsa(isa);
        Random rnd = new Random(13);
        try (Arena arena = Arena.ofConfined()) {
            int[][] shapes = {{1, 1, 2}, {3, 4, 64}, {5, 3, 128}, {2, 2, 6}};
            for (int[] s : shapes) {
                int nTok = s[0], nHeads = s[1], hd = s[2];
                for (int variant = 0; variant < 3; variant++) {
                    float theta = variant == 2 ? 500000f : 10000f;
                    float freqScale = variant == 1 ? 0.25f : 1f;
                    float[] factors = variant == 2 ? KernelData.randomFloats(rnd, hd / 2, 1) : null;
                    if (factors != null) {
                        for (int i = 0; i < factors.length; i++) {
                            factors[i] = 1 + 7 * Math.abs(factors[i]);
                        }
                    }
                    int[] pos = new int[nTok];
                    for (int t = 0; t < nTok; t++) {
                        pos[t] = rnd.nextInt(5000);
                    }
                    float[] x = KernelData.randomFloats(rnd, nTok * nHeads * hd, 2);
                    MemorySegment xs = KernelData.floats(arena, x);
                    cpu.rope(xs, nTok, nHeads, hd, KernelData.ints(arena, pos), theta, freqScale,
                            factors == null ? MemorySegment.NULL : KernelData.floats(arena, factors));
                    double[] ref = new double[x.length];
                    for (int t = 0; t < nTok; t++) {
                        for (int h = 0; h < nHeads; h++) {
                            for (int i = 0; i < hd / 2; i++) {
                                double angle = pos[t] * (double) freqScale * Math.pow(theta, -2.0 * i / hd)
                                        / (factors == null ? 1 : factors[i]);
                                int at = (t * nHeads + h) * hd + 2 * i;
                                ref[at] = x[at] * Math.cos(angle) - x[at + 1] * Math.sin(angle);
                                ref[at + 1] = x[at] * Math.sin(angle) + x[at + 1] * Math.cos(angle);
                            }
                        }
                    }
                    assertClose(ref, xs, 1e-6, "rope " + java.util.Arrays.toString(s) + " variant " + variant);
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("paths")
    void softmaxMatchesReference(int isa) {
        cpu.setIsa(isa);
        Random rnd = new Random(14);
        try (Arena arena = Arena.ofConfined()) {
            for (int n : SIZES) {
                int rows = 2;
                float[] x = KernelData.randomFloats(rnd, rows * n, 30);
                MemorySegment xs = KernelData.floats(arena, x);
                cpu.softmax(xs, rows, n);
                double[] ref = new double[rows * n];
                for (int r = 0; r < rows; r++) {
                    double m = Double.NEGATIVE_INFINITY, sum = 0;
                    for (int i = 0; i < n; i++) {
                        m = Math.max(m, x[r * n + i]);
                    }
                    for (int i = 0; i < n; i++) {
                        sum += Math.exp(x[r * n + i] - m);
                    }
                    for (int i = 0; i < n; i++) {
                        ref[r * n + i] = Math.exp(x[r * n + i] - m) / sum;
                    }
                }
                assertClose(ref, xs, 1e-5, "softmax n=" + n);
            }
        }
    }

    @ParameterizedTest
    @MethodSource("paths")
    void swigluAndAddMatchReference(int isa) {
        cpu.setIsa(isa);
        Random rnd = new Random(15);
        try (Arena arena = Arena.ofConfined()) {
            for (int n : SIZES) {
                float[] g = KernelData.randomFloats(rnd, n, 8);
                float[] u = KernelData.randomFloats(rnd, n, 3);
                MemorySegment out = KernelData.poisoned(arena, n);
                cpu.swiglu(KernelData.floats(arena, g), KernelData.floats(arena, u), n, out);
                double[] ref = new double[n];
                for (int i = 0; i < n; i++) {
                    ref[i] = g[i] / (1 + Math.exp(-g[i])) * u[i];
                }
                assertClose(ref, out, 1e-6, "swiglu n=" + n);
                MemorySegment sum = KernelData.poisoned(arena, n);
                cpu.add(KernelData.floats(arena, g), KernelData.floats(arena, u), n, sum);
                for (int i = 0; i < n; i++) {
                    assertEquals(g[i] + u[i], sum.getAtIndex(ValueLayout.JAVA_FLOAT, i), "add element " + i);
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("paths")
    void halfConversionsRoundToNearestEvenLikeJava(int isa) {
        cpu.setIsa(isa);
        Random rnd = new Random(16);
        try (Arena arena = Arena.ofConfined()) {
            int n = 65536;
            MemorySegment halves = arena.allocate(2L * n, 64);
            for (int i = 0; i < n; i++) {
                halves.setAtIndex(ValueLayout.JAVA_SHORT, i, (short) i);
            }
            MemorySegment floats = KernelData.poisoned(arena, n);
            cpu.f16ToF32(halves, n, floats);
            for (int i = 0; i < n; i++) {
                float want = Float.float16ToFloat((short) i);
                float got = floats.getAtIndex(ValueLayout.JAVA_FLOAT, i);
                assertTrue(Float.isNaN(want) ? Float.isNaN(got) : want == got || (want == 0 && got == 0),
                        "half 0x" + Integer.toHexString(i) + ": " + got + " != " + want);
            }
            // every class of float: normal, half-subnormal, overflow, ties, infinities
            float[] x = new float[4099];
            for (int i = 0; i < x.length; i++) {
                int kind = i % 4;
                x[i] = switch (kind) {
                    case 0 -> (rnd.nextFloat() * 2 - 1) * 70000f;
                    case 1 -> (rnd.nextFloat() * 2 - 1) * 1e-5f;
                    case 2 -> Float.float16ToFloat((short) rnd.nextInt(0x7c00)) + Math.ulp(Float.float16ToFloat((short) 0x3c00)) / 2;
                    default -> (rnd.nextFloat() * 2 - 1);
                };
            }
            x[0] = Float.POSITIVE_INFINITY;
            x[1] = Float.NEGATIVE_INFINITY;
            x[2] = 65519.99f;
            x[3] = 65520f;
            MemorySegment out = arena.allocate(2L * x.length, 64);
            cpu.f32ToF16(KernelData.floats(arena, x), x.length, out);
            for (int i = 0; i < x.length; i++) {
                assertEquals(Float.floatToFloat16(x[i]), out.getAtIndex(ValueLayout.JAVA_SHORT, i), "float " + x[i]);
            }
        }
    }

    @ParameterizedTest
    @MethodSource("paths")
    void embedDequantizesTheRequestedRowsOfEveryType(int isa) {
        cpu.setIsa(isa);
        Random rnd = new Random(17);
        try (Arena arena = Arena.ofConfined()) {
            for (GgmlType type : GgmlType.values()) {
                int rows = 11, cols = type.blockSize() == 1 ? 37 : 2 * type.blockSize();
                MemorySegment table = KernelData.randomWeights(arena, rnd, type, rows, cols);
                int[] ids = {3, 0, 10, 3, 7};
                MemorySegment out = KernelData.poisoned(arena, (long) ids.length * cols);
                cpu.embed(type, table, rows, cols, KernelData.ints(arena, ids), ids.length, out);
                float[][] ref = KernelData.dequantize(type, table, rows, cols);
                double[] want = new double[ids.length * cols];
                for (int i = 0; i < ids.length; i++) {
                    for (int c = 0; c < cols; c++) {
                        want[i * cols + c] = ref[ids[i]][c];
                    }
                }
                assertClose(want, out, 1e-6, "embed " + type);
            }
        }
    }

    private static void assertClose(double[] ref, MemorySegment out, double tolerance, String what) {
        double err = KernelData.relativeError(KernelData.toArray(out, ref.length), ref);
        assertTrue(err < tolerance, what + ": relative error " + err + " exceeds " + tolerance);
    }
}
