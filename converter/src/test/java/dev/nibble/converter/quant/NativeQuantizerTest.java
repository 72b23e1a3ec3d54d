package dev.nibble.converter.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.nibble.formats.Dequantizer;
import dev.nibble.formats.GgmlType;
import dev.nibble.formats.checkpoint.Checkpoint;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Random;
import java.util.function.BiFunction;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The C quantizers in libnibble_cpu (Q4_K, Q6_K) must write exactly the bytes of the Java reference quantizers. */
class NativeQuantizerTest {

    private static Quantizer reference(GgmlType type) {
        return switch (type) {
            case Q4_K -> new Q4KQuantizer();
            case Q6_K -> new Q6KQuantizer();
            default -> throw new IllegalArgumentException(type.toString());
        };
    }

    /** The instruction-set path the native quantizers of this test run on (-1: the library's default). */
    private static int isa = -1;

    private static Quantizer nativeQuantizer(GgmlType type) {
        assertTrue(NativeQuantizer.available(), "libnibble_cpu with nb_quantize_row is built into the kernels jar");
        return NativeQuantizer.of(type, isa);
    }

    /** Runs {@code check} on the scalar path, then on the best SIMD path the CPU has (AVX-512 runs the AVX2 quantizers). */
    private static void onEveryIsa(ThrowingRunnable check) throws IOException {
        assertTrue(NativeQuantizer.supports(0), "the scalar path exists everywhere");
        try {
            isa = 0;
            check.run();
            isa = NativeQuantizer.supports(2) ? 2 : NativeQuantizer.supports(1) ? 1 : -1;
            if (isa > 0) {
                check.run();
            }
        } finally {
            isa = -1;
        }
    }

    /** A check that may read files. */
    private interface ThrowingRunnable {
        void run() throws IOException;
    }

    private static byte[] quantize(Quantizer q, float[] x, int offset, int n) {
        byte[] out = new byte[Math.toIntExact(q.type().byteSize(n))];
        q.quantizeRow(x, offset, n, MemorySegment.ofArray(out), 0);
        return out;
    }

    private static void assertSameBytes(GgmlType type, float[] x, int offset, int n, String what) {
        byte[] expected = quantize(reference(type), x, offset, n);
        byte[] actual = quantize(nativeQuantizer(type), x, offset, n);
        int mismatch = Arrays.mismatch(expected, actual);
        if (mismatch >= 0) {
            int block = mismatch / type.typeSize();
            fail(type + " " + what + ": block " + block + " byte " + mismatch % type.typeSize() + " is "
                    + actual[mismatch] + ", the Java quantizer writes " + expected[mismatch] + "; block weights "
                    + Arrays.toString(Arrays.copyOfRange(x, offset + 256 * block, offset + 256 * block + 256)));
        }
    }

    /** Row shapes that reach every branch of the searches: signs, ties, flat and zero sub-blocks, float extremes. */
    private static final String[] KINDS = {"gaussian", "uniform", "outliers", "all-equal", "positive", "tiny",
        "subnormal", "large", "huge", "zero-sub-block", "zero-row", "mixed-scales", "few-levels"};

    private static float[] row(String kind, Random rnd, int n) {
        float[] x = new float[n];
        BiFunction<Double, Double, Float> g = (mean, sigma) -> (float) (mean + sigma * rnd.nextGaussian());
        for (int i = 0; i < n; i++) {
            x[i] = switch (kind) {
                case "gaussian" -> g.apply(0.0, 0.02);
                case "uniform" -> rnd.nextFloat() * 2 - 1;
                case "outliers" -> g.apply(0.0, 0.02) * (rnd.nextInt(40) == 0 ? 40 : 1);
                case "positive" -> Math.abs(g.apply(0.01, 0.02));
                case "tiny" -> g.apply(0.0, 1e-20);
                case "subnormal" -> g.apply(0.0, 1e-39);
                case "large" -> g.apply(0.0, 3e4);
                case "huge" -> g.apply(0.0, 1e30);
                case "mixed-scales" -> g.apply(0.0, Math.pow(10, (i / 256 * 7) % 17 - 8));
                case "few-levels" -> (rnd.nextInt(7) - 3) * 0.25f;
                case "zero-sub-block", "all-equal", "zero-row" -> g.apply(0.0, 1.0);
                default -> throw new IllegalArgumentException(kind);
            };
        }
        switch (kind) {
            case "all-equal" -> Arrays.fill(x, (float) rnd.nextGaussian());
            case "zero-row" -> Arrays.fill(x, 0f);
            case "zero-sub-block" -> {
                int at = 16 * rnd.nextInt(n / 16);
                Arrays.fill(x, at, Math.min(n, at + 32), 0f);
            }
            default -> { }
        }
        return x;
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_K", "Q6_K"})
    void randomRowsOfEveryKindGiveTheJavaQuantizersBytes(GgmlType type) throws IOException {
        onEveryIsa(() -> randomRows(type));
    }

    private static void randomRows(GgmlType type) {
        Random rnd = new Random(0x5eed0000L + type.id());
        int[] blocks = {1, 2, 3, 5, 11, 8};
        for (String kind : KINDS) {
            for (int trial = 0; trial < 6; trial++) {
                int n = 256 * blocks[trial % blocks.length];
                int offset = rnd.nextInt(5);
                float[] padded = new float[offset + n + 3];
                System.arraycopy(row(kind, rnd, n), 0, padded, offset, n);
                assertSameBytes(type, padded, offset, n, kind + " row of " + n + " at offset " + offset);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_K", "Q6_K"})
    void everyRowOfTheTinyLlamaWeightsGivesTheJavaQuantizersBytes(GgmlType type) throws IOException {
        int checked = 0;
        try (Checkpoint checkpoint = Checkpoint.open(QuantFixtures.root().resolve("tiny-llama/safetensors"))) {
            for (CheckpointTensor t : checkpoint.tensors()) {
                long[] shape = t.shape();
                int cols = Math.toIntExact(shape[shape.length - 1]);
                if (shape.length != 2 || cols % 256 != 0) {
                    continue;
                }
                int total = Math.toIntExact(t.elementCount());
                float[] x = new float[total];
                Dequantizer.dequantizeRow(t.dtype(), t.data(), 0, x, 0, total);
                long rowBytes = type.byteSize(cols);
                byte[] expected = new byte[Math.toIntExact(type.byteSize(total))];
                for (int r = 0; r < total / cols; r++) {
                    reference(type).quantizeRow(x, r * cols, cols, MemorySegment.ofArray(expected), r * rowBytes);
                }
                onEveryIsa(() -> {
                    byte[] actual = new byte[expected.length];
                    for (int r = 0; r < total / cols; r++) {
                        nativeQuantizer(type).quantizeRow(x, r * cols, cols, MemorySegment.ofArray(actual), r * rowBytes);
                    }
                    int mismatch = Arrays.mismatch(expected, actual);
                    assertEquals(-1, mismatch, () -> t.name() + ": first differing byte in row " + mismatch / rowBytes);
                });
                checked++;
            }
        }
        assertTrue(checked >= 7 * 6, "all 2-D weights of the 6 layers were compared, got " + checked);
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_K", "Q6_K"})
    void forTypeHandsOutTheNativeQuantizerForTheKQuants(GgmlType type) {
        assertTrue(NativeQuantizer.available());
        assertInstanceOf(NativeQuantizer.class, Quantizer.forType(type));
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_K", "Q6_K"})
    void writesOnlyItsOwnBytesOfAnOffHeapDestination(GgmlType type) {
        float[] x = row("gaussian", new Random(7), 512);
        int bytes = Math.toIntExact(type.byteSize(512));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment dst = arena.allocate(bytes + 10);
            dst.fill((byte) 0x5a);
            nativeQuantizer(type).quantizeRow(x, 0, 512, dst, 3);
            byte[] expected = quantize(reference(type), x, 0, 512);
            assertEquals(-1, Arrays.mismatch(expected, dst.asSlice(3, bytes).toArray(ValueLayout.JAVA_BYTE)));
            for (long i : new long[] {0, 1, 2, bytes + 3, bytes + 9}) {
                assertEquals((byte) 0x5a, dst.get(ValueLayout.JAVA_BYTE, i), "byte " + i + " outside the row");
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = GgmlType.class, names = {"Q4_K", "Q6_K"})
    void badArgumentsAreExceptionsBeforeTheNativeCall(GgmlType type) {
        Quantizer q = nativeQuantizer(type);
        float[] x = row("gaussian", new Random(3), 512);
        MemorySegment dst = MemorySegment.ofArray(new byte[Math.toIntExact(type.byteSize(512))]);
        assertThrows(IllegalArgumentException.class, () -> q.quantizeRow(x, 0, 100, dst, 0));
        assertThrows(IllegalArgumentException.class, () -> q.quantizeRow(x, 0, 31, dst, 0));
        assertThrows(IllegalArgumentException.class, () -> q.quantizeRow(x, 0, -256, dst, 0));
        assertThrows(IndexOutOfBoundsException.class, () -> q.quantizeRow(x, 1, 512, dst, 0));
        assertThrows(IndexOutOfBoundsException.class, () -> q.quantizeRow(x, 0, 512, dst, 1));
        assertThrows(IndexOutOfBoundsException.class, () -> q.quantizeRow(x, 0, 512, dst.asSlice(0, 100), 0));
        x[300] = Float.NaN;
        IllegalArgumentException nan = assertThrows(IllegalArgumentException.class, () -> q.quantizeRow(x, 0, 512, dst, 0));
        assertTrue(nan.getMessage().contains("weight 300"), nan.getMessage());
        x[300] = Float.NEGATIVE_INFINITY;
        assertThrows(IllegalArgumentException.class, () -> q.quantizeRow(x, 0, 512, dst, 0));
    }
}
