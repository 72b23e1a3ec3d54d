package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.cli.chat.ModelChatFormat;
import dev.nibble.cli.serve.ApiServer;
import dev.nibble.cli.serve.ServeCommand;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.BatchEngine;
import dev.nibble.runtime.CpuBackend;
import dev.nibble.runtime.Generation;
import dev.nibble.runtime.GenerationResult;
import dev.nibble.runtime.GenerationSettings;
import dev.nibble.runtime.Generator;
import dev.nibble.runtime.Model;
import dev.nibble.runtime.Sampler;
import dev.nibble.runtime.SamplerSettings;
import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.ConnectException;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code nibble serve} on the tiny model, through real HTTP on loopback: answers equal the single-sequence loop's,
 * streaming and not; concurrent clients; the queue bound (429); a client gone mid-stream; every error status; the
 * info routes; a graceful stop, in-process and by signal.
 */
class ServeCommandTest {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int CONTEXT = 512; // the tiny model's, which serve uses by default
    private static final HttpClient HTTP = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(30)).build();

    private static CpuBackend backend;
    private static Model model;
    private static Tokenizer tokenizer;
    private static ChatFormat format;
    private static Served shared;

    /** A {@code nibble serve} run in-process, on a thread of its own. */
    private record Served(ServeCommand command, CompletableFuture<Integer> exit, StringWriter err, URI uri) {

        void stop() throws Exception {
            command.shutdown();
            assertEquals(0, exit.get(60, TimeUnit.SECONDS), err.toString());
        }
    }

    private static Served serve(String... options) throws Exception {
        var cl = Nibble.commandLine();
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        ServeCommand command = cl.getSubcommands().get("serve").getCommand();
        List<String> args = new ArrayList<>(List.of("serve", "-m", GenerateCommandTest.model().toString(), "--port", "0"));
        args.addAll(List.of(options));
        CompletableFuture<Integer> exit = new CompletableFuture<>();
        Thread.ofPlatform().daemon().start(() -> exit.complete(cl.execute(args.toArray(String[]::new))));
        Pattern listening = Pattern.compile("listening on (http://\\S+) ");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < deadline && !exit.isDone()) {
            Matcher m = listening.matcher(err.toString());
            if (m.find()) {
                return new Served(command, exit, err, URI.create(m.group(1)));
            }
            Thread.sleep(10);
        }
        throw new AssertionError("the server did not start: " + err);
    }

    @BeforeAll
    static void start() throws Exception {
        backend = new CpuBackend(0);
        model = Model.load(GenerateCommandTest.model(), backend);
        tokenizer = Tokenizer.from(VocabularyGguf.read(model.file()));
        format = ModelChatFormat.load(GenerateCommandTest.model(), tokenizer, ModelChatFormat.AUTO).format();
        shared = serve("--parallel", "2", "--queue", "8");
    }

    @AfterAll
    static void stop() throws Exception {
        if (shared != null) {
            shared.stop();
        }
        if (model != null) {
            model.close();
        }
        if (backend != null) {
            backend.close();
        }
    }

    // ---- what the single-sequence loop gives ----

    private static String completion(String prompt, int maxTokens) throws IOException {
        try (Generator g = new Generator(model, tokenizer, CONTEXT)) {
            return g.generate(prompt, GenerationSettings.of(maxTokens, SamplerSettings.greedy()), s -> { }).text();
        }
    }

    private static GenerationResult chat(List<ChatMessage> messages, int maxTokens) throws IOException {
        GenerationSettings settings = GenerationSettings.of(maxTokens, SamplerSettings.greedy());
        try (Generator g = new Generator(model, tokenizer, CONTEXT)) {
            return g.run(Generation.answering(format.encode(messages, true), settings,
                    new Sampler(settings.sampler())::sample, format, CONTEXT, s -> { }), 0);
        }
    }

    // ---- HTTP ----

    private static HttpResponse<String> post(URI base, String path, String body, String... headers)
            throws IOException, InterruptedException {
        HttpRequest.Builder b = HttpRequest.newBuilder(base.resolve(path)).timeout(Duration.ofSeconds(120))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body));
        if (headers.length > 0) {
            b.headers(headers);
        }
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    private static HttpResponse<String> get(URI base, String path, String... headers)
            throws IOException, InterruptedException {
        HttpRequest.Builder b = HttpRequest.newBuilder(base.resolve(path)).timeout(Duration.ofSeconds(60)).GET();
        if (headers.length > 0) {
            b.headers(headers);
        }
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    private static JsonNode json(HttpResponse<String> r) throws IOException {
        return JSON.readTree(r.body());
    }

    /** The data of each server-sent event; the last must be [DONE], and is left out. */
    private static List<JsonNode> events(String body) throws IOException {
        List<JsonNode> out = new ArrayList<>();
        boolean done = false;
        for (String event : body.split("\n\n")) {
            if (event.startsWith(":")) {
                continue; // a comment (keep-alive)
            }
            assertTrue(event.startsWith("data: "), "an event: " + event);
            assertFalse(done, "nothing after [DONE]: " + body);
            String data = event.substring("data: ".length());
            if (data.equals("[DONE]")) {
                done = true;
            } else {
                out.add(JSON.readTree(data));
            }
        }
        assertTrue(done, "the stream ends with [DONE]: " + body);
        return out;
    }

    /** The text of a streamed answer, chat ({@code delta.content}) or completion ({@code text}). */
    private static String streamedText(List<JsonNode> events) {
        StringBuilder text = new StringBuilder();
        for (JsonNode e : events) {
            for (JsonNode c : e.path("choices")) {
                text.append(c.has("delta") ? c.get("delta").path("content").asText("") : c.path("text").asText(""));
            }
        }
        return text.toString();
    }

    private static String finishReason(List<JsonNode> events) {
        String reason = null;
        for (JsonNode e : events) {
            for (JsonNode c : e.path("choices")) {
                if (!c.path("finish_reason").isNull() && c.has("finish_reason")) {
                    assertTrue(reason == null, "one finish_reason: " + events);
                    reason = c.get("finish_reason").asText();
                }
            }
        }
        return reason;
    }

    private static String chatBody(String content, int maxTokens, String extra) {
        return "{\"model\": \"tiny\", \"messages\": [{\"role\": \"user\", \"content\": " + quote(content)
                + "}], \"max_tokens\": " + maxTokens + ", \"temperature\": 0" + extra + "}";
    }

    private static String completionBody(String prompt, int maxTokens, String extra) {
        return "{\"prompt\": " + quote(prompt) + ", \"max_tokens\": " + maxTokens + ", \"temperature\": 0" + extra + "}";
    }

    private static String quote(String s) {
        try {
            return JSON.writeValueAsString(s);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    private static double metric(URI base, String name) throws Exception {
        String text = get(base, "/metrics").body();
        for (String line : text.split("\n")) {
            if (line.startsWith(name + " ")) {
                return Double.parseDouble(line.substring(name.length() + 1));
            }
        }
        throw new AssertionError(name + " is not in /metrics: " + text);
    }

    /** Waits (bounded) until {@code metric} has {@code value}, as the engine's views lag a pass behind. */
    private static void awaitMetric(URI base, String name, double value) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (metric(base, name) != value && System.nanoTime() < deadline) {
            Thread.sleep(10);
        }
        assertEquals(value, metric(base, name), name);
    }

    // ---- tests ----

    @Test
    void completionsAndChatAnswerAsTheSingleSequenceLoopDoesWholeAndStreamed() throws Exception {
        URI base = shared.uri();
        String expected = completion("The jury", 20);

        HttpResponse<String> whole = post(base, "/v1/completions", completionBody("The jury", 20, ""));
        assertEquals(200, whole.statusCode(), whole.body());
        assertTrue(whole.headers().firstValue("Content-Type").orElse("").startsWith("application/json"));
        JsonNode body = json(whole);
        assertEquals("text_completion", body.get("object").asText());
        assertEquals("tiny-llama.q8_0.gguf", body.get("model").asText());
        assertEquals(expected, body.get("choices").get(0).get("text").asText());
        assertEquals("length", body.get("choices").get(0).get("finish_reason").asText());
        assertEquals(4, body.get("usage").get("prompt_tokens").asInt());
        assertEquals(20, body.get("usage").get("completion_tokens").asInt());
        assertEquals(24, body.get("usage").get("total_tokens").asInt());

        HttpResponse<String> streamed = post(base, "/v1/completions", completionBody("The jury", 20, ", \"stream\": true"));
        assertEquals(200, streamed.statusCode());
        assertTrue(streamed.headers().firstValue("Content-Type").orElse("").startsWith("text/event-stream"));
        List<JsonNode> events = events(streamed.body());
        assertEquals(expected, streamedText(events));
        assertEquals("length", finishReason(events));
        assertTrue(events.stream().noneMatch(e -> e.has("usage")), "usage only when asked for");
        assertTrue(events.stream().allMatch(e -> e.get("object").asText().equals("text_completion")));

        List<ChatMessage> conversation = List.of(ChatMessage.user("Tell me a story."));
        GenerationResult answer = chat(conversation, 24);
        HttpResponse<String> chatWhole = post(base, "/v1/chat/completions", chatBody("Tell me a story.", 24, ""));
        assertEquals(200, chatWhole.statusCode(), chatWhole.body());
        JsonNode chat = json(chatWhole);
        assertEquals("chat.completion", chat.get("object").asText());
        assertTrue(chat.get("id").asText().startsWith("chatcmpl-"));
        JsonNode message = chat.get("choices").get(0).get("message");
        assertEquals("assistant", message.get("role").asText());
        assertEquals(answer.text(), message.get("content").asText());
        assertEquals(answer.stopReason() == GenerationResult.StopReason.MAX_TOKENS ? "length" : "stop",
                chat.get("choices").get(0).get("finish_reason").asText());
        assertEquals(answer.promptTokens(), chat.get("usage").get("prompt_tokens").asInt());
        assertEquals(answer.generatedTokens(), chat.get("usage").get("completion_tokens").asInt());

        HttpResponse<String> chatStreamed = post(base, "/v1/chat/completions", chatBody("Tell me a story.", 24,
                ", \"stream\": true, \"stream_options\": {\"include_usage\": true}"));
        List<JsonNode> chunks = events(chatStreamed.body());
        assertEquals("assistant", chunks.getFirst().get("choices").get(0).get("delta").get("role").asText());
        assertTrue(chunks.stream().allMatch(e -> e.get("object").asText().equals("chat.completion.chunk")));
        assertEquals(1, chunks.stream().map(e -> e.get("id").asText()).distinct().count(), "one id per answer");
        assertEquals(answer.text(), streamedText(chunks));
        assertEquals(chat.get("choices").get(0).get("finish_reason").asText(), finishReason(chunks));
        JsonNode usage = chunks.getLast();
        assertEquals(0, usage.get("choices").size(), "the usage chunk comes last, with no choices");
        assertEquals(answer.generatedTokens(), usage.get("usage").get("completion_tokens").asInt());
        assertEquals(answer.promptTokens() + answer.generatedTokens(), usage.get("usage").get("total_tokens").asInt());
    }

    @Test
    void manyConcurrentClientsEachGetTheirOwnWholeAnswer() throws Exception {
        URI base = shared.uri();
        int clients = 8;
        List<String> expected = new ArrayList<>();
        for (int i = 0; i < clients; i++) {
            expected.add(i % 2 == 0 ? completion("The jury said " + i, 16)
                    : chat(List.of(ChatMessage.user("Tell me about number " + i + ".")), 16).text());
        }
        List<Future<String>> answers = new ArrayList<>();
        try (var pool = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < clients; i++) {
                int n = i;
                answers.add(pool.submit(() -> {
                    boolean chat = n % 2 == 1;
                    boolean stream = n % 4 >= 2;
                    String extra = stream ? ", \"stream\": true" : "";
                    HttpResponse<String> r = chat
                            ? post(base, "/v1/chat/completions", chatBody("Tell me about number " + n + ".", 16, extra))
                            : post(base, "/v1/completions", completionBody("The jury said " + n, 16, extra));
                    assertEquals(200, r.statusCode(), r.body());
                    if (stream) {
                        return streamedText(events(r.body()));
                    }
                    JsonNode choice = json(r).get("choices").get(0);
                    return chat ? choice.get("message").get("content").asText() : choice.get("text").asText();
                }));
            }
        }
        for (int i = 0; i < clients; i++) {
            assertEquals(expected.get(i), answers.get(i).get(), "client " + i);
        }
    }

    @Test
    void badRequestsGetOpenAiErrorsWithTheRightStatus() throws Exception {
        URI base = shared.uri();
        assertError(post(base, "/v1/completions", "{\"prompt\": "), 400, "not valid JSON");
        assertError(post(base, "/v1/completions", "{\"prompt\": \"x\"} trailing"), 400, "not valid JSON");
        assertError(post(base, "/v1/completions", "[1, 2]"), 400, "must be a JSON object");
        assertError(post(base, "/v1/completions", "{\"prompt\": 5}"), 400, "\"prompt\" must be a string");
        assertError(post(base, "/v1/completions", completionBody("x", 2, ", \"max_tokens\": \"ten\"")), 400,
                "\"max_tokens\" must be an integer");
        assertError(post(base, "/v1/completions", completionBody("x", 2, ", \"temperature\": \"hot\"")), 400,
                "\"temperature\" must be a number");
        assertError(post(base, "/v1/completions", completionBody("x", 2, ", \"stream\": \"yes\"")), 400,
                "\"stream\" must be true or false");
        assertError(post(base, "/v1/chat/completions", "{\"messages\": \"hi\"}"), 400, "\"messages\" must be");
        assertError(post(base, "/v1/chat/completions", "{\"prompt\": \"hi\"}"), 400, "needs \"messages\"");
        assertError(post(base, "/v1/completions", completionBody("x", 2, ", \"n\": 2")), 400, "n must be 1");
        assertError(post(base, "/v1/completions", "{\"prompt\": \"x\", \"temperature\": -1}"), 400,
                "temperature must be 0 or more");
        HttpResponse<String> tooLong = post(base, "/v1/completions", completionBody("word ".repeat(600), 4, ""));
        assertError(tooLong, 400, "but the context holds " + CONTEXT);
        String message = json(tooLong).get("error").get("message").asText();
        assertTrue(message.matches("the prompt is \\d+ tokens but the context holds 512.*"), message);
        assertEquals("context_length_exceeded", json(tooLong).get("error").get("code").asText());

        assertError(get(base, "/v1/nothing"), 404, "no such route");
        assertError(get(base, "/"), 404, "no such route");
        HttpResponse<String> wrongMethod = get(base, "/v1/chat/completions");
        assertError(wrongMethod, 405, "use POST");
        assertEquals("POST", wrongMethod.headers().firstValue("Allow").orElse(null));
        assertError(post(base, "/v1/models", "{}"), 405, "use GET");
        assertError(post(base, "/v1/completions", "{\"prompt\": \"" + "a".repeat((1 << 20) + 10) + "\"}"), 413,
                "at most 1048576");

        HttpResponse<String> unknownFields = post(base, "/v1/completions", completionBody("The jury", 3,
                ", \"frobnicate\": {\"x\": [1, 2]}, \"user\": \"me\", \"logit_bias\": {}, \"top_k\": 5, \"min_p\": 0.1,"
                        + " \"repetition_penalty\": 1.0, \"seed\": 3, \"stop\": [\"zzz\"]"));
        assertEquals(200, unknownFields.statusCode(), unknownFields.body());
        assertEquals(completion("The jury", 3), json(unknownFields).get("choices").get(0).get("text").asText());
    }

    private static void assertError(HttpResponse<String> r, int status, String messagePart) throws IOException {
        assertEquals(status, r.statusCode(), r.body());
        JsonNode error = json(r).get("error");
        assertNotNull(error, r.body());
        assertTrue(error.get("message").asText().contains(messagePart), r.body());
        assertTrue(error.has("type") && error.has("code"), r.body());
        assertEquals(status >= 500 ? "server_error" : status == 429 ? "rate_limit_error" : "invalid_request_error",
                error.get("type").asText());
    }

    @Test
    void modelsHealthAndMetricsDescribeTheServer() throws Exception {
        URI base = shared.uri();
        JsonNode models = json(get(base, "/v1/models"));
        assertEquals("list", models.get("object").asText());
        assertEquals("tiny-llama.q8_0.gguf", models.get("data").get(0).get("id").asText());
        assertEquals("model", models.get("data").get(0).get("object").asText());
        assertEquals(200, get(base, "/v1/models/tiny-llama.q8_0.gguf").statusCode());
        assertError(get(base, "/v1/models/other"), 404, "no model");
        assertEquals("ok", json(get(base, "/health")).get("status").asText());

        assertEquals(200, post(base, "/v1/completions", completionBody("The jury", 5, "")).statusCode());
        HttpResponse<String> metrics = get(base, "/metrics");
        assertEquals(200, metrics.statusCode());
        assertTrue(metrics.headers().firstValue("Content-Type").orElse("").startsWith("text/plain"));
        String text = metrics.body();
        for (String name : List.of("nibble_requests_total", "nibble_prompt_tokens_total", "nibble_completion_tokens_total",
                "nibble_tokens_per_second", "nibble_requests_queued", "nibble_requests_running",
                "nibble_kv_cache_usage_ratio", "nibble_kv_cache_tokens", "nibble_client_disconnects_total")) {
            assertTrue(text.contains("# TYPE " + name + " "), name + " in " + text);
        }
        assertTrue(text.matches("(?s).*nibble_requests_total\\{status=\"200\"} [1-9][0-9]*\n.*"), text);
        assertTrue(metric(base, "nibble_completion_tokens_total") >= 5);
        assertTrue(metric(base, "nibble_prompt_tokens_total") >= 4);
        assertEquals(2 * CONTEXT, metric(base, "nibble_kv_cache_tokens"), "2 places of 512 positions");
        assertEquals(10, metric(base, "nibble_requests_capacity"), "--parallel 2 + --queue 8");
    }

    @Test
    void anApiKeyIsRequiredWhenSet() throws Exception {
        Served keyed = serve("--api-key", "s3cret", "--parallel", "1");
        try {
            URI base = keyed.uri();
            String body = completionBody("The jury", 3, "");
            HttpResponse<String> none = post(base, "/v1/completions", body);
            assertError(none, 401, "needs an API key");
            assertEquals("Bearer", none.headers().firstValue("WWW-Authenticate").orElse(null));
            assertError(post(base, "/v1/completions", body, "Authorization", "Bearer wrong"), 401, "not this server's");
            assertError(post(base, "/v1/completions", body, "Authorization", "Bearer s3cret0"), 401, "not this server's");
            assertError(get(base, "/v1/models"), 401, "needs an API key");
            assertEquals(200, post(base, "/v1/completions", body, "Authorization", "Bearer s3cret").statusCode());
            assertEquals(200, get(base, "/v1/models", "Authorization", "Bearer s3cret").statusCode());
            assertEquals(200, get(base, "/health").statusCode(), "health needs no key");
            assertTrue(keyed.err().toString().contains("API key required"), keyed.err().toString());
            assertFalse(keyed.err().toString().contains("s3cret"), "the key is never printed");
        } finally {
            keyed.stop();
        }
    }

    /**
     * A request submitted straight to the engine (its tokens are not the server's) whose text callback stops the
     * engine's thread at each piece of text until {@link #step} or {@link #free}: nothing else advances meanwhile.
     */
    private static final class Hold {
        private final Semaphore reached = new Semaphore(0);
        private final Semaphore go = new Semaphore(0);
        private volatile boolean holding = true;

        Hold(BatchEngine engine) throws InterruptedException {
            engine.submit("The jury", GenerationSettings.of(50, SamplerSettings.greedy()), text -> {
                if (holding) {
                    reached.release();
                    go.acquireUninterruptibly();
                }
            });
            held();
        }

        /** Waits until the engine's thread is held. */
        void held() throws InterruptedException {
            assertTrue(reached.tryAcquire(60, TimeUnit.SECONDS), "the engine reaches the hold");
        }

        /** Lets the engine run to the holding request's next piece of text (about one pass), and waits there. */
        void step() throws InterruptedException {
            go.release();
            held();
        }

        void free() {
            holding = false;
            go.release();
        }
    }

    private static ApiServer.Settings settings(int queue) {
        return new ApiServer.Settings("127.0.0.1", 0, queue, 1 << 20, null, "tiny", SamplerSettings.greedy(), false, -1,
                Duration.ofMillis(50));
    }

    private static HttpResponse<java.io.InputStream> open(URI base, String path, String body) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(base.resolve(path)).timeout(Duration.ofSeconds(120))
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofInputStream());
    }

    private static String readAll(HttpResponse<java.io.InputStream> r) throws IOException {
        try (var in = r.body()) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    @Test
    void pastTheQueueRequestsGet429WithRetryAfterAndTheAcceptedOnesStillAnswer() throws Exception {
        try (BatchEngine engine = new BatchEngine(model, tokenizer, new BatchEngine.Options(1, CONTEXT, 0))) {
            ApiServer server = ApiServer.start(engine, format, settings(1));
            try {
                URI base = server.uri();
                Hold hold = new Hold(engine);
                // two streams are accepted (one place, one in the queue): their headers come at once
                var first = open(base, "/v1/chat/completions", chatBody("Tell me a story.", 12, ", \"stream\": true"));
                var second = open(base, "/v1/completions", completionBody("The jury", 12, ", \"stream\": true"));
                assertEquals(200, first.statusCode());
                assertEquals(200, second.statusCode());
                HttpResponse<String> refused = post(base, "/v1/completions", completionBody("The jury", 4, ""));
                assertError(refused, 429, "busy");
                assertTrue(Integer.parseInt(refused.headers().firstValue("Retry-After").orElse("x")) > 0);
                assertEquals(2, metric(base, "nibble_requests_in_flight"));
                hold.free();

                List<JsonNode> a = events(readAll(first));
                assertEquals(chat(List.of(ChatMessage.user("Tell me a story.")), 12).text(), streamedText(a));
                assertNotNull(finishReason(a));
                List<JsonNode> b = events(readAll(second));
                assertEquals(completion("The jury", 12), streamedText(b));
                assertEquals("length", finishReason(b));
                assertEquals(200, post(base, "/v1/completions", completionBody("The jury", 4, "")).statusCode());
                assertTrue(metric(base, "nibble_requests_total{status=\"429\"}") == 1);
            } finally {
                server.shutdown(Duration.ofSeconds(5));
            }
        }
    }

    @Test
    void aClientThatDisconnectsMidStreamFreesItsPlace() throws Exception {
        List<ChatMessage> story = List.of(ChatMessage.user("Tell me a story."));
        int whole = chat(story, 400).generatedTokens();
        assertTrue(whole > 100, "a long answer: " + whole);
        try (BatchEngine engine = new BatchEngine(model, tokenizer, new BatchEngine.Options(2, CONTEXT, 0))) {
            ApiServer server = ApiServer.start(engine, format, settings(0));
            try {
                URI base = server.uri();
                Hold hold = new Hold(engine);
                String body = chatBody("Tell me a story.", 400, ", \"stream\": true");
                try (Socket socket = new Socket(base.getHost(), base.getPort())) {
                    OutputStream out = socket.getOutputStream();
                    out.write(("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                            + "Content-Length: " + body.getBytes(StandardCharsets.UTF_8).length + "\r\n\r\n" + body)
                            .getBytes(StandardCharsets.UTF_8));
                    out.flush();
                    BufferedReader in = new BufferedReader(new InputStreamReader(socket.getInputStream(),
                            StandardCharsets.UTF_8));
                    assertTrue(in.readLine().startsWith("HTTP/1.1 200"));
                    String line;
                    while ((line = in.readLine()) != null && !line.contains("data: ")) {
                        // headers and the chunk size, up to the first event (the role)
                    }
                    assertNotNull(line, "a first event");
                    hold.step(); // one pass: the request is admitted and its prompt runs beside the holding one
                    assertEquals(2, metric(base, "nibble_requests_running"));
                    assertTrue(metric(base, "nibble_kv_cache_used_tokens") > 0);
                } // gone, in the middle of its stream, with its sequence in the batch
                awaitMetric(base, "nibble_client_disconnects_total", 1); // noticed while the engine is still held
                hold.free();

                HttpResponse<String> next = post(base, "/v1/completions", completionBody("The jury", 8, ""));
                assertEquals(200, next.statusCode(), next.body());
                assertEquals(completion("The jury", 8), json(next).get("choices").get(0).get("text").asText());
                awaitMetric(base, "nibble_requests_running", 0);
                awaitMetric(base, "nibble_requests_in_flight", 0);
                awaitMetric(base, "nibble_kv_cache_used_tokens", 0);
                double gone = metric(base, "nibble_completion_tokens_total") - 8;
                assertTrue(gone < 10, "the gone client's sequence ended at once, not after its " + whole
                        + " tokens: " + gone);
            } finally {
                server.shutdown(Duration.ofSeconds(5));
            }
        }
    }

    @Test
    void aStopPastTheGracePeriodCancelsWhatRunsAndAnswersEachWithAnError() throws Exception {
        try (BatchEngine engine = new BatchEngine(model, tokenizer, new BatchEngine.Options(1, CONTEXT, 0))) {
            ApiServer server = ApiServer.start(engine, format, settings(2));
            URI base = server.uri();
            Hold hold = new Hold(engine);
            var streaming = open(base, "/v1/completions", completionBody("The jury", 50, ", \"stream\": true"));
            assertEquals(200, streaming.statusCode());
            CompletableFuture<HttpResponse<String>> whole = HTTP.sendAsync(HttpRequest.newBuilder(
                    base.resolve("/v1/completions")).POST(HttpRequest.BodyPublishers.ofString(
                    completionBody("The jury", 50, ""))).build(), HttpResponse.BodyHandlers.ofString());
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (metric(base, "nibble_requests_in_flight") < 2 && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            server.shutdown(Duration.ZERO); // the engine is held: neither can finish
            hold.free();
            List<JsonNode> events = events(readAll(streaming));
            assertEquals("server_error", events.getLast().get("error").get("type").asText(), events.toString());
            assertError(whole.get(60, TimeUnit.SECONDS), 503, "shutting down");
            assertThrows(ConnectException.class, () -> get(base, "/health"), "no longer listening");
        }
    }

    @Test
    void stoppingLetsARunningRequestFinishAndExitsCleanly() throws Exception {
        Served served = serve("--grace", "30");
        var streaming = open(served.uri(), "/v1/completions", completionBody("The jury", 60, ", \"stream\": true"));
        assertEquals(200, streaming.statusCode());
        CompletableFuture<String> text = CompletableFuture.supplyAsync(() -> {
            try {
                return readAll(streaming);
            } catch (IOException e) {
                throw new RuntimeException(e);
            }
        });
        served.stop();
        List<JsonNode> events = events(text.get(60, TimeUnit.SECONDS));
        assertEquals(completion("The jury", 60), streamedText(events));
        assertEquals("length", finishReason(events));
        assertTrue(served.err().toString().contains("nibble: stopped (1 completions answered)"), served.err().toString());
    }

    @Test
    void aTerminatedServerProcessStopsGracefully() throws Exception {
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        Process child = new ProcessBuilder(java.toString(), "--enable-native-access=ALL-UNNAMED", "-cp",
                System.getProperty("java.class.path"), "dev.nibble.cli.Nibble", "serve", "-m",
                GenerateCommandTest.model().toString(), "--port", "0", "-t", "1").redirectErrorStream(true).start();
        try {
            BufferedReader log = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8));
            StringBuilder seen = new StringBuilder();
            URI base = null;
            for (String line; base == null && (line = log.readLine()) != null; ) {
                seen.append(line).append('\n');
                Matcher m = Pattern.compile("listening on (http://\\S+) ").matcher(line);
                if (m.find()) {
                    base = URI.create(m.group(1));
                }
            }
            assertNotNull(base, "the child prints its address: " + seen);
            assertEquals(200, post(base, "/v1/completions", completionBody("The jury", 4, "")).statusCode());
            child.toHandle().destroy(); // SIGTERM: the same shutdown hook as Ctrl-C
            assertTrue(child.waitFor(60, TimeUnit.SECONDS), "the child exits");
            String rest = new String(child.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(rest.contains("nibble: stopped (1 completions answered)"), seen + rest);
        } finally {
            child.destroyForcibly();
        }
    }
}
