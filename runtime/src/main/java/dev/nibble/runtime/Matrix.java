package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * A weight matrix of {@code rows} rows of {@code cols} elements in {@code type}, rows contiguous, as a zero-copy slice of
 * the model file (a PyTorch {@code [rows, cols]} weight, GGUF dims {@code {cols, rows}}).
 */
public record Matrix(String name, GgmlType type, int rows, int cols, MemorySegment data) {

    /** Bytes of one row. */
    public long rowBytes() {
        return type.byteSize(cols);
    }
}
