package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.Dequantizer;
import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import java.util.stream.IntStream;

/** Random inputs, float64 references and error measures shared by the kernel tests. */
final class KernelData {

    private KernelData() {}

    /** Every instruction-set path this machine can run. */
    static IntStream paths() {
        return IntStream.rangeClosed(NibbleCpu.ISA_SCALAR, NibbleCpu.isaBest());
    }

    static MemorySegment floats(Arena arena, float[] values) {
        MemorySegment s = arena.allocate(4L * Math.max(1, values.length), 64);
        MemorySegment.copy(values, 0, s, ValueLayout.JAVA_FLOAT, 0, values.length);
        return s;
    }

    static MemorySegment ints(Arena arena, int[] values) {
        MemorySegment s = arena.allocate(4L * Math.max(1, values.length), 64);
        MemorySegment.copy(values, 0, s, ValueLayout.JAVA_INT, 0, values.length);
        return s;
    }

    /** An output buffer filled with NaN, so an element the kernel forgets to write shows up. */
    static MemorySegment poisoned(Arena arena, long count) {
        MemorySegment s = arena.allocate(4L * Math.max(1, count), 64);
        for (long i = 0; i < count; i++) {
            s.setAtIndex(ValueLayout.JAVA_FLOAT, i, Float.NaN);
        }
        return s;
    }

    static float[] toArray(MemorySegment s, int count) {
        float[] a = new float[count];
        MemorySegment.copy(s, ValueLayout.JAVA_FLOAT, 0, a, 0, count);
        return a;
    }

    /** Uniform in [-scale, scale), never exactly a constant. */
    static float[] randomFloats(Random rnd, int n, float scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (rnd.nextFloat() * 2 - 1) * scale;
        }
        return a;
    }

    /**
     * {@code rows} rows of {@code cols} random weights of {@code type}: random bytes for the codes, and every fp16
     * scale field set to a random normal value of random sign (random bytes there would give NaN or huge scales).
     */
    static MemorySegment randomWeights(Arena arena, Random rnd, GgmlType type, long rows, long cols) {
        long bytes = type.byteSize(rows * cols);
        MemorySegment s = arena.allocate(Math.max(1, bytes), 64);
        switch (type) {
            case F32 -> {
                for (long i = 0; i < rows * cols; i++) {
                    s.setAtIndex(ValueLayout.JAVA_FLOAT, i, rnd.nextFloat() * 2 - 1);
                }
            }
            case F16 -> {
                for (long i = 0; i < rows * cols; i++) {
                    s.setAtIndex(ValueLayout.JAVA_SHORT, i, Float.floatToFloat16(rnd.nextFloat() * 2 - 1));
                }
            }
            case BF16 -> {
                for (long i = 0; i < rows * cols; i++) {
                    s.setAtIndex(ValueLayout.JAVA_SHORT, i, (short) (Float.floatToRawIntBits(rnd.nextFloat() * 2 - 1) >>> 16));
                }
            }
            default -> {
                byte[] raw = new byte[(int) bytes];
                rnd.nextBytes(raw);
                MemorySegment.copy(raw, 0, s, ValueLayout.JAVA_BYTE, 0, raw.length);
                int[] scaleOffsets = switch (type) {
                    case Q4_K -> new int[] {0, 2};
                    case Q6_K -> new int[] {208};
                    default -> new int[] {0};
                };
                for (long b = 0; b < bytes / type.typeSize(); b++) {
                    for (int off : scaleOffsets) {
                        float scale = (0.002f + rnd.nextFloat() * 0.02f) * (type == GgmlType.NF4 || rnd.nextBoolean() ? 1 : -1);
                        s.set(ValueLayout.JAVA_SHORT_UNALIGNED, b * type.typeSize() + off, Float.floatToFloat16(scale));
                    }
                }
            }
        }
        return s;
    }

    /** The weights as floats, by the Java reference dequantizer. */
    static float[][] dequantize(GgmlType type, MemorySegment w, int rows, int cols) {
        float[][] out = new float[rows][cols];
        long rowBytes = type.byteSize(cols);
        for (int r = 0; r < rows; r++) {
            Dequantizer.dequantizeRow(type, w, r * rowBytes, out[r], 0, cols);
        }
        return out;
    }

    /** {@code y = W x} in float64 for {@code tokens} rows of x, and the norm of all the terms {@code w·x} summed. */
    record MatmulReference(double[] out, double termNorm) {

        /**
         * The error of {@code got} measured against the norm of the terms instead of the outputs: rounded operands
         * (8-bit or f16) move each output by a fraction of that norm, and cancellation can make an output itself
         * arbitrarily small when there are few.
         */
        double errorAgainstTerms(float[] got) {
            return relativeError(got, out) * norm(out) / termNorm;
        }
    }

    static MatmulReference matmul(float[][] w, float[] x, int rows, int cols, int tokens) {
        double[] out = new double[tokens * rows];
        double termNorm2 = 0;
        for (int t = 0; t < tokens; t++) {
            for (int r = 0; r < rows; r++) {
                double sum = 0;
                for (int c = 0; c < cols; c++) {
                    double term = (double) w[r][c] * x[t * cols + c];
                    sum += term;
                    termNorm2 += term * term;
                }
                out[t * rows + r] = sum;
            }
        }
        return new MatmulReference(out, Math.sqrt(termNorm2));
    }

    /** Rounds every value to the nearest f16, in place: what a half-precision cache holds. */
    static void roundToHalf(float[] values) {
        for (int i = 0; i < values.length; i++) {
            values[i] = Float.float16ToFloat(Float.floatToFloat16(values[i]));
        }
    }

    /** The values as F32 or F16 elements in native memory (a KV cache of that type). */
    static MemorySegment cache(Arena arena, float[] values, GgmlType type) {
        if (type == GgmlType.F32) {
            return floats(arena, values);
        }
        MemorySegment s = arena.allocate(2L * values.length, 64);
        for (int i = 0; i < values.length; i++) {
            s.setAtIndex(ValueLayout.JAVA_SHORT, i, Float.floatToFloat16(values[i]));
        }
        return s;
    }

    static double norm(double[] v) {
        double s = 0;
        for (double d : v) {
            s += d * d;
        }
        return Math.sqrt(s);
    }

    /** ‖out − ref‖ / ‖ref‖ in float64; fails on a NaN (an unwritten or broken element). */
    static double relativeError(float[] out, double[] ref) {
        double num = 0, den = 0;
        for (int i = 0; i < ref.length; i++) {
            assertTrue(Float.isFinite(out[i]), "element " + i + " is " + out[i]);
            double d = out[i] - ref[i];
            num += d * d;
            den += ref[i] * ref[i];
        }
        assertTrue(den > 0, "reference is all zeros: the test data is degenerate");
        return Math.sqrt(num / den);
    }
}
