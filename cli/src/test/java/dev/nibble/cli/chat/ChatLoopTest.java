package dev.nibble.cli.chat;

import dev.nibble.testing.TestData;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.vocab.HuggingFaceVocabulary;
import dev.nibble.runtime.chat.BuiltInTemplate;
import dev.nibble.runtime.chat.ChatEngine;
import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.chat.ChatHistory;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.runtime.chat.ChatSession;
import dev.nibble.runtime.chat.ConversationFile;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.IntConsumer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A scripted chat through the loop that {@code nibble chat} runs on piped standard input, with a scripted model. */
class ChatLoopTest {

    private static Tokenizer tokenizer;

    @TempDir
    Path dir;

    @BeforeAll
    static void loadTokenizer() throws IOException {
        tokenizer = Tokenizer.from(HuggingFaceVocabulary.load(testData().resolve("tiny-llama/safetensors")));
    }

    @Test
    void scriptedSessionStreamsAnswersAndHandlesResetInterruptSaveAndLoad() throws IOException {
        ChatFormat format = ChatFormat.forModel(tokenizer, null, BuiltInTemplate.LLAMA2);
        Engine engine = new Engine(256);
        Sampler sampler = new Sampler();
        int eos = tokenizer.vocabulary().eosId();
        sampler.add(tokenizer.encode("The jury said so.", false, false));
        sampler.add(eos);
        sampler.add(tokenizer.encode("Hello to you.", false, false));
        sampler.add(eos);
        int[] counting = tokenizer.encode("one two three four five six seven eight nine", false, false);
        sampler.add(counting);
        ChatSession session = new ChatSession(format, engine, sampler, new ChatHistory("Be brief."), 0, 32);
        Path saved = dir.resolve("chat.json");
        String script = String.join("\n", "Who won?", "/reset", "Hello", "  ", "Count to nine", "/stats",
                "/save " + saved, "/system", "/load " + saved, "/bogus", "/quit", "never read") + "\n";
        StringWriter out = new StringWriter();
        ScriptedInput input = new ScriptedInput(script, new PrintWriter(out));
        ChatLoop loop = new ChatLoop(session, input, new PrintWriter(out, true), "");

        // Ctrl-C arrives after the third token of the counting answer, through the handler a SIGINT would run.
        int[] promptOfCount = format.encode(List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hello"),
                ChatMessage.assistant("Hello to you."), ChatMessage.user("Count to nine")), true);
        engine.afterAppend = size -> {
            if (size == promptOfCount.length + 3) {
                input.interruptHandler.run();
            }
        };
        loop.run();

        String[] lines = out.toString().split("\n", -1);
        assertEquals("The jury said so.", lines[0]);
        assertEquals("(conversation cleared)", lines[1]);
        assertEquals("Hello to you.", lines[2]);
        assertEquals(tokenizer.decode(java.util.Arrays.copyOf(counting, 3), true).strip(), lines[3].strip());
        assertEquals("(stopped)", lines[4]);
        assertTrue(lines[5].startsWith("context: "), lines[5]);
        assertTrue(lines[6].startsWith("last answer: prompt " + promptOfCount.length + " tokens"), lines[6]);
        assertTrue(lines[7].startsWith("session: 3 answers"), lines[7]);
        assertEquals("(saved 5 messages to " + saved + ")", lines[8]);
        assertEquals("(system prompt removed)", lines[9]);
        assertEquals("(loaded 5 messages)", lines[10]);
        assertEquals("(unknown command /bogus; /help lists them)", lines[11]);
        assertEquals("", lines[12]);
        assertEquals(13, lines.length);

        List<ChatMessage> expected = List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hello"),
                ChatMessage.assistant("Hello to you."), ChatMessage.user("Count to nine"), ChatMessage.assistant(lines[3]));
        assertEquals(expected, ConversationFile.read(saved));
        assertEquals(expected, session.history().messages(), "/load brought the saved conversation and its system prompt back");
        assertTrue(Files.readString(saved).contains("\"role\" : \"system\""), "saved as readable JSON");
    }

    @Test
    void badSaveAndLoadPathsAreOneLineEachAndTheChatGoesOn() throws IOException {
        ChatFormat format = ChatFormat.forModel(tokenizer, null, BuiltInTemplate.LLAMA2);
        Sampler sampler = new Sampler();
        int eos = tokenizer.vocabulary().eosId();
        sampler.add(tokenizer.encode("First answer.", false, false));
        sampler.add(eos);
        sampler.add(tokenizer.encode("Second answer.", false, false));
        sampler.add(eos);
        ChatSession session = new ChatSession(format, new Engine(256), sampler, new ChatHistory(null), 0, 32);
        byte[] modelBytes = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
        Path model = Files.write(dir.resolve("model.gguf"), modelBytes);
        Path folder = Files.createDirectory(dir.resolve("folder"));
        Path missing = dir.resolve("no/such/chat.json");
        String script = String.join("\n", "Hello", "/save " + missing, "/save " + folder, "/save " + model,
                "/load " + missing, "/load " + folder, "/load " + model, "/save a\u0000b", "Again") + "\n";
        StringWriter out = new StringWriter();
        new ChatLoop(session, new ScriptedInput(script, new PrintWriter(out)), new PrintWriter(out, true), "").run();

        List<String> lines = out.toString().lines().toList();
        assertEquals(9, lines.size(), out.toString());
        assertEquals("First answer.", lines.get(0));
        assertTrue(lines.get(1).startsWith("(") && lines.get(1).contains(missing.toString())
                && lines.get(1).contains("does not exist"), lines.get(1));
        assertTrue(lines.get(2).contains(folder + " is a folder, not a regular file"), lines.get(2));
        assertTrue(lines.get(3).contains(model + " exists and is not a conversation file"), lines.get(3));
        assertTrue(lines.get(4).contains(missing + " does not exist"), lines.get(4));
        assertTrue(lines.get(5).contains(folder + " is not a regular file"), lines.get(5));
        assertTrue(lines.get(6).contains(model.toString()), lines.get(6));
        assertTrue(lines.get(7).startsWith("(") && lines.get(7).contains("Nul character"), lines.get(7));
        assertEquals("Second answer.", lines.get(8), "the chat went on");
        assertEquals(4, session.history().messages().size(), "the conversation is kept");
        assertArrayEquals(modelBytes, Files.readAllBytes(model), "the model file is untouched");
        assertEquals(List.of(), List.of(folder.toFile().list()));
        assertEquals(List.of("folder", "model.gguf"), java.util.Arrays.stream(dir.toFile().list()).sorted().toList(),
                "no temporary file is left");
    }

    /** From a pipe: standard output holds exactly one answer line per message; "/..." is a message; notes go apart. */
    @Test
    void pipedChatWritesOnlyAnswersToStdoutAndSlashLinesAreMessages() throws IOException {
        ChatFormat format = ChatFormat.forModel(tokenizer, null, BuiltInTemplate.LLAMA2);
        Sampler sampler = new Sampler();
        int eos = tokenizer.vocabulary().eosId();
        sampler.add(tokenizer.encode("one two three four five six", false, false)); // cut at 3 tokens
        sampler.add(tokenizer.encode("Reset is a word.", false, false));
        sampler.add(eos);
        ChatSession session = new ChatSession(format, new Engine(256), sampler, new ChatHistory(null), 3, 32);
        StringWriter out = new StringWriter();
        StringWriter status = new StringWriter();
        new ChatLoop(session, new ScriptedInput("Count\n/reset\n", new PrintWriter(out)), new PrintWriter(out, true),
                new PrintWriter(status, true), false, "").run();
        List<String> lines = out.toString().lines().toList();
        assertEquals(2, lines.size(), out.toString());
        assertEquals(tokenizer.decode(java.util.Arrays.copyOf(tokenizer.encode("one two three four five six", false,
                false), 3)).strip(), lines.get(0).strip());
        assertTrue(status.toString().contains("(answer cut at the token limit)"), status.toString());
        assertEquals(4, session.history().messages().size(), "/reset was sent as a message, not run");
    }

    @Test
    void userIsToldOnceThatOldMessagesWereDropped() throws IOException {
        ChatFormat format = ChatFormat.forModel(tokenizer, null, BuiltInTemplate.LLAMA2);
        Sampler sampler = new Sampler();
        int eos = tokenizer.vocabulary().eosId();
        for (int i = 0; i < 6; i++) {
            sampler.add(tokenizer.encode("answer number " + i + " is here", false, false));
            sampler.add(eos);
        }
        ChatSession session = new ChatSession(format, new Engine(80), sampler, new ChatHistory("Be brief."), 0, 16);
        String script = "first question\nsecond question\nthird question\nfourth question\nfifth question\nsixth question\n";
        StringWriter out = new StringWriter();
        new ChatLoop(session, new ScriptedInput(script, new PrintWriter(out)), new PrintWriter(out, true), "").run();
        List<String> lines = out.toString().lines().toList();
        String note = "(older messages were dropped to fit the 80-token context; the system prompt stays)";
        assertEquals(1, lines.stream().filter(note::equals).count(), out.toString());
        assertEquals("answer number 5 is here", lines.getLast());
        assertEquals(ChatMessage.system("Be brief."), session.history().messages().getFirst());
        assertTrue(session.history().turnCount() < 12, "old turns are gone: " + session.history().turnCount());
    }

    @Test
    void realSigintReachesTheHandlerInsteadOfEndingTheProgram() throws Exception {
        CountDownLatch interrupted = new CountDownLatch(1);
        try (PlainLineSource source = new PlainLineSource(new ByteArrayInputStream(new byte[0]), new PrintWriter(new StringWriter()))) {
            source.onInterrupt(interrupted::countDown);
            Process kill = new ProcessBuilder("kill", "-INT", Long.toString(ProcessHandle.current().pid())).start();
            assertEquals(0, kill.waitFor());
            assertTrue(interrupted.await(10, TimeUnit.SECONDS), "the SIGINT handler ran");
        }
    }

    static Path testData() {
        return TestData.root();
    }

    /** Piped input whose interrupt handler the test can call. */
    private static final class ScriptedInput implements LineSource {
        private final PlainLineSource lines;
        Runnable interruptHandler;

        ScriptedInput(String text, PrintWriter out) {
            this.lines = new PlainLineSource(new ByteArrayInputStream(text.getBytes(StandardCharsets.UTF_8)), out);
        }

        @Override
        public String readLine(String prompt) throws IOException {
            return lines.readLine(prompt);
        }

        @Override
        public void onInterrupt(Runnable handler) {
            interruptHandler = handler;
        }

        @Override
        public void close() {
            lines.close();
        }
    }

    /** Keeps the ids its cache would hold; runs nothing. */
    private static final class Engine implements ChatEngine {
        private final List<Integer> cache = new ArrayList<>();
        private final int contextSize;
        IntConsumer afterAppend = n -> { };

        Engine(int contextSize) {
            this.contextSize = contextSize;
        }

        @Override
        public int contextSize() {
            return contextSize;
        }

        @Override
        public void truncate(int length) {
            cache.subList(length, cache.size()).clear();
        }

        @Override
        public float[] append(int[] tokens) {
            for (int t : tokens) {
                cache.add(t);
            }
            afterAppend.accept(cache.size());
            return new float[tokenizer.vocabulary().size()];
        }
    }

    /** Plays back ids given in advance. */
    private static final class Sampler implements dev.nibble.runtime.chat.TokenSampler {
        private final Deque<Integer> script = new ArrayDeque<>();

        void add(int... ids) {
            for (int id : ids) {
                script.add(id);
            }
        }

        @Override
        public int sample(float[] logits, int[] history, int length) {
            return script.remove();
        }
    }
}
