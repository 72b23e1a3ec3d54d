package dev.nibble.runtime.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ConversationFileTest {

    @TempDir
    Path dir;

    @Test
    void writtenConversationReadsBackTheSame() throws IOException {
        List<ChatMessage> messages = List.of(ChatMessage.system("Be kind.\n"), ChatMessage.user("ünï \"quoted\" </s>"),
                ChatMessage.assistant(""), new ChatMessage("tool", "{\"x\": 1}"));
        Path file = dir.resolve("c.json");
        ConversationFile.write(file, messages);
        assertEquals(messages, ConversationFile.read(file));
        ConversationFile.write(file, messages.subList(0, 1));
        assertEquals(messages.subList(0, 1), ConversationFile.read(file), "an existing file is replaced");
    }

    @Test
    void messagesObjectIsReadToo() throws IOException {
        Path file = dir.resolve("m.json");
        Files.writeString(file, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\", \"name\": \"ignored\"}]}");
        assertEquals(List.of(ChatMessage.user("hi")), ConversationFile.read(file));
    }

    @Test
    void badFilesNameTheFileAndTheMessage() throws IOException {
        assertProblem("[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\"}]",
                ": message 2: needs a \"content\" string");
        assertProblem("[{\"role\": 3, \"content\": \"a\"}]", ": message 1: needs a \"role\" string");
        assertProblem("[\"hi\"]", ": message 1: is not an object");
        assertProblem("{\"msgs\": []}", ": conversation: expected a JSON array of");
        // The input ends at byte 17, where JSON wanted more.
        assertProblem("[{\"role\": \"user\",", ": conversation at byte 17: not valid JSON");
    }

    private void assertProblem(String json, String expected) throws IOException {
        Path file = dir.resolve("bad.json");
        Files.writeString(file, json);
        FormatException e = assertThrows(FormatException.class, () -> ConversationFile.read(file));
        assertEquals(file + expected, e.getMessage().substring(0, (file + expected).length()), e.getMessage());
    }
}
