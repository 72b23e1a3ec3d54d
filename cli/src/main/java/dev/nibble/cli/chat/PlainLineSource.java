package dev.nibble.cli.chat;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import org.jline.utils.Signals;

/** Lines from standard input when it is not a terminal (a pipe or a file): no editing, prompts only if asked for. */
final class PlainLineSource implements LineSource {

    /** The longest line read: 4 Mi characters, far more than any model's context holds. */
    static final int MAX_LINE = 1 << 22;

    private final BufferedReader reader;
    private boolean skipLf;
    private final PrintWriter out;
    private Object registration;

    PlainLineSource(InputStream in, PrintWriter out) {
        this.reader = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
        this.out = out;
    }

    @Override
    public String readLine(String prompt) throws IOException {
        if (!prompt.isEmpty()) {
            out.print(prompt);
            out.flush();
        }
        return boundedLine();
    }

    /**
     * A line as {@link BufferedReader#readLine} reads it (ended by \n, \r or \r\n), refused past
     * {@link #MAX_LINE} characters: input without line breaks ({@code < /dev/zero}) must not fill the memory.
     */
    private String boundedLine() throws IOException {
        StringBuilder line = null;
        while (true) {
            int c = reader.read();
            if (c < 0) {
                return line == null ? null : line.toString();
            }
            if (skipLf) {
                skipLf = false;
                if (c == '\n') {
                    continue;
                }
            }
            if (c == '\n' || c == '\r') {
                skipLf = c == '\r';
                return line == null ? "" : line.toString();
            }
            if (line == null) {
                line = new StringBuilder();
            }
            if (line.length() >= MAX_LINE) {
                throw new IOException("standard input: a line of more than " + MAX_LINE + " characters; "
                        + "give one message per line, each shorter");
            }
            line.append((char) c);
        }
    }

    @Override
    public void onInterrupt(Runnable handler) {
        registration = Signals.register("INT", handler);
    }

    @Override
    public void close() {
        if (registration != null) {
            Signals.unregister("INT", registration);
        }
    }
}
