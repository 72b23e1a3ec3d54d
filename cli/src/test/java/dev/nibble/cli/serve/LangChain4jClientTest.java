package dev.nibble.cli.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.langchain4j.data.message.AiMessage;
import dev.langchain4j.data.message.ChatMessage;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.StreamingChatModel;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.openai.OpenAiChatModel;
import dev.langchain4j.model.openai.OpenAiStreamingChatModel;
import dev.langchain4j.model.output.FinishReason;
import dev.nibble.cli.NibbleAccess;
import dev.nibble.testing.TestData;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real OpenAI client, LangChain4j's {@code langchain4j-open-ai}, against {@code nibble serve} on a free loopback
 * port: {@link OpenAiChatModel} (blocking) and {@link OpenAiStreamingChatModel} (server-sent events) get, for greedy
 * decoding, exactly the answer {@code nibble generate --messages} (the {@code --chat} path) prints for the same
 * conversation, with its token counts and finish reason; an API key is sent as the server wants it.
 */
class LangChain4jClientTest {

    private static final String KEY = "lc4j-test-key";
    private static final int MAX_TOKENS = 24;
    private static final ObjectMapper JSON = new ObjectMapper();

    /** The conversations asked, each with what {@code generate} answers it. */
    private static final List<List<ChatMessage>> CONVERSATIONS = List.of(
            List.of(UserMessage.from("Tell me a story.")),
            List.of(SystemMessage.from("You are a terse assistant."), UserMessage.from("Why is the sky blue?")),
            List.of(UserMessage.from("Hi"), AiMessage.from("Hello! How can I help?"),
                    UserMessage.from("What is the capital of France?")));

    /** What {@code generate} printed: the answer, its token counts and why it stopped. */
    private record Expected(String text, int promptTokens, int answerTokens, String stop) {
    }

    @TempDir
    static Path dir;

    private static final Map<List<ChatMessage>, Expected> expected = new LinkedHashMap<>();
    private static ServeCommand command;
    private static CompletableFuture<Integer> exit;
    private static StringWriter serverErr;
    private static String baseUrl;

    private static Path model() {
        return TestData.resolve("tiny-llama.q8_0.gguf");
    }

    @BeforeAll
    static void start() throws Exception {
        for (List<ChatMessage> conversation : CONVERSATIONS) {
            expected.put(conversation, generate(conversation));
        }
        var cl = NibbleAccess.commandLine();
        serverErr = new StringWriter();
        cl.setOut(new PrintWriter(new StringWriter(), true));
        cl.setErr(new PrintWriter(serverErr, true));
        command = cl.getSubcommands().get("serve").getCommand();
        String[] args = {"serve", "-m", model().toString(), "--port", "0", "--parallel", "2", "--api-key", KEY};
        exit = new CompletableFuture<>();
        Thread.ofPlatform().daemon().start(() -> exit.complete(cl.execute(args)));
        Pattern listening = Pattern.compile("listening on (http://\\S+) ");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (baseUrl == null && System.nanoTime() < deadline && !exit.isDone()) {
            Matcher m = listening.matcher(serverErr.toString());
            if (m.find()) {
                baseUrl = m.group(1) + "/v1";
            }
            Thread.sleep(10);
        }
        assertNotNull(baseUrl, "the server starts: " + serverErr);
        assertTrue(URI.create(baseUrl).getHost().equals("127.0.0.1"), baseUrl);
    }

    @AfterAll
    static void stop() throws Exception {
        if (command != null) {
            command.shutdown();
            assertEquals(0, exit.get(60, TimeUnit.SECONDS), serverErr.toString());
        }
    }

    /** {@code nibble generate --messages FILE --temperature 0 -n MAX_TOKENS}, run in-process. */
    private static Expected generate(List<ChatMessage> conversation) throws Exception {
        List<Map<String, String>> messages = new ArrayList<>();
        for (ChatMessage m : conversation) {
            String text = switch (m) {
                case SystemMessage s -> s.text();
                case UserMessage u -> u.singleText();
                case AiMessage a -> a.text();
                default -> throw new AssertionError(m);
            };
            String role = switch (m) {
                case SystemMessage s -> "system";
                case UserMessage u -> "user";
                default -> "assistant";
            };
            messages.add(Map.of("role", role, "content", text));
        }
        Path file = Files.createTempFile(dir, "messages", ".json");
        JSON.writeValue(file.toFile(), messages);
        var cl = NibbleAccess.commandLine();
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        int code = cl.execute("generate", "-m", model().toString(), "--messages", file.toString(), "--temperature", "0",
                "-n", String.valueOf(MAX_TOKENS));
        assertEquals(0, code, err.toString());
        String printed = out.toString();
        assertTrue(printed.endsWith(System.lineSeparator()), printed);
        Matcher m = Pattern.compile("prompt (\\d+) tokens, .*answer (\\d+) tokens, .*stop: ([a-z ]+);")
                .matcher(err.toString());
        assertTrue(m.find(), err.toString());
        Expected e = new Expected(printed.substring(0, printed.length() - System.lineSeparator().length()),
                Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)), m.group(3));
        assertFalse(e.text().isEmpty(), "a non-empty answer to compare: " + err);
        return e;
    }

    private static ChatModel blocking(String key) {
        return OpenAiChatModel.builder().baseUrl(baseUrl).apiKey(key).modelName("tiny-llama.q8_0.gguf")
                .temperature(0.0).maxTokens(MAX_TOKENS).maxRetries(0).timeout(Duration.ofSeconds(120)).build();
    }

    private static StreamingChatModel streaming() {
        return OpenAiStreamingChatModel.builder().baseUrl(baseUrl).apiKey(KEY).modelName("tiny-llama.q8_0.gguf")
                .temperature(0.0).maxTokens(MAX_TOKENS).timeout(Duration.ofSeconds(120)).build();
    }

    /** What a streamed answer delivered: the pieces joined, and the final response. */
    private record Streamed(String pieces, int count, ChatResponse response) {
    }

    private static Streamed stream(StreamingChatModel model, List<ChatMessage> conversation) throws Exception {
        StringBuilder pieces = new StringBuilder();
        int[] count = new int[1];
        CompletableFuture<ChatResponse> done = new CompletableFuture<>();
        model.chat(conversation, new StreamingChatResponseHandler() {
            @Override
            public void onPartialResponse(String text) {
                synchronized (pieces) {
                    pieces.append(text);
                    count[0]++;
                }
            }

            @Override
            public void onCompleteResponse(ChatResponse response) {
                done.complete(response);
            }

            @Override
            public void onError(Throwable error) {
                done.completeExceptionally(error);
            }
        });
        ChatResponse response = done.get(120, TimeUnit.SECONDS);
        synchronized (pieces) {
            return new Streamed(pieces.toString(), count[0], response);
        }
    }

    private static void assertAnswers(Expected e, ChatResponse r, String what) {
        assertEquals(e.text(), r.aiMessage().text(), what);
        assertEquals(e.stop().equals("max tokens") ? FinishReason.LENGTH : FinishReason.STOP, r.finishReason(),
                what + " (generate stopped at: " + e.stop() + ")");
        assertNotNull(r.tokenUsage(), what);
        assertEquals(e.promptTokens(), r.tokenUsage().inputTokenCount(), what);
        assertEquals(e.answerTokens(), r.tokenUsage().outputTokenCount(), what);
        assertEquals(e.promptTokens() + e.answerTokens(), r.tokenUsage().totalTokenCount(), what);
        assertTrue(r.id() != null && r.id().startsWith("chatcmpl-"), what + ": " + r.id());
        assertEquals("tiny-llama.q8_0.gguf", r.modelName(), what);
    }

    @Test
    void openAiChatModelGetsTheAnswersOfGenerateChat() {
        ChatModel model = blocking(KEY);
        for (List<ChatMessage> conversation : CONVERSATIONS) {
            assertAnswers(expected.get(conversation), model.chat(conversation), "blocking " + conversation);
        }
        assertEquals(expected.get(CONVERSATIONS.getFirst()).text(), model.chat("Tell me a story."));
    }

    @Test
    void openAiStreamingChatModelGetsTheAnswersOfGenerateChatPieceByPiece() throws Exception {
        StreamingChatModel model = streaming();
        for (List<ChatMessage> conversation : CONVERSATIONS) {
            Streamed s = stream(model, conversation);
            Expected e = expected.get(conversation);
            assertEquals(e.text(), s.pieces(), "streamed pieces of " + conversation);
            assertTrue(s.count() >= 1, "streamed: " + s.count()); // pieces ready together go in one event
            assertAnswers(e, s.response(), "streamed " + conversation);
        }
    }

    @Test
    void blockingAndStreamingClientsAtOnceEachGetTheirOwnAnswer() throws Exception {
        ChatModel blocking = blocking(KEY);
        StreamingChatModel streaming = streaming();
        List<Future<String>> answers = new ArrayList<>();
        List<String> wanted = new ArrayList<>();
        try (var pool = Executors.newVirtualThreadPerTaskExecutor()) {
            for (List<ChatMessage> conversation : CONVERSATIONS) { // 6 requests: 2 run, 4 wait (the queue holds 8)
                wanted.add(expected.get(conversation).text());
                answers.add(pool.submit(() -> blocking.chat(conversation).aiMessage().text()));
                wanted.add(expected.get(conversation).text());
                answers.add(pool.submit(() -> stream(streaming, conversation).pieces()));
            }
        }
        for (int i = 0; i < answers.size(); i++) {
            assertEquals(wanted.get(i), answers.get(i).get(), "client " + i);
        }
    }

    @Test
    void aWrongKeyIsRefused() {
        RuntimeException e = assertThrows(RuntimeException.class, () -> blocking("not-the-key").chat("Hi"));
        assertTrue(String.valueOf(e.getMessage()).contains("not this server's"), String.valueOf(e));
    }
}
