package dev.nibble.runtime.chat;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import dev.nibble.formats.AtomicOutputFile;
import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A conversation as a JSON file: an array of {@code {"role": ..., "content": ...}} objects, the shape Hugging Face's
 * {@code apply_chat_template} and OpenAI-style APIs take ({@code {"messages": [...]}} is read too).
 */
public final class ConversationFile {

    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    /** Far beyond any conversation a context holds (40,000 messages of 1 KB are 40 MB); keeps the heap safe. */
    static final long MAX_BYTES = 256L << 20;

    private ConversationFile() {
    }

    /** Reads the messages of a conversation file. */
    public static List<ChatMessage> read(Path file) throws IOException {
        // A FIFO or device would block or never end; only a regular file of bounded size is read.
        if (!Files.isRegularFile(file)) {
            throw new IOException(file + (Files.exists(file) ? " is not a regular file" : " does not exist")
                    + "; give the path of a conversation file (JSON)");
        }
        long size = Files.size(file);
        if (size > MAX_BYTES) {
            throw new IOException(file + " is " + size + " bytes, more than the " + MAX_BYTES
                    + " bytes a conversation file may have; give a smaller file");
        }
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

    /**
     * Writes the messages as a JSON array, replacing the file atomically. An existing file is replaced only when it is
     * a regular file that holds JSON (a conversation saved earlier): never a model or any other file.
     */
    public static void write(Path file, List<ChatMessage> messages) throws IOException {
        ArrayNode array = JSON.createArrayNode();
        for (ChatMessage m : messages) {
            array.addObject().put("role", m.role()).put("content", m.content());
        }
        Path absolute = file.toAbsolutePath();
        if (Files.isRegularFile(absolute, LinkOption.NOFOLLOW_LINKS) && !looksLikeJson(absolute)) {
            throw new IOException(absolute + " exists and is not a conversation file (JSON), so it is left as it is;"
                    + " save to another file");
        }
        AtomicOutputFile.write(absolute, (JSON.writeValueAsString(array) + "\n").getBytes(StandardCharsets.UTF_8),
                true, List.of());
    }

    /** Whether the file is empty or its first non-blank byte opens a JSON array or object. */
    private static boolean looksLikeJson(Path file) throws IOException {
        byte[] head = new byte[4096];
        int n;
        try (InputStream in = Files.newInputStream(file, LinkOption.NOFOLLOW_LINKS)) {
            n = in.readNBytes(head, 0, head.length);
        }
        for (int i = 0; i < n; i++) {
            if (!Character.isWhitespace(head[i])) {
                return head[i] == '[' || head[i] == '{';
            }
        }
        return true;
    }
}
