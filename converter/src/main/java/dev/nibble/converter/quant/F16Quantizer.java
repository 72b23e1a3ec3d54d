package dev.nibble.converter.quant;

import dev.nibble.formats.GgmlType;

/** Rounds float32 weights to IEEE half precision, ties to even; out-of-range values become infinities, NaN stays NaN. */
final class F16Quantizer extends BlockQuantizer {

    @Override
    public GgmlType type() {
        return GgmlType.F16;
    }

    @Override
    void encode(float[] src, int srcOffset, int blocks, byte[] out) {
        for (int i = 0; i < blocks; i++) {
            putShort(out, 2 * i, Float.floatToFloat16(src[srcOffset + i]));
        }
    }
}
