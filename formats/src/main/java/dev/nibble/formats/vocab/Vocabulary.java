package dev.nibble.formats.vocab;

import java.util.List;

/**
 * A tokenizer's vocabulary as GGUF stores it (the {@code tokenizer.ggml.*} keys), whatever file it came from.
 *
 * @param model          the tokenization algorithm
 * @param preTokenizer   GGUF {@code tokenizer.ggml.pre}: "default" for {@link Model#LLAMA}, "llama-bpe" for Llama 3
 * @param tokens         token texts, indexed by id (SentencePiece pieces keep their ▁; byte-level tokens are in GPT-2's byte alphabet)
 * @param scores         one score per token, or null when the source has none
 * @param tokenTypes     one GGUF token type per token ({@link #NORMAL} ... {@link #BYTE})
 * @param merges         byte-level BPE merges "a b" in rank order; empty for {@link Model#LLAMA}
 * @param bosId          beginning-of-sequence id, or -1
 * @param eosId          end-of-sequence id, or -1
 * @param unkId          unknown-token id, or -1
 * @param padId          padding id, or -1
 * @param addBos         whether encoding with special tokens puts BOS first
 * @param addEos         whether encoding with special tokens puts EOS last
 * @param addSpacePrefix whether SentencePiece's dummy-prefix space is put before the text
 */
public record Vocabulary(Model model, String preTokenizer, List<String> tokens, float[] scores, int[] tokenTypes,
                         List<String> merges, int bosId, int eosId, int unkId, int padId,
                         boolean addBos, boolean addEos, boolean addSpacePrefix) {

    public static final int NORMAL = 1;
    public static final int UNKNOWN = 2;
    public static final int CONTROL = 3;
    public static final int USER_DEFINED = 4;
    public static final int UNUSED = 5;
    public static final int BYTE = 6;

    /** The tokenization algorithm, named as GGUF's {@code tokenizer.ggml.model} names it. */
    public enum Model {
        /** SentencePiece-style BPE merged by piece score, with byte fallback (Llama 1/2, Mistral). */
        LLAMA("llama"),
        /** Byte-level BPE merged by rank (Llama 3). */
        GPT2("gpt2");

        private final String ggufName;

        Model(String ggufName) {
            this.ggufName = ggufName;
        }

        public String ggufName() {
            return ggufName;
        }

        /** The model with this GGUF name, or null. */
        public static Model fromGgufName(String name) {
            for (Model m : values()) {
                if (m.ggufName.equals(name)) {
                    return m;
                }
            }
            return null;
        }
    }

    public Vocabulary {
        tokens = List.copyOf(tokens);
        merges = List.copyOf(merges);
        if (tokens.isEmpty()) {
            throw new IllegalArgumentException("vocabulary has no tokens");
        }
        if (scores != null && scores.length != tokens.size()) {
            throw new IllegalArgumentException(scores.length + " scores for " + tokens.size() + " tokens");
        }
        if (tokenTypes.length != tokens.size()) {
            throw new IllegalArgumentException(tokenTypes.length + " token types for " + tokens.size() + " tokens");
        }
        for (int i = 0; i < tokenTypes.length; i++) {
            if (tokenTypes[i] < NORMAL || tokenTypes[i] > BYTE) {
                throw new IllegalArgumentException("token " + i + " has unknown type " + tokenTypes[i]);
            }
        }
        checkId("bos", bosId, tokens.size());
        checkId("eos", eosId, tokens.size());
        checkId("unk", unkId, tokens.size());
        checkId("pad", padId, tokens.size());
    }

    private static void checkId(String what, int id, int size) {
        if (id < -1 || id >= size) {
            throw new IllegalArgumentException(what + " id " + id + " is outside the vocabulary of " + size + " tokens");
        }
    }

    public int size() {
        return tokens.size();
    }
}
