package dev.nibble.cli.batch;

import dev.nibble.runtime.GenerationResult;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What a batch run tells the user while it runs: on a terminal a bar redrawn every second (requests done of all,
 * generated tokens per second, time left); in a log a plain line every ten seconds; a summary at the end.
 */
final class Progress {

    private final PrintWriter err;
    private final int total;
    private final boolean terminal;
    private volatile long start = System.nanoTime();
    private final AtomicInteger done = new AtomicInteger();
    private final AtomicInteger errors = new AtomicInteger();
    private final AtomicLong promptTokens = new AtomicLong();
    private final AtomicLong generatedTokens = new AtomicLong();
    private final Thread ticker;
    private volatile boolean stopped;


    private Progress(PrintWriter err, int total, boolean terminal) {
        this.err = err;
        this.total = total;
        this.terminal = terminal;
        ticker = Thread.ofPlatform().daemon().name("nibble-progress").unstarted(this::tick);
    }

    static Progress of(PrintWriter err, int total) {
        return new Progress(err, total, System.console() != null && System.console().isTerminal());
    }

    /** Starts the clock and the bar, when the requests begin to run (after the model has loaded). */
    void begin() {
        start = System.nanoTime();
        ticker.start();
    }

    /** A request finished: its result (null for an error). */
    void done(GenerationResult result) {
        if (result == null) {
            errors.incrementAndGet();
        } else {
            promptTokens.addAndGet(result.promptTokens());
            generatedTokens.addAndGet(result.generatedTokens());
        }
        done.incrementAndGet();
    }

    /** Results written in this run. */
    int completed() {
        return done.get();
    }

    private void tick() {
        long interval = terminal ? 1_000 : 10_000;
        while (!stopped) {
            try {
                Thread.sleep(interval);
            } catch (InterruptedException e) {
                return;
            }
            if (!stopped) {
                show();
            }
        }
    }

    private synchronized void show() {
        int d = done.get();
        double seconds = (System.nanoTime() - start) / 1e9;
        double rate = generatedTokens.get() / Math.max(seconds, 1e-9);
        String left = d == 0 ? "?" : duration(seconds / d * (total - d));
        String line = String.format(Locale.ROOT, "%d/%d requests, %.1f tok/s, %s left%s", d, total, rate, left,
                errors.get() > 0 ? ", " + errors.get() + " errors" : "");
        if (terminal) {
            int width = 24;
            int filled = (int) ((long) width * d / Math.max(total, 1));
            err.print("\rnibble: [" + "#".repeat(filled) + " ".repeat(width - filled) + "] " + line + "   ");
        } else {
            err.println("nibble: " + line);
        }
        err.flush();
    }

    private static String duration(double seconds) {
        long s = Math.round(seconds);
        return s >= 3600 ? String.format(Locale.ROOT, "%dh%02dm", s / 3600, s / 60 % 60)
                : s >= 60 ? String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60) : s + "s";
    }

    /** Stops the bar (idempotent). */
    void stop() {
        if (!stopped) {
            stopped = true;
            ticker.interrupt();
            if (terminal) {
                synchronized (this) {
                    err.print("\r");
                    err.flush();
                }
            }
        }
    }

    /** Stops the bar and prints the summary. */
    void finish(Path output) {
        stop();
        double seconds = (System.nanoTime() - start) / 1e9;
        err.println(String.format(Locale.ROOT,
                "nibble: %d request%s in %.1f s (%d errors); prompts %d tokens; generated %d tokens, %.1f tok/s; "
                        + "results in %s", done.get(), done.get() == 1 ? "" : "s", seconds, errors.get(), promptTokens.get(), generatedTokens.get(),
                generatedTokens.get() / Math.max(seconds, 1e-9), output));
        err.flush();
    }
}
