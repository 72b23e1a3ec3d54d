package dev.nibble.converter.quant;

import dev.nibble.formats.GgmlType;

/**
 * Q4_0 exactly as ggml's reference: the signed weight of largest magnitude maps to level 0 (d = max / -8), and
 * q = min(15, trunc(x / d + 8.5)), which rounds to nearest with halves up.
 */
final class Q4_0Quantizer extends BlockQuantizer {

    @Override
    public GgmlType type() {
        return GgmlType.Q4_0;
    }

    @Override
    void encode(float[] src, int srcOffset, int blocks, byte[] out) {
        for (int b = 0; b < blocks; b++) {
            int x = srcOffset + 32 * b;
            int o = 18 * b;
            float amax = 0;
            float max = 0;
            for (int j = 0; j < 32; j++) {
                float v = src[x + j];
                if (amax < Math.abs(v)) {
                    amax = Math.abs(v);
                    max = v;
                }
            }
            float d = max / -8;
            float id = d != 0 ? 1.0f / d : 0.0f;
            putShort(out, o, Float.floatToFloat16(d));
            for (int j = 0; j < 16; j++) {
                int lo = Math.min(15, (int) (src[x + j] * id + 8.5f));
                int hi = Math.min(15, (int) (src[x + 16 + j] * id + 8.5f));
                out[o + 2 + j] = (byte) (lo | hi << 4);
            }
        }
    }
}
