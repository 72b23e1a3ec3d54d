package dev.nibble.converter.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.nibble.formats.GgmlType;
import java.io.IOException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Q4_0 and Q8_0 must produce the very bytes of ggml's reference quantizers (fixtures made by ggml itself). */
class GgmlBitIdentityTest {

    @ParameterizedTest
    @CsvSource({"Q4_0, q4_0", "Q8_0, q8_0"})
    void bytesAreIdenticalToGgmlReference(GgmlType type, String fixture) throws IOException {
        float[] x = QuantFixtures.floats("input.f32");
        byte[] expected = QuantFixtures.bytes(fixture + ".ggml.bin");
        byte[] actual = RoundTrip.quantize(type, x);
        assertEquals(expected.length, actual.length);
        for (int i = 0; i < expected.length; i++) {
            int block = i / type.typeSize();
            assertEquals(expected[i], actual[i], type + " block " + block + " byte " + i % type.typeSize());
        }
    }

    @Test
    void q4_0MapsTheSignedExtremeToLevelZeroAndRoundsHalvesUp() {
        float[] x = new float[32];
        for (int j = 0; j < 32; j++) {
            x[j] = (j % 17) * 0.5f - 3.5f; // multiples of 0.5 in [-3.5, 4.5]: half of them ties at d = 1
        }
        x[9] = -8f; // the signed weight of largest magnitude: d = -8 / -8 = 1, this weight becomes level 0
        byte[] q = RoundTrip.quantize(GgmlType.Q4_0, x);
        assertEquals(0x3C00, (q[0] & 0xFF) | (q[1] & 0xFF) << 8, "d = 1.0 in fp16");
        for (int j = 0; j < 32; j++) {
            int level = j < 16 ? q[2 + j] & 0xF : (q[2 + j - 16] & 0xFF) >> 4;
            int expected = Math.min(15, (int) Math.floor(x[j] + 8.5));
            assertEquals(expected, level, "weight " + j + " = " + x[j]);
        }
    }

    @Test
    void q8_0RoundsHalvesAwayFromZero() {
        float[] x = new float[32];
        x[0] = 127f; // d = 1
        x[1] = 2.5f;
        x[2] = -2.5f;
        x[3] = 0.5f;
        x[4] = -0.5f;
        x[5] = -127f;
        for (int j = 6; j < 32; j++) {
            x[j] = j - 20.25f;
        }
        byte[] q = RoundTrip.quantize(GgmlType.Q8_0, x);
        byte[] expected = new byte[32];
        expected[0] = 127;
        expected[1] = 3;
        expected[2] = -3;
        expected[3] = 1;
        expected[4] = -1;
        expected[5] = -127;
        for (int j = 6; j < 32; j++) {
            expected[j] = (byte) (j - 20);
        }
        assertArrayEquals(expected, java.util.Arrays.copyOfRange(q, 2, 34));
    }
}
