package dev.nibble.cli.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.management.HotSpotDiagnosticMXBean;
import dev.nibble.cli.NibbleAccess;
import dev.nibble.cli.chat.ModelChatFormat;
import dev.nibble.cli.openai.OpenAiResponses;
import dev.nibble.formats.vocab.VocabularyGguf;
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
import dev.nibble.testing.TestData;
import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code nibble serve} under load on loopback, bounded in time and count: {@value #DEFAULT_CLIENTS} concurrent
 * streaming clients (chat and completions, greedy) for {@code -Dnibble.loadTest.seconds} (default
 * {@value #DEFAULT_SECONDS}; the issue's full run is 120), some of them going away right after sending or in the
 * middle of their stream. Every request not abandoned gets exactly one whole, correct answer (the text, finish reason
 * and usage the single-sequence loop gives for its prompt, computed once up front) or a 429; the server counts each
 * request once; and afterwards it holds no request, no KV cache, and its heap (after {@code System.gc()}) and live
 * threads (platform and virtual) are back near their idle level.
 *
 * <p>The clients speak HTTP/1.1 over plain sockets (no client library's threads or connection pools in the figures),
 * and read the chunked server-sent events themselves.
 */
class ServeLoadTest {

    static final int DEFAULT_SECONDS = 12;
    static final int DEFAULT_CLIENTS = 64;
    private static final int SECONDS = Integer.getInteger("nibble.loadTest.seconds", DEFAULT_SECONDS);
    private static final int CLIENTS = Integer.getInteger("nibble.loadTest.clients", DEFAULT_CLIENTS);
    /** Requests at most over the whole run (a bound besides the time). */
    private static final int MAX_REQUESTS = Integer.getInteger("nibble.loadTest.maxRequests", 1_000_000);
    private static final int PARALLEL = 16;
    private static final int CONTEXT = 512; // the tiny model's, which serve uses by default
    private static final long HEAP_SLACK = 16L << 20;
    private static final int THREAD_SLACK = 2;
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    /** A request the clients send, with the answer the single-sequence loop gives it. */
    private record Prompt(boolean chat, String text, int maxTokens, String answer, String finishReason,
                          int promptTokens, int completionTokens) {

        byte[] body(boolean usage) {
            ObjectNode b = JSON.createObjectNode();
            if (chat) {
                b.putArray("messages").addObject().put("role", "user").put("content", text);
            } else {
                b.put("prompt", text);
            }
            b.put("max_tokens", maxTokens).put("temperature", 0).put("stream", true);
            if (usage) {
                b.putObject("stream_options").put("include_usage", true);
            }
            return b.toString().getBytes(StandardCharsets.UTF_8);
        }

        String path() {
            return chat ? "/v1/chat/completions" : "/v1/completions";
        }
    }

    private static List<Prompt> prompts() throws IOException {
        Path file = TestData.resolve("tiny-llama.q8_0.gguf");
        List<Prompt> out = new ArrayList<>();
        try (CpuBackend backend = new CpuBackend(0); Model model = Model.load(file, backend)) {
            Tokenizer tokenizer = Tokenizer.from(VocabularyGguf.read(model.file()));
            ChatFormat format = ModelChatFormat.load(file, tokenizer, ModelChatFormat.AUTO).format();
            String[] subjects = {"the jury", "a dragon", "the sea", "number 7", "Paris", "a small robot"};
            for (int i = 0; i < 12; i++) {
                boolean chat = i % 2 == 1;
                String text = chat ? "Tell me about " + subjects[i / 2] + "."
                        : "Once upon a time " + subjects[i / 2] + " said";
                int max = 8 + (i * 7) % 41;
                GenerationSettings settings = GenerationSettings.of(max, SamplerSettings.greedy());
                GenerationResult r;
                try (Generator g = new Generator(model, tokenizer, CONTEXT)) {
                    r = chat ? g.run(Generation.answering(format.encode(List.of(ChatMessage.user(text)), true),
                            settings, new Sampler(settings.sampler())::sample, format, CONTEXT, s -> { }), 0)
                            : g.generate(text, settings, s -> { });
                }
                out.add(new Prompt(chat, text, max, r.text(), OpenAiResponses.finishReason(r.stopReason()),
                        r.promptTokens(), r.generatedTokens()));
            }
        }
        return out;
    }

    // ---- the clients ----

    /** How one exchange went, from the client's side. */
    private enum Outcome { ANSWERED, GONE, REFUSED }

    private final ConcurrentLinkedQueue<String> failures = new ConcurrentLinkedQueue<>();
    private final AtomicInteger failureCount = new AtomicInteger();

    private void fail(String what) {
        if (failureCount.incrementAndGet() <= 20) {
            failures.add(what);
        }
    }

    /**
     * One streaming request over a connection of its own; {@code goneAfter}: -1 reads to the end, 0 closes right
     * after sending, k > 0 closes after the k-th event.
     */
    private Outcome exchange(InetSocketAddress server, Prompt p, boolean usage, int goneAfter) throws IOException {
        try (Socket socket = new Socket()) {
            socket.connect(server, 30_000);
            socket.setSoTimeout(120_000);
            byte[] body = p.body(usage);
            OutputStream out = socket.getOutputStream();
            out.write(("POST " + p.path() + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    + "Content-Length: " + body.length + "\r\nConnection: close\r\n\r\n").getBytes(StandardCharsets.UTF_8));
            out.write(body);
            out.flush();
            if (goneAfter == 0) {
                return Outcome.GONE;
            }
            InputStream in = new BufferedInputStream(socket.getInputStream());
            String statusLine = line(in);
            Map<String, String> headers = new HashMap<>();
            for (String h = line(in); !h.isEmpty(); h = line(in)) {
                int colon = h.indexOf(':');
                headers.put(h.substring(0, colon).strip().toLowerCase(Locale.ROOT), h.substring(colon + 1).strip());
            }
            int status = Integer.parseInt(statusLine.split(" ")[1]);
            if (status == 429) {
                String error = new String(in.readNBytes(Integer.parseInt(headers.get("content-length"))),
                        StandardCharsets.UTF_8);
                if (!headers.containsKey("retry-after") || !error.contains("\"rate_limit_error\"")) {
                    fail("a 429 without Retry-After or an error body: " + headers + " " + error);
                }
                return Outcome.REFUSED;
            }
            if (status != 200 || !"chunked".equals(headers.get("transfer-encoding"))
                    || !headers.getOrDefault("content-type", "").startsWith("text/event-stream")) {
                fail("status " + statusLine + " " + headers + " for " + p.text());
                return Outcome.ANSWERED;
            }
            ByteArrayOutputStream pending = new ByteArrayOutputStream();
            List<String> events = new ArrayList<>();
            for (int size = Integer.parseInt(line(in).strip(), 16); size > 0; size = Integer.parseInt(line(in).strip(), 16)) {
                pending.write(in.readNBytes(size));
                if (!line(in).isEmpty()) {
                    fail("a chunk not followed by CRLF");
                }
                byte[] b = pending.toByteArray();
                int start = 0;
                for (int i = 0; i + 1 < b.length; i++) {
                    if (b[i] == '\n' && b[i + 1] == '\n') {
                        String event = new String(b, start, i - start, StandardCharsets.UTF_8);
                        if (!event.startsWith(":")) { // not a keep-alive comment
                            events.add(event);
                        }
                        start = i + 2;
                        i++;
                    }
                }
                pending.reset();
                pending.write(b, start, b.length - start);
                if (goneAfter > 0 && events.size() >= goneAfter && !events.getLast().equals("data: [DONE]")) {
                    return Outcome.GONE; // in the middle of the stream
                }
            }
            line(in); // after the last chunk
            if (pending.size() > 0) {
                fail("the stream ends inside an event: " + pending);
            }
            check(p, usage, events);
            return Outcome.ANSWERED;
        }
    }

    /** Checks one whole stream against what its prompt must give. */
    private void check(Prompt p, boolean usage, List<String> events) throws IOException {
        String what = (p.chat() ? "chat " : "completion ") + "\"" + p.text() + "\": ";
        if (events.isEmpty() || !events.getLast().equals("data: [DONE]")) {
            fail(what + "the stream does not end with [DONE]: " + events);
            return;
        }
        StringBuilder text = new StringBuilder();
        String finish = null;
        int finishes = 0;
        String id = null;
        JsonNode usageNode = null;
        for (String event : events.subList(0, events.size() - 1)) {
            if (!event.startsWith("data: ") || event.equals("data: [DONE]")) {
                fail(what + "not one data event before [DONE]: " + event);
                return;
            }
            JsonNode e = JSON.readTree(event.substring(6));
            if (e.has("error")) {
                fail(what + "an error: " + e);
                return;
            }
            if (id == null) {
                id = e.get("id").asText();
            } else if (!id.equals(e.get("id").asText())) {
                fail(what + "two ids in one stream: " + id + ", " + e.get("id"));
            }
            String object = p.chat() ? "chat.completion.chunk" : "text_completion";
            if (!object.equals(e.path("object").asText())) {
                fail(what + "object " + e.path("object"));
            }
            if (e.hasNonNull("usage")) {
                usageNode = e.get("usage");
            }
            for (JsonNode c : e.path("choices")) {
                text.append(p.chat() ? c.path("delta").path("content").asText("") : c.path("text").asText(""));
                if (c.hasNonNull("finish_reason")) {
                    finish = c.get("finish_reason").asText();
                    finishes++;
                }
            }
        }
        if (!p.answer().contentEquals(text)) {
            fail(what + "answered \"" + text + "\", not \"" + p.answer() + "\"");
        }
        if (finishes != 1 || !p.finishReason().equals(finish)) {
            fail(what + finishes + " finish reasons, " + finish + ", not " + p.finishReason());
        }
        if (usage != (usageNode != null)) {
            fail(what + "usage " + usageNode + " when " + (usage ? "" : "not ") + "asked for");
        } else if (usage && (usageNode.path("prompt_tokens").asInt() != p.promptTokens()
                || usageNode.path("completion_tokens").asInt() != p.completionTokens())) {
            fail(what + "usage " + usageNode + ", not " + p.promptTokens() + " + " + p.completionTokens());
        }
    }

    private static String line(InputStream in) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        for (int c = in.read(); c != '\n'; c = in.read()) {
            if (c < 0) {
                throw new IOException("the connection ended in a line: " + b);
            }
            b.write(c);
        }
        String s = b.toString(StandardCharsets.UTF_8);
        return s.endsWith("\r") ? s.substring(0, s.length() - 1) : s;
    }

    // ---- the server's side ----

    private final AtomicInteger metricGets = new AtomicInteger();

    /** {@code /metrics}, parsed: each sample's name (with its labels) and value. */
    private Map<String, Double> metrics(InetSocketAddress server) throws IOException {
        metricGets.incrementAndGet();
        try (Socket socket = new Socket()) {
            socket.connect(server, 30_000);
            socket.setSoTimeout(60_000);
            socket.getOutputStream().write("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                    .getBytes(StandardCharsets.UTF_8));
            InputStream in = new BufferedInputStream(socket.getInputStream());
            assertTrue(line(in).startsWith("HTTP/1.1 200"));
            int length = -1;
            for (String h = line(in); !h.isEmpty(); h = line(in)) {
                if (h.toLowerCase(Locale.ROOT).startsWith("content-length:")) {
                    length = Integer.parseInt(h.substring(15).strip());
                }
            }
            Map<String, Double> out = new HashMap<>();
            for (String l : new String(in.readNBytes(length), StandardCharsets.UTF_8).split("\n")) {
                if (!l.startsWith("#") && !l.isBlank()) {
                    int space = l.lastIndexOf(' ');
                    out.put(l.substring(0, space), Double.parseDouble(l.substring(space + 1)));
                }
            }
            return out;
        }
    }

    private static double requests(Map<String, Double> m, int status) {
        return m.getOrDefault("nibble_requests_total{status=\"" + status + "\"}", 0.0);
    }

    /** Waits (bounded) until the server holds nothing: no request in flight, running or queued, no KV cache. */
    private Map<String, Double> awaitIdle(InetSocketAddress server) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        Map<String, Double> m = metrics(server);
        while (System.nanoTime() < deadline && (m.get("nibble_requests_in_flight") != 0
                || m.get("nibble_requests_running") != 0 || m.get("nibble_requests_queued") != 0
                || m.get("nibble_kv_cache_used_tokens") != 0)) {
            Thread.sleep(50);
            m = metrics(server);
        }
        for (String gauge : List.of("nibble_requests_in_flight", "nibble_requests_running", "nibble_requests_queued",
                "nibble_kv_cache_used_tokens")) {
            assertEquals(0, m.get(gauge), gauge + " after the load: " + m);
        }
        return m;
    }

    /** Heap in use after full collections. */
    private static long heapAfterGc() throws InterruptedException {
        long used = Long.MAX_VALUE;
        for (int i = 0; i < 3; i++) {
            System.gc();
            Thread.sleep(100);
            used = Math.min(used, ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed());
        }
        return used;
    }

    private static int platformThreads() {
        return ManagementFactory.getThreadMXBean().getThreadCount();
    }

    private final AtomicInteger dumps = new AtomicInteger();

    /** Live threads, virtual ones included (the JDK's thread dump lists both, by container). */
    private int allThreads() throws IOException {
        Path file = dir.resolve("threads-" + dumps.incrementAndGet() + ".json").toAbsolutePath();
        ManagementFactory.getPlatformMXBean(HotSpotDiagnosticMXBean.class)
                .dumpThreads(file.toString(), HotSpotDiagnosticMXBean.ThreadDumpFormat.JSON);
        int n = 0;
        for (JsonNode container : JSON.readTree(file.toFile()).path("threadDump").path("threadContainers")) {
            n += container.path("threads").size();
        }
        return n;
    }

    private record Idle(long heap, int platform, int all) {
        boolean near(Idle base) {
            return heap <= base.heap + HEAP_SLACK && platform <= base.platform + THREAD_SLACK
                    && all <= base.all + THREAD_SLACK;
        }

        @Override
        public String toString() {
            return String.format(Locale.ROOT, "heap %.1f MiB, %d platform threads, %d threads with virtual ones",
                    heap / 1048576.0, platform, all);
        }
    }

    private Idle idle() throws Exception {
        return new Idle(heapAfterGc(), platformThreads(), allThreads());
    }

    // ---- the test ----

    @Test
    void manyStreamingClientsSomeGoneMidStreamEachGetOneCorrectAnswerAndTheServerReturnsToIdle() throws Exception {
        List<Prompt> prompts = prompts();
        var cl = NibbleAccess.commandLine();
        StringWriter err = new StringWriter();
        cl.setOut(new PrintWriter(new StringWriter(), true));
        cl.setErr(new PrintWriter(err, true));
        ServeCommand command = cl.getSubcommands().get("serve").getCommand();
        CompletableFuture<Integer> exit = new CompletableFuture<>();
        String[] args = {"serve", "-m", TestData.resolve("tiny-llama.q8_0.gguf").toString(), "--port", "0",
            "--parallel", String.valueOf(PARALLEL), "--queue", String.valueOf(2 * CLIENTS)};
        Thread.ofPlatform().daemon().start(() -> exit.complete(cl.execute(args)));
        InetSocketAddress server = null;
        Pattern listening = Pattern.compile("listening on (http://\\S+) ");
        for (long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
             server == null && System.nanoTime() < deadline && !exit.isDone(); Thread.sleep(10)) {
            Matcher m = listening.matcher(err.toString());
            if (m.find()) {
                URI uri = URI.create(m.group(1));
                server = new InetSocketAddress(uri.getHost(), uri.getPort());
            }
        }
        assertNotNull(server, "the server starts: " + err);
        try {
            run(server, prompts);
        } finally {
            command.shutdown();
            assertEquals(0, exit.get(60, TimeUnit.SECONDS), err.toString());
        }
    }

    private void run(InetSocketAddress server, List<Prompt> prompts) throws Exception {
        // warm up every path (so that lazily started threads and classes count as idle), then take the idle level
        try (var pool = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<Outcome>> warm = new ArrayList<>();
            for (int i = 0; i < CLIENTS; i++) {
                Prompt p = prompts.get(i % prompts.size());
                int k = i;
                warm.add(pool.submit(() -> exchange(server, p, k % 2 == 0, k % 8 == 7 ? 2 : -1)));
            }
            for (Future<Outcome> f : warm) {
                f.get(120, TimeUnit.SECONDS);
            }
        }
        assertEquals(List.of(), List.copyOf(failures), "warm-up");
        awaitIdle(server);
        Idle base = idle(); // (its pauses also let the last warm-up requests be counted before the snapshot)
        Map<String, Double> before = metrics(server);
        int getsBefore = metricGets.get();

        LongAdder answered = new LongAdder();
        LongAdder gone = new LongAdder();
        LongAdder refused = new LongAdder();
        AtomicInteger budget = new AtomicInteger(MAX_REQUESTS);
        long started = System.nanoTime();
        long deadline = started + TimeUnit.SECONDS.toNanos(SECONDS);
        String busy;
        try (var pool = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<?>> clients = new ArrayList<>();
            for (int c = 0; c < CLIENTS; c++) {
                Random random = new Random(c);
                clients.add(pool.submit(() -> {
                    while (System.nanoTime() < deadline && budget.getAndDecrement() > 0) {
                        Prompt p = prompts.get(random.nextInt(prompts.size()));
                        int roll = random.nextInt(100);
                        int goneAfter = roll < 3 ? 0 : roll < 15 ? 1 + random.nextInt(4) : -1;
                        switch (exchange(server, p, random.nextBoolean(), goneAfter)) {
                            case ANSWERED -> answered.increment();
                            case GONE -> gone.increment();
                            case REFUSED -> refused.increment();
                        }
                    }
                    return null;
                }));
            }
            // halfway: how much the load holds (the dump must see the virtual threads for the check to mean anything)
            Thread.sleep(TimeUnit.SECONDS.toMillis(SECONDS) / 2);
            int busyThreads = allThreads();
            busy = String.format(Locale.ROOT, "halfway: %d platform threads, %d with virtual ones, heap %.1f MiB"
                    + " (before collection)", platformThreads(), busyThreads,
                    ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed() / 1048576.0);
            assertTrue(busyThreads > base.all() + CLIENTS / 2, "the thread dump counts virtual threads: " + busy);
            for (Future<?> f : clients) {
                f.get(SECONDS + 180L, TimeUnit.SECONDS);
            }
        }
        double seconds = (System.nanoTime() - started) / 1e9;
        long sent = answered.sum() + gone.sum() + refused.sum();

        // the server's side: nothing held, each request counted once
        Map<String, Double> after = awaitIdle(server);
        long deadlineCounts = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        double counted;
        while (true) {
            double ok = requests(after, 200) - requests(before, 200) - (metricGets.get() - getsBefore);
            counted = ok + requests(after, 499) - requests(before, 499) + requests(after, 429) - requests(before, 429);
            if (counted == sent || System.nanoTime() > deadlineCounts) {
                break;
            }
            Thread.sleep(50);
            after = metrics(server);
        }
        Idle end = idle();
        for (long stop = System.nanoTime() + TimeUnit.SECONDS.toNanos(30); !end.near(base) && System.nanoTime() < stop; ) {
            Thread.sleep(500); // what the virtual-thread scheduler or a pool keeps a while
            end = idle();
        }
        double tokens = after.get("nibble_completion_tokens_total") - before.get("nibble_completion_tokens_total");
        String summary = String.format(Locale.ROOT, "serve load: %d clients, %.1f s: %d requests (%d answered in full"
                        + " and checked, %d abandoned by their client, %d refused 429), %.0f tokens generated"
                        + " (%.0f tok/s), %.0f disconnects noticed; idle before: %s; %s; after: %s",
                CLIENTS, seconds, sent, answered.sum(), gone.sum(), refused.sum(), tokens, tokens / seconds,
                after.get("nibble_client_disconnects_total") - before.get("nibble_client_disconnects_total"), base, busy,
                end);
        System.out.println(summary);

        assertEquals(List.of(), List.copyOf(failures), failureCount.get() + " failures; " + summary);
        assertTrue(answered.sum() > CLIENTS, summary);
        assertTrue(gone.sum() > 0, summary);
        assertEquals(sent, counted, "each request counted once, as 200, 499 or 429: " + after + "; " + summary);
        for (String k : after.keySet()) {
            if (k.startsWith("nibble_requests_total{")) {
                assertTrue(k.matches(".*\"(200|429|499)\"}"), "no other status: " + k + " " + after.get(k));
            }
        }
        assertEquals(refused.sum(), requests(after, 429) - requests(before, 429), summary);
        assertTrue(end.near(base), "back to the idle level: " + summary);

        // and it still answers as before
        for (Prompt p : prompts) {
            assertEquals(Outcome.ANSWERED, exchange(server, p, true, -1));
        }
        assertEquals(List.of(), List.copyOf(failures), "after the load");
    }
}
