package dev.nibble.cli;

import picocli.CommandLine;

/** The configured command line, for tests in other packages. */
public final class NibbleAccess {

    private NibbleAccess() {
    }

    public static CommandLine commandLine() {
        return Nibble.commandLine();
    }
}
