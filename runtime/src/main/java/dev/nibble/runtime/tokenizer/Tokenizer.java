package dev.nibble.runtime.tokenizer;

import dev.nibble.formats.vocab.Vocabulary;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** Turns text into token ids and back, exactly as the model's reference tokenizer does. */
public abstract sealed class Tokenizer permits SentencePieceBpeTokenizer, ByteLevelBpeTokenizer {

    protected final Vocabulary vocab;
    protected final Map<String, Integer> ids;
    private final SpecialTokenMatcher controlAndUserTokens = new SpecialTokenMatcher();
    private final SpecialTokenMatcher userTokens = new SpecialTokenMatcher();

    protected Tokenizer(Vocabulary vocab) {
        this.vocab = vocab;
        this.ids = new HashMap<>(vocab.size() * 2);
        for (int i = 0; i < vocab.size(); i++) {
            ids.putIfAbsent(vocab.tokens().get(i), i);
            int type = vocab.tokenTypes()[i];
            // As in llama.cpp: user-defined tokens always match in text, control ones only when asked to.
            if (type == Vocabulary.USER_DEFINED) {
                userTokens.add(vocab.tokens().get(i), i);
            }
            if (type == Vocabulary.USER_DEFINED || type == Vocabulary.CONTROL || type == Vocabulary.UNKNOWN) {
                controlAndUserTokens.add(vocab.tokens().get(i), i);
            }
        }
    }

    /** The tokenizer for this vocabulary's algorithm. */
    public static Tokenizer from(Vocabulary vocab) {
        return switch (vocab.model()) {
            case LLAMA -> new SentencePieceBpeTokenizer(vocab);
            case GPT2 -> new ByteLevelBpeTokenizer(vocab);
        };
    }

    public Vocabulary vocabulary() {
        return vocab;
    }

    /**
     * Encodes text.
     *
     * @param addBos       put the BOS token first (callers usually pass {@code vocabulary().addBos()})
     * @param parseSpecial recognise control-token strings such as {@code <s>} or {@code <|eot_id|>} in the text;
     *                     when false they are ordinary text
     */
    public int[] encode(String text, boolean addBos, boolean parseSpecial) {
        IdList out = new IdList();
        if (addBos) {
            if (vocab.bosId() < 0) {
                throw new IllegalStateException("this vocabulary has no BOS token");
            }
            out.add(vocab.bosId());
        }
        for (SpecialTokenMatcher.Fragment f : (parseSpecial ? controlAndUserTokens : userTokens).split(text)) {
            if (f.id() >= 0) {
                out.add(f.id());
            } else {
                encodeText(f.text(), out);
            }
        }
        return out.toArray();
    }

    /** Encodes one run of text between special tokens (or the whole text when it has none). */
    abstract void encodeText(String text, IdList out);

    /** The bytes token id stands for; control tokens give their text, or nothing when skipped. */
    abstract byte[] bytesOf(int id, boolean skipSpecial);

    /** Whether decoded text drops one leading space (SentencePiece's dummy prefix). */
    abstract boolean stripsLeadingSpace();

    /** Decodes ids, rendering control tokens as their text (Hugging Face's {@code skip_special_tokens=False}). */
    public String decode(int[] ids) {
        return decode(ids, false);
    }

    /** Decodes ids; with {@code skipSpecial} control and unknown tokens are left out. */
    public String decode(int[] ids, boolean skipSpecial) {
        StreamingDecoder d = streamingDecoder(skipSpecial);
        StringBuilder sb = new StringBuilder();
        for (int id : ids) {
            sb.append(d.next(id));
        }
        return sb.append(d.finish()).toString();
    }

    /** A decoder that takes one id at a time and returns only text whose characters are complete. */
    public StreamingDecoder streamingDecoder(boolean skipSpecial) {
        return new StreamingDecoder(this, skipSpecial);
    }

    /** The token's text as stored in the vocabulary (with ▁ or GPT-2's byte alphabet). */
    public String piece(int id) {
        checkId(id);
        return vocab.tokens().get(id);
    }

    protected void checkId(int id) {
        if (id < 0 || id >= vocab.size()) {
            throw new IllegalArgumentException("token id " + id + " is outside the vocabulary of " + vocab.size() + " tokens");
        }
    }

    protected boolean isSpecial(int id) {
        int type = vocab.tokenTypes()[id];
        return type == Vocabulary.CONTROL || type == Vocabulary.UNKNOWN;
    }

    protected static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** Ids of the 256 byte tokens, by byte value, from their spellings; each must exist. */
    protected int[] byteTokenIds(List<String> spellings, String what) {
        int[] out = new int[256];
        for (int b = 0; b < 256; b++) {
            Integer id = ids.get(spellings.get(b));
            if (id == null) {
                throw new IllegalArgumentException("vocabulary lacks the " + what + " token '" + spellings.get(b)
                        + "' for byte 0x" + String.format("%02X", b) + "; the tokenizer data is incomplete");
            }
            out[b] = id;
        }
        return out;
    }
}
