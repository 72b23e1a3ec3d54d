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

    private final BufferedReader reader;
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
        return reader.readLine();
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
