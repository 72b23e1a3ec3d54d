package dev.nibble.converter.quant;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import java.io.IOException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Q4_K, Q6_K and IQ4_NL need not match ggml's bytes, but their round-trip error must not exceed ggml's on the same
 * inputs: the fixtures hold ggml's own dequantized output for input.f32 (real tiny-llama weights, Gaussian rows, and
 * Gaussian rows with outliers, an all-positive and an all-zero sub-block).
 */
class GgmlErrorComparisonTest {

    private static final double SLACK = 1 + 1e-3;

    @ParameterizedTest
    @CsvSource({"Q4_K, q4_k", "Q6_K, q6_k", "IQ4_NL, iq4_nl", "IQ4_NL, iq4_nl_ntry7"})
    void errorIsNoWorseThanGgmlOnEachPartOfTheFixture(GgmlType type, String fixture) throws IOException {
        float[] x = QuantFixtures.floats("input.f32");
        float[] ggml = QuantFixtures.floats(fixture + ".ggml-dequant.f32");
        float[] ours = RoundTrip.roundTrip(type, x);
        int[][] parts = {{0, 1536}, {1536, 1792}, {1792, 2048}, {0, 2048}};
        String[] names = {"real weights", "Gaussian", "Gaussian with outliers", "all"};
        for (int p = 0; p < parts.length; p++) {
            double o = RoundTrip.rmse(x, ours, parts[p][0], parts[p][1]);
            double g = RoundTrip.rmse(x, ggml, parts[p][0], parts[p][1]);
            assertTrue(o <= g * SLACK, type + " on " + names[p] + ": rmse " + o + " > ggml's " + g);
        }
    }

    @ParameterizedTest
    @CsvSource({"Q4_K, q4_k", "Q6_K, q6_k", "IQ4_NL, iq4_nl"})
    void errorIsNoWorseThanGgmlInEverySuperBlock(GgmlType type, String fixture) throws IOException {
        float[] x = QuantFixtures.floats("input.f32");
        float[] ggml = QuantFixtures.floats(fixture + ".ggml-dequant.f32");
        float[] ours = RoundTrip.roundTrip(type, x);
        for (int b = 0; b < x.length; b += 256) {
            double o = RoundTrip.rmse(x, ours, b, b + 256);
            double g = RoundTrip.rmse(x, ggml, b, b + 256);
            assertTrue(o <= g * SLACK, type + " super-block at " + b + ": rmse " + o + " > ggml's " + g);
        }
    }

    /** ggml's bytes for gauss.f32 are dequantized with our dequantizer, which matches ggml's bit for bit (DequantizerTest). */
    @ParameterizedTest
    @CsvSource({"Q4_K, q4_k", "Q6_K, q6_k", "IQ4_NL, iq4_nl", "IQ4_NL, iq4_nl_ntry7"})
    void errorIsNoWorseThanGgmlOnGaussianRows(GgmlType type, String fixture) throws IOException {
        float[] x = QuantFixtures.floats("gauss.f32");
        float[] ggml = RoundTrip.dequantize(type, QuantFixtures.bytes("gauss." + fixture + ".ggml.bin"), x.length);
        float[] ours = RoundTrip.roundTrip(type, x);
        double o = RoundTrip.rmse(x, ours, 0, x.length);
        double g = RoundTrip.rmse(x, ggml, 0, x.length);
        assertTrue(o <= g * SLACK, type + " on Gaussian rows: rmse " + o + " > ggml's " + g);
        assertTrue(g < 0.1, "ggml's fixture rmse " + g + " is implausible for N(0, 1) at 4+ bits");
    }
}
