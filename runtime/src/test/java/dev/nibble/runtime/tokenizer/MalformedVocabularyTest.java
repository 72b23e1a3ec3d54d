package dev.nibble.runtime.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.vocab.Vocabulary;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Vocabularies that cannot tokenize every text are refused when the tokenizer is built, with the reason. */
class MalformedVocabularyTest {

    @Test
    void sentencePieceVocabularyMissingAByteTokenIsRejected() {
        Vocabulary tiny = TestTokenizers.get("tiny").vocabulary();
        List<String> tokens = new ArrayList<>(tiny.tokens());
        tokens.set(tokens.indexOf("<0x41>"), "<0x41>?");
        Vocabulary broken = new Vocabulary(tiny.model(), tiny.preTokenizer(), tokens, tiny.scores(), tiny.tokenTypes(),
                tiny.merges(), tiny.bosId(), tiny.eosId(), tiny.unkId(), tiny.padId(), true, false, true);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizer.from(broken));
        assertTrue(e.getMessage().contains("'<0x41>'"), e.getMessage());
    }

    @Test
    void byteTypedTokenThatIsNotAByteIsRejected() {
        Vocabulary tiny = TestTokenizers.get("tiny").vocabulary();
        int[] types = tiny.tokenTypes().clone();
        int piece = tiny.tokens().indexOf("\u2581the");
        types[piece] = Vocabulary.BYTE;
        Vocabulary broken = new Vocabulary(tiny.model(), tiny.preTokenizer(), tiny.tokens(), tiny.scores(), types,
                tiny.merges(), tiny.bosId(), tiny.eosId(), tiny.unkId(), tiny.padId(), true, false, true);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizer.from(broken));
        assertTrue(e.getMessage().contains("token " + piece + " '\u2581the' is typed as a byte"), e.getMessage());
    }

    @Test
    void sentencePieceVocabularyWithoutByteTokensFallsBackToUnknown() {
        List<String> tokens = List.of("<unk>", "<s>", "</s>", "\u2581", "a", "\u2581a");
        Vocabulary v = new Vocabulary(Vocabulary.Model.LLAMA, "default", tokens, new float[] {0, 0, 0, -3, -2, -1},
                new int[] {2, 3, 3, 1, 1, 1}, List.of(), 1, 2, 0, -1, true, false, true);
        Tokenizer t = Tokenizer.from(v);
        assertArrayEquals(new int[] {1, 5, 0, 4}, t.encode("aža", true, false));
    }

    @Test
    void byteLevelVocabularyMissingAByteIsRejected() {
        Vocabulary v = byteLevel(List.of("a b"));
        List<String> tokens = new ArrayList<>(v.tokens());
        tokens.set(tokens.indexOf("\u0120"), "space?");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizer.from(copy(v, tokens, v.merges())));
        assertTrue(e.getMessage().contains("byte 0x20"), e.getMessage());
    }

    @Test
    void byteLevelVocabularyWithoutMergesIsRejected() {
        Vocabulary v = byteLevel(List.of("a b"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizer.from(copy(v, v.tokens(), List.of())));
        assertTrue(e.getMessage().contains("no merges"), e.getMessage());
    }

    @Test
    void mergeNamingAnUnknownTokenIsRejected() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizer.from(byteLevel(List.of("a b", "x yz"))));
        assertTrue(e.getMessage().contains("merge 1 'x yz'"), e.getMessage());
    }

    @Test
    void smallByteLevelVocabularyMergesAndDecodes() {
        Tokenizer t = Tokenizer.from(byteLevel(List.of("a b")));
        int ab = t.vocabulary().size() - 1;
        int[] ids = t.encode("abab b", false, false);
        assertArrayEquals(new int[] {ab, ab, t.vocabulary().tokens().indexOf("\u0120"), t.vocabulary().tokens().indexOf("b")}, ids);
        assertEquals("abab b", t.decode(ids));
    }

    @Test
    void idsOutsideTheVocabularyAreRejectedWhenDecoding() {
        Tokenizer t = TestTokenizers.get("tiny");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.decode(new int[] {5, 2048}));
        assertTrue(e.getMessage().contains("2048"), e.getMessage());
    }

    /** The 256 byte characters in byte order plus "ab" (as a merge of "a" and "b" would make). */
    private static Vocabulary byteLevel(List<String> merges) {
        List<String> tokens = new ArrayList<>();
        for (int b = 0; b < 256; b++) {
            tokens.add(String.valueOf(ByteLevelAlphabet.charOf(b)));
        }
        tokens.add("ab");
        return new Vocabulary(Vocabulary.Model.GPT2, "llama-bpe", tokens, null, ones(tokens.size()),
                merges, -1, -1, -1, -1, false, false, false);
    }

    private static Vocabulary copy(Vocabulary v, List<String> tokens, List<String> merges) {
        return new Vocabulary(v.model(), v.preTokenizer(), tokens, v.scores(), v.tokenTypes(), merges, v.bosId(), v.eosId(),
                v.unkId(), v.padId(), v.addBos(), v.addEos(), v.addSpacePrefix());
    }

    private static int[] ones(int n) {
        int[] t = new int[n];
        java.util.Arrays.fill(t, Vocabulary.NORMAL);
        return t;
    }
}
