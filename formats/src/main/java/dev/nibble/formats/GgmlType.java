package dev.nibble.formats;

/**
 * The tensor element types nibble reads and writes, with ggml's type ids and block layouts.
 *
 * <p>A block holds {@link #blockSize()} weights in {@link #typeSize()} bytes; a row's length must be a multiple
 * of the block size. {@link #NF4} is nibble's own extension (id 1024, outside ggml's range): a 256-weight
 * super-block of an fp16 scale {@code d}, four u8 sub-block absmax codes {@code q[i]} (absmax of sub-block i is
 * {@code d * q[i]}), and 128 bytes of 4-bit indices into the bitsandbytes NF4 codebook, four sub-blocks of 64
 * weights, in each sub-block byte j holding weight j in its low nibble and weight j+32 in its high nibble.
 */
public enum GgmlType {
    F32(0, 1, 4),
    F16(1, 1, 2),
    Q4_0(2, 32, 2 + 16),
    Q8_0(8, 32, 2 + 32),
    Q4_K(12, 256, 2 + 2 + 12 + 128),
    Q6_K(14, 256, 128 + 64 + 16 + 2),
    IQ4_NL(20, 32, 2 + 16),
    BF16(30, 1, 2),
    NF4(1024, 256, 2 + 4 + 128);

    private final int id;
    private final int blockSize;
    private final int typeSize;

    GgmlType(int id, int blockSize, int typeSize) {
        this.id = id;
        this.blockSize = blockSize;
        this.typeSize = typeSize;
    }

    /** The numeric id stored in GGUF tensor infos. */
    public int id() {
        return id;
    }

    /** Weights per block. */
    public int blockSize() {
        return blockSize;
    }

    /** Bytes per block. */
    public int typeSize() {
        return typeSize;
    }

    /** Whether this type is block-quantized (as opposed to a plain float format). */
    public boolean isQuantized() {
        return blockSize > 1;
    }

    /** Bytes taken by {@code elements} weights; the caller must have checked divisibility by the block size. */
    public long byteSize(long elements) {
        return Math.multiplyExact(elements / blockSize, (long) typeSize);
    }

    /** The type with this GGUF id, or {@code null} when nibble does not know it. */
    public static GgmlType fromId(long id) {
        for (GgmlType t : values()) {
            if (t.id == id) {
                return t;
            }
        }
        return null;
    }
}
