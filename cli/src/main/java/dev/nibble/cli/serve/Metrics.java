package dev.nibble.cli.serve;

import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.LongAdder;

/** The server's counters, and {@code /metrics} in Prometheus' text format. Thread-safe. */
final class Metrics {

    /** Seconds over which the tokens-per-second gauge is averaged. */
    static final int RATE_WINDOW_SECONDS = 10;

    private final Map<Integer, LongAdder> requests = new ConcurrentHashMap<>();
    private final LongAdder promptTokens = new LongAdder();
    private final LongAdder completionTokens = new LongAdder();
    private final LongAdder disconnects = new LongAdder();
    private final long[] bucketTokens = new long[RATE_WINDOW_SECONDS + 1];
    private final long[] bucketSecond = new long[RATE_WINDOW_SECONDS + 1];

    /** A request answered with {@code status}. */
    void request(int status) {
        requests.computeIfAbsent(status, s -> new LongAdder()).increment();
    }

    /** Prompt tokens of a request that ran. */
    void prompt(int tokens) {
        promptTokens.add(tokens);
    }

    /** One token generated (on the engine's thread, as it is sampled). */
    void token() {
        completionTokens.increment();
        long second = System.nanoTime() / 1_000_000_000L;
        int b = (int) (second % bucketTokens.length);
        synchronized (bucketTokens) {
            if (bucketSecond[b] != second) {
                bucketSecond[b] = second;
                bucketTokens[b] = 0;
            }
            bucketTokens[b]++;
        }
    }

    /** A client that went away before its answer ended. */
    void disconnect() {
        disconnects.increment();
    }

    long requests(int status) {
        LongAdder n = requests.get(status);
        return n == null ? 0 : n.sum();
    }

    long disconnects() {
        return disconnects.sum();
    }

    /** Tokens generated per second over the last {@link #RATE_WINDOW_SECONDS} whole seconds. */
    double tokensPerSecond() {
        long now = System.nanoTime() / 1_000_000_000L;
        long sum = 0;
        synchronized (bucketTokens) {
            for (int b = 0; b < bucketTokens.length; b++) {
                if (bucketSecond[b] < now && bucketSecond[b] >= now - RATE_WINDOW_SECONDS) {
                    sum += bucketTokens[b];
                }
            }
        }
        return sum / (double) RATE_WINDOW_SECONDS;
    }

    /** What the engine and the queue are doing now, for {@link #render}. */
    record Gauges(int queued, int running, int inFlight, int capacity, int kvTokens, int kvReserved, long kvBytes) {
    }

    String render(Gauges g) {
        StringBuilder out = new StringBuilder();
        head(out, "nibble_requests_total", "counter", "HTTP requests answered, by status code.");
        Map<Integer, Long> byStatus = new TreeMap<>();
        requests.forEach((status, n) -> byStatus.put(status, n.sum()));
        byStatus.forEach((status, n) -> out.append("nibble_requests_total{status=\"").append(status).append("\"} ")
                .append(n).append('\n'));
        metric(out, "nibble_prompt_tokens_total", "counter", "Prompt tokens of the requests that ran.",
                promptTokens.sum());
        metric(out, "nibble_completion_tokens_total", "counter",
                "Tokens generated (those of requests cancelled on the way too).", completionTokens.sum());
        metric(out, "nibble_tokens_per_second", "gauge",
                "Tokens generated per second, all requests together, over the last " + RATE_WINDOW_SECONDS
                        + " seconds.", tokensPerSecond());
        metric(out, "nibble_requests_queued", "gauge", "Requests accepted and waiting for a place in the batch.",
                g.queued());
        metric(out, "nibble_requests_running", "gauge", "Sequences in the batch (prefilling or generating).",
                g.running());
        metric(out, "nibble_requests_in_flight", "gauge",
                "Requests accepted and not yet answered in full (queued, running, or sending their answer).",
                g.inFlight());
        metric(out, "nibble_requests_capacity", "gauge",
                "Requests accepted at most at once (--parallel + --queue); beyond, 429.", g.capacity());
        metric(out, "nibble_client_disconnects_total", "counter",
                "Streaming clients that went away before their answer ended (their sequences were cancelled).",
                disconnects.sum());
        metric(out, "nibble_kv_cache_tokens", "gauge", "Positions of the KV cache pool.", g.kvTokens());
        metric(out, "nibble_kv_cache_used_tokens", "gauge", "Positions of the KV cache pool reserved by running sequences.",
                g.kvReserved());
        metric(out, "nibble_kv_cache_usage_ratio", "gauge", "Share of the KV cache pool reserved (0 to 1).",
                g.kvTokens() == 0 ? 0 : g.kvReserved() / (double) g.kvTokens());
        metric(out, "nibble_kv_cache_bytes", "gauge", "Bytes of the KV cache pool.", g.kvBytes());
        return out.toString();
    }

    private static void head(StringBuilder out, String name, String type, String help) {
        out.append("# HELP ").append(name).append(' ').append(help).append('\n');
        out.append("# TYPE ").append(name).append(' ').append(type).append('\n');
    }

    private static void metric(StringBuilder out, String name, String type, String help, long value) {
        head(out, name, type, help);
        out.append(name).append(' ').append(value).append('\n');
    }

    private static void metric(StringBuilder out, String name, String type, String help, double value) {
        head(out, name, type, help);
        out.append(name).append(' ').append(String.format(Locale.ROOT, "%.3f", value)).append('\n');
    }
}
