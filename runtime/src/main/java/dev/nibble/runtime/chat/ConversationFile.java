package dev.nibble.runtime.chat;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;

/**
 * A conversation as a JSON file: an array of {@code {"role": ..., "content": ...}} objects, the shape Hugging Face's
 * {@code apply_chat_template} and OpenAI-style APIs take ({@code {"messages": [...]}} is read too).
 */
public final class ConversationFile {

    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    private ConversationFile() {
    }

    /** Reads the messages of a conversation file. */
    public static List<ChatMessage> read(Path file) throws IOException {
        JsonNode root;
        try {
            root = JSON.readTree(Files.readAllBytes(file));
        } catch (JsonProcessingException e) {
            long offset = e.getLocation() == null ? -1 : e.getLocation().getByteOffset();
            throw new FormatException(file, "conversation", offset, "not valid JSON: " + e.getOriginalMessage());
        }
        JsonNode array = root != null && root.isObject() ? root.get("messages") : root;
        if (array == null || !array.isArray()) {
            throw new FormatException(file, "conversation", -1,
                    "expected a JSON array of {\"role\": ..., \"content\": ...} messages (or an object with \"messages\")");
        }
        List<ChatMessage> out = new ArrayList<>(array.size());
        for (int i = 0; i < array.size(); i++) {
            JsonNode m = array.get(i);
            String item = "message " + (i + 1);
            if (!m.isObject()) {
                throw new FormatException(file, item, -1, "is not an object");
            }
            JsonNode role = m.get("role");
            JsonNode content = m.get("content");
            if (role == null || !role.isTextual() || role.asText().isEmpty()) {
                throw new FormatException(file, item, -1, "needs a \"role\" string");
            }
            if (content == null || !content.isTextual()) {
                throw new FormatException(file, item, -1, "needs a \"content\" string");
            }
            out.add(new ChatMessage(role.asText(), content.asText()));
        }
        return out;
    }

    /** Writes the messages as a JSON array, replacing the file atomically. */
    public static void write(Path file, List<ChatMessage> messages) throws IOException {
        ArrayNode array = JSON.createArrayNode();
        for (ChatMessage m : messages) {
            array.addObject().put("role", m.role()).put("content", m.content());
        }
        Path absolute = file.toAbsolutePath();
        Path tmp = absolute.resolveSibling(absolute.getFileName() + ".tmp");
        Files.writeString(tmp, JSON.writeValueAsString(array) + "\n", StandardCharsets.UTF_8);
        Files.move(tmp, absolute, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
