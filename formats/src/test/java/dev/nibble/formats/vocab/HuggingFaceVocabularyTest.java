package dev.nibble.formats.vocab;

import dev.nibble.testing.TestData;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.nibble.formats.FormatException;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Reading tokenizer.model and tokenizer.json into a Vocabulary, and the errors malformed tokenizer data gets. */
class HuggingFaceVocabularyTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    @Test
    void handBuiltSentencePieceModelIsReadFieldByField() throws IOException {
        Proto model = new Proto()
                .message(1, piece("<unk>", 0f, 2))
                .message(1, piece("<s>", 0f, 3))
                .message(1, new Proto().string(1, "\u2581a").fixed32(2, -1.5f))   // type left out: NORMAL
                .message(1, piece("<0x41>", 0f, 6))
                .message(2, new Proto().varint(3, 2).varint(35, 1).varint(40, 0).varint(41, 1).varint(42, 2).varint(43, -1))
                .message(3, new Proto().string(1, "identity").varint(3, 0).varint(4, 0));
        Files.write(tmp.resolve("tokenizer.model"), model.bytes());
        Vocabulary v = HuggingFaceVocabulary.load(tmp);
        assertEquals(Vocabulary.Model.LLAMA, v.model());
        assertEquals(List.of("<unk>", "<s>", "\u2581a", "<0x41>"), v.tokens());
        assertArrayEquals(new float[] {0f, 0f, -1.5f, 0f}, v.scores());
        assertArrayEquals(new int[] {2, 3, 1, 6}, v.tokenTypes());
        assertEquals(List.of(1, 2, 0, -1), List.of(v.bosId(), v.eosId(), v.unkId(), v.padId()));
        assertEquals(List.of(true, false, false), List.of(v.addBos(), v.addEos(), v.addSpacePrefix()));
    }

    @Test
    void unigramSentencePieceModelIsRejected() throws IOException {
        Proto model = new Proto().message(1, piece("<unk>", 0f, 2)).message(2, new Proto().varint(3, 1));
        Files.write(tmp.resolve("tokenizer.model"), model.bytes());
        FormatException e = assertThrows(FormatException.class, () -> HuggingFaceVocabulary.load(tmp));
        assertTrue(e.getMessage().contains("model_type") && e.getMessage().contains("not BPE"), e.getMessage());
    }

    @Test
    void pieceOfUnknownTypeIsRejectedAsAFormatError() throws IOException {
        Proto model = new Proto().message(1, piece("<unk>", 0f, 2)).message(1, piece("x", 0f, 9))
                .message(2, new Proto().varint(3, 2))
                .message(3, new Proto().string(1, "identity").varint(4, 0));
        Files.write(tmp.resolve("tokenizer.model"), model.bytes());
        FormatException e = assertThrows(FormatException.class, () -> HuggingFaceVocabulary.load(tmp));
        assertTrue(e.getMessage().contains("token 1 has unknown type 9"), e.getMessage());
    }

    @Test
    void truncatedTokenizerModelIsRejectedWithOffset() throws IOException {
        byte[] real = Files.readAllBytes(TestData.resolve("tiny-llama/safetensors/tokenizer.model"));
        Files.write(tmp.resolve("tokenizer.model"), Arrays.copyOf(real, 1001));
        FormatException e = assertThrows(FormatException.class, () -> HuggingFaceVocabulary.load(tmp));
        assertTrue(e.offset() > 0 && e.offset() <= 1001, e.getMessage());
        assertTrue(e.getMessage().contains("tokenizer.model"), e.getMessage());
    }

    @Test
    void tinyModelTokenizerJsonAndModelAgreeOnTypesAndSpecialIds() throws IOException {
        Path dir = TestData.resolve("tiny-llama/safetensors");
        Vocabulary sp = HuggingFaceVocabulary.loadSentencePiece(dir);
        Vocabulary js = HuggingFaceVocabulary.loadTokenizerJson(dir);
        assertEquals(2048, sp.size());
        assertEquals(sp.tokens(), js.tokens());
        assertArrayEquals(sp.tokenTypes(), js.tokenTypes());
        assertEquals("<0x00>", sp.tokens().get(3));
        assertEquals(Vocabulary.BYTE, js.tokenTypes()[3 + 0xFF]);
        assertEquals(Vocabulary.UNKNOWN, js.tokenTypes()[0]);
        assertEquals(Vocabulary.CONTROL, js.tokenTypes()[1]);
        // The json's merge order gives the same piece ranking as the model's scores, among pieces merges make.
        int a = js.tokens().indexOf("\u2581t");
        int b = js.tokens().indexOf("he");
        assertTrue(sp.scores()[a] > sp.scores()[b] && js.scores()[a] > js.scores()[b]);
    }

    @Test
    void llama2TokenizerJsonIsSentencePieceStyle() throws IOException {
        Vocabulary v = HuggingFaceVocabulary.load(TestData.resolve("tokenizers/llama2"));
        assertEquals(Vocabulary.Model.LLAMA, v.model());
        assertEquals("default", v.preTokenizer());
        assertEquals(32000, v.size());
        assertTrue(v.merges().isEmpty());
        assertEquals(List.of(1, 2, 0, -1), List.of(v.bosId(), v.eosId(), v.unkId(), v.padId()));
        assertEquals(List.of(true, false, true), List.of(v.addBos(), v.addEos(), v.addSpacePrefix()));
        assertEquals("<0x0A>", v.tokens().get(13));
        assertEquals(Vocabulary.BYTE, v.tokenTypes()[13]);
    }

    @Test
    void unknownModelTypeInTokenizerJsonIsRejected() throws IOException {
        ObjectNode root = tinyJson();
        ((ObjectNode) root.path("model")).put("type", "WordPiece");
        FormatException e = assertThrows(FormatException.class, () -> loadJson(root));
        assertTrue(e.getMessage().contains("unknown tokenizer model type 'WordPiece'"), e.getMessage());
    }

    @Test
    void missingMergesAreRejected() throws IOException {
        ObjectNode root = tinyJson();
        ((ObjectNode) root.path("model")).remove("merges");
        FormatException e = assertThrows(FormatException.class, () -> loadJson(root));
        assertTrue(e.getMessage().contains("model.merges") && e.getMessage().contains("missing"), e.getMessage());
    }

    @Test
    void mergeOfUnknownPieceIsRejectedWithItsIndex() throws IOException {
        ObjectNode root = tinyJson();
        ((ArrayNode) root.path("model").path("merges")).insertArray(5).add("\u2581zz").add("qq");
        FormatException e = assertThrows(FormatException.class, () -> loadJson(root));
        assertTrue(e.getMessage().contains("model.merges[5]"), e.getMessage());
    }

    @Test
    void byteLevelTokenizerWithAnotherSplitPatternIsRejected() throws IOException {
        ObjectNode root = JSON.createObjectNode();
        ObjectNode model = root.putObject("model").put("type", "BPE");
        model.putObject("vocab").put("a", 0).put("b", 1).put("ab", 2);
        model.putArray("merges").add("a b");
        root.putObject("pre_tokenizer").put("type", "ByteLevel").put("use_regex", true);
        FormatException e = assertThrows(FormatException.class, () -> loadJson(root));
        assertTrue(e.getMessage().contains("llama-bpe"), e.getMessage());
    }

    @Test
    void brokenJsonIsRejectedWithByteOffset() throws IOException {
        Files.writeString(tmp.resolve("tokenizer.json"), "{\"model\": {\"type\": \"BPE\",, }");
        FormatException e = assertThrows(FormatException.class, () -> HuggingFaceVocabulary.load(tmp));
        assertTrue(e.offset() > 0, e.getMessage());
    }

    @Test
    void folderWithoutTokenizerFilesIsRejected() {
        FormatException e = assertThrows(FormatException.class, () -> HuggingFaceVocabulary.load(tmp));
        assertTrue(e.getMessage().contains("no tokenizer.model or tokenizer.json"), e.getMessage());
    }

    @Test
    void configNamingAMissingTokenIsRejected() throws IOException {
        Files.writeString(tmp.resolve("tokenizer_config.json"), "{\"bos_token\": \"<|nope|>\"}");
        FormatException e = assertThrows(FormatException.class, () -> loadJson(tinyJson()));
        assertTrue(e.getMessage().contains("tokenizer_config.json") && e.getMessage().contains("<|nope|>"), e.getMessage());
    }

    @Test
    void oneLargeIdCannotMakeMillionsOfPlaceholders() throws IOException {
        // Issue 11 item 10: holes in the id space are filled with placeholders; one id of 9,999,999 in a small file
        // made ten million of them. Now ids are below 2^22 and at most as many holes as tokens (or 1,024) are filled.
        ObjectNode root = tinyJson();
        ((ObjectNode) root.path("model").path("vocab")).put("\u2581zz", 4_000_000);
        FormatException e = assertThrows(FormatException.class, () -> loadJson(root));
        assertTrue(e.getMessage().contains("token ids run to 4000000 but only") && e.getMessage().contains("missing ids"),
                e.getMessage());
        ((ObjectNode) root.path("model").path("vocab")).put("\u2581zz", HuggingFaceVocabulary.MAX_TOKENS);
        e = assertThrows(FormatException.class, () -> loadJson(root));
        assertTrue(e.getMessage().contains("invalid id " + HuggingFaceVocabulary.MAX_TOKENS), e.getMessage());
    }

    @Test
    void tokenizerJsonThatIsNotUtf8IsAFormatErrorNamingTheFile() throws IOException {
        // Found by fuzzing: bytes that look like UTF-32 made the JSON parser throw its own CharConversionException.
        Files.write(tmp.resolve("tokenizer.json"), new byte[] {0, 0, 0, '{', 0, 0, 0, '}'});
        FormatException e = assertThrows(FormatException.class, () -> HuggingFaceVocabulary.loadTokenizerJson(tmp));
        assertTrue(e.getMessage().contains("tokenizer.json") && e.getMessage().contains("JSON"), e.getMessage());
        Files.write(tmp.resolve("tokenizer.json"), new byte[] {'{', (byte) 0xC3, '}'});
        e = assertThrows(FormatException.class, () -> HuggingFaceVocabulary.loadTokenizerJson(tmp));
        assertTrue(e.getMessage().contains("not valid UTF-8"), e.getMessage());
    }

    @Test
    void aPostProcessorTemplateThatIsNotAListIsIgnoredNotACrash() throws IOException {
        ObjectNode root = tinyJson();
        root.putObject("post_processor").put("type", "TemplateProcessing").putObject("single").put("x", 1);
        assertTrue(loadJson(root).size() > 0);
    }

    @Test
    void aNegativeAddedTokenIdIsAFormatError() throws IOException {
        Files.copy(TestData.resolve("tiny-llama/safetensors/tokenizer.model"), tmp.resolve("tokenizer.model"));
        Files.writeString(tmp.resolve("tokenizer_config.json"), "{\"added_tokens_decoder\": {\"-1\": {\"content\": \"x\"}}}");
        FormatException e = assertThrows(FormatException.class, () -> HuggingFaceVocabulary.loadSentencePiece(tmp));
        assertTrue(e.getMessage().contains("key '-1' is not a token id"), e.getMessage());
    }

    @Test
    void oversizedTokenizerFilesAreRefusedBeforeTheyAreRead() throws IOException {
        for (String name : new String[] {"tokenizer.json", "tokenizer.model"}) {
            Path file = tmp.resolve(name);
            try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(file.toFile(), "rw")) {
                f.setLength(HuggingFaceVocabulary.MAX_JSON_BYTES + 1); // sparse: nothing is written
            }
            boolean json = name.endsWith("json");
            FormatException e = assertThrows(FormatException.class, () -> {
                if (json) {
                    HuggingFaceVocabulary.loadTokenizerJson(tmp);
                } else {
                    HuggingFaceVocabulary.loadSentencePiece(tmp);
                }
            });
            assertTrue(e.getMessage().contains("is " + (HuggingFaceVocabulary.MAX_JSON_BYTES + 1) + " bytes"), e.getMessage());
            Files.delete(file);
        }
    }

    @Test
    void linesInQuotedFileContentAreEscapedSoMessagesStayOneLine() throws IOException {
        ObjectNode root = tinyJson();
        ((ArrayNode) root.path("model").path("merges")).insert(0, "a\nb c\u2028d");
        FormatException e = assertThrows(FormatException.class, () -> loadJson(root));
        assertTrue(!e.getMessage().contains("\n") && !e.getMessage().contains("\u2028") && e.getMessage().contains("a\\nb"),
                e.getMessage());
    }

    private ObjectNode tinyJson() throws IOException {
        return (ObjectNode) JSON.readTree(TestData.resolve("tiny-llama/safetensors/tokenizer.json").toFile());
    }

    private Vocabulary loadJson(ObjectNode root) throws IOException {
        JSON.writeValue(tmp.resolve("tokenizer.json").toFile(), root);
        return HuggingFaceVocabulary.loadTokenizerJson(tmp);
    }

    private static Proto piece(String text, float score, int type) {
        return new Proto().string(1, text).fixed32(2, score).varint(3, type);
    }

    /** A minimal protobuf writer, so that tests can build SentencePiece models field by field. */
    private static final class Proto {
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();

        Proto varint(int field, long value) {
            writeVarint(((long) field << 3));
            writeVarint(value);
            return this;
        }

        Proto fixed32(int field, float value) {
            writeVarint(((long) field << 3) | 5);
            out.writeBytes(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putFloat(value).array());
            return this;
        }

        Proto string(int field, String s) {
            return bytes(field, s.getBytes(StandardCharsets.UTF_8));
        }

        Proto message(int field, Proto m) {
            return bytes(field, m.bytes());
        }

        private Proto bytes(int field, byte[] b) {
            writeVarint(((long) field << 3) | 2);
            writeVarint(b.length);
            out.writeBytes(b);
            return this;
        }

        byte[] bytes() {
            return out.toByteArray();
        }

        private void writeVarint(long v) {
            while ((v & ~0x7FL) != 0) {
                out.write((int) ((v & 0x7F) | 0x80));
                v >>>= 7;
            }
            out.write((int) v);
        }
    }
}
