package dev.nibble.formats;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.EnumSource;

class DequantizerTest {

    /** Offsets of the fp16 scale fields of each block type: these must hold finite values. */
    private static int[] fp16Fields(GgmlType type) {
        return switch (type) {
            case Q4_0, Q8_0, IQ4_NL, NF4 -> new int[] {0};
            case Q4_K -> new int[] {0, 2};
            case Q6_K -> new int[] {208};
            default -> new int[0];
        };
    }

    /** Random block bytes, with every fp16 scale a finite value of moderate size (both signs). */
    private static byte[] randomBlocks(GgmlType type, int blocks, Random rnd) {
        byte[] raw = new byte[blocks * type.typeSize()];
        rnd.nextBytes(raw);
        for (int b = 0; b < blocks; b++) {
            for (int f : fp16Fields(type)) {
                float v = (float) ((rnd.nextBoolean() ? 1 : -1) * Math.pow(2, -12 + 16 * rnd.nextDouble()));
                short h = Float.floatToFloat16(v);
                raw[b * type.typeSize() + f] = (byte) h;
                raw[b * type.typeSize() + f + 1] = (byte) (h >> 8);
            }
        }
        if (type == GgmlType.F16 || type == GgmlType.BF16) {
            for (int i = 1; i < raw.length; i += 2) {
                raw[i] &= (byte) (type == GgmlType.F16 ? 0xBB : 0xBF); // clear an exponent bit: no Inf/NaN
            }
        }
        if (type == GgmlType.F32) {
            for (int i = 3; i < raw.length; i += 4) {
                raw[i] &= (byte) 0xBF;
            }
        }
        return raw;
    }

    private static int u8(byte[] b, int i) {
        return b[i] & 0xFF;
    }

    private static int nibble(byte[] b, int i, boolean high) {
        return high ? u8(b, i) >> 4 : u8(b, i) & 0xF;
    }

    /** IEEE binary16 decoded by hand. */
    private static double half(byte[] b, int i) {
        int bits = u8(b, i) | u8(b, i + 1) << 8;
        int sign = bits >> 15 == 1 ? -1 : 1;
        int exp = bits >> 10 & 31;
        int mant = bits & 1023;
        return exp == 0 ? sign * mant * Math.pow(2, -24) : sign * (1 + mant / 1024.0) * Math.pow(2, exp - 15);
    }

    private static final int[] IQ4NL = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    private static final double[] NF4 = {-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534,
        0.16093020141124725, 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
        0.7229568362236023, 1.0};

    /**
     * Weight e of block b, straight from the layout descriptions, in float64, together with the sum of the
     * magnitudes of the terms (the scale of its rounding error): {value, magnitude}.
     */
    private static double[] spec(GgmlType type, byte[] raw, int e) {
        int bs = type.blockSize();
        int o = (e / bs) * type.typeSize();
        int k = e % bs;
        switch (type) {
            case F32 -> {
                double v = Float.intBitsToFloat(u8(raw, o) | u8(raw, o + 1) << 8 | u8(raw, o + 2) << 16 | u8(raw, o + 3) << 24);
                return new double[] {v, Math.abs(v)};
            }
            case F16 -> {
                double v = half(raw, o);
                return new double[] {v, Math.abs(v)};
            }
            case BF16 -> {
                int bits = u8(raw, o) | u8(raw, o + 1) << 8;
                int exp = bits >> 7 & 255;
                double v = (bits >> 15 == 1 ? -1 : 1) * (exp == 0 ? (bits & 127) * Math.pow(2, -133)
                        : (1 + (bits & 127) / 128.0) * Math.pow(2, exp - 127));
                return new double[] {v, Math.abs(v)};
            }
            case Q4_0 -> {
                double v = half(raw, o) * (nibble(raw, o + 2 + k % 16, k >= 16) - 8);
                return new double[] {v, Math.abs(v)};
            }
            case Q8_0 -> {
                double v = half(raw, o) * raw[o + 2 + k];
                return new double[] {v, Math.abs(v)};
            }
            case IQ4_NL -> {
                double v = half(raw, o) * IQ4NL[nibble(raw, o + 2 + k % 16, k >= 16)];
                return new double[] {v, Math.abs(v)};
            }
            case Q4_K -> {
                int s = k / 32;
                int q = nibble(raw, o + 16 + 32 * (k / 64) + k % 32, s % 2 == 1);
                int sc;
                int mn;
                if (s < 4) {
                    sc = u8(raw, o + 4 + s) % 64;
                    mn = u8(raw, o + 8 + s) % 64;
                } else {
                    sc = u8(raw, o + 8 + s) % 16 + 16 * (u8(raw, o + s) / 64);
                    mn = u8(raw, o + 8 + s) / 16 + 16 * (u8(raw, o + 4 + s) / 64);
                }
                double a = half(raw, o) * sc * q;
                double m = half(raw, o + 2) * mn;
                return new double[] {a - m, Math.abs(a) + Math.abs(m)};
            }
            case Q6_K -> {
                int half = k / 128;
                int quarter = k % 128 / 32;
                int l = k % 32;
                int low = nibble(raw, o + 64 * half + l + (quarter % 2) * 32, quarter >= 2);
                int high = u8(raw, o + 128 + 32 * half + l) >> (2 * quarter) & 3;
                int scale = raw[o + 192 + 8 * half + l / 16 + 2 * quarter];
                double v = half(raw, o + 208) * scale * (low + 16 * high - 32);
                return new double[] {v, Math.abs(v)};
            }
            case NF4 -> {
                int s = k / 64;
                int q = nibble(raw, o + 6 + 32 * s + k % 32, k % 64 >= 32);
                double v = half(raw, o) * u8(raw, o + 2 + s) * NF4[q];
                return new double[] {v, Math.abs(v)};
            }
            default -> throw new AssertionError(type);
        }
    }

    @ParameterizedTest
    @EnumSource(GgmlType.class)
    void randomBlocksMatchTheFloat64LayoutReference(GgmlType type) {
        Random rnd = new Random(7_000 + type.ordinal());
        int blocks = type.blockSize() == 1 ? 1001 : 7;
        byte[] raw = randomBlocks(type, blocks, rnd);
        int n = blocks * type.blockSize();
        float[] out = new float[n + 3];
        Arrays.fill(out, Float.NaN);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(raw.length + 5);
            MemorySegment.copy(raw, 0, seg, ValueLayout.JAVA_BYTE, 5, raw.length);
            Dequantizer.dequantizeRow(type, seg, 5, out, 2, n);
        }
        assertTrue(Float.isNaN(out[0]) && Float.isNaN(out[1]) && Float.isNaN(out[n + 2]), "wrote outside its range");
        for (int e = 0; e < n; e++) {
            double[] ref = spec(type, raw, e);
            double tol = ref[1] * 0x1p-22;
            assertEquals(ref[0], out[2 + e], tol, type + " weight " + e);
        }
    }

    @ParameterizedTest
    @CsvSource({"Q4_0, q4_0", "Q8_0, q8_0", "Q4_K, q4_k", "Q6_K, q6_k", "IQ4_NL, iq4_nl", "IQ4_NL, iq4_nl_ntry7"})
    void ggmlBytesDequantizeBitForBitLikeGgml(GgmlType type, String fixture) throws IOException {
        byte[] raw = QuantFixtures.bytes(fixture + ".ggml.bin");
        float[] expected = QuantFixtures.floats(fixture + ".ggml-dequant.f32");
        assertEquals(type.byteSize(expected.length), raw.length);
        float[] out = new float[expected.length];
        Dequantizer.dequantizeRow(type, MemorySegment.ofArray(raw), 0, out, 0, out.length);
        for (int i = 0; i < out.length; i++) {
            assertEquals(Float.floatToRawIntBits(expected[i]), Float.floatToRawIntBits(out[i]),
                    fixture + " weight " + i + ": " + expected[i] + " vs " + out[i]);
        }
    }

    @Test
    void bf16KeepsNaNAndInfinity() {
        assertTrue(Float.isNaN(Dequantizer.bf16ToFloat((short) 0x7FC1)));
        assertEquals(Float.NEGATIVE_INFINITY, Dequantizer.bf16ToFloat((short) 0xFF80));
    }

    @Test
    void rowLengthMustBeWholeBlocks() {
        MemorySegment src = MemorySegment.ofArray(new byte[1024]);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Dequantizer.dequantizeRow(GgmlType.Q4_K, src, 0, new float[300], 0, 300));
        assertTrue(e.getMessage().contains("256"), e.getMessage());
    }

    @Test
    void sourceShorterThanTheRowIsRejected() {
        MemorySegment src = MemorySegment.ofArray(new byte[GgmlType.Q8_0.typeSize() * 2]);
        assertThrows(IndexOutOfBoundsException.class,
                () -> Dequantizer.dequantizeRow(GgmlType.Q8_0, src, 1, new float[64], 0, 64));
        assertThrows(IndexOutOfBoundsException.class,
                () -> Dequantizer.dequantizeRow(GgmlType.Q8_0, src, 0, new float[63], 0, 64));
    }
}
