package dev.nibble.converter;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.gguf.GgufTensorInfo;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every bad input gets a clear error naming the file and the item, and never leaves an output file behind. */
class BadInputTest {

    private static final SyntheticModel.Shape SHAPE = new SyntheticModel.Shape(64, 2, 4, 2, 96, 2048, false);

    @TempDir
    Path dir;

    private Path model;
    private Path out;

    @BeforeEach
    void writeModel() throws IOException {
        model = SyntheticModel.write(dir.resolve("model"), SHAPE, 21);
        out = dir.resolve("out.gguf");
    }

    private IOException failure(ConvertOptions options) {
        IOException e = assertThrows(IOException.class, () -> Converter.convert(options));
        assertNoOutput();
        return e;
    }

    private IOException failure() {
        return failure(ConvertOptions.of(model, out, Recipe.Q4_0));
    }

    private void assertNoOutput() {
        assertFalse(Files.exists(out), "no output file");
        assertEquals(List.of(), temporaries(dir), "no temporary file");
    }

    /** The temporary files beside outputs in {@code dir}: {@code .NAME.<random>.tmp}. */
    static List<String> temporaries(Path dir) {
        String[] names = dir.toFile().list();
        return names == null ? List.of() : Arrays.stream(names)
                .filter(n -> n.startsWith(".") && n.endsWith(".tmp")).sorted().toList();
    }

    private void rewriteWeights(List<SyntheticModel.Tensor> tensors) throws IOException {
        SyntheticModel.writeSafetensors(model.resolve("model.safetensors"), tensors);
    }

    private static void assertMentions(Exception e, String... parts) {
        for (String p : parts) {
            assertTrue(e.getMessage().contains(p), "'" + e.getMessage() + "' should mention '" + p + "'");
        }
    }

    @Test
    void missingConfigJson() throws IOException {
        Files.delete(model.resolve("config.json"));
        assertMentions(failure(), model.resolve("config.json").toString(), "not found");
    }

    @Test
    void unsupportedArchitectureIsNamed() throws IOException {
        Files.writeString(model.resolve("config.json"), SyntheticModel.configJson(SHAPE, "Qwen2ForCausalLM", ""));
        assertMentions(failure(), "config.json", "Qwen2ForCausalLM", "LlamaForCausalLM");
    }

    @Test
    void missingTensorIsNamed() throws IOException {
        List<SyntheticModel.Tensor> tensors = new ArrayList<>(SyntheticModel.llamaTensors(SHAPE, 21));
        tensors.removeIf(t -> t.name().equals("model.layers.1.mlp.up_proj.weight"));
        rewriteWeights(tensors);
        assertMentions(failure(), "model.layers.1.mlp.up_proj.weight", "missing");
    }

    @Test
    void extraTensorIsNamedWithItsFile() throws IOException {
        List<SyntheticModel.Tensor> tensors = new ArrayList<>(SyntheticModel.llamaTensors(SHAPE, 21));
        tensors.add(tensors.get(1).withName("model.layers.0.self_attn.q_proj.bias"));
        rewriteWeights(tensors);
        assertMentions(failure(), "model.layers.0.self_attn.q_proj.bias", "model.safetensors");
    }

    @Test
    void rotaryInverseFrequenciesAreIgnoredNotExtra() throws IOException {
        List<SyntheticModel.Tensor> tensors = new ArrayList<>(SyntheticModel.llamaTensors(SHAPE, 21));
        tensors.add(new SyntheticModel.Tensor("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", new long[] {8}, new byte[32]));
        rewriteWeights(tensors);
        Converter.convert(ConvertOptions.of(model, out, Recipe.F16));
        assertEquals(1 + 2 * 9 + 2, GgufComparison.types(out).size());
    }

    @Test
    void shapeMismatchNamesTensorExpectedAndActualShape() throws IOException {
        List<SyntheticModel.Tensor> tensors = new ArrayList<>(SyntheticModel.llamaTensors(SHAPE, 21));
        // 2 KV heads of 16 make 32 rows; this k_proj is laid out as if all 4 heads had their own keys
        tensors.replaceAll(t -> t.name().equals("model.layers.1.self_attn.k_proj.weight")
                ? SyntheticModel.tensor("F16", t.name(), new java.util.Random(1), false, 64, 64) : t);
        rewriteWeights(tensors);
        assertMentions(failure(), "model.layers.1.self_attn.k_proj.weight", "[64, 64]", "[32, 64]", "model.safetensors");
    }

    @Test
    void shardIndexNamingAMissingFile() throws IOException {
        Files.delete(model.resolve("model.safetensors"));
        SyntheticModel.writeSharded(model, SyntheticModel.llamaTensors(SHAPE, 21), 2);
        Files.delete(model.resolve("model-00002-of-00002.safetensors"));
        assertMentions(failure(), "model.safetensors.index.json", "model-00002-of-00002.safetensors");
    }

    @Test
    void unsupportedDtypeIsNamedWithTensorAndFile() throws IOException {
        List<SyntheticModel.Tensor> tensors = new ArrayList<>(SyntheticModel.llamaTensors(SHAPE, 21));
        tensors.replaceAll(t -> t.name().equals("model.norm.weight") ? t.withDtype("I16") : t);
        rewriteWeights(tensors);
        assertMentions(failure(), "model.norm.weight", "I16", "model.safetensors");
    }

    @Test
    void nanWeightIsReportedWithTensorRowAndFile() throws IOException {
        List<SyntheticModel.Tensor> tensors = new ArrayList<>(SyntheticModel.llamaTensors(SHAPE, 21));
        SyntheticModel.Tensor k = tensors.stream().filter(t -> t.name().equals("model.layers.1.self_attn.k_proj.weight"))
                .findFirst().orElseThrow();
        byte[] data = k.data().clone();
        int row = 5;
        int col = 7;
        short nan = Float.floatToFloat16(Float.NaN);
        data[2 * (row * 64 + col)] = (byte) nan;
        data[2 * (row * 64 + col) + 1] = (byte) (nan >> 8);
        tensors.set(tensors.indexOf(k), new SyntheticModel.Tensor(k.name(), "F16", k.shape(), data));
        rewriteWeights(tensors);
        IOException e = failure();
        assertInstanceOf(FormatException.class, e);
        assertMentions(e, "model.safetensors", "model.layers.1.self_attn.k_proj.weight row 5", "NaN", "blk.1.attn_k.weight");
    }

    @Test
    void truncatedShardIsReportedWithItsFile() throws IOException {
        Path weights = model.resolve("model.safetensors");
        try (FileChannel ch = FileChannel.open(weights, StandardOpenOption.WRITE)) {
            ch.truncate(ch.size() - 1000);
        }
        IOException e = failure();
        assertInstanceOf(FormatException.class, e);
        assertMentions(e, weights.toString());
    }

    @Test
    void notEnoughDiskSpaceGivesBothNumbers() {
        IOException e = failure(ConvertOptions.of(model, out, Recipe.Q8_0).withDiskSpace(d -> 12345));
        assertMentions(e, "not enough disk space", "12345 bytes");
        long needed = Long.parseLong(e.getMessage().replaceAll(".*tensors need (\\d+) bytes.*", "$1"));
        assertTrue(needed > 12345, e.getMessage());
    }

    @Test
    void diskSpaceCheckUsesTheSumOfOutputTensorSizes() throws IOException {
        Converter.Result r = Converter.convert(ConvertOptions.of(model, out, Recipe.Q8_0));
        long sum = 0;
        for (GgufTensorInfo t : r.tensors()) {
            sum += (t.byteSize() + 31) / 32 * 32;
        }
        assertEquals(sum, r.tensorBytes());
        Files.delete(out);
        long exactlyEnough = sum;
        Converter.convert(ConvertOptions.of(model, out, Recipe.Q8_0).withDiskSpace(d -> exactlyEnough));
        assertTrue(Files.exists(out));
        Files.delete(out);
        failure(ConvertOptions.of(model, out, Recipe.Q8_0).withDiskSpace(d -> exactlyEnough - 1));
    }

    @Test
    void existingOutputNeedsForce() throws IOException {
        byte[] previous = {1, 2, 3};
        Files.write(out, previous);
        IOException e = assertThrows(IOException.class, () -> Converter.convert(ConvertOptions.of(model, out, Recipe.F16)));
        assertMentions(e, out.getFileName().toString(), "--force");
        assertArrayEquals(previous, Files.readAllBytes(out));
        Converter.convert(ConvertOptions.of(model, out, Recipe.F16).withForce(true));
        assertTrue(Files.size(out) > 100_000);
        assertEquals(List.of(), temporaries(dir));
    }

    @Test
    void failureMidWriteLeavesNeitherOutputNorTemporaryFile() {
        ConversionProgress failing = new ConversionProgress() {
            private long written;

            @Override
            public void start(long totalBytes, int tensorCount) {
            }

            @Override
            public void tensor(int index, GgufTensorInfo info) {
            }

            @Override
            public void advance(long bytes) {
                written += bytes;
                assertEquals(1, temporaries(dir).size(), "writing goes to the temporary file");
                if (written > 100_000) {
                    throw new IllegalStateException("injected failure after " + written + " bytes");
                }
            }

            @Override
            public void done() {
            }
        };
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> Converter.convert(ConvertOptions.of(model, out, Recipe.F32).withProgress(failing)));
        assertMentions(e, "injected failure");
        assertNoOutput();
    }

    @Test
    void missingTokenizerIsReported() throws IOException {
        Files.delete(model.resolve("tokenizer.json"));
        Files.delete(model.resolve("tokenizer.model"));
        assertMentions(failure(), model.toString());
    }
}
