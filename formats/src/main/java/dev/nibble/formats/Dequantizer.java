package dev.nibble.formats;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Objects;

/**
 * Plain-Java dequantization of every {@link GgmlType}: the reference the native kernels are tested against.
 *
 * <p>Layouts and the order of float operations follow ggml's {@code dequantize_row_*} exactly, so that for the same
 * bytes the output is bit-for-bit the same as ggml's. Each block is copied to a small array first; speed is not the
 * point of this class.
 */
public final class Dequantizer {

    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private Dequantizer() {
    }

    /**
     * Dequantizes {@code n} weights of {@code type} starting at byte {@code srcByteOffset} of {@code src} into
     * {@code dst[dstOffset .. dstOffset + n)}.
     *
     * @throws IllegalArgumentException when {@code n} is negative or not a multiple of the block size
     * @throws IndexOutOfBoundsException when the source bytes or the destination range lie outside their buffers
     */
    public static void dequantizeRow(GgmlType type, MemorySegment src, long srcByteOffset, float[] dst, int dstOffset, int n) {
        Objects.requireNonNull(type, "type");
        if (n < 0 || n % type.blockSize() != 0) {
            throw new IllegalArgumentException(type + ": row length " + n + " is not a multiple of the block size " + type.blockSize());
        }
        Objects.checkFromIndexSize(dstOffset, n, dst.length);
        Objects.checkFromIndexSize(srcByteOffset, type.byteSize(n), src.byteSize());
        switch (type) {
            case F32 -> MemorySegment.copy(src, F32_LE, srcByteOffset, dst, dstOffset, n);
            case F16 -> {
                for (int i = 0; i < n; i++) {
                    dst[dstOffset + i] = Float.float16ToFloat(src.get(I16_LE, srcByteOffset + 2L * i));
                }
            }
            case BF16 -> {
                for (int i = 0; i < n; i++) {
                    dst[dstOffset + i] = bf16ToFloat(src.get(I16_LE, srcByteOffset + 2L * i));
                }
            }
            default -> {
                byte[] block = new byte[type.typeSize()];
                int blocks = n / type.blockSize();
                for (int b = 0; b < blocks; b++) {
                    MemorySegment.copy(src, ValueLayout.JAVA_BYTE, srcByteOffset + (long) b * block.length, block, 0, block.length);
                    int out = dstOffset + b * type.blockSize();
                    switch (type) {
                        case Q4_0 -> q4_0(block, dst, out);
                        case Q8_0 -> q8_0(block, dst, out);
                        case Q4_K -> q4K(block, dst, out);
                        case Q6_K -> q6K(block, dst, out);
                        case IQ4_NL -> iq4nl(block, dst, out);
                        case NF4 -> nf4(block, dst, out);
                        default -> throw new IllegalStateException("no block layout for " + type);
                    }
                }
            }
        }
    }

    /** A bfloat16 is the upper half of a float32. */
    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }

    /** The fp16 at {@code block[at]}, little-endian. */
    private static float fp16(byte[] block, int at) {
        return Float.float16ToFloat((short) ((block[at] & 0xFF) | (block[at + 1] << 8)));
    }

    /**
     * The 6-bit scale and min of sub-block {@code j} of a Q4_K super-block, from its 12 packed bytes at
     * {@code scales}: sub-blocks 0-3 keep their low 6 bits in bytes j and j+4; sub-blocks 4-7 keep their low 4 bits in
     * the nibbles of byte j+4 and their top 2 bits in the spare top bits of bytes j-4 (scale) and j (min).
     *
     * @return {@code scale | min << 8}
     */
    private static int q4KScaleMin(byte[] block, int scales, int j) {
        int scale;
        int min;
        if (j < 4) {
            scale = block[scales + j] & 63;
            min = block[scales + j + 4] & 63;
        } else {
            int low = block[scales + j + 4] & 0xFF;
            scale = (low & 0xF) | ((block[scales + j - 4] & 0xFF) >> 6) << 4;
            min = (low >> 4) | ((block[scales + j] & 0xFF) >> 6) << 4;
        }
        return scale | min << 8;
    }

    // Q4_0: fp16 d, then 16 bytes; byte j holds weight j (low nibble) and weight j+16 (high nibble); w = d * (q - 8).
    private static void q4_0(byte[] b, float[] y, int out) {
        float d = fp16(b, 0);
        for (int j = 0; j < 16; j++) {
            int q = b[2 + j] & 0xFF;
            y[out + j] = ((q & 0xF) - 8) * d;
            y[out + j + 16] = ((q >> 4) - 8) * d;
        }
    }

    // Q8_0: fp16 d, then 32 int8; w = q * d.
    private static void q8_0(byte[] b, float[] y, int out) {
        float d = fp16(b, 0);
        for (int j = 0; j < 32; j++) {
            y[out + j] = b[2 + j] * d;
        }
    }

    // Q4_K: fp16 d, fp16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles. Each 64 weights use 32 bytes:
    // the low nibbles are sub-block 2i, the high nibbles sub-block 2i+1; w = d*scale*q - dmin*min.
    private static void q4K(byte[] b, float[] y, int out) {
        float d = fp16(b, 0);
        float dmin = fp16(b, 2);
        for (int i = 0; i < 4; i++) {
            int lo = q4KScaleMin(b, 4, 2 * i);
            int hi = q4KScaleMin(b, 4, 2 * i + 1);
            float d1 = d * (lo & 0xFF);
            float m1 = dmin * (lo >> 8);
            float d2 = d * (hi & 0xFF);
            float m2 = dmin * (hi >> 8);
            int qs = 16 + 32 * i;
            int o = out + 64 * i;
            for (int l = 0; l < 32; l++) {
                int q = b[qs + l] & 0xFF;
                y[o + l] = d1 * (q & 0xF) - m1;
                y[o + 32 + l] = d2 * (q >> 4) - m2;
            }
        }
    }

    // Q6_K: ql[128] low nibbles, qh[64] 2-bit high parts, int8 scales[16] (one per 16 weights), fp16 d at the end.
    // Each half of 128 weights uses 64 ql bytes and 32 qh bytes; qh byte l carries bits for weights l, l+32, l+64, l+96.
    private static void q6K(byte[] b, float[] y, int out) {
        float d = fp16(b, 208);
        for (int half = 0; half < 2; half++) {
            int ql = 64 * half;
            int qh = 128 + 32 * half;
            int sc = 192 + 8 * half;
            int o = out + 128 * half;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int h = b[qh + l] & 0xFF;
                int lowA = b[ql + l] & 0xFF;
                int lowB = b[ql + l + 32] & 0xFF;
                int q1 = ((lowA & 0xF) | (h & 3) << 4) - 32;
                int q2 = ((lowB & 0xF) | (h >> 2 & 3) << 4) - 32;
                int q3 = ((lowA >> 4) | (h >> 4 & 3) << 4) - 32;
                int q4 = ((lowB >> 4) | (h >> 6 & 3) << 4) - 32;
                y[o + l] = d * b[sc + is] * q1;
                y[o + l + 32] = d * b[sc + is + 2] * q2;
                y[o + l + 64] = d * b[sc + is + 4] * q3;
                y[o + l + 96] = d * b[sc + is + 6] * q4;
            }
        }
    }

    // IQ4_NL: as Q4_0, but the nibble indexes the non-linear IQ4_NL levels; w = d * level.
    private static void iq4nl(byte[] b, float[] y, int out) {
        float d = fp16(b, 0);
        for (int j = 0; j < 16; j++) {
            int q = b[2 + j] & 0xFF;
            y[out + j] = d * Codebooks.iq4nl(q & 0xF);
            y[out + j + 16] = d * Codebooks.iq4nl(q >> 4);
        }
    }

    // NF4 (nibble's extension, see GgmlType): fp16 d, 4 u8 absmax codes, then 4 sub-blocks of 64 weights in 32 bytes
    // each, byte j holding weight j (low nibble) and weight j+32 (high nibble); w = (d * code_i) * nf4[q].
    private static void nf4(byte[] b, float[] y, int out) {
        float d = fp16(b, 0);
        for (int i = 0; i < 4; i++) {
            float absmax = d * (b[2 + i] & 0xFF);
            int qs = 6 + 32 * i;
            int o = out + 64 * i;
            for (int j = 0; j < 32; j++) {
                int q = b[qs + j] & 0xFF;
                y[o + j] = absmax * Codebooks.nf4(q & 0xF);
                y[o + j + 32] = absmax * Codebooks.nf4(q >> 4);
            }
        }
    }
}
