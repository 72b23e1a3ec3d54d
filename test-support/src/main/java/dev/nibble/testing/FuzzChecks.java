package dev.nibble.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * What every fuzz target (the parsers of formats, the tokenizer files and chat templates of runtime) asserts, whatever
 * the input: a refusal is one of the documented exceptions with a one-line message, nothing else escapes (the fuzzer
 * reports any other Throwable: a NullPointerException, an index error, OutOfMemoryError, StackOverflowError), no input
 * takes more than a few seconds, and no input makes the parser allocate more than a fixed multiple of its size.
 */
public final class FuzzChecks {

    /** The longest a message may be; a parser's message quotes at most a few short items from the file. */
    public static final int MAX_MESSAGE = 4000;
    /** The longest one input may take: far beyond any parse of a fuzz-sized input, short of a hang. */
    public static final long MAX_NANOS = 5_000_000_000L;

    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    private static final ThreadLocal<Path> SCRATCH = ThreadLocal.withInitial(() -> {
        try {
            Path dir = Files.createTempDirectory("nibble-fuzz");
            dir.toFile().deleteOnExit();
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    });

    private FuzzChecks() {
    }

    /** A directory of this thread's own, reused by every input (files in it are overwritten). */
    public static Path scratch() {
        return SCRATCH.get();
    }

    /** Writes {@code data} to {@code name} in the scratch directory and returns its path. */
    public static Path write(String name, byte[] data) {
        try {
            Path file = scratch().resolve(name);
            file.toFile().deleteOnExit();
            return Files.write(file, data);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Fails unless {@code e} carries a present, one-line message of bounded length. */
    public static void cleanRefusal(Throwable e) {
        String m = e.getMessage();
        if (m == null || m.isBlank()) {
            throw new AssertionError("refusal without a message: " + e, e);
        }
        if (m.indexOf('\n') >= 0 || m.indexOf('\r') >= 0 || m.indexOf('\u2028') >= 0 || m.indexOf('\u2029') >= 0) {
            throw new AssertionError("refusal message of more than one line: " + e, e);
        }
        if (m.length() > MAX_MESSAGE) {
            throw new AssertionError("refusal message of " + m.length() + " characters", e);
        }
    }

    /** Work on one input, which may refuse it with the documented exceptions. */
    public interface Body {
        void run() throws Exception;
    }

    /**
     * Runs {@code body} and fails when it took longer than {@link #MAX_NANOS}, or allocated (on this thread's heap,
     * garbage included) more than {@code perInputByte} times the input's size plus {@code fixedBytes}. Loading,
     * instrumenting and initialising classes the first time a path runs costs time and allocation too, so an input
     * over a bound is run once more and fails only if it is over again.
     */
    public static void bounded(int inputBytes, long perInputByte, long fixedBytes, Body body) throws Exception {
        long limit = perInputByte * inputBytes + fixedBytes;
        String problem = null;
        for (int attempt = 0; attempt < 2; attempt++) {
            long start = System.nanoTime();
            long before = THREADS.getCurrentThreadAllocatedBytes();
            body.run();
            long allocated = THREADS.getCurrentThreadAllocatedBytes() - before;
            long nanos = System.nanoTime() - start;
            if (nanos > MAX_NANOS) {
                problem = String.format("an input of %d bytes took %.1f s", inputBytes, nanos / 1e9);
            } else if (allocated > limit) {
                problem = "an input of " + inputBytes + " bytes made the parser allocate " + allocated
                        + " bytes, more than the bound of " + limit;
            } else {
                return;
            }
        }
        throw new AssertionError(problem);
    }

    /** {@link #bounded} for time only. */
    public static void timely(int inputBytes, Body body) throws Exception {
        bounded(inputBytes, 0, Long.MAX_VALUE, body);
    }
}
