package dev.nibble.converter.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import java.util.Random;
import java.util.function.IntToDoubleFunction;
import org.junit.jupiter.api.Test;

class FloatQuantizerTest {

    private static int bits16(byte[] out, int i) {
        return (out[2 * i] & 0xFF) | (out[2 * i + 1] & 0xFF) << 8;
    }

    private static double halfValue(int h) {
        int exp = h >> 10 & 31;
        int mant = h & 1023;
        double mag = exp == 31 ? Double.POSITIVE_INFINITY : exp == 0 ? mant * 0x1p-24 : (1 + mant / 1024.0) * Math.pow(2, exp - 15);
        return (h & 0x8000) != 0 ? -mag : mag;
    }

    private static double bf16Value(int h) {
        return Float.intBitsToFloat(h << 16);
    }

    /** Random floats spread over many binades, both signs, plus exact ties and the edges of the target range. */
    private static float[] samples(Random rnd, float[] extra) {
        float[] x = new float[4000 + extra.length];
        for (int i = 0; i < 4000; i++) {
            x[i] = (float) ((rnd.nextBoolean() ? 1 : -1) * Math.pow(2, -30 + 50 * rnd.nextDouble()));
        }
        System.arraycopy(extra, 0, x, 4000, extra.length);
        return x;
    }

    /** h is the nearest 16-bit pattern to x (its neighbours are not closer), and on a tie the even one. */
    private static void assertNearestEven(float x, int h, IntToDoubleFunction value, int maxFinite) {
        double v = value.applyAsDouble(h);
        int mag = h & 0x7FFF;
        double err = Math.abs(v - x);
        if (mag < maxFinite) {
            double up = Math.abs(value.applyAsDouble(h + 1) - x);
            assertTrue(err < up || (err == up && (h & 1) == 0), x + " -> " + Integer.toHexString(h));
        }
        if (mag > 0 && mag <= maxFinite) {
            double down = Math.abs(value.applyAsDouble(h - 1) - x);
            assertTrue(err < down || (err == down && (h & 1) == 0), x + " -> " + Integer.toHexString(h));
        }
    }

    @Test
    void f16IsTheNearestHalfWithTiesToEven() {
        float[] x = samples(new Random(501), new float[] {1 + 0x1p-11f, 1 + 3 * 0x1p-11f, 65504f, 65519f, 0x1p-25f, -0x1p-24f * 1.5f});
        byte[] out = RoundTrip.quantize(GgmlType.F16, x);
        for (int i = 0; i < x.length; i++) {
            int h = bits16(out, i);
            if (Math.abs(x[i]) >= 65520f) {
                assertEquals(x[i] > 0 ? 0x7C00 : 0xFC00, h, "overflow to infinity: " + x[i]);
            } else {
                assertNearestEven(x[i], h, FloatQuantizerTest::halfValue, 0x7BFF);
            }
        }
    }

    @Test
    void bf16IsTheNearestBfloatWithTiesToEven() {
        float[] x = samples(new Random(502), new float[] {
            Float.intBitsToFloat(0x3F808000), Float.intBitsToFloat(0x3F818000), Float.intBitsToFloat(0x3F808001),
            Float.intBitsToFloat(0x00008000), Float.MIN_VALUE});
        byte[] out = RoundTrip.quantize(GgmlType.BF16, x);
        for (int i = 0; i < x.length; i++) {
            assertNearestEven(x[i], bits16(out, i), FloatQuantizerTest::bf16Value, 0x7F7F);
        }
        assertEquals(0x3F80, bits16(out, 4000), "tie rounds to the even 0x3F80");
        assertEquals(0x3F82, bits16(out, 4001), "tie rounds to the even 0x3F82");
        assertEquals(0x3F81, bits16(out, 4002), "above the tie rounds up");
    }

    @Test
    void bf16KeepsNaNAndInfinitiesAndOverflowsTheLargestFloatToInfinity() {
        float[] x = {Float.intBitsToFloat(0x7F800001), Float.intBitsToFloat(0xFFC00000), Float.POSITIVE_INFINITY,
            Float.NEGATIVE_INFINITY, Float.MAX_VALUE};
        byte[] out = RoundTrip.quantize(GgmlType.BF16, x);
        assertTrue(Float.isNaN(Float.intBitsToFloat(bits16(out, 0) << 16)), "signalling NaN with a low payload stays NaN");
        assertTrue(Float.isNaN(Float.intBitsToFloat(bits16(out, 1) << 16)));
        assertEquals(0x7F80, bits16(out, 2));
        assertEquals(0xFF80, bits16(out, 3));
        assertEquals(0x7F80, bits16(out, 4));
    }

    @Test
    void f32IsStoredBitForBitLittleEndian() {
        float[] x = {1.5f, -0.0f, Float.intBitsToFloat(0x7FC01234), Float.MIN_VALUE, 0x1.234567p-100f};
        byte[] out = RoundTrip.quantize(GgmlType.F32, x);
        for (int i = 0; i < x.length; i++) {
            int bits = (out[4 * i] & 0xFF) | (out[4 * i + 1] & 0xFF) << 8 | (out[4 * i + 2] & 0xFF) << 16 | (out[4 * i + 3] & 0xFF) << 24;
            assertEquals(Float.floatToRawIntBits(x[i]), bits, "float " + i);
        }
    }
}
