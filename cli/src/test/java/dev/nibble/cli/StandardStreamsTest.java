package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The real {@code nibble} process and its standard streams (issue 11 items 2, 4 and 14), run through {@code sh} so
 * that a descriptor can be closed, a pipe's reader leave early, or output go to {@code /dev/full}.
 */
class StandardStreamsTest {

    @TempDir
    Path dir;

    @BeforeAll
    static void unixWithProc() {
        assumeTrue(Files.isDirectory(Path.of("/proc/self/fd")) && Files.exists(Path.of("/bin/sh")), "Linux with /proc");
    }

    /** What a child printed and how it ended. */
    private record Child(int exitCode, String out, String err, long outBytes) {
    }

    /**
     * Runs {@code sh -c SCRIPT sh JAVA ARGS...}: in SCRIPT, {@code "$@"} is the nibble command ({@code java ...
     * dev.nibble.cli.Nibble ARGS}).
     */
    private Child run(String script, List<String> javaOptions, String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of("/bin/sh", "-c", script, "sh"));
        command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        command.add("--enable-native-access=ALL-UNNAMED");
        command.addAll(javaOptions);
        command.addAll(List.of("-cp", System.getProperty("java.class.path"), "dev.nibble.cli.Nibble"));
        command.addAll(List.of(args));
        Path out = dir.resolve("out"), err = dir.resolve("err");
        ProcessBuilder pb = new ProcessBuilder(command).redirectOutput(out.toFile()).redirectError(err.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        pb.environment().remove("NIBBLE_DEBUG");
        Process p = pb.start();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("still running: " + String.join(" ", args) + "\n" + Files.readString(err));
        }
        return new Child(p.exitValue(), new String(Files.readAllBytes(out), StandardCharsets.UTF_8),
                Files.readString(err, StandardCharsets.UTF_8), Files.size(out));
    }

    private static String model() {
        return GenerateCommandTest.model().toString();
    }

    private static void noStackTrace(Child c) {
        assertFalse(c.err().contains("\tat ") || c.err().contains("Exception in thread"), c.err());
    }

    @Test
    void aClosedStandardInputIsEmptyForTokenize() throws Exception {
        Child c = run("exec \"$@\" <&-", List.of(), "tokenize", "-m", model());
        assertEquals(0, c.exitCode(), c.err());
        assertEquals("1", c.out().strip(), "the ids of no text: BOS only"); // not the ids of the JVM's files
    }

    @Test
    void aClosedStandardInputEndsAChatAtOnce() throws Exception {
        Child c = run("exec \"$@\" <&-", List.of(), "chat", "-m", model(), "-n", "4");
        assertEquals(0, c.exitCode(), c.err());
        assertEquals("", c.out(), "no messages were read, so no answers");
    }

    @Test
    void aFullDeviceIsOneLineAndExitCodeOne() throws Exception {
        assumeTrue(Files.exists(Path.of("/dev/full")));
        for (String[] args : List.of(new String[] {"tokenize", "-m", model(), "The jury said"},
                new String[] {"generate", "-m", model(), "-p", "The jury said", "-n", "8", "-t", "1"},
                new String[] {"inspect", model(), "--json"})) {
            Child c = run("exec \"$@\" > /dev/full", List.of(), args);
            assertEquals(1, c.exitCode(), args[0] + ": " + c.err());
            List<String> errors = c.err().lines().filter(l -> l.startsWith("nibble: error:")).toList();
            assertEquals(List.of("nibble: error: cannot write the output: No space left on device"), errors, c.err());
            noStackTrace(c);
        }
    }

    @Test
    void aPipeClosedEarlyStopsGenerationQuietlyWithExitCodeZero() throws Exception {
        // The prompt alone is more than head reads, so head has left before the first generated token is written.
        Child c = run("{ \"$@\"; echo \"exit $?\" >&2; } | head -c 20", List.of(), "generate", "-m", model(), "-p",
                "Once upon a time there was a little girl who", "-n", "400", "--temp", "0", "-t", "1");
        assertEquals("Once upon a time the", c.out());
        assertTrue(c.err().contains("exit 0"), c.err());
        assertFalse(c.err().contains("nibble: error"), c.err());
        assertFalse(c.err().contains("generation "), "stopped at the closed pipe, before the timing line: " + c.err());
        noStackTrace(c);
    }

    @Test
    void aPipeClosedEarlyEndsTokenizeAndInspectQuietly() throws Exception {
        Path text = dir.resolve("long.txt");
        Files.writeString(text, "The jury said it did not. ".repeat(20_000));
        for (String[] args : List.of(new String[] {"tokenize", "-m", model(), "-f", text.toString(), "--pieces"},
                new String[] {"inspect", model()})) {
            Child c = run("{ \"$@\"; echo \"exit $?\" >&2; } | head -c 20", List.of(), args);
            assertEquals(20, c.outBytes(), c.out());
            assertTrue(c.err().contains("exit 0"), args[0] + ": " + c.err());
            assertFalse(c.err().contains("nibble: error"), c.err());
        }
    }

    @Test
    void outOfMemoryUnderASmallHeapIsOneLine() throws Exception {
        Path big = dir.resolve("big.txt");
        byte[] line = "the quick brown fox jumps over the lazy dog again and again\n".getBytes(StandardCharsets.UTF_8);
        try (var out = Files.newOutputStream(big)) {
            for (int i = 0; i < 40_000_000 / line.length; i++) {
                out.write(line);
            }
        }
        Child c = run("exec \"$@\"", List.of("-Xmx24m"), "tokenize", "-m", model(), "-f", big.toString());
        assertEquals(1, c.exitCode(), c.err());
        List<String> errors = c.err().lines().filter(l -> l.startsWith("nibble: error:")).toList();
        assertEquals(1, errors.size(), c.err());
        assertTrue(errors.getFirst().startsWith("nibble: error: out of memory") && errors.getFirst().contains("-Xmx"),
                c.err());
        noStackTrace(c);
    }

    @Test
    void anUnloadableNativeLibraryIsItsCauseInOneLine() throws Exception {
        Child c = run("exec \"$@\"", List.of("-Dnibble.native.dir=" + dir.resolve("no-such-dir")), "generate", "-m",
                model(), "-p", "The", "-n", "1", "--device", "cpu");
        assertEquals(1, c.exitCode(), c.err());
        List<String> errors = c.err().lines().filter(l -> l.startsWith("nibble: error:")).toList();
        assertEquals(1, errors.size(), c.err());
        assertTrue(errors.getFirst().contains("libnibble_cpu"), c.err());
        assertFalse(c.err().contains("ExceptionInInitializerError"), c.err());
        noStackTrace(c);
    }

    @Test
    void anUncaughtExceptionOnAnotherThreadIsOneLine() throws IOException {
        // The default handler main installs: checked here in-process, as no command fails on another thread on purpose.
        var saved = System.err;
        var captured = new java.io.ByteArrayOutputStream();
        System.setErr(new java.io.PrintStream(captured, true, StandardCharsets.UTF_8));
        try {
            ErrorReporter.uncaught(new Thread("worker"), new IllegalStateException("the pool stopped"));
        } finally {
            System.setErr(saved);
        }
        assertEquals("nibble: error: the pool stopped (thread worker)", captured.toString(StandardCharsets.UTF_8).strip());
    }
}
