package dev.nibble.converter;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.gguf.GgufTensorInfo;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.BrokenBarrierException;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What convert may write and read: never through a link planted at a temporary name, never over an input or anything
 * but a regular file (even with force), never a mix of two runs, and never a file from outside the model folder.
 */
class OutputSafetyTest {

    private static final SyntheticModel.Shape SHAPE = new SyntheticModel.Shape(64, 2, 4, 2, 96, 2048, false);

    @TempDir
    Path dir;

    private Path model;
    private Path out;

    @BeforeEach
    void writeModel() throws IOException {
        model = SyntheticModel.write(dir.resolve("model"), SHAPE, 41);
        out = dir.resolve("out.gguf");
    }

    private IOException refused(ConvertOptions options, String... parts) {
        IOException e = assertThrows(IOException.class, () -> Converter.convert(options));
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "'" + e.getMessage() + "' should mention '" + p + "'");
        }
        assertEquals(List.of(), BadInputTest.temporaries(dir));
        assertEquals(List.of(), BadInputTest.temporaries(model));
        return e;
    }

    @Test
    void aLinkAtTheOldTemporaryNameIsNotFollowed() throws IOException {
        Path victim = Files.writeString(dir.resolve("victim.txt"), "precious");
        Files.createSymbolicLink(dir.resolve("out.gguf.tmp"), victim);
        Converter.convert(ConvertOptions.of(model, out, Recipe.F16));
        assertEquals("precious", Files.readString(victim));
        assertTrue(Files.isSymbolicLink(dir.resolve("out.gguf.tmp")), "the planted link is left alone");
        assertTrue(Files.isRegularFile(out, LinkOption.NOFOLLOW_LINKS));
        assertTrue(Files.size(out) > 100_000);
    }

    @Test
    void forceNeverReplacesAFileOfTheModel() throws IOException {
        byte[] weights = Files.readAllBytes(model.resolve("model.safetensors"));
        for (String input : List.of("model.safetensors", "config.json", "tokenizer.json")) {
            refused(ConvertOptions.of(model, model.resolve(input), Recipe.F16).withForce(true),
                    model.resolve(input).toAbsolutePath().toString(), "an input of this run", "another path");
        }
        // A hard link is the same file under another name.
        Files.createLink(out, model.resolve("model.safetensors"));
        refused(ConvertOptions.of(model, out, Recipe.F16).withForce(true), "the same file as", "model.safetensors");
        assertArrayEquals(weights, Files.readAllBytes(model.resolve("model.safetensors")));
    }

    @Test
    void forceNeverReplacesAShard() throws IOException {
        Files.delete(model.resolve("model.safetensors"));
        SyntheticModel.writeSharded(model, SyntheticModel.llamaTensors(SHAPE, 41), 2);
        Path shard = model.resolve("model-00002-of-00002.safetensors");
        byte[] before = Files.readAllBytes(shard);
        Path alias = Files.createLink(dir.resolve("alias.gguf"), shard);
        refused(ConvertOptions.of(model, alias, Recipe.F16).withForce(true), "the same file as", shard.getFileName().toString());
        assertArrayEquals(before, Files.readAllBytes(shard));
    }

    @Test
    void forceReplacesOnlyRegularFiles() throws Exception {
        Path fifo = dir.resolve("fifo.gguf");
        assertEquals(0, new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor());
        Path target = Files.writeString(dir.resolve("target.gguf"), "kept");
        Path link = Files.createSymbolicLink(dir.resolve("link.gguf"), target);
        Path folder = Files.createDirectory(dir.resolve("folder.gguf"));
        for (Path special : List.of(fifo, link, folder)) {
            refused(ConvertOptions.of(model, special, Recipe.F16).withForce(true), special.toString(), "not a regular file");
        }
        assertTrue(Files.exists(fifo) && !Files.isRegularFile(fifo), "the FIFO is still a FIFO");
        assertTrue(Files.isSymbolicLink(link));
        assertEquals("kept", Files.readString(target));
        assertTrue(Files.isDirectory(folder));
    }

    @Test
    void twoConversionsToOneOutputLeaveOneCompleteModel() throws Exception {
        Path f32 = dir.resolve("f32.gguf");
        Path f16 = dir.resolve("f16.gguf");
        Converter.convert(ConvertOptions.of(model, f32, Recipe.F32));
        Converter.convert(ConvertOptions.of(model, f16, Recipe.F16));

        // Both runs are writing at the same time before either finishes.
        CyclicBarrier bothWriting = new CyclicBarrier(2);
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            List<Future<?>> runs = new ArrayList<>();
            for (Recipe r : List.of(Recipe.F32, Recipe.F16)) {
                runs.add(pool.submit(() -> Converter.convert(ConvertOptions.of(model, out, r).withForce(true)
                        .withProgress(meetingAt(bothWriting)))));
            }
            for (Future<?> run : runs) {
                run.get(60, TimeUnit.SECONDS);
            }
        } finally {
            pool.shutdownNow();
        }
        byte[] result = Files.readAllBytes(out);
        assertTrue(Arrays.equals(result, Files.readAllBytes(f32)) || Arrays.equals(result, Files.readAllBytes(f16)),
                "the output is one run's complete model, not a mix");
        assertEquals(List.of(), BadInputTest.temporaries(dir));
    }

    @Test
    void withoutForceTheSecondOfTwoConcurrentConversionsKeepsTheFirstOutput() throws Exception {
        CyclicBarrier bothWriting = new CyclicBarrier(2);
        ExecutorService pool = Executors.newFixedThreadPool(2);
        int failed = 0;
        try {
            List<Future<?>> runs = new ArrayList<>();
            for (Recipe r : List.of(Recipe.F32, Recipe.F16)) {
                runs.add(pool.submit(() -> Converter.convert(ConvertOptions.of(model, out, r).withProgress(meetingAt(bothWriting)))));
            }
            for (Future<?> run : runs) {
                try {
                    run.get(60, TimeUnit.SECONDS);
                } catch (ExecutionException e) {
                    assertTrue(e.getCause().getMessage().contains("already exists"), e.getCause().getMessage());
                    failed++;
                }
            }
        } finally {
            pool.shutdownNow();
        }
        assertEquals(1, failed, "exactly one run may create the output");
        assertTrue(Files.size(out) > 100_000);
        assertEquals(List.of(), BadInputTest.temporaries(dir));
    }

    @Test
    void aLinkOutOfTheModelFolderIsRefusedWithoutQuotingItsContent() throws IOException {
        Path secret = Files.writeString(dir.resolve("secret.txt"), "SECRET:x:0:0:root:/root:/bin/bash\n");
        Path template = Files.createSymbolicLink(model.resolve("chat_template.jinja"), secret);
        IOException e = refused(ConvertOptions.of(model, out, Recipe.F16), template.toString(), secret.toRealPath().toString(),
                "outside the model folder", "--allow-external-links");
        assertFalse(e.getMessage().contains("SECRET"), e.getMessage());
        assertFalse(Files.exists(out));

        // A linked config would have been quoted by the JSON error; it is refused before it is read.
        Files.delete(template);
        Files.delete(model.resolve("config.json"));
        Files.createSymbolicLink(model.resolve("config.json"), secret);
        e = refused(ConvertOptions.of(model, out, Recipe.F16), "config.json", "--allow-external-links");
        assertFalse(e.getMessage().contains("SECRET"), e.getMessage());
    }

    @Test
    void externalLinksAreReadWhenAllowed() throws IOException {
        Path elsewhere = Files.createDirectory(dir.resolve("elsewhere"));
        Files.move(model.resolve("config.json"), elsewhere.resolve("config.json"));
        Files.createSymbolicLink(model.resolve("config.json"), elsewhere.resolve("config.json"));
        Converter.convert(ConvertOptions.of(model, out, Recipe.F16).withAllowExternalLinks(true));
        assertTrue(Files.size(out) > 100_000);
    }

    @Test
    void linksWithinTheFolderAndIntoAHuggingFaceCacheAreTheModelsOwn() throws IOException {
        // The cache's layout: models--ORG--NAME/snapshots/REV/FILE -> ../../blobs/HASH
        Path repo = dir.resolve("hub/models--org--tiny");
        Path blobs = Files.createDirectories(repo.resolve("blobs"));
        Path snapshot = Files.createDirectories(repo.resolve("snapshots/0123abc"));
        try (var files = Files.list(model)) {
            for (Path f : files.toList()) {
                Path blob = Files.move(f, blobs.resolve("blob-" + f.getFileName()));
                Files.createSymbolicLink(snapshot.resolve(f.getFileName()), Path.of("../../blobs").resolve(blob.getFileName()));
            }
        }
        Files.move(snapshot.resolve("config.json"), snapshot.resolve("real-config.json"));
        Files.createSymbolicLink(snapshot.resolve("config.json"), Path.of("real-config.json"));
        Converter.convert(ConvertOptions.of(snapshot, out, Recipe.F16));
        assertTrue(Files.size(out) > 100_000);
    }

    /** Progress that holds each run at its first written bytes until the other run has written too. */
    private static ConversionProgress meetingAt(CyclicBarrier barrier) {
        return new ConversionProgress() {
            private boolean met;

            @Override
            public void start(long totalBytes, int tensorCount) {
            }

            @Override
            public void tensor(int index, GgufTensorInfo info) {
            }

            @Override
            public void advance(long bytes) {
                if (!met) {
                    met = true;
                    try {
                        barrier.await(30, TimeUnit.SECONDS);
                    } catch (InterruptedException | BrokenBarrierException | TimeoutException e) {
                        throw new IllegalStateException("the other conversion never started writing", e);
                    }
                }
            }

            @Override
            public void done() {
            }
        };
    }
}
