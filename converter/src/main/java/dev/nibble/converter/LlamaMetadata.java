package dev.nibble.converter;

import dev.nibble.formats.gguf.GgufMetadata;
import dev.nibble.formats.vocab.Vocabulary;
import dev.nibble.formats.vocab.VocabularyGguf;
import java.util.Optional;

/**
 * The GGUF metadata of a converted Llama model: the keys llama.cpp reads (names and value types as its
 * {@code gguf-py} writer uses them), plus nibble's generation defaults.
 *
 * <p>nibble's own keys, written only when the model's files give a value:
 * <ul>
 *   <li>{@code nibble.generation.eos_token_ids} (INT32 array): every id that ends generation, from
 *       generation_config.json or config.json (Llama 3.1 lists three);
 *   <li>{@code nibble.generation.do_sample} (BOOL), {@code nibble.generation.temperature}, {@code .top_p},
 *       {@code .repetition_penalty} (FLOAT32), {@code nibble.generation.top_k} (INT32): the author's sampling defaults.
 * </ul>
 */
public final class LlamaMetadata {

    public static final String ARCHITECTURE = "llama";
    public static final String EOS_TOKEN_IDS = "nibble.generation.eos_token_ids";
    public static final String DO_SAMPLE = "nibble.generation.do_sample";
    public static final String TEMPERATURE = "nibble.generation.temperature";
    public static final String TOP_P = "nibble.generation.top_p";
    public static final String TOP_K = "nibble.generation.top_k";
    public static final String REPETITION_PENALTY = "nibble.generation.repetition_penalty";
    /** ggml's quantization format version for Q4_0 ... Q6_K blocks; llama.cpp writes 2. */
    public static final int QUANTIZATION_VERSION = 2;

    private LlamaMetadata() {
    }

    /** Everything but the tensors. */
    public static GgufMetadata build(String name, HfModelConfig c, GenerationConfig generation,
                                     Optional<String> chatTemplate, Vocabulary vocabulary, Recipe recipe) {
        String a = ARCHITECTURE + ".";
        GgufMetadata.Builder b = GgufMetadata.builder()
                .putString("general.architecture", ARCHITECTURE)
                .putString("general.name", name)
                .putU32(a + "vocab_size", c.vocabSize())
                .putU32(a + "context_length", c.maxPositions())
                .putU32(a + "embedding_length", c.hiddenSize())
                .putU32(a + "block_count", c.layerCount())
                .putU32(a + "feed_forward_length", c.intermediateSize())
                .putU32(a + "attention.head_count", c.headCount())
                .putU32(a + "attention.head_count_kv", c.kvHeadCount())
                .putU32(a + "attention.key_length", c.headDim())
                .putU32(a + "attention.value_length", c.headDim())
                .putF32(a + "attention.layer_norm_rms_epsilon", (float) c.rmsNormEps())
                .putF32(a + "rope.freq_base", (float) c.ropeTheta())
                .putU32(a + "rope.dimension_count", c.headDim());
        if (c.ropeScaling() instanceof RopeScaling.Linear linear) {
            b.putString(a + "rope.scaling.type", "linear");
            b.putF32(a + "rope.scaling.factor", (float) linear.factor());
        }
        b.putU32("general.file_type", recipe.fileType());
        VocabularyGguf.write(vocabulary, b);
        chatTemplate.ifPresent(t -> b.putString(VocabularyGguf.CHAT_TEMPLATE, t));
        if (generation.eosTokenIds().length > 0) {
            b.putIntArray(EOS_TOKEN_IDS, generation.eosTokenIds());
        }
        generation.doSample().ifPresent(v -> b.putBool(DO_SAMPLE, v));
        generation.temperature().ifPresent(v -> b.putF32(TEMPERATURE, (float) v));
        generation.topP().ifPresent(v -> b.putF32(TOP_P, (float) v));
        generation.topK().ifPresent(v -> b.putI32(TOP_K, v));
        generation.repetitionPenalty().ifPresent(v -> b.putF32(REPETITION_PENALTY, (float) v));
        b.putU32("general.quantization_version", QUANTIZATION_VERSION);
        return b.build();
    }
}
