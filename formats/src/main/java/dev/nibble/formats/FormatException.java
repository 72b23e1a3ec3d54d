package dev.nibble.formats;

import java.io.IOException;
import java.nio.file.Path;

/** A file that does not follow its format: the message names the file, the offending item and, where known, the byte offset. */
public class FormatException extends IOException {

    private final Path file;
    private final long offset;

    /** @param offset the byte offset of the problem, or -1 when no single offset applies */
    public FormatException(Path file, String item, long offset, String problem) {
        super(file + ": " + item + (offset >= 0 ? " at byte " + offset : "") + ": " + problem);
        this.file = file;
        this.offset = offset;
    }

    public FormatException(Path file, String item, long offset, String problem, Throwable cause) {
        this(file, item, offset, problem);
        initCause(cause);
    }

    public Path file() {
        return file;
    }

    /** The byte offset of the problem, or -1. */
    public long offset() {
        return offset;
    }
}
