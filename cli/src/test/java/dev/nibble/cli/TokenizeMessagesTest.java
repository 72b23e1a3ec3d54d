package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.cli.chat.ModelChatFormat;
import dev.nibble.formats.gguf.GgufMetadata;
import dev.nibble.formats.gguf.GgufWriter;
import dev.nibble.formats.vocab.HuggingFaceVocabulary;
import dev.nibble.formats.vocab.VocabularyGguf;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code nibble tokenize --messages}: the prompt a conversation becomes, against Hugging Face's references. */
class TokenizeMessagesTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    private Path messagesFile(JsonNode messages) throws IOException {
        Path file = tmp.resolve("messages.json");
        Files.writeString(file, JSON.writeValueAsString(messages));
        return file;
    }

    private static String ids(JsonNode array) {
        StringBuilder s = new StringBuilder();
        array.forEach(id -> s.append(s.isEmpty() ? "" : " ").append(id.asInt()));
        return s.toString();
    }

    @Test
    void tinyModelConversationPrintsHuggingFacesPromptAndIds() throws IOException {
        JsonNode ref = JSON.readTree(CliRun.testData().resolve("tiny-llama/refs.json").toFile()).get("chat_template");
        Path dir = CliRun.testData().resolve("tiny-llama/safetensors");
        CliRun run = CliRun.of("tokenize", "-m", dir.toString(), "--messages", messagesFile(ref.get("messages")).toString());
        assertEquals(0, run.exitCode(), run.err());
        assertEquals("--- prompt (template: the model's own) ---\n" + ref.get("text").asText() + "\n--- "
                + ref.get("ids").size() + " tokens ---\n" + ids(ref.get("ids")) + "\n", run.out());
    }

    @Test
    void llama3ConversationAsJsonMatchesHuggingFace() throws IOException {
        JsonNode ref = JSON.readTree(CliRun.testData().resolve("tokenizers/reference-ids.json").toFile()).get("llama3_chat");
        Path dir = CliRun.testData().resolve("tokenizers/llama3");
        Path file = messagesFile(JSON.createObjectNode().set("messages", ref.get("messages")));
        for (String template : List.of("auto", "llama3")) {
            CliRun run = CliRun.of("tokenize", "-m", dir.toString(), "--messages", file.toString(), "--add-generation-prompt",
                    "--json", "--template", template);
            assertEquals(0, run.exitCode(), run.err());
            JsonNode out = JSON.readTree(run.out());
            assertEquals(ref.get("text").asText(), out.get("prompt").asText());
            assertEquals(ref.get("ids"), out.get("ids"));
        }
    }

    @Test
    void ggufModelUsesTheTemplateStoredInIt() throws IOException {
        Path dir = CliRun.testData().resolve("tiny-llama/safetensors");
        JsonNode ref = JSON.readTree(CliRun.testData().resolve("tiny-llama/refs.json").toFile()).get("chat_template");
        GgufMetadata.Builder b = GgufMetadata.builder().putString("general.architecture", "llama")
                .putString(VocabularyGguf.CHAT_TEMPLATE, ref.get("template").asText());
        VocabularyGguf.write(HuggingFaceVocabulary.load(dir), b);
        Path gguf = tmp.resolve("tiny-vocab.gguf");
        try (GgufWriter w = GgufWriter.create(gguf, b.build(), List.of(), false)) {
            w.finish();
        }
        Path messages = messagesFile(ref.get("messages"));
        CliRun fromGguf = CliRun.of("tokenize", "-m", gguf.toString(), "--messages", messages.toString(), "--json");
        assertEquals(0, fromGguf.exitCode(), fromGguf.err());
        assertEquals(ref.get("ids"), JSON.readTree(fromGguf.out()).get("ids"));
        assertEquals("the model's own", JSON.readTree(fromGguf.out()).get("template").asText());
    }

    @Test
    void builtInTemplateCanBeChosen() throws IOException {
        Path dir = CliRun.testData().resolve("tiny-llama/safetensors");
        Path messages = messagesFile(JSON.readTree("[{\"role\": \"user\", \"content\": \"Hi there!\"}]"));
        CliRun run = CliRun.of("tokenize", "-m", dir.toString(), "--messages", messages.toString(), "--template", "chatml",
                "--add-generation-prompt", "--json");
        assertEquals(0, run.exitCode(), run.err());
        JsonNode out = JSON.readTree(run.out());
        assertEquals("built-in chatml", out.get("template").asText());
        assertEquals("<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n", out.get("prompt").asText());
        // The tiny vocabulary has no <|im_start|> token, so the markers are plain text there.
        assertTrue(out.get("ids").size() > 20, out.toString());
    }

    @Test
    void badConversationFileIsOneLineNamingTheMessage() throws IOException {
        Path dir = CliRun.testData().resolve("tiny-llama/safetensors");
        Path messages = messagesFile(JSON.readTree("[{\"role\": \"user\"}]"));
        CliRun run = CliRun.of("tokenize", "-m", dir.toString(), "--messages", messages.toString());
        assertEquals(1, run.exitCode());
        assertEquals("nibble: error: " + messages + ": message 1: needs a \"content\" string\n", run.err());
        CliRun twoUsers = CliRun.of("tokenize", "-m", dir.toString(), "--messages",
                messagesFile(JSON.readTree("[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]")).toString());
        assertEquals(1, twoUsers.exitCode());
        assertTrue(twoUsers.err().contains("the chat template refused the conversation: Conversation roles must alternate"),
                twoUsers.err());
        Path fine = messagesFile(JSON.readTree("[{\"role\": \"user\", \"content\": \"a\"}]"));
        CliRun unknown = CliRun.of("tokenize", "-m", dir.toString(), "--messages", fine.toString(), "--template", "vicuna");
        assertEquals(1, unknown.exitCode());
        assertTrue(unknown.err().contains("unknown chat template 'vicuna'; built-in ones are llama2, llama3, chatml"), unknown.err());
    }

    @Test
    void convertedModelCarriesItsTemplateToTheSameIds() throws IOException {
        JsonNode ref = JSON.readTree(CliRun.testData().resolve("tiny-llama/refs.json").toFile()).get("chat_template");
        Path gguf = tmp.resolve("tiny.gguf");
        CliRun convert = CliRun.of("convert", CliRun.testData().resolve("tiny-llama/safetensors").toString(), "-o",
                gguf.toString(), "--type", "q8_0");
        assertEquals(0, convert.exitCode(), convert.err());
        CliRun run = CliRun.of("tokenize", "-m", gguf.toString(), "--messages", messagesFile(ref.get("messages")).toString(), "--json");
        assertEquals(0, run.exitCode(), run.err());
        assertEquals("the model's own", JSON.readTree(run.out()).get("template").asText());
        assertEquals(ref.get("ids"), JSON.readTree(run.out()).get("ids"));
    }
}
