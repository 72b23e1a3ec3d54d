package dev.nibble.cli.serve;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.Headers;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.nibble.cli.openai.InvalidRequestException;
import dev.nibble.cli.openai.OpenAiRequest;
import dev.nibble.cli.openai.OpenAiResponses;
import dev.nibble.runtime.BatchEngine;
import dev.nibble.runtime.Generation;
import dev.nibble.runtime.GenerationResult;
import dev.nibble.runtime.GenerationSettings;
import dev.nibble.runtime.Sampler;
import dev.nibble.runtime.SamplerSettings;
import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.chat.TokenSampler;
import dev.nibble.runtime.tokenizer.StreamingDecoder;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.BindException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.HexFormat;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import java.util.function.IntFunction;

/**
 * The OpenAI-compatible HTTP API over a {@link BatchEngine}: {@code POST /v1/chat/completions},
 * {@code POST /v1/completions} (both streaming as server-sent events when asked), {@code GET /v1/models},
 * {@code GET /health} and {@code GET /metrics}. It serves no files.
 *
 * <p>Threads: the JDK's HTTP server accepts connections on its dispatcher thread and runs each request on a virtual
 * thread of its own, which parses the body, encodes the prompt, submits it to the engine and then blocks on the
 * answer (whole) or on its stream's queue, into which the engine's thread drops each piece of text; the engine's
 * thread never waits for a client. A request is accepted while fewer than {@code parallel + queue} are in flight
 * (running, waiting for a place, or sending their answer); beyond that it is answered 429 with {@code Retry-After}.
 * A streaming client that goes away is noticed at the next write (text or, while it waits, a keep-alive comment
 * every {@link Settings#keepAlive()}), and its sequence is cancelled, which frees its place at the engine's next pass.
 */
public final class ApiServer {

    /**
     * How the server runs.
     *
     * @param host       address to listen on (127.0.0.1: this machine only)
     * @param port       TCP port (0: a free one, see {@link #address()})
     * @param queue      requests accepted beyond the engine's places, waiting for one
     * @param maxBody    bytes of a request body at most (beyond: 413)
     * @param apiKey     the key clients must send as {@code Authorization: Bearer KEY}; null or empty: none
     * @param modelName  the model's name in responses and {@code /v1/models}
     * @param sampling   sampling of requests that give no sampling fields
     * @param randomSeed whether each request without a seed gets a random one (else {@code sampling}'s seed)
     * @param maxTokens  token limit of requests that give none (negative: until an end token or the context is full)
     * @param keepAlive  how long a streaming client waiting for text (in the queue, or a slow prompt) goes without a
     *                   line: it then gets a comment line, which clients skip, so that a client gone is noticed
     */
    public record Settings(String host, int port, int queue, long maxBody, String apiKey, String modelName,
                           SamplerSettings sampling, boolean randomSeed, int maxTokens, Duration keepAlive) {
        public Settings {
            if (queue < 0 || maxBody < 1 || port < 0 || port > 65535 || keepAlive.toMillis() < 1) {
                throw new IllegalArgumentException("queue must be 0 or more, the body limit and keep-alive positive"
                        + " and the port 0 to 65535: " + queue + ", " + maxBody + ", " + keepAlive + ", " + port);
            }
        }
    }

    /** The keep-alive of {@code nibble serve}: a client gone while it waits is noticed within this time. */
    public static final Duration KEEP_ALIVE = Duration.ofSeconds(2);
    /** Bytes of an oversized body read and dropped to answer 413 on a connection that stays usable. */
    private static final long DRAIN_LIMIT = 16L << 20;
    private static final Object END = new Object();

    private final BatchEngine engine;
    private final ChatFormat format;
    private final Tokenizer tokenizer;
    private final Settings settings;
    private final ObjectMapper json = new ObjectMapper().enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    private final OpenAiResponses responses;
    private final byte[] keyDigest;
    private final int capacity;
    private final AtomicInteger inFlight = new AtomicInteger();
    private final AtomicInteger generating = new AtomicInteger();
    private final Set<CompletableFuture<GenerationResult>> live = ConcurrentHashMap.newKeySet();
    private final Metrics metrics = new Metrics();
    private final ExecutorService handlers = Executors.newVirtualThreadPerTaskExecutor();
    private final long created = System.currentTimeMillis() / 1000;
    private final String idPrefix = HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextLong()).substring(0, 8);
    private final AtomicLong ids = new AtomicLong();
    private final AtomicLong answered = new AtomicLong();
    private final AtomicBoolean stopping = new AtomicBoolean();
    private final CompletableFuture<Void> stopped = new CompletableFuture<>();
    private final HttpServer http;
    private volatile boolean closing;

    private ApiServer(BatchEngine engine, ChatFormat format, Settings settings) throws IOException {
        this.engine = engine;
        this.format = format;
        this.tokenizer = engine.tokenizer();
        this.settings = settings;
        this.responses = new OpenAiResponses(json, settings.modelName());
        this.keyDigest = settings.apiKey() == null || settings.apiKey().isEmpty() ? null : sha256(settings.apiKey());
        this.capacity = engine.parallel() + settings.queue();
        // streamed chunks are small writes: send each at once rather than wait for the client's acknowledgement
        if (System.getProperty("sun.net.httpserver.nodelay") == null) {
            System.setProperty("sun.net.httpserver.nodelay", "true");
        }
        InetSocketAddress at = new InetSocketAddress(settings.host(), settings.port());
        if (at.isUnresolved()) {
            throw new IOException("--host " + settings.host() + ": no such address on this machine");
        }
        try {
            http = HttpServer.create(at, 128);
        } catch (BindException e) {
            throw new IOException("cannot listen on " + settings.host() + ":" + settings.port() + " (" + e.getMessage()
                    + "); choose another --port (0 picks a free one) or --host", e);
        }
        http.createContext("/", this::handle);
        http.setExecutor(handlers);
    }

    /**
     * Starts serving {@code engine} (which the caller keeps, and closes after {@link #shutdown}); chat requests are
     * rendered with {@code format}.
     */
    public static ApiServer start(BatchEngine engine, ChatFormat format, Settings settings) throws IOException {
        ApiServer server = new ApiServer(engine, format, settings);
        server.http.start();
        return server;
    }

    /** The address it listens on (with the port chosen when the settings asked for port 0). */
    public InetSocketAddress address() {
        return http.getAddress();
    }

    /** {@code http://host:port}, the base of every route. */
    public URI uri() {
        String host = address().getAddress().getHostAddress();
        return URI.create("http://" + (host.contains(":") ? "[" + host + "]" : host) + ":" + address().getPort());
    }

    /** Requests accepted at most at once: the engine's places and the queue. */
    public int capacity() {
        return capacity;
    }

    /**
     * Stops accepting requests (new connections are refused, requests on open ones get 503), lets those in flight
     * finish for up to {@code grace}, cancels what is left (each still gets an error answer), and stops. The engine
     * keeps running: its owner closes it afterwards. Safe to call more than once and from a shutdown hook.
     */
    public void shutdown(Duration grace) {
        if (!stopping.compareAndSet(false, true)) {
            stopped.join();
            return;
        }
        closing = true;
        long graceSeconds = Math.max(0, Math.min(grace.toSeconds(), Integer.MAX_VALUE - 60));
        // closes the listening socket now; returns when no exchange is left, or closes what is left after the delay
        Thread stopper = Thread.ofPlatform().name("nibble-serve-stop")
                .start(() -> http.stop((int) graceSeconds + 30));
        try {
            long deadline = System.nanoTime() + grace.toNanos();
            while (inFlight.get() > 0 && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            for (CompletableFuture<GenerationResult> f : live) {
                f.cancel(true); // their handlers answer with an error and end
            }
            stopper.join();
            handlers.shutdown();
            handlers.awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            stopped.complete(null);
        }
    }

    /** Completions answered in full so far. */
    public long answered() {
        return answered.get();
    }

    // ---- one request ----

    /** One exchange: what was sent, so that each request gets exactly one answer. */
    private final class Call {
        final HttpExchange exchange;
        int status = 500;
        boolean sent;
        boolean closeConnection;
        OutputStream stream;

        Call(HttpExchange exchange) {
            this.exchange = exchange;
        }

        void send(int status, String contentType, byte[] body, Map<String, String> extra) throws IOException {
            Headers h = exchange.getResponseHeaders();
            h.set("Content-Type", contentType);
            extra.forEach(h::set);
            if (closeConnection || closing) {
                h.set("Connection", "close");
            }
            sent = true;
            this.status = status;
            exchange.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        }

        void json(int status, ObjectNode body) throws IOException {
            send(status, "application/json", responses.text(body).getBytes(StandardCharsets.UTF_8), Map.of());
        }

        void error(HttpError e) throws IOException {
            send(e.status, "application/json",
                    responses.text(responses.error(e.getMessage(), e.type, e.param, e.code)).getBytes(StandardCharsets.UTF_8),
                    e.headers);
        }

        /** Starts a 200 answer of server-sent events. */
        void startStream() throws IOException {
            Headers h = exchange.getResponseHeaders();
            h.set("Content-Type", "text/event-stream; charset=utf-8");
            h.set("Cache-Control", "no-cache");
            h.set("X-Accel-Buffering", "no");
            sent = true;
            status = 200;
            exchange.sendResponseHeaders(200, 0);
            stream = exchange.getResponseBody();
            stream.flush(); // the headers now: the client knows it was accepted before any text comes
        }

        void event(String data) throws IOException {
            write("data: " + data + "\n\n");
        }

        void write(String text) throws IOException {
            stream.write(text.getBytes(StandardCharsets.UTF_8));
            stream.flush();
        }
    }

    private void handle(HttpExchange exchange) {
        Call call = new Call(exchange);
        try {
            route(call);
        } catch (HttpError e) {
            answerError(call, e);
        } catch (IOException e) {
            call.status = 499; // the client went away
        } catch (RuntimeException | Error e) {
            answerError(call, HttpError.internal(e.getClass().getSimpleName()
                    + (e.getMessage() == null ? "" : ": " + e.getMessage())));
        } finally {
            metrics.request(call.status);
            exchange.close();
        }
    }

    private void answerError(Call call, HttpError e) {
        if (call.sent) {
            return;
        }
        try {
            call.error(e);
        } catch (IOException gone) {
            call.status = 499;
        }
    }

    private void route(Call call) throws IOException {
        HttpExchange x = call.exchange;
        String path = x.getRequestURI().getPath();
        if (path == null) {
            throw HttpError.notFound("no such route: " + x.getRequestURI());
        }
        if (path.equals("/health")) {
            allow(call, "GET");
            ObjectNode body = json.createObjectNode();
            body.put("status", closing ? "stopping" : "ok");
            call.json(closing ? 503 : 200, body);
            return;
        }
        authorize(call);
        switch (path) {
            case OpenAiRequest.CHAT_URL -> {
                allow(call, "POST");
                completion(call, true);
            }
            case OpenAiRequest.COMPLETIONS_URL -> {
                allow(call, "POST");
                completion(call, false);
            }
            case "/v1/models" -> {
                allow(call, "GET");
                ObjectNode body = json.createObjectNode();
                body.put("object", "list");
                body.putArray("data").add(model());
                call.json(200, body);
            }
            case "/metrics" -> {
                allow(call, "GET");
                call.send(200, "text/plain; version=0.0.4; charset=utf-8",
                        metrics.render(gauges()).getBytes(StandardCharsets.UTF_8), Map.of());
            }
            default -> {
                String prefix = "/v1/models/";
                if (path.startsWith(prefix) && path.length() > prefix.length()) {
                    allow(call, "GET");
                    if (!path.substring(prefix.length()).equals(settings.modelName())) {
                        throw HttpError.notFound("no model \"" + path.substring(prefix.length()) + "\"; this server has \""
                                + settings.modelName() + "\"");
                    }
                    call.json(200, model());
                    return;
                }
                throw HttpError.notFound("no such route: " + x.getRequestMethod() + " " + path + " (this server has POST "
                        + OpenAiRequest.CHAT_URL + ", POST " + OpenAiRequest.COMPLETIONS_URL
                        + ", GET /v1/models, GET /health, GET /metrics)");
            }
        }
    }

    private ObjectNode model() {
        ObjectNode m = json.createObjectNode();
        m.put("id", settings.modelName());
        m.put("object", "model");
        m.put("created", created);
        m.put("owned_by", "nibble");
        return m;
    }

    private Metrics.Gauges gauges() {
        int running = engine.running();
        return new Metrics.Gauges(Math.max(0, generating.get() - running), running, inFlight.get(), capacity,
                engine.poolTokens(), engine.reservedPoolTokens(), engine.poolBytes());
    }

    private static void allow(Call call, String method) {
        if (!call.exchange.getRequestMethod().equals(method)) {
            throw HttpError.methodNotAllowed(call.exchange.getRequestMethod(), call.exchange.getRequestURI().getPath(),
                    method);
        }
    }

    /** With an API key set: the request must carry it, compared in constant time (as digests: no length leaks). */
    private void authorize(Call call) {
        if (keyDigest == null) {
            return;
        }
        String header = call.exchange.getRequestHeaders().getFirst("Authorization");
        if (header == null || !header.regionMatches(true, 0, "Bearer ", 0, 7)) {
            throw HttpError.unauthorized("this server needs an API key: send the header \"Authorization: Bearer KEY\"");
        }
        if (!MessageDigest.isEqual(keyDigest, sha256(header.substring(7).strip()))) {
            throw HttpError.unauthorized("the API key is not this server's");
        }
    }

    private static byte[] sha256(String text) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The body, at most {@code maxBody} bytes (413 beyond). */
    private byte[] body(Call call) throws IOException {
        long max = settings.maxBody();
        InputStream in = call.exchange.getRequestBody();
        String length = call.exchange.getRequestHeaders().getFirst("Content-Length");
        if (length != null) {
            try {
                long declared = Long.parseLong(length.strip());
                if (declared > max) {
                    drain(call, in);
                    throw HttpError.tooLarge("the body is " + declared + " bytes and this server takes at most "
                            + max + " (--max-body)");
                }
            } catch (NumberFormatException e) {
                throw HttpError.badRequest("Content-Length is not a number: " + length);
            }
        }
        byte[] data = in.readNBytes((int) Math.min(max + 1, Integer.MAX_VALUE - 16));
        if (data.length > max) {
            drain(call, in);
            throw HttpError.tooLarge("the body is more than " + max + " bytes, the most this server takes (--max-body)");
        }
        return data;
    }

    /** Reads and drops the rest of an oversized body, up to a limit, so that the client can read the answer. */
    private static void drain(Call call, InputStream in) throws IOException {
        byte[] buffer = new byte[65536];
        long left = DRAIN_LIMIT;
        while (left > 0) {
            int n = in.read(buffer, 0, (int) Math.min(buffer.length, left));
            if (n < 0) {
                return;
            }
            left -= n;
        }
        call.closeConnection = true;
    }

    private void completion(Call call, boolean chat) throws IOException {
        byte[] bytes = body(call);
        JsonNode root;
        try {
            root = json.readTree(bytes);
        } catch (JsonProcessingException e) {
            throw HttpError.badRequest("the body is not valid JSON: " + e.getOriginalMessage());
        }
        if (root == null || !root.isObject()) {
            throw HttpError.badRequest("the body must be a JSON object");
        }
        OpenAiRequest request;
        OpenAiRequest.Streaming streaming;
        try {
            request = OpenAiRequest.parse(chat ? OpenAiRequest.CHAT_URL : OpenAiRequest.COMPLETIONS_URL, root);
            streaming = OpenAiRequest.streaming(root);
        } catch (InvalidRequestException e) {
            throw HttpError.badRequest(e.getMessage(), e.param(), null);
        }
        if (request.maxTokens() != null && request.maxTokens() < 0) {
            throw HttpError.badRequest("max_tokens must be 0 or more, is " + request.maxTokens(), "max_tokens", null);
        }
        GenerationSettings generation;
        try {
            generation = new GenerationSettings(request.maxTokens() != null ? request.maxTokens() : settings.maxTokens(),
                    request.sampling().over(defaults()), request.stop());
        } catch (IllegalArgumentException e) {
            throw HttpError.badRequest(e.getMessage());
        }
        int[] prompt;
        try {
            prompt = chat ? format.encode(request.messages(), true)
                    : tokenizer.encode(request.prompt(), tokenizer.vocabulary().addBos(), true);
        } catch (IllegalArgumentException e) { // the template refuses the conversation
            throw HttpError.badRequest(e.getMessage(), "messages", null);
        }
        if (prompt.length == 0) {
            throw HttpError.badRequest("the prompt is empty and this model adds no BOS token; give some text", "prompt",
                    null);
        }
        if (prompt.length >= engine.context()) {
            throw HttpError.badRequest("the prompt is " + prompt.length + " tokens but the context holds "
                            + engine.context() + " (prompt and answer together, --ctx); shorten the "
                            + (chat ? "conversation" : "prompt"), chat ? "messages" : "prompt",
                    "context_length_exceeded");
        }
        if (closing) {
            throw HttpError.unavailable("the server is shutting down");
        }
        for (int n = inFlight.get(); ; n = inFlight.get()) {
            if (n >= capacity) {
                throw HttpError.tooManyRequests("the server is busy: " + engine.parallel() + " requests run and "
                        + settings.queue() + " wait, the most it takes (--parallel, --queue); retry later", 1);
            }
            if (inFlight.compareAndSet(n, n + 1)) {
                break;
            }
        }
        try {
            run(call, chat, prompt, generation, streaming);
        } finally {
            inFlight.decrementAndGet();
        }
    }

    /** The sampling defaults of one request: the server's, with a fresh seed unless the server fixes one. */
    private SamplerSettings defaults() {
        SamplerSettings d = settings.sampling();
        if (!settings.randomSeed()) {
            return d;
        }
        return new SamplerSettings(d.temperature(), d.topK(), d.topP(), d.minP(), d.repeatPenalty(),
                d.frequencyPenalty(), d.presencePenalty(), ThreadLocalRandom.current().nextLong());
    }

    private void run(Call call, boolean chat, int[] prompt, GenerationSettings settings,
                     OpenAiRequest.Streaming streaming) throws IOException {
        String id = (chat ? "chatcmpl-" : "cmpl-") + idPrefix + ids.incrementAndGet();
        long now = System.currentTimeMillis() / 1000;
        LinkedBlockingQueue<Object> events = streaming.stream() ? new LinkedBlockingQueue<>() : null;
        Consumer<String> output = events == null ? text -> { } : events::add;
        TokenSampler sampler = counting(new Sampler(settings.sampler())::sample);
        IntFunction<Generation> maker = chat
                ? context -> Generation.answering(prompt, settings, sampler, format, context, output)
                : context -> continuing(prompt, settings, sampler, context, output);
        generating.incrementAndGet();
        CompletableFuture<GenerationResult> future = engine.submit(maker);
        live.add(future);
        future.whenComplete((result, failure) -> {
            generating.decrementAndGet();
            live.remove(future);
            if (result != null) {
                metrics.prompt(result.promptTokens());
            }
            if (events != null) {
                events.add(END);
            }
        });
        if (events == null) {
            whole(call, chat, id, now, future);
        } else {
            stream(call, chat, id, now, future, events, streaming.includeUsage());
        }
    }

    /** As {@link Generation#continuing}, with a sampler that counts tokens for {@code /metrics}. */
    private Generation continuing(int[] prompt, GenerationSettings settings, TokenSampler sampler, int context,
                                  Consumer<String> output) {
        StreamingDecoder decoder = tokenizer.streamingDecoder(true);
        for (int id : prompt) {
            decoder.next(id);
        }
        int[] ends = engine.model().config().eosIds();
        return new Generation(prompt, settings.maxTokens(), sampler, id -> {
            for (int e : ends) {
                if (e == id) {
                    return true;
                }
            }
            return false;
        }, settings.stopStrings(), decoder, context, output);
    }

    private TokenSampler counting(TokenSampler sampler) {
        return (logits, history, length) -> {
            metrics.token();
            return sampler.sample(logits, history, length);
        };
    }

    private void whole(Call call, boolean chat, String id, long now, CompletableFuture<GenerationResult> future)
            throws IOException {
        GenerationResult result;
        try {
            result = future.get();
        } catch (InterruptedException e) {
            future.cancel(true);
            Thread.currentThread().interrupt();
            throw HttpError.unavailable("the server is shutting down");
        } catch (CancellationException | ExecutionException e) {
            throw failure(e);
        }
        if (result.stopReason() == GenerationResult.StopReason.CANCELLED) {
            throw HttpError.unavailable("the request was cancelled: the server is shutting down");
        }
        call.json(200, responses.completion(chat, id, now, result));
        answered.incrementAndGet();
    }

    private void stream(Call call, boolean chat, String id, long now, CompletableFuture<GenerationResult> future,
                        LinkedBlockingQueue<Object> events, boolean includeUsage) {
        try {
            call.startStream();
            if (chat) {
                call.event(responses.text(responses.roleChunk(id, now)));
            }
            StringBuilder text = new StringBuilder();
            boolean end = false;
            while (!end) {
                Object e = events.poll(settings.keepAlive().toMillis(), TimeUnit.MILLISECONDS);
                if (e == null) {
                    call.write(": waiting\n\n"); // a comment: clients skip it; a client gone fails it
                    continue;
                }
                for (; e != null; e = events.poll()) {
                    if (e == END) {
                        end = true;
                        break;
                    }
                    text.append((String) e);
                }
                if (!text.isEmpty()) {
                    call.event(responses.text(responses.chunk(chat, id, now, text.toString(), null)));
                    text.setLength(0);
                }
            }
            GenerationResult result = null;
            HttpError failure = null;
            try {
                result = future.join();
            } catch (CancellationException | CompletionException e) {
                failure = failure(e);
            }
            if (result != null && result.stopReason() == GenerationResult.StopReason.CANCELLED) {
                failure = HttpError.unavailable("the request was cancelled: the server is shutting down");
            }
            if (failure == null) {
                call.event(responses.text(responses.chunk(chat, id, now, null,
                        OpenAiResponses.finishReason(result.stopReason()))));
                if (includeUsage) {
                    call.event(responses.text(responses.usageChunk(chat, id, now, result.promptTokens(),
                            result.generatedTokens())));
                }
                answered.incrementAndGet();
            } else {
                call.status = failure.status;
                call.event(responses.text(responses.error(failure.getMessage(), failure.type, failure.param,
                        failure.code)));
            }
            call.write("data: [DONE]\n\n");
        } catch (IOException gone) { // the client went away: free its place now
            future.cancel(true);
            metrics.disconnect();
            call.status = 499;
        } catch (InterruptedException e) {
            future.cancel(true);
            Thread.currentThread().interrupt();
        }
    }

    /** What a request that did not end well is answered. */
    private static HttpError failure(Exception e) {
        Throwable cause = e instanceof ExecutionException || e instanceof CompletionException ? e.getCause() : e;
        if (cause instanceof CancellationException) {
            return HttpError.unavailable("the request was cancelled: the server is shutting down");
        }
        if (cause instanceof IllegalArgumentException) {
            return HttpError.badRequest(cause.getMessage());
        }
        return HttpError.internal("generation failed: " + cause);
    }
}
