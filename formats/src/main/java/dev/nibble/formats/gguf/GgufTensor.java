package dev.nibble.formats.gguf;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * One tensor of an open {@link GgufFile}: its declared info, where its data starts in the file, and the data itself as a
 * read-only slice of the file's mapping (valid until the file is closed).
 */
public record GgufTensor(GgufTensorInfo info, long fileOffset, MemorySegment data) {

    public String name() {
        return info.name();
    }

    public GgmlType type() {
        return info.type();
    }

    /** The dims, fastest-varying first. */
    public long[] dims() {
        return info.dims();
    }
}
