package dev.nibble.cli.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PipedInputStream;
import java.io.PipedOutputStream;
import java.nio.charset.StandardCharsets;
import org.jline.terminal.Terminal;
import org.jline.terminal.impl.ExternalTerminal;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Line editing and history through JLine, on a terminal fed with the keys a user would press. */
class TerminalLineSourceTest {

    /** A terminal whose keyboard has already typed {@code keys} (a pipe, so that the input does not end). */
    private static TerminalLineSource typing(String keys) throws IOException {
        PipedOutputStream keyboard = new PipedOutputStream();
        PipedInputStream in = new PipedInputStream(keyboard, 4096);
        keyboard.write(keys.getBytes(StandardCharsets.UTF_8));
        Terminal terminal = new ExternalTerminal("test", "xterm", in, new ByteArrayOutputStream(), StandardCharsets.UTF_8);
        return new TerminalLineSource(terminal);
    }

    @Test
    @Timeout(30)
    void arrowsEditTheLineAndRecallHistory() throws IOException {
        // "helo", left arrow, "l", Enter; up arrow (the line before), " again", Enter; Ctrl-D. xterm's arrows in the
        // keypad mode JLine switches on are ESC O D and ESC O A.
        try (TerminalLineSource source = typing("helo\u001bODl\r\u001bOA again\r\u0004")) {
            assertEquals("hello", source.readLine("> "));
            assertEquals("hello again", source.readLine("> "));
            assertNull(source.readLine("> "), "Ctrl-D on an empty line ends the input");
        }
    }
}
