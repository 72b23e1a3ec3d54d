package dev.nibble.formats.vocab;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.formats.gguf.GgufMetadata;
import java.util.Arrays;
import java.util.List;

/** Maps a {@link Vocabulary} to and from GGUF metadata under llama.cpp's {@code tokenizer.ggml.*} keys. */
public final class VocabularyGguf {

    public static final String MODEL = "tokenizer.ggml.model";
    public static final String PRE = "tokenizer.ggml.pre";
    public static final String TOKENS = "tokenizer.ggml.tokens";
    public static final String SCORES = "tokenizer.ggml.scores";
    public static final String TOKEN_TYPE = "tokenizer.ggml.token_type";
    public static final String MERGES = "tokenizer.ggml.merges";
    public static final String BOS_ID = "tokenizer.ggml.bos_token_id";
    public static final String EOS_ID = "tokenizer.ggml.eos_token_id";
    public static final String UNK_ID = "tokenizer.ggml.unknown_token_id";
    public static final String PAD_ID = "tokenizer.ggml.padding_token_id";
    public static final String ADD_BOS = "tokenizer.ggml.add_bos_token";
    public static final String ADD_EOS = "tokenizer.ggml.add_eos_token";
    public static final String ADD_SPACE_PREFIX = "tokenizer.ggml.add_space_prefix";
    /** The model's Jinja chat template, as llama.cpp and Hugging Face's GGUF export store it. */
    public static final String CHAT_TEMPLATE = "tokenizer.chat_template";

    private VocabularyGguf() {
    }

    /** Adds the vocabulary's keys; absent ids (-1) and absent scores or merges are left out, as llama.cpp's converter does. */
    public static void write(Vocabulary v, GgufMetadata.Builder b) {
        b.putString(MODEL, v.model().ggufName());
        b.putString(PRE, v.preTokenizer());
        b.putStringArray(TOKENS, v.tokens());
        if (v.scores() != null) {
            b.putFloatArray(SCORES, v.scores());
        }
        b.putIntArray(TOKEN_TYPE, v.tokenTypes());
        if (!v.merges().isEmpty()) {
            b.putStringArray(MERGES, v.merges());
        }
        putId(b, BOS_ID, v.bosId());
        putId(b, EOS_ID, v.eosId());
        putId(b, UNK_ID, v.unkId());
        putId(b, PAD_ID, v.padId());
        b.putBool(ADD_BOS, v.addBos());
        b.putBool(ADD_EOS, v.addEos());
        b.putBool(ADD_SPACE_PREFIX, v.addSpacePrefix());
    }

    private static void putId(GgufMetadata.Builder b, String key, int id) {
        if (id >= 0) {
            b.putU32(key, id);
        }
    }

    /** Reads the vocabulary of an open GGUF file; problems name the file. */
    public static Vocabulary read(GgufFile file) throws FormatException {
        try {
            return read(file.metadata());
        } catch (IllegalArgumentException e) {
            throw new FormatException(file.path(), "tokenizer metadata", -1, e.getMessage(), e);
        }
    }

    /**
     * Reads the vocabulary; keys a file leaves out take llama.cpp's defaults (for "llama": BOS 1, EOS 2, unknown 0,
     * BOS added, space prefix on; for "gpt2" with the llama-bpe pre-tokenizer: BOS added).
     *
     * @throws IllegalArgumentException naming the key when the metadata is missing, mistyped or inconsistent
     */
    public static Vocabulary read(GgufMetadata m) {
        String name = m.getString(MODEL);
        Vocabulary.Model model = Vocabulary.Model.fromGgufName(name);
        if (model == null) {
            throw new IllegalArgumentException(MODEL + " is '" + name + "'; nibble tokenizes 'llama' (SentencePiece BPE) and 'gpt2' (byte-level BPE)");
        }
        boolean llama = model == Vocabulary.Model.LLAMA;
        String pre = m.findString(PRE).orElse("default");
        List<String> tokens = m.getStringArray(TOKENS);
        float[] scores = m.contains(SCORES) ? m.getFloatArray(SCORES) : null;
        int[] types;
        if (m.contains(TOKEN_TYPE)) {
            types = m.getIntArray(TOKEN_TYPE);
        } else {
            types = new int[tokens.size()];
            Arrays.fill(types, Vocabulary.NORMAL);
        }
        List<String> merges = m.contains(MERGES) ? m.getStringArray(MERGES) : List.of();
        if (!llama && merges.isEmpty()) {
            throw new IllegalArgumentException(MERGES + " is missing; a gpt2 (byte-level BPE) vocabulary needs its merges");
        }
        if (llama && scores == null) {
            throw new IllegalArgumentException(SCORES + " is missing; a llama (SentencePiece BPE) vocabulary merges by score");
        }
        return new Vocabulary(model, pre, tokens, scores, types, merges,
                id(m, BOS_ID, llama ? 1 : -1), id(m, EOS_ID, llama ? 2 : -1), id(m, UNK_ID, llama ? 0 : -1), id(m, PAD_ID, -1),
                m.findBoolean(ADD_BOS).orElse(llama || pre.equals("llama-bpe")), m.findBoolean(ADD_EOS).orElse(false),
                m.findBoolean(ADD_SPACE_PREFIX).orElse(llama));
    }

    private static int id(GgufMetadata m, String key, int fallback) {
        if (!m.contains(key)) {
            return fallback;
        }
        long id = m.getLong(key);
        if (id < -1 || id > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(key + " = " + id + " is not a token id");
        }
        return (int) id;
    }
}
