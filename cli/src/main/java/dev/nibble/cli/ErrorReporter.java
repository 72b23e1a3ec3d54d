package dev.nibble.cli;

import dev.nibble.runtime.DeviceUnavailableException;
import dev.nibble.runtime.InsufficientMemoryException;
import dev.nibble.runtime.nativelib.NativeKernelException;
import java.io.IOException;
import java.io.UncheckedIOException;
import picocli.CommandLine;

/** Turns an exception from a command into one clear line on stderr and exit code 1; stack traces only with NIBBLE_DEBUG=1. */
final class ErrorReporter implements CommandLine.IExecutionExceptionHandler {

    @Override
    public int handleExecutionException(Exception e, CommandLine cl, CommandLine.ParseResult parsed) {
        Throwable shown = e instanceof UncheckedIOException u ? u.getCause() : e;
        String message = shown.getMessage();
        if (message == null || !(shown instanceof IOException || shown instanceof IllegalArgumentException
                || shown instanceof IllegalStateException || shown instanceof DeviceUnavailableException
                || shown instanceof InsufficientMemoryException || shown instanceof NativeKernelException)) {
            message = shown.getClass().getSimpleName() + (message == null ? "" : ": " + message);
        }
        cl.getErr().println("nibble: error: " + message);
        if ("1".equals(System.getenv("NIBBLE_DEBUG"))) {
            e.printStackTrace(cl.getErr());
        }
        return 1;
    }
}
