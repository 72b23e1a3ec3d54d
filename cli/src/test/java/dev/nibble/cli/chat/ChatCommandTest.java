package dev.nibble.cli.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** {@code nibble chat} and {@code generate --chat} on the tiny Q8_0 model in test-data, driven through stdin. */
class ChatCommandTest {

    private static final String SYSTEM = "You are a helpful assistant.";

    @TempDir
    Path tmp;

    private static String model() {
        Path p = ChatLoopTest.testData().resolve("tiny-llama.q8_0.gguf");
        assertTrue(Files.isRegularFile(p), p + " is missing");
        return p.toString();
    }

    /** Runs the command line with {@code stdin} as standard input; returns {exit code, out, err}. */
    private static String[] run(String stdin, String... args) {
        InputStream saved = System.in;
        System.setIn(new ByteArrayInputStream(stdin.getBytes(StandardCharsets.UTF_8)));
        try {
            StringWriter out = new StringWriter();
            StringWriter err = new StringWriter();
            CommandLine cl = dev.nibble.cli.NibbleAccess.commandLine();
            cl.setOut(new PrintWriter(out, true));
            cl.setErr(new PrintWriter(err, true));
            int code = cl.execute(args);
            return new String[] {Integer.toString(code), out.toString(), err.toString()};
        } finally {
            System.setIn(saved);
        }
    }

    @Test
    void secondAnswerFromTheKeptCacheEqualsAFreshRunOfTheWholeConversation() throws IOException {
        // The tiny model was not trained to chat; in ChatML (plain text to its vocabulary) it at least writes on.
        // piped: stdout holds the two answers, stderr what /stats would say after each
        String[] chat = run("Tell me about the jury.\nAnd the election?\n",
                "chat", "-m", model(), "--temperature", "0", "-n", "16", "--template", "chatml");
        assertEquals("0", chat[0], chat[2]);
        assertTrue(chat[2].contains("template: built-in chatml"), chat[2]);
        List<String> lines = chat[1].lines().toList();
        String first = lines.get(0);
        assertEquals(2, lines.size(), chat[1]);
        String second = lines.get(1);
        assertTrue(first.length() > 20, chat[1]);
        Matcher stats = Pattern.compile("last answer: prompt (\\d+) tokens \\((\\d+) reused, (\\d+) run\\), (\\d+) generated")
                .matcher(chat[2]);
        assertTrue(stats.find(), chat[2]);
        int firstPrompt = Integer.parseInt(stats.group(1));
        assertEquals("0", stats.group(2));
        assertTrue(stats.find(), chat[2]);
        int secondPrompt = Integer.parseInt(stats.group(1));
        int reused = Integer.parseInt(stats.group(2));
        assertTrue(reused >= firstPrompt, "the whole first prompt stayed in the cache: " + stats.group());
        assertEquals(secondPrompt, reused + Integer.parseInt(stats.group(3)));

        // generate --chat gives the first answer; a fresh run over the whole conversation gives the second.
        String[] one = run("", "generate", "-m", model(), "--temperature", "0", "-n", "16", "-p", "Tell me about the jury.",
                "--chat", "--template", "chatml");
        assertEquals("0", one[0], one[2]);
        assertEquals(first, one[1].strip());
        Path conversation = tmp.resolve("c.json");
        Files.writeString(conversation, new ObjectMapper().writeValueAsString(List.of(
                Map.of("role", "user", "content", "Tell me about the jury."), Map.of("role", "assistant", "content", first),
                Map.of("role", "user", "content", "And the election?"))));
        String[] whole = run("", "generate", "-m", model(), "--temperature", "0", "-n", "16", "--messages",
                conversation.toString(), "--template", "chatml");
        assertEquals("0", whole[0], whole[2]);
        assertEquals(second, whole[1].strip());
        assertTrue(whole[2].contains("template: built-in chatml; prompt " + secondPrompt + " tokens"), whole[2]);
    }

    @Test
    void modelsOwnTemplateEndsTheAnswerAtTheEndOfTurn() {
        String[] chat = run("Who won the election?\n", "chat", "-m", model(), "--temperature", "0", "-n", "64");
        assertEquals("0", chat[0], chat[2]);
        assertTrue(chat[2].contains("template: the model's own"), chat[2]);
        String[] lines = chat[1].split("\n");
        assertEquals(1, lines.length, "one answer line, ended by the model before the limit: " + chat[1]);
        assertTrue(!chat[1].contains("[INST]") && !chat[1].contains("</s>"), chat[1]);
    }

    @Test
    void generateNeedsExactlyOneOfPromptAndMessages() {
        String[] neither = run("", "generate", "-m", model(), "--chat");
        assertEquals("2", neither[0]);
        assertTrue(neither[2].contains("give -p PROMPT or --messages FILE (one of them)"), neither[2]);
        String[] stop = run("", "generate", "-m", model(), "--chat", "-p", "Hi", "--stop", "x");
        assertEquals("2", stop[0]);
        assertTrue(stop[2].contains("--stop is for plain generation"), stop[2]);
    }
}
