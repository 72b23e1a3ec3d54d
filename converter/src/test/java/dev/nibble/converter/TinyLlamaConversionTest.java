package dev.nibble.converter;

import dev.nibble.testing.TestData;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.formats.GgmlType;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.formats.gguf.GgufMetadata;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Converts the real tiny model (grouped KV heads: 8 query, 2 KV) from its safetensors and its PyTorch copy to every type. */
class TinyLlamaConversionTest {

    @TempDir
    static Path dir;

    private static final Map<Recipe, Path> FROM_SAFETENSORS = new EnumMap<>(Recipe.class);
    private static final Map<Recipe, Path> FROM_BIN = new EnumMap<>(Recipe.class);
    private static HfModelConfig config;

    /**
     * Largest relative RMS error per tensor, by type, on the tiny model's real weights. Measured worst cases
     * (2026-11-27): Q8_0 0.0056, Q6_K 0.0174, Q4_K 0.0710, Q4_0 0.0889, IQ4_NL 0.0759, NF4 0.0938, BF16 0.0017;
     * the bounds leave about 20% room.
     */
    private static final Map<GgmlType, Double> BOUND = Map.of(
            GgmlType.Q8_0, 0.007, GgmlType.Q6_K, 0.021, GgmlType.Q4_K, 0.085, GgmlType.Q4_0, 0.107,
            GgmlType.IQ4_NL, 0.091, GgmlType.NF4, 0.113, GgmlType.BF16, 0.0021);

    @BeforeAll
    static void convertEverything() throws IOException {
        config = HfModelConfig.load(TestData.tinySafetensors());
        for (Recipe r : Recipe.values()) {
            FROM_SAFETENSORS.put(r, convert(TestData.tinySafetensors(), dir.resolve("st." + r.cliName() + ".gguf"), r));
            FROM_BIN.put(r, convert(TestData.tinyBin(), dir.resolve("bin." + r.cliName() + ".gguf"), r));
        }
    }

    private static Path convert(Path model, Path out, Recipe recipe) throws IOException {
        Converter.convert(ConvertOptions.of(model, out, recipe).withName("tiny-llama").withThreads(2));
        return out;
    }

    @Test
    void safetensorsAndPytorchCopiesGiveIdenticalFiles() throws IOException {
        for (Recipe r : Recipe.values()) {
            assertArrayEquals(Files.readAllBytes(FROM_SAFETENSORS.get(r)), Files.readAllBytes(FROM_BIN.get(r)), r.cliName());
        }
    }

    @Test
    void floatConversionsEqualTheSourceAfterUndoingThePermutation() throws IOException {
        for (Recipe r : List.of(Recipe.F32, Recipe.F16)) {
            Map<String, Double> maxAbs = new HashMap<>();
            Map<String, Double> errors = GgufComparison.relativeErrors(FROM_SAFETENSORS.get(r), TestData.tinySafetensors(),
                    config, maxAbs);
            assertEquals(57, errors.size());
            maxAbs.forEach((name, diff) -> assertEquals(0.0, diff, r + " " + name));
        }
    }

    @Test
    void quantizedConversionsStayWithinMeasuredErrors() throws IOException {
        for (Recipe r : Recipe.values()) {
            Path file = FROM_SAFETENSORS.get(r);
            Map<String, GgmlType> types = GgufComparison.types(file);
            Map<String, Double> errors = GgufComparison.relativeErrors(file, TestData.tinySafetensors(), config, new HashMap<>());
            errors.forEach((name, error) -> {
                GgmlType type = types.get(name);
                double bound = type == GgmlType.F32 || type == GgmlType.F16 ? 0 : BOUND.get(type);
                assertTrue(error <= bound, r + " " + name + " " + type + ": relative RMSE " + error + " > " + bound);
            });
        }
    }

    @Test
    void tensorTypesFollowTheRecipe() throws IOException {
        Map<String, GgmlType> q4km = GgufComparison.types(FROM_SAFETENSORS.get(Recipe.Q4_K_M));
        // 6 layers: llama.cpp's use_more_bits picks layers 2 and 5
        for (int i = 0; i < 6; i++) {
            GgmlType more = i == 2 || i == 5 ? GgmlType.Q6_K : GgmlType.Q4_K;
            assertEquals(more, q4km.get("blk." + i + ".attn_v.weight"));
            assertEquals(more, q4km.get("blk." + i + ".ffn_down.weight"));
            assertEquals(GgmlType.Q4_K, q4km.get("blk." + i + ".attn_q.weight"));
            assertEquals(GgmlType.F32, q4km.get("blk." + i + ".ffn_norm.weight"));
        }
        assertEquals(GgmlType.Q6_K, q4km.get("output.weight"));
        assertEquals(GgmlType.Q4_K, q4km.get("token_embd.weight"));
        assertEquals(GgmlType.Q6_K, GgufComparison.types(FROM_SAFETENSORS.get(Recipe.Q4_0)).get("output.weight"));
        assertEquals(GgmlType.BF16, GgufComparison.types(FROM_SAFETENSORS.get(Recipe.BF16)).get("blk.3.ffn_up.weight"));
        assertEquals(GgmlType.F32, GgufComparison.types(FROM_SAFETENSORS.get(Recipe.BF16)).get("output_norm.weight"));
    }

    @Test
    void metadataMatchesConfigJson() throws IOException {
        JsonNode c = new ObjectMapper().readTree(TestData.tinySafetensors().resolve("config.json").toFile());
        String template = new ObjectMapper().readTree(TestData.tinySafetensors().resolve("tokenizer_config.json").toFile())
                .get("chat_template").textValue();
        for (Recipe r : Recipe.values()) {
            try (GgufFile f = GgufFile.open(FROM_SAFETENSORS.get(r))) {
                GgufMetadata m = f.metadata();
                assertEquals("llama", m.getString("general.architecture"));
                assertEquals("tiny-llama", m.getString("general.name"));
                assertEquals(c.get("max_position_embeddings").asLong(), m.getLong("llama.context_length"));
                assertEquals(c.get("hidden_size").asLong(), m.getLong("llama.embedding_length"));
                assertEquals(c.get("num_hidden_layers").asLong(), m.getLong("llama.block_count"));
                assertEquals(c.get("intermediate_size").asLong(), m.getLong("llama.feed_forward_length"));
                assertEquals(c.get("num_attention_heads").asLong(), m.getLong("llama.attention.head_count"));
                assertEquals(c.get("num_key_value_heads").asLong(), m.getLong("llama.attention.head_count_kv"));
                assertEquals(c.get("head_dim").asLong(), m.getLong("llama.rope.dimension_count"));
                assertEquals(c.get("vocab_size").asLong(), m.getLong("llama.vocab_size"));
                assertEquals((float) c.get("rms_norm_eps").asDouble(), (float) m.getDouble("llama.attention.layer_norm_rms_epsilon"));
                assertEquals((float) c.get("rope_theta").asDouble(), (float) m.getDouble("llama.rope.freq_base"));
                assertEquals(r.fileType(), m.getLong("general.file_type"));
                assertEquals(2, m.getLong("general.quantization_version"));
                assertEquals(template, m.getString("tokenizer.chat_template"));
                assertEquals("llama", m.getString("tokenizer.ggml.model"));
                assertEquals(2048, m.getStringArray("tokenizer.ggml.tokens").size());
                assertEquals(1, m.getLong("tokenizer.ggml.bos_token_id"));
                assertEquals(2, m.getLong("tokenizer.ggml.eos_token_id"));
                assertArrayEquals(new int[] {2}, m.getIntArray(LlamaMetadata.EOS_TOKEN_IDS));
                assertFalse(m.contains("llama.rope.scaling.type"));
                assertFalse(m.contains(LlamaMetadata.TEMPERATURE));
                assertEquals(57, f.tensors().size());
            }
        }
    }
}
