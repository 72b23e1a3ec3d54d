package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.nio.charset.MalformedInputException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.util.concurrent.CompletionException;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** Every Throwable becomes one line naming what is wrong and what to do (issue 11 items 4 and 12). */
class ErrorReporterTest {

    private static String describe(Throwable t) {
        String line = ErrorReporter.describe(t, null);
        assertFalse(line.contains("\n") || line.contains("\tat "), line);
        return line;
    }

    /** The line as a command reports it: {@code command}'s options are known to the advice. */
    private static String describe(Throwable t, String command) {
        CommandLine cl = Nibble.commandLine().getSubcommands().get(command);
        return ErrorReporter.describe(t, cl.getCommandSpec());
    }

    private static void contains(String line, String... parts) {
        for (String part : parts) {
            assertTrue(line.contains(part), "'" + part + "' in: " + line);
        }
    }

    @Test
    void outOfMemorySaysWhatToRaiseOrLower() {
        contains(describe(new OutOfMemoryError("Java heap space"), "generate"), "out of memory", "Java heap space",
                "NIBBLE_JAVA_OPTS=-Xmx8g", "--ctx");
        contains(describe(new OutOfMemoryError("Java heap space"), "tokenize"), "out of memory", "-Xmx");
        assertFalse(describe(new OutOfMemoryError("Java heap space"), "tokenize").contains("--ctx"));
        contains(describe(new OutOfMemoryError("Unable to allocate 549755813680 bytes"), "generate"),
                "549755813680 bytes", "smaller --ctx");
        contains(describe(new OutOfMemoryError("Requested array size exceeds VM limit")), "array", "corrupt or too large");
    }

    @Test
    void stackOverflowIsOneLineWithTheCause() {
        contains(describe(new StackOverflowError()), "stack overflow", "nests too deeply", "-Xss");
    }

    @Test
    void aClassThatCannotInitialiseGivesItsCause() {
        String why = "cannot load libnibble_cpu from /cache/x: failed to map segment (the folder is noexec); set"
                + " NIBBLE_NATIVE_CACHE to another folder";
        assertEquals(why, describe(new ExceptionInInitializerError(new IllegalStateException(why))));
        // later uses of the class: the JVM's summary of the first failure
        NoClassDefFoundError later = new NoClassDefFoundError("Could not initialize class dev.nibble.runtime.nativelib.NibbleCpu");
        later.initCause(new ExceptionInInitializerError("Exception java.lang.IllegalStateException: " + why
                + " [in thread \"main\"]"));
        assertEquals(why, describe(later));
    }

    @Test
    void otherErrorsGiveTheirClassAndMessage() {
        assertEquals("InternalError: something broke", describe(new InternalError("something broke")));
        assertEquals("ArithmeticException: / by zero", describe(new ArithmeticException("/ by zero")));
        assertEquals("NullPointerException", describe(new NullPointerException()));
        assertEquals("a b c", describe(new IllegalArgumentException("a\nb\n  c")));
    }

    @Test
    void fileErrorsNameTheFileTheProblemAndTheFix() {
        contains(describe(new NoSuchFileException("/nonexistent.txt")), "/nonexistent.txt: no such file", "check the path");
        contains(describe(new NoSuchFileException("/no/such/folder/out.gguf.tmp")), "/no/such/folder/out.gguf.tmp",
                "there is no folder /no/such/folder");
        contains(describe(new AccessDeniedException("/root/out.gguf.tmp")), "/root/out.gguf.tmp", "permission denied",
                "permissions");
        contains(describe(new NotDirectoryException("/etc/passwd")), "/etc/passwd", "not a folder");
        contains(describe(new FileAlreadyExistsException("/tmp/out.gguf")), "/tmp/out.gguf", "already exists", "remove it");
        contains(describe(new FileSystemException("/tmp/out.gguf.tmp", null, "No space left on device")),
                "/tmp/out.gguf.tmp", "No space left on device", "free some space");
        contains(describe(new FileSystemException("/m", null, "No such device")), "/m", "not a regular file");
        contains(describe(new UncheckedIOException(new FileSystemException("/x", null, "Is a directory"))), "/x",
                "is a folder");
        contains(describe(new CompletionException(new UncheckedIOException(new NoSuchFileException("/y")))), "/y",
                "no such file");
    }

    @Test
    void aWriteErrorWithoutAFileNamesTheCommandsOutput() {
        CommandLine cl = Nibble.commandLine();
        cl.parseArgs("convert", "model-dir", "-o", "/data/out.gguf");
        CommandLine convert = cl.getSubcommands().get("convert");
        contains(ErrorReporter.describe(new IOException("File too large"), convert.getCommandSpec()), "/data/out.gguf",
                "cannot write", "File too large", "ulimit -f");
        contains(describe(new UncheckedIOException(new IOException("out.jsonl: cannot write a result: No space left on device",
                null))), "out.jsonl", "free some space");
    }

    @Test
    void undecodableTextSaysSo() {
        contains(describe(new MalformedInputException(1)), "not valid UTF-8", "Input length = 1", "save it as UTF-8");
    }

    @Test
    void aClosedPipeIsQuietAndZeroAFullDiskOneLineAndOne() {
        StringWriter err = new StringWriter();
        CommandLine cl = Nibble.commandLine();
        cl.setErr(new PrintWriter(err, true));
        var pipe = new StandardStreams.WriteFailure("output", true, new IOException("Broken pipe"));
        assertEquals(0, ErrorReporter.report(new CompletionException(pipe), cl));
        assertEquals("", err.toString());
        var full = new StandardStreams.WriteFailure("output", false, new IOException("No space left on device"));
        assertEquals(1, ErrorReporter.report(full, cl));
        assertEquals("nibble: error: cannot write the output: No space left on device", err.toString().strip());
    }
}
