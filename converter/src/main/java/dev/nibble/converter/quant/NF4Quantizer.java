package dev.nibble.converter.quant;

import dev.nibble.formats.Codebooks;
import dev.nibble.formats.GgmlType;

/**
 * NF4 (nibble's extension, layout in {@link GgmlType}): per 64 weights an absmax {@code d * code}, per weight the
 * nearest of the 16 NF4 levels times that absmax.
 *
 * <p>Scale rule: d is the fp16 of max(absmax) / 255, raised to the next fp16 if rounding made {@code 255 * d} fall
 * short of the largest absmax; each code is the smallest u8 with {@code d * code >= absmax}. Rounding the codes up,
 * never down, keeps every weight inside [-absmax, absmax], so the extreme weight of each sub-block is represented
 * (nearly) exactly instead of being clipped. (A largest absmax beyond 255 × 65504 cannot be represented and saturates.)
 * Each weight then takes the level whose dequantized value, computed exactly as the dequantizer does, is nearest.
 */
final class NF4Quantizer extends BlockQuantizer {

    private static final int TYPE_SIZE = 134;
    private static final float[] LEVELS = new float[16];

    static {
        for (int i = 0; i < 16; i++) {
            LEVELS[i] = Codebooks.nf4(i);
        }
    }

    @Override
    public GgmlType type() {
        return GgmlType.NF4;
    }

    @Override
    void encode(float[] src, int srcOffset, int blocks, byte[] out) {
        float[] absmax = new float[4];
        for (int b = 0; b < blocks; b++) {
            encodeBlock(src, srcOffset + 256 * b, out, TYPE_SIZE * b, absmax);
        }
    }

    private static void encodeBlock(float[] x, int at, byte[] out, int o, float[] absmax) {
        float largest = 0;
        for (int i = 0; i < 4; i++) {
            absmax[i] = 0;
            for (int j = 0; j < 64; j++) {
                absmax[i] = Math.max(absmax[i], Math.abs(x[at + 64 * i + j]));
            }
            largest = Math.max(largest, absmax[i]);
        }
        short dBits = Float.floatToFloat16(largest / 255);
        if (!(Float.float16ToFloat(dBits) <= 65504f)) {
            dBits = 0x7BFF; // the largest finite fp16
        }
        float d = Float.float16ToFloat(dBits);
        while (d * 255 < largest && d < 65504f) {
            dBits++; // positive fp16 bit patterns are ordered: +1 is the next representable value up
            d = Float.float16ToFloat(dBits);
        }
        putShort(out, o, dBits);
        for (int i = 0; i < 4; i++) {
            int code = d > 0 ? (int) Math.min(255, Math.ceil(absmax[i] / d)) : 0;
            while (code < 255 && d * code < absmax[i]) {
                code++; // the division can round down by an ulp
            }
            out[o + 2 + i] = (byte) code;
            float scale = d * code;
            for (int j = 0; j < 32; j++) {
                int lo = nearestLevel(x[at + 64 * i + j], scale);
                int hi = nearestLevel(x[at + 64 * i + 32 + j], scale);
                out[o + 6 + 32 * i + j] = (byte) (lo | hi << 4);
            }
        }
    }

    /** The code whose value {@code scale * level} is nearest to {@code v}: bisect on v / scale, then settle on exact values. */
    private static int nearestLevel(float v, float scale) {
        if (scale == 0) {
            return 7; // the exact zero level
        }
        float t = v / scale;
        int lo = 0;
        int hi = 15;
        while (hi - lo > 1) {
            int mid = (lo + hi) >>> 1;
            if (t < LEVELS[mid]) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        return Math.abs(scale * LEVELS[lo] - v) <= Math.abs(scale * LEVELS[hi] - v) ? lo : hi;
    }
}
