package dev.nibble.converter;

import dev.nibble.formats.gguf.GgufTensorInfo;
import java.io.PrintStream;
import java.util.Locale;
import java.util.function.LongSupplier;

/**
 * Shows a conversion's progress: on a terminal, one bar redrawn in place (bytes written, rate, time left); otherwise,
 * for logs, a plain line at most every few seconds and one at the end.
 */
public final class ConsoleProgress implements ConversionProgress {

    private static final int BAR_WIDTH = 30;
    /** Redraw the bar at most this often, so a fast conversion does not spend its time printing. */
    private static final long BAR_INTERVAL_NANOS = 200_000_000L;
    private static final long LOG_INTERVAL_NANOS = 5_000_000_000L;

    private final PrintStream out;
    private final boolean terminal;
    private final LongSupplier clock;
    private long total;
    private int tensorCount;
    private long done;
    private long startNanos;
    private long lastShown;
    private int tensorIndex;
    private String tensorName = "";

    /**
     * @param terminal draw a bar with carriage returns rather than log lines
     * @param clock    nanoseconds, {@link System#nanoTime} outside tests
     */
    public ConsoleProgress(PrintStream out, boolean terminal, LongSupplier clock) {
        this.out = out;
        this.terminal = terminal;
        this.clock = clock;
    }

    /** Progress on stderr, as a bar when the process has an interactive terminal. */
    public static ConsoleProgress onStderr() {
        java.io.Console console = System.console();
        return new ConsoleProgress(System.err, console != null && console.isTerminal(), System::nanoTime);
    }

    @Override
    public void start(long totalBytes, int tensors) {
        total = totalBytes;
        tensorCount = tensors;
        startNanos = clock.getAsLong();
        lastShown = startNanos;
        if (!terminal) {
            out.printf(Locale.ROOT, "converting %d tensors, %s%n", tensors, size(totalBytes));
        }
    }

    @Override
    public void tensor(int index, GgufTensorInfo info) {
        tensorIndex = index;
        tensorName = info.name() + " " + info.type();
    }

    @Override
    public void advance(long bytes) {
        done += bytes;
        long now = clock.getAsLong();
        if (now - lastShown >= (terminal ? BAR_INTERVAL_NANOS : LOG_INTERVAL_NANOS)) {
            lastShown = now;
            show(now);
        }
    }

    @Override
    public void done() {
        long now = clock.getAsLong();
        if (terminal) {
            show(now);
            out.println();
        } else {
            double seconds = Math.max(1e-9, (now - startNanos) / 1e9);
            out.printf(Locale.ROOT, "done: %s in %.1f s (%s/s)%n", size(done), seconds, size((long) (done / seconds)));
        }
    }

    private void show(long now) {
        double seconds = (now - startNanos) / 1e9;
        double rate = seconds > 0 ? done / seconds : 0;
        String eta = rate > 0 ? duration((total - done) / rate) : "--:--";
        double fraction = total == 0 ? 1 : (double) done / total;
        if (terminal) {
            int filled = (int) Math.round(fraction * BAR_WIDTH);
            out.printf(Locale.ROOT, "\r[%s%s] %3.0f%% %s / %s  %s/s  ETA %s  %d/%d %-36s",
                    "#".repeat(filled), ".".repeat(BAR_WIDTH - filled), fraction * 100, size(done), size(total),
                    size((long) rate), eta, tensorIndex + 1, tensorCount, tensorName);
            out.flush();
        } else {
            out.printf(Locale.ROOT, "%3.0f%% %s / %s, %s/s, ETA %s, tensor %d/%d %s%n", fraction * 100, size(done),
                    size(total), size((long) rate), eta, tensorIndex + 1, tensorCount, tensorName);
        }
    }

    /** A byte count for people: KiB, MiB or GiB with one or two decimals. */
    public static String size(long bytes) {
        if (bytes >= 1L << 30) {
            return String.format(Locale.ROOT, "%.2f GiB", bytes / (double) (1L << 30));
        }
        if (bytes >= 1L << 20) {
            return String.format(Locale.ROOT, "%.1f MiB", bytes / (double) (1L << 20));
        }
        return String.format(Locale.ROOT, "%.1f KiB", bytes / 1024.0);
    }

    static String duration(double seconds) {
        long s = Math.round(seconds);
        return s >= 3600 ? String.format(Locale.ROOT, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                : String.format(Locale.ROOT, "%d:%02d", s / 60, s % 60);
    }
}
