package dev.nibble.converter.quant;

import dev.nibble.formats.Dequantizer;
import dev.nibble.formats.GgmlType;
import java.lang.foreign.MemorySegment;

/** Test helpers: quantize then dequantize with the reference dequantizer, and measure errors. */
final class RoundTrip {

    private RoundTrip() {
    }

    static byte[] quantize(GgmlType type, float[] x) {
        byte[] out = new byte[Math.toIntExact(type.byteSize(x.length))];
        Quantizer.forType(type).quantizeRow(x, 0, x.length, MemorySegment.ofArray(out), 0);
        return out;
    }

    static float[] dequantize(GgmlType type, byte[] bytes, int n) {
        float[] y = new float[n];
        Dequantizer.dequantizeRow(type, MemorySegment.ofArray(bytes), 0, y, 0, n);
        return y;
    }

    static float[] roundTrip(GgmlType type, float[] x) {
        return dequantize(type, quantize(type, x), x.length);
    }

    /** Root mean square of {@code y - x} over {@code [from, to)}. */
    static double rmse(float[] x, float[] y, int from, int to) {
        double sum = 0;
        for (int i = from; i < to; i++) {
            double e = (double) y[i] - x[i];
            sum += e * e;
        }
        return Math.sqrt(sum / (to - from));
    }

    static float[] gaussian(java.util.Random rnd, int n, double sigma) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (rnd.nextGaussian() * sigma);
        }
        return x;
    }
}
