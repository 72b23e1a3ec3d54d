package dev.nibble.runtime.tokenizer;

import dev.nibble.testing.TestData;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.formats.vocab.Vocabulary;
import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.TestInstance;

/**
 * Llama 2, Mistral and Llama 3 tokenizers built from their real tokenizer.json files against the reference ids in
 * test-data/tokenizers/reference-ids.json (34 texts each: encode with and without BOS, decode, streaming decode).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ReferenceIdsTest {

    private static final List<String> NAMES = List.of("llama2", "mistral", "llama3");

    private final Map<String, Tokenizer> tokenizers = new LinkedHashMap<>();
    private JsonNode reference;
    private List<String> texts;

    @BeforeAll
    void loadOnce() throws IOException {
        reference = new ObjectMapper().readTree(TestData.resolve("tokenizers/reference-ids.json").toFile());
        texts = new ArrayList<>();
        reference.path("texts").forEach(t -> texts.add(t.asText()));
        for (String name : NAMES) {
            tokenizers.put(name, TestTokenizers.get(name));
        }
    }

    @TestFactory
    Stream<DynamicTest> encodingWithSpecialTokensMatchesReference() {
        return cases((name, i) -> {
            Tokenizer tok = tokenizers.get(name);
            // The reference's Llama 3 tokenizer.json has no BOS template, so its "with special tokens" ids start
            // without BOS; the Llama-style ones add <s>.
            boolean referenceAddsBos = !name.equals("llama3");
            assertArrayEquals(ids(name, "with_special_tokens", i), tok.encode(texts.get(i), referenceAddsBos, true));
        });
    }

    @TestFactory
    Stream<DynamicTest> encodingWithoutSpecialTokensMatchesReference() {
        return cases((name, i) -> assertArrayEquals(ids(name, "without_special_tokens", i),
                tokenizers.get(name).encode(texts.get(i), false, true)));
    }

    @TestFactory
    Stream<DynamicTest> decodingMatchesReference() {
        return cases((name, i) -> assertEquals(reference.path(name).path("decoded").get(i).asText(),
                tokenizers.get(name).decode(ids(name, "without_special_tokens", i))));
    }

    @TestFactory
    Stream<DynamicTest> streamingDecodeOneIdAtATimeEqualsBatchDecode() {
        return cases((name, i) -> {
            Tokenizer tok = tokenizers.get(name);
            int[] ids = ids(name, "with_special_tokens", i);
            StreamingDecoder d = tok.streamingDecoder(false);
            StringBuilder streamed = new StringBuilder();
            for (int id : ids) {
                String part = d.next(id);
                assertTrue(part.chars().noneMatch(c -> c == '\uFFFD'), "incomplete character emitted: " + part);
                streamed.append(part);
            }
            streamed.append(d.finish());
            assertEquals(tok.decode(ids), streamed.toString());
        });
    }

    @Test
    void llama3ChatRenderingEncodesToReferenceIds() {
        JsonNode chat = reference.path("llama3_chat");
        int[] expected = toInts(chat.path("ids"));
        assertArrayEquals(expected, tokenizers.get("llama3").encode(chat.path("text").asText(), false, true));
        assertEquals(chat.path("text").asText(), tokenizers.get("llama3").decode(expected));
    }

    @Test
    void llama3AddsBeginOfTextByDefaultAsLlamaCppDoes() {
        Vocabulary v = tokenizers.get("llama3").vocabulary();
        assertEquals(128000, v.bosId());
        assertEquals(128001, v.eosId());
        assertTrue(v.addBos());
        assertArrayEquals(new int[] {128000, 9906, 1917}, tokenizers.get("llama3").encode("Hello world", v.addBos(), false));
    }

    @Test
    void llama3TakesAPieceThatIsAWholeTokenEvenWhereMergesWouldSplitIt() {
        // Llama 3's tokenizer.json sets ignore_merges. By merge ranks alone " việc" would end as
        // [3355, 26298, 66] and "mektedir" as [74853, 6702, 404], but both are single tokens.
        Tokenizer llama3 = tokenizers.get("llama3");
        assertArrayEquals(new int[] {100769}, llama3.encode(" việc", false, false));
        assertArrayEquals(new int[] {102909}, llama3.encode("mektedir", false, false));
        assertArrayEquals(new int[] {101309, 100827}, llama3.encode(" điều hợp", false, false));
    }

    @Test
    void specialTokenTextIsPlainTextUnlessAskedToParse() {
        Tokenizer llama3 = tokenizers.get("llama3");
        int[] parsed = llama3.encode("<|eot_id|>", false, true);
        int[] literal = llama3.encode("<|eot_id|>", false, false);
        assertArrayEquals(new int[] {128009}, parsed);
        assertTrue(literal.length > 1);
        for (int id : literal) {
            assertTrue(id < 128000, "control token " + id + " from plain text");
        }
        assertEquals("<|eot_id|>", llama3.decode(literal));
        int[] llama2Literal = tokenizers.get("llama2").encode("<s>", false, false);
        assertTrue(llama2Literal.length > 1 && llama2Literal[0] != 1);
        assertEquals("<s>", tokenizers.get("llama2").decode(llama2Literal));
    }

    private int[] ids(String name, String kind, int i) {
        return toInts(reference.path(name).path(kind).get(i));
    }

    private static int[] toInts(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = array.get(i).asInt();
        }
        return out;
    }

    private interface Case {
        void check(String name, int index) throws Exception;
    }

    private Stream<DynamicTest> cases(Case c) {
        List<DynamicTest> tests = new ArrayList<>();
        for (String name : NAMES) {
            for (int i = 0; i < texts.size(); i++) {
                int index = i;
                String shown = texts.get(i).length() > 30 ? texts.get(i).substring(0, 30) + "…" : texts.get(i);
                tests.add(DynamicTest.dynamicTest(name + " #" + i + " " + shown.replace("\n", "\\n"), () -> c.check(name, index)));
            }
        }
        return tests.stream();
    }
}
