package dev.nibble.cli;

import dev.nibble.runtime.DeviceUnavailableException;
import dev.nibble.runtime.InsufficientMemoryException;
import dev.nibble.runtime.nativelib.NativeKernelException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.List;
import picocli.CommandLine;

/**
 * Turns an exception from a command into one clear line on stderr and exit code 1 (stack traces only with
 * NIBBLE_DEBUG=1), and a usage error into one line ending "see nibble COMMAND --help" and exit code 2.
 */
final class ErrorReporter implements CommandLine.IExecutionExceptionHandler, CommandLine.IParameterExceptionHandler {

    @Override
    public int handleParseException(CommandLine.ParameterException e, String[] args) {
        CommandLine cl = e.getCommandLine();
        String message = String.valueOf(e.getMessage()).strip().replaceAll("\\s*\\R\\s*", " ");
        if (e instanceof CommandLine.UnmatchedArgumentException unmatched) {
            List<String> suggestions = unmatched.getSuggestions();
            if (!suggestions.isEmpty()) {
                List<String> shown = suggestions.subList(0, Math.min(3, suggestions.size()));
                message += " (did you mean " + (shown.size() == 1 ? shown.getFirst()
                        : String.join(", ", shown.subList(0, shown.size() - 1)) + " or " + shown.getLast()) + "?)";
            }
        }
        cl.getErr().println("nibble: error: " + message + "; see " + cl.getCommandSpec().qualifiedName() + " --help");
        cl.getErr().flush();
        if ("1".equals(System.getenv("NIBBLE_DEBUG"))) {
            e.printStackTrace(cl.getErr());
        }
        return cl.getCommandSpec().exitCodeOnInvalidInput();
    }

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
