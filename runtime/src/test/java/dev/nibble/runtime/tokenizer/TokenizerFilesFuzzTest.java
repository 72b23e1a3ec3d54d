package dev.nibble.runtime.tokenizer;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.nibble.formats.FormatException;
import dev.nibble.formats.vocab.HuggingFaceVocabulary;
import dev.nibble.formats.vocab.Vocabulary;
import dev.nibble.testing.FuzzChecks;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Coverage-guided fuzzing of a model folder's tokenizer files as nibble reads them: {@code tokenizer.json}
 * ({@link #tokenizerJson}) and SentencePiece's {@code tokenizer.model} ({@link #sentencePieceModel}), each into a
 * vocabulary and then into the tokenizer that encodes and decodes text with it. Seeds: small valid files of each kind
 * and the bad inputs of HuggingFaceVocabularyTest, written by {@link #main}.
 */
class TokenizerFilesFuzzTest {

    /** Text with spaces, line breaks, special-token strings, accents, an emoji and CJK. */
    private static final List<String> TEXTS = List.of("Hello world", "  two  spaces\n\ttab\r\n", "<s>x</s><|begin_of_text|>a<unk>",
            "\u00fcn\u00efc\u00f6d\u00e9 \uD83D\uDE00 \u65E5\u672C\u8A9E", "ab".repeat(40), "");

    @FuzzTest(maxDuration = "60s")
    void tokenizerJson(byte[] data) throws Exception {
        Path dir = FuzzChecks.scratch().resolve("json");
        Files.createDirectories(dir);
        Files.write(dir.resolve("tokenizer.json"), data);
        FuzzChecks.bounded(data.length, 256, 16 << 20, () -> {
            try {
                use(HuggingFaceVocabulary.loadTokenizerJson(dir));
            } catch (FormatException e) {
                FuzzChecks.cleanRefusal(e);
            }
        });
    }

    @FuzzTest(maxDuration = "60s")
    void sentencePieceModel(byte[] data) throws Exception {
        Path dir = FuzzChecks.scratch().resolve("model");
        Files.createDirectories(dir);
        Files.write(dir.resolve("tokenizer.model"), data);
        FuzzChecks.bounded(data.length, 256, 16 << 20, () -> {
            try {
                use(HuggingFaceVocabulary.loadSentencePiece(dir));
            } catch (FormatException e) {
                FuzzChecks.cleanRefusal(e);
            }
        });
    }

    /** Makes the tokenizer (which may refuse the vocabulary) and runs text through it both ways. */
    private static void use(Vocabulary v) {
        Tokenizer t;
        try {
            t = Tokenizer.from(v);
        } catch (IllegalArgumentException e) {
            FuzzChecks.cleanRefusal(e);
            return;
        }
        for (String text : TEXTS) {
            for (boolean special : new boolean[] {false, true}) {
                int[] ids = t.encode(text, v.addBos() && v.bosId() >= 0, special);
                t.decode(ids);
                t.decode(ids, true);
            }
        }
        for (int id = 0; id < Math.min(v.size(), 1024); id++) {
            t.decode(new int[] {id});
        }
    }

    /** Writes the seed inputs into {@code args[0]} (the runtime module's directory). */
    public static void main(String[] args) throws IOException {
        Path base = Path.of(args[0], "src/test/resources/dev/nibble/runtime/tokenizer/TokenizerFilesFuzzTestInputs");
        ObjectMapper json = new ObjectMapper();
        Map<String, byte[]> jsons = new LinkedHashMap<>();
        ObjectNode byteLevel = byteLevelTokenizer(json);
        jsons.put("valid-byte-level", json.writeValueAsBytes(byteLevel));
        ObjectNode metaspace = metaspaceTokenizer(json);
        jsons.put("valid-metaspace", json.writeValueAsBytes(metaspace));
        ObjectNode unknownType = metaspace.deepCopy();
        ((ObjectNode) unknownType.path("model")).put("type", "WordPiece");
        jsons.put("unknown-model-type", json.writeValueAsBytes(unknownType));
        ObjectNode noMerges = metaspace.deepCopy();
        ((ObjectNode) noMerges.path("model")).putArray("merges");
        jsons.put("no-merges", json.writeValueAsBytes(noMerges));
        ObjectNode badMerge = metaspace.deepCopy();
        ((ArrayNode) badMerge.path("model").path("merges")).add("x y");
        jsons.put("merge-of-unknown-piece", json.writeValueAsBytes(badMerge));
        ObjectNode hugeId = metaspace.deepCopy();
        ((ObjectNode) hugeId.path("model").path("vocab")).put("z", 9_999_999);
        jsons.put("huge-token-id", json.writeValueAsBytes(hugeId));
        ObjectNode otherPattern = byteLevel.deepCopy();
        ((ObjectNode) otherPattern.path("pre_tokenizer").path("pretokenizers").get(0).path("pattern")).put("Regex", "\\s+");
        jsons.put("other-split-pattern", json.writeValueAsBytes(otherPattern));
        jsons.put("broken-json", "{\"model\": {\"type\": \"BPE\",, }".getBytes(StandardCharsets.UTF_8));
        jsons.put("deep-json", ("{\"model\":" + "[".repeat(3000) + "]".repeat(3000) + "}").getBytes(StandardCharsets.UTF_8));
        write(base.resolve("tokenizerJson"), jsons);

        Map<String, byte[]> models = new LinkedHashMap<>();
        models.put("valid-bpe-byte-fallback", sentencePiece(2, true, "identity"));
        models.put("unigram", sentencePiece(1, true, "identity"));
        models.put("nfkc-normalizer", sentencePiece(2, false, "nmt_nfkc"));
        byte[] valid = models.get("valid-bpe-byte-fallback");
        for (int cut : new int[] {1, 5, valid.length / 2, valid.length - 3}) {
            models.put("truncated-at-" + cut, Arrays.copyOf(valid, cut));
        }
        models.put("piece-without-text", new Proto().message(1, new Proto().fixed32(2, 0f)).bytes());
        models.put("unknown-piece-type", new Proto().message(1, piece("a", 0, 9)).message(2, new Proto().varint(3, 2)).bytes());
        models.put("wire-type-7", new byte[] {0x0f, 0x01});
        write(base.resolve("sentencePieceModel"), models);
    }

    private static void write(Path dir, Map<String, byte[]> seeds) throws IOException {
        Files.createDirectories(dir);
        for (Map.Entry<String, byte[]> e : seeds.entrySet()) {
            Files.write(dir.resolve(e.getKey()), e.getValue());
        }
    }

    private static final String LLAMA3_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
            + "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    /** A byte-level BPE tokenizer.json as Llama 3's: the 256 byte characters, a few merges, one special token. */
    private static ObjectNode byteLevelTokenizer(ObjectMapper json) {
        ObjectNode root = json.createObjectNode();
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        ObjectNode vocab = model.putObject("vocab");
        for (int b = 0; b < 256; b++) {
            vocab.put(String.valueOf(ByteLevelAlphabet.charOf(b)), b);
        }
        vocab.put("\u0120w", 256);
        vocab.put("or", 257);
        vocab.put("\u0120wor", 258);
        vocab.put("ld", 259);
        ArrayNode merges = model.putArray("merges");
        merges.add("\u0120 w").add("o r").add("\u0120w or").add("l d");
        root.putArray("added_tokens").addObject().put("id", 260).put("content", "<|begin_of_text|>").put("special", true);
        ObjectNode pre = root.putObject("pre_tokenizer");
        pre.put("type", "Sequence");
        ArrayNode pres = pre.putArray("pretokenizers");
        pres.addObject().put("type", "Split").putObject("pattern").put("Regex", LLAMA3_PATTERN);
        pres.addObject().put("type", "ByteLevel");
        root.putObject("decoder").put("type", "ByteLevel");
        ObjectNode post = root.putObject("post_processor");
        post.put("type", "TemplateProcessing");
        ArrayNode single = post.putArray("single");
        single.addObject().putObject("SpecialToken").put("id", "<|begin_of_text|>");
        single.addObject().putObject("Sequence").put("id", "A");
        return root;
    }

    /** A SentencePiece-style tokenizer.json as Llama 2's: ▁ for spaces, an unknown token instead of byte fallback. */
    private static ObjectNode metaspaceTokenizer(ObjectMapper json) {
        ObjectNode root = json.createObjectNode();
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        model.put("unk_token", "<unk>");
        ObjectNode vocab = model.putObject("vocab");
        String[] tokens = {"<unk>", "<s>", "</s>", "\u2581", "a", "b", "\u2581a", "ab", "\u2581ab"};
        for (int i = 0; i < tokens.length; i++) {
            vocab.put(tokens[i], i);
        }
        model.putArray("merges").add("\u2581 a").add("a b").add("\u2581a b");
        ArrayNode added = root.putArray("added_tokens");
        for (int i = 0; i < 3; i++) {
            added.addObject().put("id", i).put("content", tokens[i]).put("special", true);
        }
        root.putObject("pre_tokenizer").put("type", "Metaspace").put("replacement", "\u2581").put("prepend_scheme", "first");
        root.putObject("decoder").put("type", "Metaspace");
        return root;
    }

    /** A ModelProto: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte pieces when asked, a few merged pieces. */
    private static byte[] sentencePiece(int modelType, boolean bytePieces, String normalizer) {
        Proto p = new Proto();
        p.message(1, piece("<unk>", 0, 2)).message(1, piece("<s>", 0, 3)).message(1, piece("</s>", 0, 3));
        if (bytePieces) {
            for (int b = 0; b < 256; b++) {
                p.message(1, piece(String.format("<0x%02X>", b), 0, 6));
            }
        }
        p.message(1, piece("\u2581", -1, 1)).message(1, piece("a", -2, 1)).message(1, piece("\u2581a", -3, 1));
        p.message(2, new Proto().varint(3, modelType).varint(35, bytePieces ? 1 : 0).varint(40, 0).varint(41, 1).varint(42, 2));
        p.message(3, new Proto().string(1, normalizer).varint(3, 1).varint(4, 0).varint(5, 1));
        return p.bytes();
    }

    private static Proto piece(String text, float score, int type) {
        return new Proto().string(1, text).fixed32(2, score).varint(3, type);
    }

    /** A minimal protobuf writer. */
    private static final class Proto {
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();

        Proto varint(int field, long value) {
            writeVarint((long) field << 3);
            writeVarint(value);
            return this;
        }

        Proto fixed32(int field, float value) {
            writeVarint((long) field << 3 | 5);
            int bits = Float.floatToIntBits(value);
            for (int i = 0; i < 4; i++) {
                out.write(bits >>> (8 * i));
            }
            return this;
        }

        Proto string(int field, String s) {
            return bytes(field, s.getBytes(StandardCharsets.UTF_8));
        }

        Proto message(int field, Proto m) {
            return bytes(field, m.bytes());
        }

        private Proto bytes(int field, byte[] b) {
            writeVarint((long) field << 3 | 2);
            writeVarint(b.length);
            out.writeBytes(b);
            return this;
        }

        byte[] bytes() {
            return out.toByteArray();
        }

        private void writeVarint(long v) {
            while ((v & ~0x7FL) != 0) {
                out.write((int) (v & 0x7F) | 0x80);
                v >>>= 7;
            }
            out.write((int) v);
        }
    }
}
