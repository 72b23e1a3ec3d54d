package dev.nibble.formats;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A file that does not follow its format: the message names the file, the offending item and, where known, the byte
 * offset. The message is always one line of bounded length, whatever the file holds: the item and the problem often
 * quote names and text from the file, so line breaks and other control characters in them are escaped and long
 * quotes are cut.
 */
public class FormatException extends IOException {

    /** The longest item and problem kept in a message; the rest is cut with "...". */
    static final int MAX_ITEM = 200;
    static final int MAX_PROBLEM = 1000;

    private final Path file;
    private final long offset;

    /** @param offset the byte offset of the problem, or -1 when no single offset applies */
    public FormatException(Path file, String item, long offset, String problem) {
        super(oneLine(String.valueOf(file), MAX_ITEM * 4) + ": " + oneLine(item, MAX_ITEM)
                + (offset >= 0 ? " at byte " + offset : "") + ": " + oneLine(problem, MAX_PROBLEM));
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

    /**
     * {@code text} as one line of at most about {@code max} characters: control characters (line breaks among them,
     * and the Unicode line and paragraph separators) become escapes such as {@code \n} or {@code \u001b}, and what
     * goes past {@code max} is replaced by "...". For quoting untrusted text in a message.
     */
    public static String oneLine(String text, int max) {
        if (text == null) {
            return "null";
        }
        StringBuilder out = new StringBuilder(Math.min(text.length(), max) + 8);
        for (int i = 0; i < text.length(); i++) {
            if (out.length() >= max) {
                return out.append("...").toString();
            }
            char c = text.charAt(i);
            switch (c) {
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (Character.isISOControl(c) || c == '\u2028' || c == '\u2029') {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.toString();
    }
}
