package dev.nibble.runtime.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Streaming decode holds back split characters and applies SentencePiece's leading-space rule once. */
class StreamingDecoderTest {

    private static List<String> stream(Tokenizer t, int[] ids, boolean skipSpecial) {
        StreamingDecoder d = t.streamingDecoder(skipSpecial);
        List<String> parts = new ArrayList<>();
        for (int id : ids) {
            parts.add(d.next(id));
        }
        parts.add(d.finish());
        return parts;
    }

    @Test
    void emojiSplitAcrossByteTokensAppearsOnlyWhenComplete() {
        Tokenizer llama2 = TestTokenizers.get("llama2");
        // "🦙" is F0 9F A6 99: not in Llama 2's vocabulary, so four byte tokens <0xF0> <0x9F> <0xA6> <0x99>.
        int[] ids = llama2.encode("🦙!", false, false);
        assertArrayEquals(new int[] {29871, 243, 162, 169, 156, 29991}, ids);
        assertEquals(List.of("", "", "", "", "🦙", "!", ""), stream(llama2, ids, false));
    }

    @Test
    void byteLevelTokensSplittingACharacterWaitForItsLastByte() {
        Tokenizer llama3 = TestTokenizers.get("llama3");
        // Reference ids for "🦙🦙🦙": each llama is 9468 (F0 9F) + 99 (A6) + 247 (99).
        int[] ids = {9468, 99, 247, 9468, 99, 247};
        assertEquals(List.of("", "", "🦙", "", "", "🦙", ""), stream(llama3, ids, false));
    }

    @Test
    void onlyTheFirstDummyPrefixSpaceIsDropped() {
        Tokenizer llama2 = TestTokenizers.get("llama2");
        int[] ids = llama2.encode(" Hello world", false, false);
        assertArrayEquals(new int[] {29871, 15043, 3186}, ids);
        assertEquals(List.of("", " Hello", " world", ""), stream(llama2, ids, false));
        assertEquals(" Hello world", llama2.decode(ids));
    }

    @Test
    void controlTokensAreTextUnlessSkipped() {
        Tokenizer llama2 = TestTokenizers.get("llama2");
        int[] ids = {1, 15043, 2};
        assertEquals("<s> Hello</s>", llama2.decode(ids));
        assertEquals("Hello", llama2.decode(ids, true));
        assertEquals(List.of("", "Hello", "", ""), stream(llama2, ids, true));
    }

    @Test
    void unfinishedCharacterAtTheEndBecomesReplacementCharacters() {
        Tokenizer llama2 = TestTokenizers.get("llama2");
        // <0xF0> <0x9F> then a plain token: the two lead bytes can never complete.
        assertEquals("\uFFFD\uFFFD!", llama2.decode(new int[] {243, 162, 29991}));
        assertEquals(List.of("", "", "\uFFFD\uFFFD"), stream(llama2, new int[] {243, 162}, false));
    }
}
