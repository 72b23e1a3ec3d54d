package dev.nibble.cli;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Locale;

/**
 * Checks of the files a command is given, before it opens them, each failing in one line that names the file, the
 * problem and the option that takes it: a missing file, a folder, and anything that is not a regular file (a FIFO
 * would block the open forever, {@code /dev/zero} never ends); and text read whole, strictly as UTF-8, up to a limit.
 */
public final class InputFiles {

    /** The most text a command reads whole (a prompt, a text to score, a text to tokenize): 64 MiB. */
    public static final long TEXT_LIMIT = 64L << 20;

    private InputFiles() {
    }

    /**
     * {@code file}, given to {@code option}, when it is an existing regular file (links followed); otherwise an
     * {@link IllegalArgumentException} saying what it is and ending "give OPTION WHAT". Never opens the file.
     */
    public static Path regularFile(Path file, String option, String what) {
        String fix = "; give " + option + " " + what;
        BasicFileAttributes a = attributes(file, fix);
        if (a.isDirectory()) {
            throw new IllegalArgumentException(file + " is a folder, not a file" + fix);
        }
        if (!a.isRegularFile()) {
            throw new IllegalArgumentException(file + " is " + kind(file) + ", not a regular file" + fix);
        }
        return file;
    }

    /**
     * Refuses an output path that exists and is not a regular file (a folder, a FIFO, a device): writing there would
     * block, or not be a file. A missing path is fine: the command creates it.
     */
    public static Path outputFile(Path file, String option) {
        if (!Files.exists(file)) {
            return file;
        }
        String fix = "; give " + option + " the path of a file to write";
        BasicFileAttributes a = attributes(file, fix);
        if (a.isDirectory()) {
            throw new IllegalArgumentException(file + " is a folder" + fix);
        }
        if (!a.isRegularFile()) {
            throw new IllegalArgumentException(file + " is " + kind(file) + ", not a regular file" + fix);
        }
        return file;
    }

    private static BasicFileAttributes attributes(Path file, String fix) {
        try {
            return Files.readAttributes(file, BasicFileAttributes.class);
        } catch (NoSuchFileException e) {
            Path parent = file.toAbsolutePath().getParent();
            String where = parent != null && !Files.isDirectory(parent) ? " (there is no folder " + parent + ")" : "";
            throw new IllegalArgumentException(file + ": no such file" + where + fix);
        } catch (AccessDeniedException e) {
            throw new IllegalArgumentException(file + ": permission denied (a folder on its path cannot be searched)" + fix);
        } catch (FileSystemException e) {
            throw new IllegalArgumentException(file + ": " + (e.getReason() != null ? e.getReason() : e.getMessage()) + fix);
        } catch (IOException e) {
            throw new IllegalArgumentException(file + ": " + e.getMessage() + fix);
        }
    }

    /** What a file that is neither regular nor a folder is, for messages ("a named pipe (FIFO)", "a character device"). */
    public static String kind(Path file) {
        try {
            int mode = (Integer) Files.getAttribute(file, "unix:mode");
            return switch (mode & 0170000) {
                case 0010000 -> "a named pipe (FIFO)";
                case 0020000 -> "a character device";
                case 0060000 -> "a block device";
                case 0140000 -> "a socket";
                case 0040000 -> "a folder";
                case 0100000 -> "a regular file";
                default -> "a special file";
            };
        } catch (IOException | RuntimeException e) {
            return "a special file (a device, FIFO or socket)";
        }
    }

    /**
     * The text of {@code file} (checked as by {@link #regularFile}), which must be valid UTF-8 and at most
     * {@code limit} bytes; each problem is one line naming the file, with the byte offset of invalid UTF-8.
     */
    public static String readUtf8(Path file, String option, String what, long limit) throws IOException {
        regularFile(file, option, what);
        long size = Files.size(file);
        if (size > limit) {
            throw new IllegalArgumentException(tooLarge(file.toString(), size, limit, option));
        }
        byte[] bytes;
        try (InputStream in = Files.newInputStream(file)) {
            bytes = in.readNBytes((int) Math.min(limit + 1, Integer.MAX_VALUE - 16));
        }
        if (bytes.length > limit) { // it grew since
            throw new IllegalArgumentException(tooLarge(file.toString(), bytes.length, limit, option));
        }
        return decode(bytes, file.toString());
    }

    /** All of {@code in} (standard input, called {@code name}) as strict UTF-8, at most {@code limit} bytes. */
    public static String readUtf8(InputStream in, String name, long limit) throws IOException {
        byte[] bytes = in.readNBytes((int) Math.min(limit + 1, Integer.MAX_VALUE - 16));
        if (bytes.length > limit) {
            throw new IllegalArgumentException(name + " has more than " + size(limit) + " (" + limit
                    + " bytes), the most nibble reads at once; give a smaller text (split it)");
        }
        return decode(bytes, name);
    }

    private static String tooLarge(String name, long size, long limit, String option) {
        return name + " is " + size(size) + " (" + size + " bytes), more than the " + size(limit) + " (" + limit
                + " bytes) " + option + " reads at once; give a smaller file (split it)";
    }

    /** {@code bytes} as UTF-8, or one line naming {@code name}, the byte offset and line of the first invalid byte. */
    static String decode(byte[] bytes, String name) {
        CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT).onUnmappableCharacter(CodingErrorAction.REPORT);
        ByteBuffer in = ByteBuffer.wrap(bytes);
        CharBuffer out = CharBuffer.allocate(8192);
        while (true) {
            CoderResult r = decoder.decode(in, out, true);
            if (r.isError()) {
                int offset = in.position();
                int line = 1;
                for (int i = 0; i < offset; i++) {
                    if (bytes[i] == '\n') {
                        line++;
                    }
                }
                throw new IllegalArgumentException(String.format(Locale.ROOT,
                        "%s is not valid UTF-8: byte %d (line %d) is 0x%02x; save it as UTF-8", name, offset, line,
                        bytes[offset] & 0xff));
            }
            if (r.isUnderflow()) {
                break;
            }
            out.clear(); // only checking: the text is made below in one go
        }
        return new String(bytes, StandardCharsets.UTF_8);
    }

    /** A size for messages: "64.0 MiB", "1.2 GiB", "512 bytes". */
    static String size(long bytes) {
        if (bytes < 1024) {
            return bytes + " bytes";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, "%.1f %s", v, units[u]);
    }
}
