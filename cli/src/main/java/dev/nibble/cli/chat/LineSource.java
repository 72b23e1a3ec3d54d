package dev.nibble.cli.chat;

import java.io.IOException;

/** Where the chat reads the user's lines: a terminal with line editing, or plain standard input. */
interface LineSource extends AutoCloseable {

    /** The next line, without its line ending; null at the end of input. */
    String readLine(String prompt) throws IOException;

    /** Runs {@code handler} on Ctrl-C (SIGINT) instead of ending the program. */
    void onInterrupt(Runnable handler);

    @Override
    void close() throws IOException;
}
