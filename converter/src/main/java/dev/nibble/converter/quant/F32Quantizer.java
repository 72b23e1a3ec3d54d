package dev.nibble.converter.quant;

import dev.nibble.formats.GgmlType;

/** Writes float32 weights unchanged (little-endian). */
final class F32Quantizer extends BlockQuantizer {

    @Override
    public GgmlType type() {
        return GgmlType.F32;
    }

    @Override
    void encode(float[] src, int srcOffset, int blocks, byte[] out) {
        for (int i = 0; i < blocks; i++) {
            int bits = Float.floatToRawIntBits(src[srcOffset + i]);
            putShort(out, 4 * i, (short) bits);
            putShort(out, 4 * i + 2, (short) (bits >>> 16));
        }
    }
}
