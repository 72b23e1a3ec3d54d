package dev.nibble.formats.gguf;

import dev.nibble.formats.GgmlType;
import java.util.Arrays;

/**
 * A tensor's name, type and shape as declared in a GGUF tensor table. {@code dims} are in ggml order: fastest-varying
 * first (a PyTorch {@code [rows, cols]} weight is {@code {cols, rows}}). The constructor checks what GGUF requires:
 * 1 to 4 dims, each at least 1, a product that fits a long, and {@code dims[0]} a multiple of the type's block size.
 */
public record GgufTensorInfo(String name, GgmlType type, long[] dims) {

    /** Most dimensions a GGUF tensor may have. */
    public static final int MAX_DIMS = 4;

    public GgufTensorInfo {
        if (name == null || type == null || dims == null) {
            throw new IllegalArgumentException("tensor name, type and dims must not be null");
        }
        dims = dims.clone();
        String problem = checkShape(type, dims);
        if (problem != null) {
            throw new IllegalArgumentException("tensor '" + name + "': " + problem);
        }
    }

    /** The dims, fastest-varying first (a copy). */
    @Override
    public long[] dims() {
        return dims.clone();
    }

    /** Number of elements. */
    public long elementCount() {
        long n = 1;
        for (long d : dims) {
            n *= d;
        }
        return n;
    }

    /** Bytes of tensor data. */
    public long byteSize() {
        return type.byteSize(elementCount());
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof GgufTensorInfo t && name.equals(t.name) && type == t.type && Arrays.equals(dims, t.dims);
    }

    @Override
    public int hashCode() {
        return (name.hashCode() * 31 + type.hashCode()) * 31 + Arrays.hashCode(dims);
    }

    @Override
    public String toString() {
        return name + " " + type + " " + Arrays.toString(dims);
    }

    /** What is wrong with this shape for this type, or {@code null} when it is valid (byte size included). */
    static String checkShape(GgmlType type, long[] dims) {
        if (dims.length < 1 || dims.length > MAX_DIMS) {
            return "has " + dims.length + " dims, must have 1 to " + MAX_DIMS;
        }
        long n = 1;
        for (int i = 0; i < dims.length; i++) {
            if (dims[i] < 1) {
                return "dim " + i + " is " + Long.toUnsignedString(dims[i]) + ", must be at least 1";
            }
            try {
                n = Math.multiplyExact(n, dims[i]);
            } catch (ArithmeticException e) {
                return "dims " + Arrays.toString(dims) + " have more elements than a long can count";
            }
        }
        if (dims[0] % type.blockSize() != 0) {
            return "dim 0 is " + dims[0] + ", not a multiple of " + type + "'s block size " + type.blockSize();
        }
        if (n / type.blockSize() > Long.MAX_VALUE / type.typeSize()) {
            return "dims " + Arrays.toString(dims) + " take more bytes than a long can count";
        }
        return null;
    }
}
