package dev.nibble.cli;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Standard input, output and error as nibble uses them: a closed standard input reads as empty, and a write to
 * standard output or error that fails stops the command ({@link WriteFailure}) instead of being ignored, as
 * {@link java.io.PrintStream} and {@link java.io.PrintWriter} would.
 */
public final class StandardStreams {

    private StandardStreams() {
    }

    /**
     * A write to standard output or error failed: the reader of a pipe went away ({@link #closedPipe()}: nibble stops
     * quietly, exit code 0, as {@code yes | head} does), or the device refused it (a full disk: one line, exit 1).
     * Unchecked, so that it passes through {@link java.io.PrintWriter} (which swallows {@link IOException}) and through
     * the generation loop, which it ends at the next piece of text.
     */
    public static final class WriteFailure extends UncheckedIOException {
        private final String stream;
        private final boolean closedPipe;

        WriteFailure(String stream, boolean closedPipe, IOException cause) {
            super("cannot write the " + stream + ": " + cause.getMessage(), cause);
            this.stream = stream;
            this.closedPipe = closedPipe;
        }

        /** "output" or "error output". */
        public String stream() {
            return stream;
        }

        /** True when the reading end of a pipe (or socket) was closed: not an error of nibble's. */
        public boolean closedPipe() {
            return closedPipe;
        }
    }

    /** Standard output (file descriptor 1), throwing {@link WriteFailure} when a write fails. */
    static OutputStream output() {
        return new Checked(new FileOutputStream(FileDescriptor.out), 1, "output");
    }

    /** Standard error (file descriptor 2), throwing {@link WriteFailure} when a write fails. */
    static OutputStream error() {
        return new Checked(new FileOutputStream(FileDescriptor.err), 2, "error output");
    }

    /**
     * Makes {@link System#in} empty when file descriptor 0 was closed when nibble started ({@code nibble chat <&-}).
     * The JVM's first file then takes descriptor 0, and reading "standard input" would read that file (the Java
     * runtime's modules, a jar) as if the user had typed it. True when it did so.
     */
    static boolean emptyWhenClosed() {
        if (closedAtStart()) {
            System.setIn(InputStream.nullInputStream());
            return true;
        }
        return false;
    }

    /**
     * Whether descriptor 0 was closed at start: on Linux, when {@code /proc/self/fd/0} is missing, is close-on-exec
     * (so it was opened by this process, not inherited), or is a file of the Java runtime or of the class path; on
     * systems without {@code /proc}, when {@code /dev/fd/0} is missing. False whenever it cannot tell.
     */
    static boolean closedAtStart() {
        try {
            Path fds = Path.of("/proc/self/fd");
            if (!Files.isDirectory(fds)) {
                Path devFd = Path.of("/dev/fd");
                return Files.isDirectory(devFd) && !Files.exists(devFd.resolve("0"), LinkOption.NOFOLLOW_LINKS);
            }
            Path zero = fds.resolve("0");
            if (!Files.exists(zero, LinkOption.NOFOLLOW_LINKS)) {
                return true;
            }
            if (closeOnExec(Path.of("/proc/self/fdinfo/0"))) {
                return true;
            }
            String target = Files.readSymbolicLink(zero).toString();
            if (!target.startsWith("/")) {
                return false; // pipe:[...], socket:[...]: inherited from whoever started nibble
            }
            Path file = Path.of(target);
            for (Path own : runtimeFiles()) {
                if (file.startsWith(own)) {
                    return true;
                }
            }
            return false;
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    /** True when {@code /proc/self/fdinfo/N}'s flags include O_CLOEXEC, which no inherited descriptor has. */
    private static boolean closeOnExec(Path fdinfo) throws IOException {
        for (String line : Files.readAllLines(fdinfo)) {
            if (line.startsWith("flags:")) {
                long flags = Long.parseLong(line.substring("flags:".length()).strip(), 8);
                return (flags & 02000000L) != 0;
            }
        }
        return false;
    }

    /** Files the JVM itself opens and keeps open: the Java runtime's, the class path's and its performance data. */
    private static List<Path> runtimeFiles() {
        List<Path> own = new ArrayList<>();
        addReal(own, System.getProperty("java.home"));
        String classPath = System.getProperty("java.class.path", "");
        for (String entry : classPath.split(java.io.File.pathSeparator)) {
            addReal(own, entry);
        }
        addReal(own, Path.of(System.getProperty("java.io.tmpdir", "/tmp"), "hsperfdata_" + System.getProperty("user.name", ""))
                .toString());
        return own;
    }

    private static void addReal(List<Path> paths, String path) {
        if (path == null || path.isEmpty()) {
            return;
        }
        try {
            paths.add(Path.of(path).toRealPath());
        } catch (IOException | InvalidPathException e) {
            // not there: nothing of it can be open
        }
    }

    /** A descriptor's stream that turns a failed write into a {@link WriteFailure}, and keeps failing after one. */
    private static final class Checked extends OutputStream {
        private final FileOutputStream out;
        private final int fd;
        private final String name;
        private WriteFailure failed;

        Checked(FileOutputStream out, int fd, String name) {
            this.out = out;
            this.fd = fd;
            this.name = name;
        }

        @Override
        public void write(int b) {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public synchronized void write(byte[] b, int off, int len) {
            if (failed != null) {
                throw failed;
            }
            try {
                out.write(b, off, len);
            } catch (IOException e) {
                failed = new WriteFailure(name, closedPipe(e, fd), e);
                throw failed;
            }
        }

        @Override
        public void flush() {
            // FileOutputStream writes through; nothing is held here
        }
    }

    /**
     * Whether a failed write met a closed pipe: EPIPE's message ("Broken pipe", or a socket's reset), or, where the
     * system's messages may be in another language, any error but "try again" on a descriptor that is a pipe or socket.
     */
    static boolean closedPipe(IOException e, int fd) {
        String message = String.valueOf(e.getMessage()).toLowerCase(Locale.ROOT);
        if (message.contains("broken pipe") || message.contains("connection reset")) {
            return true;
        }
        try {
            String target = Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd)).toString();
            return (target.startsWith("pipe:") || target.startsWith("socket:")) && !message.contains("temporarily");
        } catch (IOException | RuntimeException notLinux) {
            return false;
        }
    }
}
