package dev.nibble.converter.quant;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Objects;

/** The shared frame of every quantizer: checks the ranges, encodes a row into a per-thread byte array, copies it out once. */
abstract class BlockQuantizer implements Quantizer {

    /** Each worker thread's output buffer, reused while the row size stays the same (it does within a tensor). */
    private static final ThreadLocal<byte[]> SCRATCH = ThreadLocal.withInitial(() -> new byte[0]);

    @Override
    public final void quantizeRow(float[] src, int srcOffset, int n, MemorySegment dst, long dstByteOffset) {
        int bytes = checkRow(type(), src, srcOffset, n, dst, dstByteOffset);
        byte[] out = SCRATCH.get();
        if (out.length != bytes) {
            out = new byte[bytes];
            SCRATCH.set(out);
        } else {
            Arrays.fill(out, (byte) 0);
        }
        encode(src, srcOffset, n / type().blockSize(), out);
        MemorySegment.copy(out, 0, dst, ValueLayout.JAVA_BYTE, dstByteOffset, bytes);
    }

    /**
     * Checks a {@link Quantizer#quantizeRow} call for {@code type} as its contract says, and returns the row's encoded
     * size in bytes.
     */
    static int checkRow(GgmlType type, float[] src, int srcOffset, int n, MemorySegment dst, long dstByteOffset) {
        int blockSize = type.blockSize();
        if (n < 0 || n % blockSize != 0) {
            throw new IllegalArgumentException(type + ": row length " + n + " is not a multiple of the block size " + blockSize);
        }
        Objects.checkFromIndexSize(srcOffset, n, src.length);
        int bytes = Math.toIntExact(type.byteSize(n));
        Objects.checkFromIndexSize(dstByteOffset, bytes, dst.byteSize());
        if (type.isQuantized()) {
            for (int i = 0; i < n; i++) {
                if (!Float.isFinite(src[srcOffset + i])) {
                    // A block scale cannot represent it, and it would silently spoil the whole block.
                    throw new IllegalArgumentException(type + ": weight " + i + " of the row is " + src[srcOffset + i]);
                }
            }
        }
        return bytes;
    }

    /** Encodes {@code blocks} consecutive blocks starting at {@code src[srcOffset]} into {@code out} (its whole length). */
    abstract void encode(float[] src, int srcOffset, int blocks, byte[] out);

    /** Stores a little-endian 16-bit value. */
    static void putShort(byte[] out, int at, short v) {
        out[at] = (byte) v;
        out[at + 1] = (byte) (v >> 8);
    }

    /** Rounds half to even, as ggml's {@code nearest_int} does; values beyond the int range saturate. */
    static int nearestInt(float v) {
        return (int) Math.rint(v);
    }
}
