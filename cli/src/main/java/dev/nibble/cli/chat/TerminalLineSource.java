package dev.nibble.cli.chat;

import java.io.IOException;
import org.jline.reader.EndOfFileException;
import org.jline.reader.LineReader;
import org.jline.reader.LineReaderBuilder;
import org.jline.reader.UserInterruptException;
import org.jline.terminal.Terminal;
import org.jline.terminal.TerminalBuilder;

/** Lines from a terminal through JLine: editing, history (up and down arrows), Ctrl-C and Ctrl-D. */
final class TerminalLineSource implements LineSource {

    private final Terminal terminal;
    private final LineReader reader;

    TerminalLineSource(Terminal terminal) {
        this.terminal = terminal;
        this.reader = LineReaderBuilder.builder().terminal(terminal).appName("nibble").build();
    }

    /** The system terminal, or null when standard input and output are not a terminal. */
    static TerminalLineSource openSystemTerminal() throws IOException {
        if (System.console() == null || !System.console().isTerminal()) {
            return null;
        }
        return new TerminalLineSource(TerminalBuilder.builder().system(true).build());
    }

    Terminal terminal() {
        return terminal;
    }

    @Override
    public String readLine(String prompt) {
        while (true) {
            try {
                return reader.readLine(prompt);
            } catch (UserInterruptException e) {
                // Ctrl-C at the prompt clears the line, as in a shell; Ctrl-D or /quit leaves.
                continue;
            } catch (EndOfFileException e) {
                return null;
            }
        }
    }

    @Override
    public void onInterrupt(Runnable handler) {
        terminal.handle(Terminal.Signal.INT, signal -> handler.run());
    }

    @Override
    public void close() throws IOException {
        terminal.close();
    }
}
