package dev.nibble.runtime;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.gguf.GgufMetadata;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.OptionalDouble;
import java.util.OptionalInt;
import java.util.OptionalLong;
import java.util.Set;

/**
 * The shape of a Llama-family model (Llama 1/2/3, Mistral, TinyLlama, CodeLlama), read from GGUF metadata only.
 *
 * @param contextLength    the context the model was trained for ({@code llama.context_length})
 * @param dim              the residual stream width ({@code llama.embedding_length})
 * @param layers           transformer blocks
 * @param ffnDim           SwiGLU hidden width
 * @param heads            query heads
 * @param kvHeads          key/value heads (grouped-query attention when fewer than {@code heads})
 * @param headDim          width of one head
 * @param vocabSize        number of tokens
 * @param rmsEps           RMSNorm epsilon
 * @param ropeTheta        RoPE base frequency
 * @param ropeScale        positions are multiplied by this before RoPE (1 unless linear scaling is declared)
 * @param eosIds           every token id that ends generation (eos, eot, eom and the end-of-generation control tokens)
 */
public record LlamaConfig(int contextLength, int dim, int layers, int ffnDim, int heads, int kvHeads, int headDim,
                          int vocabSize, float rmsEps, float ropeTheta, float ropeScale, int[] eosIds) {

    /** The most layers a file may declare: far more than any Llama-family model has. */
    public static final int MAX_LAYERS = 4096;


    /** Control tokens that end a turn in the vocabularies nibble knows, as llama.cpp also treats them. */
    private static final Set<String> END_OF_GENERATION_TOKENS =
            Set.of("</s>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "<|im_end|>", "<|endoftext|>");
    private static final int TOKEN_TYPE_CONTROL = 3;
    private static final String GENERATION_EOS_IDS = "nibble.generation.eos_token_ids";

    /** The KV width of one token in one layer: {@code kvHeads * headDim}. */
    public int kvDim() {
        return kvHeads * headDim;
    }

    /** Reads the config of {@code file}; missing or inconsistent keys are refused with a message naming the key. */
    public static LlamaConfig from(GgufMetadata m, Path file) throws FormatException {
        String arch = m.findString("general.architecture").orElseThrow(
                () -> missing(file, "general.architecture"));
        if (!arch.equals("llama")) {
            throw new FormatException(file, "general.architecture", -1,
                    "is '" + arch + "'; nibble runs the 'llama' architecture (Llama, Mistral, TinyLlama, CodeLlama)");
        }
        int contextLength = positive(m, file, "llama.context_length");
        int dim = positive(m, file, "llama.embedding_length");
        int layers = positive(m, file, "llama.block_count");
        if (layers > MAX_LAYERS) { // checked before anything is sized by it
            throw new FormatException(file, "llama.block_count", -1, layers + " is more than the " + MAX_LAYERS
                    + " layers nibble accepts (Llama 3.1 405B has 126); the file is damaged");
        }
        int ffnDim = positive(m, file, "llama.feed_forward_length");
        int heads = positive(m, file, "llama.attention.head_count");
        int kvHeads = optionalPositive(m, file, "llama.attention.head_count_kv").orElse(heads);
        if (heads % kvHeads != 0) {
            throw new FormatException(file, "llama.attention.head_count_kv", -1,
                    kvHeads + " does not divide the " + heads + " query heads");
        }
        if (dim % heads != 0) {
            throw new FormatException(file, "llama.attention.head_count", -1,
                    heads + " does not divide llama.embedding_length " + dim);
        }
        int headDim = dim / heads;
        OptionalInt keyLength = optionalPositive(m, file, "llama.attention.key_length");
        if (keyLength.isPresent() && keyLength.getAsInt() != headDim) {
            throw new FormatException(file, "llama.attention.key_length", -1, "is " + keyLength.getAsInt()
                    + " but embedding_length / head_count is " + headDim + "; nibble needs them equal");
        }
        if (headDim % 2 != 0) {
            throw new FormatException(file, "llama.embedding_length", -1, "gives an odd head size " + headDim);
        }
        int ropeDims = optionalPositive(m, file, "llama.rope.dimension_count").orElse(headDim);
        if (ropeDims != headDim) {
            throw new FormatException(file, "llama.rope.dimension_count", -1,
                    "is " + ropeDims + " but the head size is " + headDim + "; partial rotary embeddings are not Llama's");
        }
        List<String> tokens = m.contains("tokenizer.ggml.tokens") ? m.getStringArray("tokenizer.ggml.tokens") : List.of();
        int vocabSize = optionalPositive(m, file, "llama.vocab_size").orElse(tokens.size());
        if (vocabSize <= 0) {
            throw missing(file, "llama.vocab_size (or tokenizer.ggml.tokens)");
        }
        float rmsEps = (float) number(m, file, "llama.attention.layer_norm_rms_epsilon")
                .orElseThrow(() -> missing(file, "llama.attention.layer_norm_rms_epsilon"));
        float ropeTheta = (float) number(m, file, "llama.rope.freq_base").orElse(10000.0);
        if (!(rmsEps > 0) || !(ropeTheta > 1)) {
            throw new FormatException(file, "llama.rope.freq_base / layer_norm_rms_epsilon", -1,
                    "out of range: theta " + ropeTheta + ", eps " + rmsEps);
        }
        return new LlamaConfig(contextLength, dim, layers, ffnDim, heads, kvHeads, headDim, vocabSize, rmsEps,
                ropeTheta, ropeScale(m, file), eosIds(m, file, tokens, vocabSize));
    }

    /**
     * Linear scaling divides positions by the factor; "llama3" scaling comes as a {@code rope_freqs.weight}
     * tensor (see {@link ModelWeights}), so the metadata then says "none" or names llama3 with its factor.
     */
    private static float ropeScale(GgufMetadata m, Path file) throws FormatException {
        String type = m.findString("llama.rope.scaling.type").orElse("none");
        OptionalDouble factor = number(m, file, "llama.rope.scaling.factor");
        OptionalDouble oldLinear = number(m, file, "llama.rope.scale_linear");
        switch (type) {
            case "none", "llama3" -> {
                return oldLinear.isPresent() ? (float) (1 / oldLinear.getAsDouble()) : 1f;
            }
            case "linear" -> {
                double f = factor.orElse(oldLinear.orElse(1));
                if (!(f > 0)) {
                    throw new FormatException(file, "llama.rope.scaling.factor", -1, "must be positive, is " + f);
                }
                return (float) (1 / f);
            }
            default -> throw new FormatException(file, "llama.rope.scaling.type", -1,
                    "'" + type + "' is not supported (nibble supports none, linear and llama3)");
        }
    }

    private static int[] eosIds(GgufMetadata m, Path file, List<String> tokens, int vocabSize) throws FormatException {
        Set<Integer> ids = new LinkedHashSet<>();
        for (String key : List.of("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")) {
            OptionalLong id = m.findLong(key);
            if (id.isPresent()) {
                if (id.getAsLong() < 0 || id.getAsLong() >= vocabSize) {
                    throw new FormatException(file, key, -1, id.getAsLong() + " is outside the vocabulary of " + vocabSize);
                }
                ids.add((int) id.getAsLong());
            }
        }
        // nibble's converter also records every eos id of generation_config.json (Llama 3.1 declares three).
        if (m.contains(GENERATION_EOS_IDS)) {
            for (long id : m.getLongArray(GENERATION_EOS_IDS)) {
                if (id < 0 || id >= vocabSize) {
                    throw new FormatException(file, GENERATION_EOS_IDS, -1, id + " is outside the vocabulary of " + vocabSize);
                }
                ids.add((int) id);
            }
        }
        if (m.contains("tokenizer.ggml.token_type")) {
            int[] types = m.getIntArray("tokenizer.ggml.token_type");
            for (int i = 0; i < Math.min(types.length, tokens.size()); i++) {
                if (types[i] == TOKEN_TYPE_CONTROL && END_OF_GENERATION_TOKENS.contains(tokens.get(i))) {
                    ids.add(i);
                }
            }
        }
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }

    private static int positive(GgufMetadata m, Path file, String key) throws FormatException {
        return optionalPositive(m, file, key).orElseThrow(() -> missing(file, key));
    }

    private static OptionalInt optionalPositive(GgufMetadata m, Path file, String key) throws FormatException {
        OptionalLong v;
        try {
            v = m.findLong(key);
        } catch (IllegalArgumentException e) {
            throw new FormatException(file, key, -1, "is not an integer");
        }
        if (v.isEmpty()) {
            return OptionalInt.empty();
        }
        if (v.getAsLong() <= 0 || v.getAsLong() > Integer.MAX_VALUE) {
            throw new FormatException(file, key, -1, "must be a positive 32-bit integer, is " + v.getAsLong());
        }
        return OptionalInt.of((int) v.getAsLong());
    }

    private static OptionalDouble number(GgufMetadata m, Path file, String key) throws FormatException {
        try {
            return m.findDouble(key);
        } catch (IllegalArgumentException e) {
            throw new FormatException(file, key, -1, "is not a number");
        }
    }

    private static FormatException missing(Path file, String key) {
        return new FormatException(file, key, -1, "is missing; is this a Llama model converted by nibble or llama.cpp?");
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof LlamaConfig c && toString().equals(c.toString());
    }

    @Override
    public int hashCode() {
        return toString().hashCode();
    }

    @Override
    public String toString() {
        return "LlamaConfig[ctx=" + contextLength + ", dim=" + dim + ", layers=" + layers + ", ffn=" + ffnDim
                + ", heads=" + heads + ", kvHeads=" + kvHeads + ", headDim=" + headDim + ", vocab=" + vocabSize
                + ", eps=" + rmsEps + ", theta=" + ropeTheta + ", ropeScale=" + ropeScale
                + ", eos=" + java.util.Arrays.toString(eosIds) + "]";
    }
}
