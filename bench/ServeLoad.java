import java.io.IOException;
import java.io.PrintWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A small load generator for OpenAI-compatible servers ({@code nibble serve}, {@code llama-server}): CLIENTS clients
 * send REQUESTS streaming {@code /v1/completions} requests in all (each client one at a time), greedy, with
 * MAX_TOKENS tokens at most and distinct prompts of about PROMPT_WORDS words, and it reports the aggregate generation
 * rate (completion tokens of all requests over the wall time from the first request sent to the last answer) and the
 * time to first token (from sending a request to its first non-empty text).
 *
 * <pre>
 * java bench/ServeLoad.java URL CLIENTS REQUESTS MAX_TOKENS [PROMPT_WORDS]   load URL (http://127.0.0.1:8080)
 * java bench/ServeLoad.java --jsonl FILE REQUESTS MAX_TOKENS [PROMPT_WORDS]  the same requests as nibble batch lines
 * </pre>
 * The last line printed is {@code RESULT key=value ...}. Only the client is warmed up (a {@code GET /health}, before
 * the clock starts), not the model: the server's first pass (weights faulted in, code compiled) is in the figures, as
 * it is in {@code nibble batch}'s; start llama-server with {@code --no-warmup} to match. Requests carry
 * {@code "cache_prompt": false} (llama-server's prompt cache; nibble ignores the field), so that each prompt is
 * processed in full by both.
 */
public class ServeLoad {

    private static final Pattern TOKENS = Pattern.compile("\"completion_tokens\"\\s*:\\s*(\\d+)");
    private static final Pattern TEXT = Pattern.compile("\"(text|content)\"\\s*:\\s*\"(?!\")");
    private static final String WORDS = "the quick brown fox jumps over the lazy dog while a patient owl watches from"
            + " an old oak tree near the river bank and counts the stars one by one until morning comes";

    static String prompt(int i, int words) {
        String[] w = WORDS.split(" ");
        StringBuilder b = new StringBuilder("Request ").append(i).append(":");
        for (int k = 0; k < words; k++) {
            b.append(" ").append(w[Math.floorMod(i + k, w.length)]);
        }
        return b.toString();
    }

    static String quote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    static String body(int i, int maxTokens, int words, boolean stream) {
        return "{\"prompt\": " + quote(prompt(i, words)) + ", \"max_tokens\": " + maxTokens + ", \"temperature\": 0"
                + (stream ? ", \"stream\": true, \"stream_options\": {\"include_usage\": true}, \"cache_prompt\": false"
                : "") + "}";
    }

    record Answer(int tokens, double ttft, String error) {
    }

    static Answer send(HttpClient http, URI uri, String body) throws IOException, InterruptedException {
        long start = System.nanoTime();
        HttpRequest request = HttpRequest.newBuilder(uri).header("Content-Type", "application/json")
                .timeout(Duration.ofHours(1)).POST(HttpRequest.BodyPublishers.ofString(body)).build();
        HttpResponse<java.util.stream.Stream<String>> r;
        try {
            r = http.send(request, HttpResponse.BodyHandlers.ofLines());
        } catch (IOException e) {
            // A kept-alive connection the server had closed while this client waited (llama-server closes idle ones):
            // nothing reached the server, so sending again on a new connection is the same request.
            if (e.getMessage() == null || !e.getMessage().contains("received no bytes")) {
                throw e;
            }
            r = http.send(request, HttpResponse.BodyHandlers.ofLines());
        }
        if (r.statusCode() != 200) {
            String text = String.join("\n", r.body().toList());
            return new Answer(0, 0, "status " + r.statusCode() + ": " + text);
        }
        double[] ttft = {-1};
        int[] tokens = {-1};
        int[] chunks = {0};
        String[] error = {null};
        try (var lines = r.body()) {
            lines.forEach(line -> {
                if (!line.startsWith("data: ") || line.equals("data: [DONE]")) {
                    return;
                }
                if (line.contains("\"error\"")) {
                    error[0] = line;
                }
                if (TEXT.matcher(line).find()) {
                    chunks[0]++;
                    if (ttft[0] < 0) {
                        ttft[0] = (System.nanoTime() - start) / 1e9;
                    }
                }
                Matcher m = TOKENS.matcher(line);
                if (m.find()) {
                    tokens[0] = Integer.parseInt(m.group(1));
                }
            });
        }
        return new Answer(tokens[0] >= 0 ? tokens[0] : chunks[0], ttft[0], error[0]);
    }

    static double percentile(List<Double> sorted, double p) {
        if (sorted.isEmpty()) {
            return Double.NaN;
        }
        return sorted.get((int) Math.min(sorted.size() - 1, Math.ceil(p * sorted.size()) - 1));
    }

    public static void main(String[] args) throws Exception {
        if (args.length >= 4 && args[0].equals("--jsonl")) {
            int requests = Integer.parseInt(args[2]);
            int maxTokens = Integer.parseInt(args[3]);
            int words = args.length > 4 ? Integer.parseInt(args[4]) : 24;
            try (PrintWriter out = new PrintWriter(Files.newBufferedWriter(Path.of(args[1]), StandardCharsets.UTF_8))) {
                for (int i = 0; i < requests; i++) {
                    String b = body(i, maxTokens, words, false);
                    out.println("{\"id\": " + i + ", " + b.substring(1));
                }
            }
            return;
        }
        if (args.length < 4) {
            System.err.println("usage: java bench/ServeLoad.java URL CLIENTS REQUESTS MAX_TOKENS [PROMPT_WORDS]\n"
                    + "       java bench/ServeLoad.java --jsonl FILE REQUESTS MAX_TOKENS [PROMPT_WORDS]");
            System.exit(2);
        }
        URI uri = URI.create(args[0].replaceAll("/+$", "") + "/v1/completions");
        int clients = Integer.parseInt(args[1]);
        int requests = Integer.parseInt(args[2]);
        int maxTokens = Integer.parseInt(args[3]);
        int words = args.length > 4 ? Integer.parseInt(args[4]) : 24;
        HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .executor(Executors.newVirtualThreadPerTaskExecutor()).connectTimeout(Duration.ofSeconds(30)).build();

        // the client's own first request (classes, connection) is not the server's time: a GET /health, no model pass
        http.send(HttpRequest.newBuilder(uri.resolve("/health")).timeout(Duration.ofSeconds(60)).build(),
                HttpResponse.BodyHandlers.discarding());
        AtomicInteger next = new AtomicInteger();
        List<Answer> answers = Collections.synchronizedList(new ArrayList<>());
        long start = System.nanoTime();
        try (var pool = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<?>> running = new ArrayList<>();
            for (int c = 0; c < clients; c++) {
                running.add(pool.submit(() -> {
                    for (int i = next.getAndIncrement(); i < requests; i = next.getAndIncrement()) {
                        answers.add(send(http, uri, body(i, maxTokens, words, true)));
                    }
                    return null;
                }));
            }
            for (Future<?> f : running) {
                f.get();
            }
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        long tokens = 0;
        int errors = 0;
        List<Double> ttft = new ArrayList<>();
        for (Answer a : answers) {
            if (a.error() != null) {
                errors++;
                if (errors <= 3) {
                    System.err.println("error: " + a.error());
                }
                continue;
            }
            tokens += a.tokens();
            if (a.ttft() >= 0) {
                ttft.add(a.ttft());
            }
        }
        Collections.sort(ttft);
        System.out.println(String.format(Locale.ROOT,
                "%d clients, %d requests: %d tokens generated in %.1f s, %.2f tok/s aggregate; time to first token"
                        + " median %.2f s, p90 %.2f s, max %.2f s; %d errors",
                clients, requests, tokens, seconds, tokens / seconds, percentile(ttft, 0.5), percentile(ttft, 0.9),
                percentile(ttft, 1.0), errors));
        System.out.println(String.format(Locale.ROOT,
                "RESULT clients=%d requests=%d tokens=%d seconds=%.3f tok_s=%.3f ttft_median=%.3f ttft_p90=%.3f"
                        + " ttft_max=%.3f errors=%d", clients, requests, tokens, seconds, tokens / seconds,
                percentile(ttft, 0.5), percentile(ttft, 0.9), percentile(ttft, 1.0), errors));
        System.exit(errors == 0 ? 0 : 1);
    }
}
