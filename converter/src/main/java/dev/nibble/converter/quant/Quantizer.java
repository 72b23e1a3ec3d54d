package dev.nibble.converter.quant;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.MemorySegment;

/** Turns rows of float32 weights into the bytes of one {@link GgmlType}; implementations are stateless and thread-safe. */
public interface Quantizer {

    /** The quantizer for {@code type}: Q4_K and Q6_K run in libnibble_cpu when it loads, with the same output. */
    static Quantizer forType(GgmlType type) {
        return switch (type) {
            case F32 -> new F32Quantizer();
            case F16 -> new F16Quantizer();
            case BF16 -> new BF16Quantizer();
            case Q8_0 -> new Q8_0Quantizer();
            case Q4_0 -> new Q4_0Quantizer();
            case Q4_K -> NativeQuantizer.orJava(new Q4KQuantizer());
            case Q6_K -> NativeQuantizer.orJava(new Q6KQuantizer());
            case IQ4_NL -> new IQ4NLQuantizer();
            case NF4 -> new NF4Quantizer();
        };
    }

    /** The type this quantizer writes. */
    GgmlType type();

    /**
     * Quantizes {@code src[srcOffset .. srcOffset + n)} into {@code type().byteSize(n)} bytes of {@code dst} at
     * {@code dstByteOffset}.
     *
     * @throws IllegalArgumentException when {@code n} is negative or not a multiple of the block size, or when a block
     *     type meets NaN or an infinity (the float types keep them)
     * @throws IndexOutOfBoundsException when the source range or the destination bytes lie outside their buffers
     */
    void quantizeRow(float[] src, int srcOffset, int n, MemorySegment dst, long dstByteOffset);
}
