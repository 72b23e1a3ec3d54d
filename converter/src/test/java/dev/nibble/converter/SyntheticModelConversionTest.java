package dev.nibble.converter;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import dev.nibble.formats.Dequantizer;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.formats.gguf.GgufMetadata;
import dev.nibble.formats.gguf.GgufTensor;
import dev.nibble.formats.vocab.Vocabulary;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Conversions of small random models made in the test: head layouts, tied embeddings, RoPE scaling, odd sizes, dtypes. */
class SyntheticModelConversionTest {

    @TempDir
    Path dir;

    private Path convert(Path model, Recipe recipe) throws IOException {
        Path out = dir.resolve(model.getFileName() + "." + recipe.cliName() + ".gguf");
        Converter.convert(ConvertOptions.of(model, out, recipe).withThreads(3));
        return out;
    }

    private static Map<String, Double> maxAbsDiffs(Path gguf, Path model) throws IOException {
        Map<String, Double> maxAbs = new HashMap<>();
        GgufComparison.relativeErrors(gguf, model, HfModelConfig.load(model), maxAbs);
        return maxAbs;
    }

    @Test
    void singleKvHeadModelIsExactInF32AndF16() throws IOException {
        Path model = SyntheticModel.write(dir.resolve("one-kv"), new SyntheticModel.Shape(64, 2, 4, 1, 96, 2048, false), 11);
        for (Recipe r : List.of(Recipe.F32, Recipe.F16)) {
            Path out = convert(model, r);
            maxAbsDiffs(out, model).forEach((name, diff) -> assertEquals(0.0, diff, r + " " + name));
            try (GgufFile f = GgufFile.open(out)) {
                assertEquals(1, f.metadata().getLong("llama.attention.head_count_kv"));
                assertArrayEquals(new long[] {64, 16}, f.tensor("blk.1.attn_k.weight").orElseThrow().dims());
            }
        }
    }

    @Test
    void tiedEmbeddingsHaveNoOutputTensorAndTheEmbeddingGetsTheOutputType() throws IOException {
        Path model = SyntheticModel.write(dir.resolve("tied"), new SyntheticModel.Shape(256, 1, 4, 2, 256, 2048, true), 12);
        Path out = convert(model, Recipe.Q4_K_M);
        Map<String, GgmlType> types = GgufComparison.types(out);
        assertFalse(types.containsKey("output.weight"));
        assertEquals(11, types.size());
        assertEquals(GgmlType.Q6_K, types.get("token_embd.weight"));
    }

    @Test
    void tiedCheckpointStillCarryingLmHeadIsWrittenWithoutOutput() throws IOException {
        SyntheticModel.Shape shape = new SyntheticModel.Shape(64, 1, 2, 2, 64, 2048, true);
        Path model = dir.resolve("tied-with-head");
        SyntheticModel.write(model, shape, 13);
        List<SyntheticModel.Tensor> tensors = new java.util.ArrayList<>(SyntheticModel.llamaTensors(shape, 13));
        tensors.add(tensors.get(0).withName("lm_head.weight"));
        SyntheticModel.writeSafetensors(model.resolve("model.safetensors"), tensors);
        assertFalse(GgufComparison.types(convert(model, Recipe.F16)).containsKey("output.weight"));
    }

    @Test
    void llama31RopeScalingAddsRopeFreqsFirst() throws IOException {
        SyntheticModel.Shape shape = new SyntheticModel.Shape(64, 1, 2, 1, 64, 2048, false);
        Path model = SyntheticModel.write(dir.resolve("llama31"), shape, 14);
        Files.writeString(model.resolve("config.json"), SyntheticModel.configJson(shape, "LlamaForCausalLM", """
                "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64}"""));
        Path out = convert(model, Recipe.Q4_0);
        try (GgufFile f = GgufFile.open(out)) {
            GgufTensor freqs = f.tensors().get(0);
            assertEquals("rope_freqs.weight", freqs.name());
            assertEquals(GgmlType.F32, freqs.type());
            assertArrayEquals(new long[] {16}, freqs.dims());
            float[] values = new float[16];
            Dequantizer.dequantizeRow(GgmlType.F32, freqs.data(), 0, values, 0, 16);
            assertArrayEquals(new RopeScaling.Llama3(8, 1, 4, 64).frequencyFactors(10000, 32), values);
            assertEquals(1f, values[0]);
            assertEquals(8f, values[15]);
            assertFalse(f.metadata().contains("llama.rope.scaling.type"));
        }
    }

    @Test
    void linearRopeScalingIsWrittenAsMetadata() throws IOException {
        SyntheticModel.Shape shape = new SyntheticModel.Shape(64, 1, 2, 2, 64, 2048, false);
        Path model = SyntheticModel.write(dir.resolve("linear"), shape, 15);
        Files.writeString(model.resolve("config.json"), SyntheticModel.configJson(shape, "MistralForCausalLM",
                "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}"));
        try (GgufFile f = GgufFile.open(convert(model, Recipe.F16))) {
            assertEquals("linear", f.metadata().getString("llama.rope.scaling.type"));
            assertEquals(4.0, f.metadata().getDouble("llama.rope.scaling.factor"));
            assertFalse(f.tensor("rope_freqs.weight").isPresent());
        }
    }

    @Test
    void rowLengthsOffTheBlockSizeFallBackAndStayAccurate() throws IOException {
        // hidden 96: rows of 96 fit 32-blocks only; intermediate 100: rows of 100 fit no block at all
        Path model = SyntheticModel.write(dir.resolve("odd"), new SyntheticModel.Shape(96, 2, 3, 3, 100, 2048, false), 16);
        Path out = convert(model, Recipe.Q4_K_M);
        Map<String, GgmlType> types = GgufComparison.types(out);
        assertEquals(GgmlType.Q8_0, types.get("blk.0.attn_q.weight"));
        assertEquals(GgmlType.Q8_0, types.get("blk.1.ffn_gate.weight"));
        assertEquals(GgmlType.F16, types.get("blk.0.ffn_down.weight"));
        assertEquals(GgmlType.Q8_0, types.get("output.weight"));
        Map<String, Double> maxAbs = new HashMap<>();
        Map<String, Double> errors = GgufComparison.relativeErrors(out, model, HfModelConfig.load(model), maxAbs);
        assertEquals(0.0, maxAbs.get("blk.0.ffn_down.weight"));
        errors.forEach((name, e) -> assertTrue(e < 0.01, name + " " + e));
    }

    @Test
    void bf16AndF32CheckpointsConvertExactlyToF32() throws IOException {
        SyntheticModel.Shape shape = new SyntheticModel.Shape(64, 1, 4, 2, 64, 2048, false);
        for (String dtype : List.of("BF16", "F32")) {
            Path model = dir.resolve("dtype-" + dtype);
            SyntheticModel.write(model, shape, 17);
            SyntheticModel.writeSafetensors(model.resolve("model.safetensors"), SyntheticModel.llamaTensors(shape, 17, dtype));
            maxAbsDiffs(convert(model, Recipe.F32), model).forEach((name, d) -> assertEquals(0.0, d, dtype + " " + name));
        }
    }

    @Test
    void shardedCheckpointGivesTheSameFileAsOneFile() throws IOException {
        SyntheticModel.Shape shape = new SyntheticModel.Shape(64, 3, 4, 2, 64, 2048, false);
        Path single = SyntheticModel.write(dir.resolve("single"), shape, 18);
        Path sharded = dir.resolve("sharded");
        Files.createDirectories(sharded);
        Files.copy(single.resolve("config.json"), sharded.resolve("config.json"));
        SyntheticModel.copyTokenizer(sharded);
        SyntheticModel.writeSharded(sharded, SyntheticModel.llamaTensors(shape, 18), 3);
        Path a = dir.resolve("a.gguf");
        Path b = dir.resolve("b.gguf");
        Converter.convert(ConvertOptions.of(single, a, Recipe.Q8_0).withName("m"));
        Converter.convert(ConvertOptions.of(sharded, b, Recipe.Q8_0).withName("m"));
        assertArrayEquals(Files.readAllBytes(a), Files.readAllBytes(b));
    }

    @Test
    void outputDoesNotDependOnTheNumberOfWorkers() throws IOException {
        // an embedding of 2048 x 640 spans two chunks, so chunks of one tensor finish out of order with several workers
        Path model = SyntheticModel.write(dir.resolve("workers"), new SyntheticModel.Shape(640, 1, 5, 1, 256, 2048, false), 22);
        Path one = dir.resolve("one.gguf");
        Path three = dir.resolve("three.gguf");
        Converter.convert(ConvertOptions.of(model, one, Recipe.Q8_0).withThreads(1));
        Converter.convert(ConvertOptions.of(model, three, Recipe.Q8_0).withThreads(3));
        assertArrayEquals(Files.readAllBytes(one), Files.readAllBytes(three));
    }

    @Test
    void vocabularyShorterThanTheEmbeddingsIsPaddedLikeLlamaCpp() throws IOException {
        Path model = SyntheticModel.write(dir.resolve("padded"), new SyntheticModel.Shape(64, 1, 2, 2, 64, 2051, false), 19);
        try (GgufFile f = GgufFile.open(convert(model, Recipe.F16))) {
            GgufMetadata m = f.metadata();
            List<String> tokens = m.getStringArray("tokenizer.ggml.tokens");
            assertEquals(2051, tokens.size());
            assertEquals(List.of("[PAD1]", "[PAD2]", "[PAD3]"), tokens.subList(2048, 2051));
            int[] types = m.getIntArray("tokenizer.ggml.token_type");
            assertEquals(Vocabulary.UNUSED, types[2050]);
            assertEquals(-1000f, m.getFloatArray("tokenizer.ggml.scores")[2049]);
            assertEquals(2051, m.getLong("llama.vocab_size"));
        }
    }

    @Test
    void generationDefaultsAreStoredUnderNibbleKeys() throws IOException {
        Path model = SyntheticModel.write(dir.resolve("gen"), new SyntheticModel.Shape(64, 1, 2, 2, 64, 2048, false), 20);
        Files.writeString(model.resolve("generation_config.json"), """
                {"do_sample": true, "eos_token_id": [2, 0], "temperature": 0.6, "top_p": 0.9, "top_k": 50,
                 "repetition_penalty": 1.05}""");
        try (GgufFile f = GgufFile.open(convert(model, Recipe.F16))) {
            GgufMetadata m = f.metadata();
            assertArrayEquals(new int[] {2, 0}, m.getIntArray(LlamaMetadata.EOS_TOKEN_IDS));
            assertTrue(m.getBoolean(LlamaMetadata.DO_SAMPLE));
            assertEquals(0.6f, (float) m.getDouble(LlamaMetadata.TEMPERATURE));
            assertEquals(0.9f, (float) m.getDouble(LlamaMetadata.TOP_P));
            assertEquals(50, m.getLong(LlamaMetadata.TOP_K));
            assertEquals(1.05f, (float) m.getDouble(LlamaMetadata.REPETITION_PENALTY));
        }
    }
}
