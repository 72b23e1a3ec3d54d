package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.formats.gguf.GgufMetadata;
import dev.nibble.formats.gguf.GgufWriter;
import dev.nibble.formats.vocab.HuggingFaceVocabulary;
import dev.nibble.formats.vocab.VocabularyGguf;
import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code nibble tokenize} end to end on the tiny model's and Llama 2's real tokenizers. */
class TokenizeCommandTest {

    @TempDir
    Path tmp;

    private static String tiny() {
        return CliRun.testData().resolve("tiny-llama/safetensors").toString();
    }

    private static String llama2() {
        return CliRun.testData().resolve("tokenizers/llama2").toString();
    }

    @Test
    void printsIdsWithBosByDefault() {
        // Ids and pieces from the tiny model's refs.json ("jury" prompt).
        CliRun r = CliRun.of("tokenize", "-m", tiny(), "The jury said");
        assertEquals(0, r.exitCode(), r.err());
        assertEquals("1 337 502 1148 555\n", r.out());
        assertEquals("337 502 1148 555\n", CliRun.of("tokenize", "-m", tiny(), "--no-bos", "The jury said").out());
    }

    @Test
    void piecesAndJsonShowTheVocabularyText() throws Exception {
        assertEquals("1\t\"<s>\"\n337\t\"▁The\"\n502\t\"▁j\"\n1148\t\"ury\"\n555\t\"▁said\"\n",
                CliRun.of("tokenize", "-m", tiny(), "--pieces", "The jury said").out());
        JsonNode json = new ObjectMapper().readTree(CliRun.of("tokenize", "-m", tiny(), "--json", "--pieces", "The jury said").out());
        assertEquals("[1,337,502,1148,555]", json.path("ids").toString());
        assertEquals("[\"<s>\",\"▁The\",\"▁j\",\"ury\",\"▁said\"]", json.path("pieces").toString());
        assertTrue(new ObjectMapper().readTree(CliRun.of("tokenize", "-m", tiny(), "--json", "x").out()).path("pieces").isMissingNode());
    }

    @Test
    void specialTokenStringsAreParsedOnlyWithSpecial() {
        // refs.json "chat" prompt: <s>[INST] is <s>, then "▁", "<0x5B>", "I", "N", "S", "T", "<0x5D>".
        assertEquals("1 1973 94 2001 2021 2004 1999 96\n", CliRun.of("tokenize", "-m", tiny(), "--no-bos", "--special", "<s>[INST]").out());
        assertTrue(!CliRun.of("tokenize", "-m", tiny(), "--no-bos", "<s>[INST]").out().startsWith("1 "));
    }

    @Test
    void readsTextFromFileAndStandardInput() throws Exception {
        Path file = tmp.resolve("in.txt");
        Files.writeString(file, "The jury said");
        assertEquals("1 337 502 1148 555\n", CliRun.of("tokenize", "-m", tiny(), "-f", file.toString()).out());
        InputStream saved = System.in;
        try {
            System.setIn(new ByteArrayInputStream("The jury said".getBytes(StandardCharsets.UTF_8)));
            assertEquals("337 502 1148 555\n", CliRun.of("tokenize", "-m", tiny(), "--no-bos").out());
        } finally {
            System.setIn(saved);
        }
        CliRun both = CliRun.of("tokenize", "-m", tiny(), "-f", file.toString(), "text");
        assertEquals(2, both.exitCode());
    }

    @Test
    void detokenizeGoesBack() {
        assertEquals("The jury said\n", CliRun.of("tokenize", "-m", tiny(), "--detokenize", "1 337 502 1148 555").out());
        assertEquals("<s> The jury said\n", CliRun.of("tokenize", "-m", tiny(), "--detokenize", "--special", "[1, 337, 502, 1148, 555]").out());
        // Llama 2's reference ids for "🦙": the dummy prefix and four byte tokens.
        assertEquals("{\"text\":\"🦙\"}\n", CliRun.of("tokenize", "-m", llama2(), "--detokenize", "--json", "29871 243 162 169 156").out());
    }

    @Test
    void ggufVocabularyGivesTheSameIdsAsTheFolder() throws Exception {
        Path dir = CliRun.testData().resolve("tiny-llama/safetensors");
        GgufMetadata.Builder b = GgufMetadata.builder().putString("general.architecture", "llama");
        VocabularyGguf.write(HuggingFaceVocabulary.load(dir), b);
        Path gguf = tmp.resolve("tiny-vocab.gguf");
        try (GgufWriter w = GgufWriter.create(gguf, b.build(), List.of(), false)) {
            w.finish();
        }
        String text = "The jury said 3.14 — naïve 🦙";
        CliRun fromFolder = CliRun.of("tokenize", "-m", dir.toString(), text);
        assertEquals(0, fromFolder.exitCode(), fromFolder.err());
        assertEquals(fromFolder.out(), CliRun.of("tokenize", "-m", gguf.toString(), text).out());
    }

    @Test
    void errorsAreOneLineWithExitCodeOne() {
        CliRun missing = CliRun.of("tokenize", "-m", tmp.resolve("nope").toString(), "x");
        assertEquals(1, missing.exitCode());
        assertTrue(missing.err().startsWith("nibble: error: ") && missing.err().contains("nope"), missing.err());
        assertEquals(1, missing.err().lines().count());
        CliRun badId = CliRun.of("tokenize", "-m", tiny(), "--detokenize", "1 two");
        assertEquals(1, badId.exitCode());
        assertTrue(badId.err().contains("'two' is not a token id"), badId.err());
        CliRun outOfRange = CliRun.of("tokenize", "-m", tiny(), "--detokenize", "2048");
        assertEquals(1, outOfRange.exitCode());
        assertTrue(outOfRange.err().contains("2048"), outOfRange.err());
    }
}
