package dev.nibble.runtime.tokenizer;

import dev.nibble.testing.TestData;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.formats.vocab.HuggingFaceVocabulary;
import dev.nibble.formats.vocab.Vocabulary;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/** The tiny model's tokenizer.model and tokenizer.json give one tokenizer, and it reproduces the ids in refs.json. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class TinyLlamaTokenizerTest {

    private Path dir;
    private JsonNode refs;
    private Tokenizer fromModel;
    private Tokenizer fromJson;

    @BeforeAll
    void load() throws IOException {
        dir = TestData.resolve("tiny-llama/safetensors");
        refs = new ObjectMapper().readTree(TestData.resolve("tiny-llama/refs.json").toFile());
        fromModel = Tokenizer.from(HuggingFaceVocabulary.loadSentencePiece(dir));
        fromJson = Tokenizer.from(HuggingFaceVocabulary.loadTokenizerJson(dir));
    }

    @Test
    void bothSourcesDescribeTheSameVocabulary() {
        Vocabulary a = fromModel.vocabulary();
        Vocabulary b = fromJson.vocabulary();
        assertEquals(a.tokens(), b.tokens());
        assertArrayEquals(a.tokenTypes(), b.tokenTypes());
        assertEquals(List.of(a.bosId(), a.eosId(), a.unkId(), a.padId()), List.of(b.bosId(), b.eosId(), b.unkId(), b.padId()));
        assertEquals(List.of(1, 2, 0, -1), List.of(a.bosId(), a.eosId(), a.unkId(), a.padId()));
        assertEquals(List.of(true, false, true), List.of(a.addBos(), a.addEos(), a.addSpacePrefix()));
        assertEquals(List.of(b.addBos(), b.addEos(), b.addSpacePrefix()), List.of(a.addBos(), a.addEos(), a.addSpacePrefix()));
    }

    @Test
    void tokenizerModelAndTokenizerJsonGiveIdenticalIds() throws IOException {
        List<String> texts = new ArrayList<>();
        new ObjectMapper().readTree(TestData.resolve("tokenizers/reference-ids.json").toFile())
                .path("texts").forEach(t -> texts.add(t.asText()));
        texts.addAll(ExtraTexts.ALL);
        texts.add(Files.readString(TestData.resolve("tiny-llama/val.txt")).substring(0, 20_000));
        for (String text : texts) {
            for (boolean special : new boolean[] {false, true}) {
                int[] a = fromModel.encode(text, true, special);
                assertArrayEquals(a, fromJson.encode(text, true, special), () -> "text: " + text);
                assertEquals(fromModel.decode(a), fromJson.decode(a));
            }
        }
    }

    @Test
    void promptsEncodeToRefsIds() {
        for (String name : List.of("jury", "morning", "val_excerpt")) {
            JsonNode p = refs.path("prompts").path(name);
            assertArrayEquals(ints(p.path("ids")), fromModel.encode(p.path("text").asText(), true, true), name);
        }
        // The chat texts carry <s> and </s> literally; they are matched as special tokens.
        JsonNode chat = refs.path("prompts").path("chat");
        assertArrayEquals(ints(chat.path("ids")), fromModel.encode(chat.path("text").asText(), false, true));
        JsonNode template = refs.path("chat_template");
        assertArrayEquals(ints(template.path("ids")), fromJson.encode(template.path("text").asText(), false, true));
    }

    @Test
    void leadingWhitespaceFollowsSentencePieceNotTransformers5() {
        for (JsonNode edge : refs.path("tokenizer").path("edge_cases_hf_vs_sentencepiece")) {
            int[] expected = ints(edge.path("sentencepiece_ids"));
            assertArrayEquals(expected, fromModel.encode(edge.path("text").asText(), false, false));
            assertEquals(edge.path("sentencepiece_decode").asText(), fromModel.decode(expected));
        }
    }

    @Test
    void validationTextTokenizesToThePerplexityTokenCount() throws IOException {
        JsonNode ppl = refs.path("perplexity_default");
        int[] ids = fromModel.encode(Files.readString(TestData.resolve("tiny-llama/val.txt")), false, false);
        assertEquals(ppl.path("text_tokens").asInt(), ids.length);
        int[] first = ints(ppl.path("first_ids"));
        assertArrayEquals(first, Arrays.copyOf(ids, first.length));
    }

    @Test
    void greedyContinuationsDecodeToRefsText() {
        for (String name : List.of("jury", "morning", "val_excerpt", "chat")) {
            JsonNode g = refs.path("greedy").path(name);
            int[] ids = ints(g.path("generate_new_ids"));
            assertEquals(g.path("generate_text").asText(), fromModel.decode(ids), name);
            StreamingDecoder d = fromJson.streamingDecoder(true);
            StringBuilder sb = new StringBuilder();
            for (int id : ids) {
                sb.append(d.next(id));
            }
            assertEquals(g.path("generate_text_skip_special").asText(), sb.append(d.finish()).toString(), name);
        }
    }

    private static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = array.get(i).asInt();
        }
        return out;
    }
}
