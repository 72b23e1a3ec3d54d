package dev.nibble.runtime.chat;

import dev.nibble.testing.TestData;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.formats.vocab.HuggingFaceVocabulary;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** The repository's test-data: tokenizers, templates and Hugging Face's renderings of them. */
final class ChatTestData {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static Tokenizer tiny;
    private static Tokenizer llama3;

    private ChatTestData() {
    }

    static Path root() {
        return TestData.root();
    }

    static JsonNode json(String relative) {
        try {
            return JSON.readTree(root().resolve(relative).toFile());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static synchronized Tokenizer tinyTokenizer() throws IOException {
        if (tiny == null) {
            tiny = Tokenizer.from(HuggingFaceVocabulary.load(root().resolve("tiny-llama/safetensors")));
        }
        return tiny;
    }

    static synchronized Tokenizer llama3Tokenizer() throws IOException {
        if (llama3 == null) {
            llama3 = Tokenizer.from(HuggingFaceVocabulary.load(root().resolve("tokenizers/llama3")));
        }
        return llama3;
    }

    /** The official Llama-2-chat template the tiny model carries. */
    static String tinyTemplate() {
        return json("tiny-llama/safetensors/tokenizer_config.json").get("chat_template").asText();
    }

    static String llama3Template() {
        return json("tokenizers/llama3/tokenizer_config.json").get("chat_template").asText();
    }

    static List<ChatMessage> messages(JsonNode array) {
        List<ChatMessage> out = new ArrayList<>();
        for (JsonNode m : array) {
            out.add(new ChatMessage(m.get("role").asText(), m.get("content").asText()));
        }
        return out;
    }

    static int[] ids(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = array.get(i).asInt();
        }
        return out;
    }
}
