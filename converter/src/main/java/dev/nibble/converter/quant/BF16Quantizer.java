package dev.nibble.converter.quant;

import dev.nibble.formats.GgmlType;

/** Rounds float32 weights to bfloat16 (the upper 16 bits), ties to even; NaN stays NaN. */
final class BF16Quantizer extends BlockQuantizer {

    @Override
    public GgmlType type() {
        return GgmlType.BF16;
    }

    @Override
    void encode(float[] src, int srcOffset, int blocks, byte[] out) {
        for (int i = 0; i < blocks; i++) {
            putShort(out, 2 * i, toBf16(src[srcOffset + i]));
        }
    }

    static short toBf16(float v) {
        int bits = Float.floatToRawIntBits(v);
        if (Float.isNaN(v)) {
            // Truncation could drop every set mantissa bit and turn NaN into infinity: force the quiet bit.
            return (short) (bits >>> 16 | 0x40);
        }
        // Adding 0x7FFF plus the lowest kept bit rounds to nearest, ties to even; a carry into the exponent is correct.
        return (short) ((bits + 0x7FFF + (bits >>> 16 & 1)) >>> 16);
    }
}
