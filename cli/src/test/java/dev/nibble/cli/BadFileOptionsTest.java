package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every command's file options refuse what is not a regular file before opening it (a FIFO would block forever,
 * {@code /dev/zero} never ends), name the file in one line, and read text as strict UTF-8 with the byte that is not;
 * bench's sizes are checked against the model. Issue 11 items 3 and 12.
 */
class BadFileOptionsTest {

    @TempDir
    Path dir;

    private static String model() {
        return GenerateCommandTest.model().toString();
    }

    /** Runs in-process with a guard against a hang (what a FIFO opened for reading does). */
    private static CliRun run(String... args) {
        return assertTimeoutPreemptively(Duration.ofSeconds(60), () -> CliRun.of(args), String.join(" ", args));
    }

    /** Exit code 1 and exactly one line on stderr containing each of {@code parts}, and no stack trace. */
    private static void oneLineError(CliRun r, String... parts) {
        assertEquals(1, r.exitCode(), r.err());
        List<String> lines = r.err().lines().filter(l -> l.startsWith("nibble: error: ")).toList();
        assertEquals(1, lines.size(), r.err());
        for (String part : parts) {
            assertTrue(lines.getFirst().contains(part), "'" + part + "' in: " + r.err());
        }
        assertFalse(r.err().contains("\tat ") || r.err().contains("Exception"), r.err());
    }

    private Path fifo() throws Exception {
        Path fifo = dir.resolve("pipe");
        Process p = new ProcessBuilder("mkfifo", fifo.toString()).start();
        assumeTrue(p.waitFor(10, TimeUnit.SECONDS) && p.exitValue() == 0, "mkfifo is available");
        return fifo;
    }

    @Test
    void aFifoIsRefusedWhereverAFileIsNeeded() throws Exception {
        String f = fifo().toString();
        Path text = Files.writeString(dir.resolve("t.txt"), "The jury");
        Path requests = Files.writeString(dir.resolve("in.jsonl"), "{\"id\": 1, \"prompt\": \"The\"}\n");
        List<String[]> commands = new ArrayList<>(List.of(
                new String[] {"generate", "-m", f, "-p", "The"},
                new String[] {"chat", "-m", f},
                new String[] {"perplexity", "-m", f, "-f", text.toString()},
                new String[] {"tokenize", "-m", f, "The"},
                new String[] {"batch", "-m", f, "-i", requests.toString(), "-o", dir.resolve("o1.jsonl").toString()},
                new String[] {"serve", "-m", f, "--port", "0"},
                new String[] {"bench", "-m", f, "-p", "8", "-n", "2", "-r", "1"},
                new String[] {"inspect", f},
                new String[] {"generate", "-m", model(), "-f", f},
                new String[] {"perplexity", "-m", model(), "-f", f},
                new String[] {"tokenize", "-m", model(), "-f", f},
                new String[] {"generate", "-m", model(), "--messages", f},
                new String[] {"tokenize", "-m", model(), "--messages", f},
                new String[] {"batch", "-m", model(), "-i", f, "-o", dir.resolve("o2.jsonl").toString()},
                new String[] {"batch", "-m", model(), "-i", requests.toString(), "-o", f}));
        for (String[] command : commands) {
            CliRun r = run(command);
            oneLineError(r, f, "not a regular file");
        }
    }

    @Test
    void aDeviceIsNotATextFile() {
        assumeTrue(Files.exists(Path.of("/dev/zero")));
        oneLineError(run("perplexity", "-m", model(), "-f", "/dev/zero"), "/dev/zero", "character device", "-f");
        oneLineError(run("tokenize", "-m", model(), "-f", "/dev/zero"), "/dev/zero", "character device", "-f");
        oneLineError(run("generate", "-m", model(), "-f", "/dev/zero"), "/dev/zero", "character device", "-f");
    }

    @Test
    void aFolderIsNotAModelForAnyCommand() throws IOException {
        Path folder = Files.createDirectory(dir.resolve("folder"));
        Path requests = Files.writeString(dir.resolve("in.jsonl"), "{\"id\": 1, \"prompt\": \"The\"}\n");
        oneLineError(run("batch", "-m", folder.toString(), "-i", requests.toString(), "-o", dir.resolve("o.jsonl").toString()),
                folder.toString(), "is a folder", "-m");
        oneLineError(run("serve", "-m", folder.toString(), "--port", "0"), folder.toString(), "is a folder", "-m");
        oneLineError(run("bench", "-m", folder.toString()), folder.toString(), "is a folder", "-m");
        oneLineError(run("generate", "-m", model(), "-f", folder.toString()), folder.toString(), "is a folder", "-f");
        oneLineError(run("batch", "-m", model(), "-i", requests.toString(), "-o", folder.toString()),
                folder.toString(), "is a folder", "-o");
    }

    @Test
    void aMissingFileIsNamedWithWhatIsWrong() {
        String missing = dir.resolve("nonexistent.txt").toString();
        oneLineError(run("tokenize", "-m", model(), "-f", missing), missing, "no such file", "-f");
        oneLineError(run("generate", "-m", model(), "-f", missing), missing, "no such file", "-f");
        oneLineError(run("perplexity", "-m", model(), "-f", missing), missing, "no such file", "-f");
    }

    @Test
    void invalidUtf8NamesTheFileAndTheByte() throws IOException {
        Path bad = dir.resolve("bad.txt");
        Files.write(bad, new byte[] {'a', 'b', '\n', 'c', (byte) 0xff, 'd'});
        for (String command : List.of("generate", "perplexity", "tokenize")) {
            oneLineError(run(command, "-m", model(), "-f", bad.toString()), bad.toString(), "not valid UTF-8",
                    "byte 4 (line 2)", "0xff");
        }
    }

    @Test
    void benchRefusesSizesBeyondTheModelsContextWithTheNumbers() {
        oneLineError(run("bench", "-m", model(), "-p", "100000", "-n", "4", "-r", "1"), "-p 100000", "100001", "512");
        oneLineError(run("bench", "-m", model(), "-p", "400", "-n", "400", "-r", "1", "--parallel", "2"), "800", "512");
        oneLineError(run("bench", "-m", model(), "-p", "2000000000", "-n", "2000000000", "--parallel", "4"),
                "more than the 2147483647");
        oneLineError(run("bench", "-m", model(), "-p", "8", "-r", "2000000000"), "-r 2000000000");
    }

    @Test
    void aNegativeContextIsAUsageError() {
        CliRun r = run("generate", "-m", model(), "-p", "The", "--ctx", "-5");
        assertEquals(2, r.exitCode(), r.err());
        assertTrue(r.err().contains("--ctx"), r.err());
    }

    @Test
    void aConfigWithBillionsOfLayersIsRefusedAtOnce() throws IOException {
        Path source = CliRun.testData().resolve("tiny-llama/safetensors");
        Path model = Files.createDirectory(dir.resolve("model"));
        try (var files = Files.list(source)) {
            for (Path f : files.toList()) {
                Files.copy(f, model.resolve(f.getFileName()));
            }
        }
        Path config = model.resolve("config.json");
        String json = Files.readString(config, StandardCharsets.UTF_8);
        Files.writeString(config, json.replaceAll("\"num_hidden_layers\": *\\d+", "\"num_hidden_layers\": 2147483647"));
        CliRun r = run("convert", model.toString(), "-o", dir.resolve("out.gguf").toString());
        oneLineError(r, "num_hidden_layers", "2147483647", "config.json");
    }
}
