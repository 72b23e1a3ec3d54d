package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.gguf.GgufMetadata;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

class LlamaConfigTest {

    private static final Path FILE = Path.of("model.gguf");

    /** The keys of Llama-2-70B: 64 query heads sharing 8 KV heads. */
    static GgufMetadata.Builder llama70b() {
        return GgufMetadata.builder()
                .putString("general.architecture", "llama")
                .putU32("llama.context_length", 4096)
                .putU32("llama.embedding_length", 8192)
                .putU32("llama.block_count", 80)
                .putU32("llama.feed_forward_length", 28672)
                .putU32("llama.attention.head_count", 64)
                .putU32("llama.attention.head_count_kv", 8)
                .putF32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
                .putU32("llama.vocab_size", 32000)
                .putU32("tokenizer.ggml.eos_token_id", 2);
    }

    @Test
    void groupedQueryShapeIsReadFromMetadata() throws Exception {
        LlamaConfig c = LlamaConfig.from(llama70b().build(), FILE);
        assertEquals(64, c.heads());
        assertEquals(8, c.kvHeads());
        assertEquals(128, c.headDim());
        assertEquals(1024, c.kvDim());
        assertEquals(80, c.layers());
        assertEquals(10000f, c.ropeTheta(), "llama.rope.freq_base defaults to 10000");
        assertEquals(1f, c.ropeScale());
        assertArrayEquals(new int[] {2}, c.eosIds());
    }

    @Test
    void missingKvHeadCountMeansOneKvHeadPerQueryHead() throws Exception {
        GgufMetadata.Builder b = GgufMetadata.builder();
        GgufMetadata full = llama70b().build();
        for (String k : full.keys()) {
            if (!k.equals("llama.attention.head_count_kv")) {
                b.put(k, full.get(k).orElseThrow());
            }
        }
        assertEquals(64, LlamaConfig.from(b.build(), FILE).kvHeads());
    }

    @Test
    void anAbsurdLayerCountIsRefusedBeforeAnythingIsSizedByIt() {
        FormatException e = assertThrows(FormatException.class,
                () -> LlamaConfig.from(llama70b().putU32("llama.block_count", Integer.MAX_VALUE).build(), FILE));
        assertTrue(e.getMessage().contains("2147483647 is more than the 4096 layers"),
                e.getMessage());
    }

    @Test
    void linearRopeScalingDividesPositions() throws Exception {
        GgufMetadata m = llama70b().putString("llama.rope.scaling.type", "linear")
                .putF32("llama.rope.scaling.factor", 4f).putF32("llama.rope.freq_base", 500000f).build();
        LlamaConfig c = LlamaConfig.from(m, FILE);
        assertEquals(0.25f, c.ropeScale());
        assertEquals(500000f, c.ropeTheta());
    }

    @Test
    void unsupportedRopeScalingIsRefusedByName() {
        GgufMetadata m = llama70b().putString("llama.rope.scaling.type", "yarn").build();
        FormatException e = assertThrows(FormatException.class, () -> LlamaConfig.from(m, FILE));
        assertTrue(e.getMessage().contains("llama.rope.scaling.type") && e.getMessage().contains("yarn"), e.getMessage());
    }

    @Test
    void everyEndOfGenerationTokenIsCollected() throws Exception {
        List<String> tokens = List.of("<unk>", "<|begin_of_text|>", "<|end_of_text|>", "hello", "<|eot_id|>", "<|eom_id|>");
        GgufMetadata m = llama70b().putU32("llama.vocab_size", 6).putStringArray("tokenizer.ggml.tokens", tokens)
                .putIntArray("tokenizer.ggml.token_type", new int[] {2, 3, 3, 1, 3, 3})
                .putU32("tokenizer.ggml.eos_token_id", 2).putU32("tokenizer.ggml.eot_token_id", 4)
                .putIntArray("nibble.generation.eos_token_ids", new int[] {2, 3}).build();
        assertArrayEquals(new int[] {2, 4, 3, 5}, LlamaConfig.from(m, FILE).eosIds());
    }

    @Test
    void missingKeyIsNamed() {
        GgufMetadata.Builder b = GgufMetadata.builder();
        GgufMetadata full = llama70b().build();
        for (String k : full.keys()) {
            if (!k.equals("llama.feed_forward_length")) {
                b.put(k, full.get(k).orElseThrow());
            }
        }
        FormatException e = assertThrows(FormatException.class, () -> LlamaConfig.from(b.build(), FILE));
        assertTrue(e.getMessage().contains("llama.feed_forward_length") && e.getMessage().contains("missing"), e.getMessage());
    }

    @Test
    void otherArchitecturesAreRefused() {
        GgufMetadata m = llama70b().putString("general.architecture", "falcon").build();
        FormatException e = assertThrows(FormatException.class, () -> LlamaConfig.from(m, FILE));
        assertTrue(e.getMessage().contains("falcon"), e.getMessage());
    }

    @Test
    void kvHeadsThatDoNotDivideHeadsAreRefused() {
        GgufMetadata m = llama70b().putU32("llama.attention.head_count_kv", 7).build();
        FormatException e = assertThrows(FormatException.class, () -> LlamaConfig.from(m, FILE));
        assertTrue(e.getMessage().contains("head_count_kv"), e.getMessage());
    }

    @Test
    void eosOutsideTheVocabularyIsRefused() {
        GgufMetadata m = llama70b().putU32("tokenizer.ggml.eos_token_id", 32000).build();
        FormatException e = assertThrows(FormatException.class, () -> LlamaConfig.from(m, FILE));
        assertTrue(e.getMessage().contains("eos_token_id"), e.getMessage());
    }
}
