package dev.nibble.runtime.chat;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
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
    void saveReplacesOnlyAnEarlierConversationNeverAModelOrASpecialFile() throws Exception {
        List<ChatMessage> messages = List.of(ChatMessage.user("hi"));
        Path model = Files.write(dir.resolve("model.gguf"), new byte[] {'G', 'G', 'U', 'F', 3, 0, 0, 0});
        IOException e = assertThrows(IOException.class, () -> ConversationFile.write(model, messages));
        assertTrue(e.getMessage().contains(model + " exists and is not a conversation file"), e.getMessage());
        assertArrayEquals(new byte[] {'G', 'G', 'U', 'F', 3, 0, 0, 0}, Files.readAllBytes(model));

        Path folder = Files.createDirectory(dir.resolve("folder"));
        e = assertThrows(IOException.class, () -> ConversationFile.write(folder, messages));
        assertTrue(e.getMessage().contains(folder + " is a folder, not a regular file"), e.getMessage());
        Path fifo = dir.resolve("fifo");
        assertEquals(0, new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor());
        assertThrows(IOException.class, () -> ConversationFile.write(fifo, messages));
        assertEquals(List.of("fifo", "folder", "model.gguf"), sortedNames(), "no temporary file is left");
    }

    @Test
    void aLinkAtTheOldTemporaryNameIsNotFollowed() throws IOException {
        Path victim = Files.writeString(dir.resolve("victim"), "precious");
        Files.createSymbolicLink(dir.resolve("chat.json.tmp"), victim);
        ConversationFile.write(dir.resolve("chat.json"), List.of(ChatMessage.user("hi")));
        assertEquals("precious", Files.readString(victim));
        assertEquals(List.of(ChatMessage.user("hi")), ConversationFile.read(dir.resolve("chat.json")));
    }

    @Test
    void readRefusesWhatIsNotARegularFileInsteadOfBlocking() throws Exception {
        Path fifo = dir.resolve("fifo");
        assertEquals(0, new ProcessBuilder("mkfifo", fifo.toString()).start().waitFor());
        // Opening a FIFO for reading blocks until a writer comes: the check must happen before any open.
        IOException e = assertTimeoutPreemptively(Duration.ofSeconds(10),
                () -> assertThrows(IOException.class, () -> ConversationFile.read(fifo)));
        assertTrue(e.getMessage().contains(fifo + " is not a regular file"), e.getMessage());
        e = assertThrows(IOException.class, () -> ConversationFile.read(dir.resolve("none.json")));
        assertTrue(e.getMessage().contains("none.json does not exist"), e.getMessage());
    }

    private List<String> sortedNames() {
        String[] names = dir.toFile().list();
        Arrays.sort(names);
        return List.of(names);
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
