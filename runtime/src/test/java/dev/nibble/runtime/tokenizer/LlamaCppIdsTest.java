package dev.nibble.runtime.tokenizer;

import dev.nibble.testing.TestData;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.TestInstance;

/**
 * The ids llama.cpp's llama-tokenize gave for the reference texts and nibble's extra cases
 * (test-data/tokenizers/llama-cpp-ids.json), with special-token parsing on and off.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class LlamaCppIdsTest {

    private JsonNode reference;
    private final List<String> texts = new ArrayList<>();

    @BeforeAll
    void load() throws IOException {
        reference = new ObjectMapper().readTree(TestData.resolve("tokenizers/llama-cpp-ids.json").toFile());
        reference.path("texts").forEach(t -> texts.add(t.asText()));
    }

    @TestFactory
    Stream<DynamicTest> idsMatchLlamaCpp() {
        List<DynamicTest> tests = new ArrayList<>();
        for (String name : List.of("tiny", "llama2", "mistral", "llama3")) {
            for (int i = 0; i < texts.size(); i++) {
                int index = i;
                String text = texts.get(i);
                tests.add(DynamicTest.dynamicTest(name + " #" + i, () -> {
                    Tokenizer t = TestTokenizers.get(name);
                    JsonNode r = reference.path(name);
                    assertEquals(r.path("add_bos").asBoolean(), t.vocabulary().addBos());
                    assertArrayEquals(ints(r.path("parse_special").get(index)), t.encode(text, t.vocabulary().addBos(), true),
                            () -> "parsing special tokens: " + text);
                    assertArrayEquals(ints(r.path("no_parse_special").get(index)), t.encode(text, t.vocabulary().addBos(), false),
                            () -> "special tokens as text: " + text);
                }));
            }
        }
        return tests.stream();
    }

    private static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = array.get(i).asInt();
        }
        return out;
    }
}
