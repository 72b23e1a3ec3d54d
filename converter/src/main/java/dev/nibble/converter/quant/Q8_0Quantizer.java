package dev.nibble.converter.quant;

import dev.nibble.formats.GgmlType;

/** Q8_0 exactly as ggml's reference: d = amax / 127, q = round(x / d) with halves away from zero. */
final class Q8_0Quantizer extends BlockQuantizer {

    @Override
    public GgmlType type() {
        return GgmlType.Q8_0;
    }

    @Override
    void encode(float[] src, int srcOffset, int blocks, byte[] out) {
        for (int b = 0; b < blocks; b++) {
            int x = srcOffset + 32 * b;
            int o = 34 * b;
            float amax = 0;
            for (int j = 0; j < 32; j++) {
                amax = Math.max(amax, Math.abs(src[x + j]));
            }
            float d = amax / 127;
            float id = d != 0 ? 1.0f / d : 0.0f;
            putShort(out, o, Float.floatToFloat16(d));
            for (int j = 0; j < 32; j++) {
                out[o + 2 + j] = (byte) roundHalfAway(src[x + j] * id);
            }
        }
    }

    /** C's roundf: Math.round is an exact floor(x + 1/2), which rounds halves away from zero once applied to |x|. */
    private static int roundHalfAway(float v) {
        int r = Math.round(Math.abs(v));
        return v < 0 ? -r : r;
    }
}
