package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A model file changed while a model runs from its mapping (issue 11): truncated, it fails the pass in flight (the
 * SIGBUS inside a kernel is caught) or the next one, with one line naming the file, never a dead JVM; rewritten in
 * place (same inode, new modification time), it fails the next pass; replaced by a rename, or deleted, it changes
 * nothing (the old inode stays mapped). Once a file is found changed every later pass fails the same way, so a batch
 * engine's next requests fail at once. Truncations run in a child JVM ({@link FileChangeProbe}).
 */
class ModelFileChangeTest {

    private static final Path MODEL = Path.of(System.getProperty("nibble.testData", "../test-data"), "tiny-llama.q8_0.gguf");

    @TempDir
    Path dir;

    private Path copy(String name) throws IOException {
        return Files.copy(MODEL, dir.resolve(name));
    }

    private static String message(Path file) {
        return file + ": the file changed while in use (it was truncated or overwritten); reload it (restart the command)";
    }

    /**
     * Writes zeros over a quarter of the file past its first MiB (weights: Q8_0 blocks of scale 0, finite), keeping its
     * size and inode, and moves its modification time on by ten seconds (as a slower rewrite would).
     */
    private static void overwriteInPlace(Path file) {
        try {
            FileTime before = Files.getLastModifiedTime(file);
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
                long size = ch.size();
                ch.write(ByteBuffer.allocate((int) (size / 4)), 1 << 20);
                assertEquals(size, ch.size(), "the same size");
            }
            Files.setLastModifiedTime(file, FileTime.fromMillis(before.toMillis() + 10_000));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private record Child(int exit, List<String> stdout, List<String> stderr, List<String> crashReports) {}

    /** Runs the probe on a copy of the model; {@code whenRunning} runs once it has generated its first token. */
    private Child probe(String mode, Path file, Runnable whenRunning) throws Exception {
        List<String> command = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp",
                System.getProperty("java.class.path"), FileChangeProbe.class.getName(), mode, file.toString());
        Process child = new ProcessBuilder(command).directory(dir.toFile()).start();
        child.getOutputStream().close();
        CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> read(child.getErrorStream()));
        List<String> out = new ArrayList<>();
        try (BufferedReader lines = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
            for (String line; (line = lines.readLine()) != null; ) {
                out.add(line);
                if (line.equals("running")) {
                    whenRunning.run();
                }
            }
        }
        assertTrue(child.waitFor(120, TimeUnit.SECONDS), "the probe finishes");
        List<String> reports;
        try (Stream<Path> files = Files.list(dir)) {
            reports = files.map(p -> p.getFileName().toString()).filter(n -> n.startsWith("hs_err")).toList();
        }
        return new Child(child.exitValue(), out, err.get().lines().toList(), reports);
    }

    private static String read(InputStream in) {
        try (in) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void assertCleanFailure(Path file, Child c) {
        assertEquals(List.of(), c.crashReports(), "no JVM crash: " + c);
        assertNotEquals(134, c.exit(), "not killed by SIGBUS: " + c);
        assertEquals(1, c.exit(), c.toString());
        assertEquals(List.of("nibble: error: " + message(file)), c.stderr(), "one line naming the file: " + c);
    }

    /** (b) The test truncates the file while the child generates: one line, exit status 1, no crash report. */
    @Test
    void truncatedWhileGeneratingFailsWithOneLine() throws Exception {
        Path file = copy("model.gguf");
        Child c = probe("generate", file, () -> {
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
                ch.truncate(ch.size() / 10);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
        assertCleanFailure(file, c);
        assertTrue(c.stdout().contains("via=fault") || c.stdout().contains("via=check"), c.toString());
    }

    /** (b) The truncation lands inside a pass, after its check: the kernel's SIGBUS becomes the same one line. */
    @Test
    void truncatedInsideAKernelFailsWithOneLine() throws Exception {
        Path file = copy("model.gguf");
        Child c = probe("kernel", file, () -> { });
        assertCleanFailure(file, c);
        assertTrue(c.stdout().contains("via=fault"), "the fault came from a kernel: " + c);
    }

    /** (c) Rewritten in place with the same size: the next pass fails, and every one after it. */
    @Test
    void rewrittenInPlaceFailsTheNextPass() throws IOException {
        Path file = copy("model.gguf");
        try (CpuBackend be = new CpuBackend(2); Model m = Model.load(file, be); KvCache cache = m.newCache(64)) {
            m.forward(new int[] {1, 450, 432, 1340}, cache, false);
            overwriteInPlace(file);
            IOException e = assertThrows(IOException.class, () -> m.forward(new int[] {300}, cache, false));
            assertEquals(message(file), e.getMessage());
            assertEquals(4, cache.size(), "the failed pass appended nothing");
            Files.setLastModifiedTime(file, m.file().identity().lastModified());
            e = assertThrows(IOException.class, () -> m.forward(new int[] {300}, cache, false));
            assertEquals(message(file), e.getMessage(), "once changed, always refused (even with the old time back)");
        }
    }

    /**
     * (c) In the batch engine: the file rewritten while a request generates fails that request with the message, and
     * a request submitted afterwards fails at once with the same one instead of running on the changed weights.
     */
    @Test
    void theBatchEngineFailsTheRunningRequestAndTheNextOnes() throws IOException {
        Path file = copy("model.gguf");
        try (CpuBackend be = new CpuBackend(2); Model m = Model.load(file, be)) {
            Tokenizer tokenizer = Tokenizer.from(VocabularyGguf.read(m.file()));
            try (BatchEngine engine = new BatchEngine(m, tokenizer, new BatchEngine.Options(2, 256, 0))) {
                AtomicBoolean changed = new AtomicBoolean();
                CompletableFuture<GenerationResult> running = engine.submit("Once upon a time",
                        GenerationSettings.of(200, SamplerSettings.greedy()), piece -> {
                            if (changed.compareAndSet(false, true)) {
                                overwriteInPlace(file);
                            }
                        });
                CompletionException e = assertThrows(CompletionException.class, running::join);
                assertTrue(changed.get(), "the file was rewritten while the request ran");
                assertEquals(message(file), e.getCause().getMessage());
                long start = System.nanoTime();
                CompletableFuture<GenerationResult> next = engine.submit("The jury",
                        GenerationSettings.of(50, SamplerSettings.greedy()), piece -> { });
                e = assertThrows(CompletionException.class, next::join);
                assertEquals(message(file), e.getCause().getMessage());
                assertTrue(System.nanoTime() - start < 5_000_000_000L, "it fails at once");
                assertEquals(0, engine.running(), "no request is left running");
            }
        }
    }

    /**
     * (d) Another file moved over the model's name (as {@code mv new.gguf model.gguf} or an atomic writer does), then
     * the name deleted: the model still runs on its mapping of the old file and computes what it computed before.
     */
    @Test
    void replacedByRenameOrDeletedRunsOn() throws IOException {
        Path file = copy("model.gguf");
        int[] prompt = {1, 450, 432, 1340, 338};
        try (CpuBackend be = new CpuBackend(2); Model m = Model.load(file, be)) {
            float[] before;
            try (KvCache cache = m.newCache(64)) {
                before = m.forward(prompt, cache, false);
            }
            Path other = copy("other.gguf");
            overwriteInPlace(other);
            Files.move(other, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            try (KvCache cache = m.newCache(64)) {
                assertArrayEquals(before, m.forward(prompt, cache, false), "the old weights, intact");
                for (int i = 0; i < 20; i++) {
                    m.forward(new int[] {100 + i}, cache, false);
                }
            }
            Files.delete(file);
            try (KvCache cache = m.newCache(64)) {
                assertArrayEquals(before, m.forward(prompt, cache, false), "deleted: still the old weights");
            }
        }
    }
}
