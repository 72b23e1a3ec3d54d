package dev.nibble.formats.vocab;

import dev.nibble.testing.TestData;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.formats.gguf.GgufMetadata;
import dev.nibble.formats.gguf.GgufWriter;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A vocabulary written to GGUF metadata reads back field for field, through a real file too. */
class VocabularyGgufTest {

    @TempDir
    Path tmp;

    @Test
    void sentencePieceVocabularyRoundTripsThroughAGgufFile() throws IOException {
        Vocabulary v = HuggingFaceVocabulary.loadSentencePiece(TestData.resolve("tiny-llama/safetensors"));
        GgufMetadata.Builder b = GgufMetadata.builder().putString("general.architecture", "llama");
        VocabularyGguf.write(v, b);
        Path file = tmp.resolve("vocab.gguf");
        try (GgufWriter w = GgufWriter.create(file, b.build(), List.of(), false)) {
            w.finish();
        }
        try (GgufFile g = GgufFile.open(file)) {
            assertEquals("llama", g.metadata().getString(VocabularyGguf.MODEL));
            assertFalse(g.metadata().contains(VocabularyGguf.PAD_ID));
            assertSame(v, VocabularyGguf.read(g));
        }
    }

    @Test
    void byteLevelVocabularyRoundTripsWithMerges() {
        List<String> tokens = new ArrayList<>(List.of("a", "b", "ab", "<|begin_of_text|>"));
        Vocabulary v = new Vocabulary(Vocabulary.Model.GPT2, "llama-bpe", tokens, null, new int[] {1, 1, 1, 3},
                List.of("a b"), 3, -1, -1, -1, true, false, false);
        GgufMetadata.Builder b = GgufMetadata.builder();
        VocabularyGguf.write(v, b);
        GgufMetadata m = b.build();
        assertEquals(List.of("a b"), m.getStringArray(VocabularyGguf.MERGES));
        assertEquals(3, m.getLong(VocabularyGguf.BOS_ID));
        assertSame(v, VocabularyGguf.read(m));
    }

    @Test
    void missingKeysTakeLlamaCppDefaults() {
        GgufMetadata m = GgufMetadata.builder().putString(VocabularyGguf.MODEL, "llama")
                .putStringArray(VocabularyGguf.TOKENS, List.of("<unk>", "<s>", "</s>", "\u2581a"))
                .putFloatArray(VocabularyGguf.SCORES, new float[] {0, 0, 0, -1}).build();
        Vocabulary v = VocabularyGguf.read(m);
        assertEquals(List.of(1, 2, 0, -1), List.of(v.bosId(), v.eosId(), v.unkId(), v.padId()));
        assertEquals(List.of(true, false, true), List.of(v.addBos(), v.addEos(), v.addSpacePrefix()));
        assertArrayEquals(new int[] {1, 1, 1, 1}, v.tokenTypes());
        assertEquals("default", v.preTokenizer());
    }

    @Test
    void unknownTokenizerModelIsRejectedByName() {
        GgufMetadata m = GgufMetadata.builder().putString(VocabularyGguf.MODEL, "bert")
                .putStringArray(VocabularyGguf.TOKENS, List.of("a")).build();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> VocabularyGguf.read(m));
        assertTrue(e.getMessage().contains("'bert'"), e.getMessage());
    }

    @Test
    void byteLevelVocabularyWithoutMergesIsRejected() {
        GgufMetadata m = GgufMetadata.builder().putString(VocabularyGguf.MODEL, "gpt2")
                .putStringArray(VocabularyGguf.TOKENS, List.of("a", "b")).build();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> VocabularyGguf.read(m));
        assertTrue(e.getMessage().contains(VocabularyGguf.MERGES), e.getMessage());
    }

    @Test
    void mismatchedTokenTypeCountIsRejectedWithTheFileName() throws IOException {
        GgufMetadata.Builder b = GgufMetadata.builder().putString(VocabularyGguf.MODEL, "llama")
                .putStringArray(VocabularyGguf.TOKENS, List.of("<unk>", "<s>", "</s>"))
                .putFloatArray(VocabularyGguf.SCORES, new float[] {0, 0, 0})
                .putIntArray(VocabularyGguf.TOKEN_TYPE, new int[] {2, 3});
        Path file = tmp.resolve("bad.gguf");
        try (GgufWriter w = GgufWriter.create(file, b.build(), List.of(), false)) {
            w.finish();
        }
        try (GgufFile g = GgufFile.open(file)) {
            FormatException e = assertThrows(FormatException.class, () -> VocabularyGguf.read(g));
            assertTrue(e.getMessage().contains("bad.gguf") && e.getMessage().contains("2 token types for 3 tokens"), e.getMessage());
        }
    }

    private static void assertSame(Vocabulary expected, Vocabulary actual) {
        assertEquals(expected.model(), actual.model());
        assertEquals(expected.preTokenizer(), actual.preTokenizer());
        assertEquals(expected.tokens(), actual.tokens());
        assertArrayEquals(expected.scores(), actual.scores());
        assertArrayEquals(expected.tokenTypes(), actual.tokenTypes());
        assertEquals(expected.merges(), actual.merges());
        assertEquals(List.of(expected.bosId(), expected.eosId(), expected.unkId(), expected.padId()),
                List.of(actual.bosId(), actual.eosId(), actual.unkId(), actual.padId()));
        assertEquals(List.of(expected.addBos(), expected.addEos(), expected.addSpacePrefix()),
                List.of(actual.addBos(), actual.addEos(), actual.addSpacePrefix()));
    }
}
