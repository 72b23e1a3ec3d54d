package dev.nibble.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.charset.CharacterCodingException;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.FileSystemLoopException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.nio.file.NotLinkException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import picocli.CommandLine;

/**
 * Turns whatever a command throws into one clear line on stderr and exit code 1 (stack traces only with
 * NIBBLE_DEBUG set), and a usage error into one line ending "see nibble COMMAND --help" and exit code 2. Every
 * {@link Throwable} has its line: file errors name the file, the problem and the fix; out of memory and stack
 * overflow say what to change; a class that failed to initialise gives its cause. Output that can no longer be
 * written ({@link StandardStreams.WriteFailure}) ends the command quietly with 0 when a pipe's reader left, else
 * with one line and 1.
 */
final class ErrorReporter implements CommandLine.IExecutionExceptionHandler, CommandLine.IParameterExceptionHandler {

    @Override
    public int handleParseException(CommandLine.ParameterException e, String[] args) {
        CommandLine cl = e.getCommandLine();
        String message = oneLine(String.valueOf(e.getMessage()));
        if (e instanceof CommandLine.UnmatchedArgumentException unmatched) {
            List<String> suggestions = unmatched.getSuggestions();
            if (!suggestions.isEmpty()) {
                List<String> shown = suggestions.subList(0, Math.min(3, suggestions.size()));
                message += " (did you mean " + (shown.size() == 1 ? shown.getFirst()
                        : String.join(", ", shown.subList(0, shown.size() - 1)) + " or " + shown.getLast()) + "?)";
            }
        }
        print(cl.getErr(), "nibble: error: " + message + "; see " + cl.getCommandSpec().qualifiedName() + " --help", e);
        return cl.getCommandSpec().exitCodeOnInvalidInput();
    }

    @Override
    public int handleExecutionException(Exception e, CommandLine cl, CommandLine.ParseResult parsed) {
        return report(e, cl);
    }

    /** Reports {@code t}, thrown while {@code cl} ran (null when outside any command), on its stderr; the exit code. */
    static int report(Throwable t, CommandLine cl) {
        PrintWriter err = cl != null ? cl.getErr() : new PrintWriter(System.err, true);
        StandardStreams.WriteFailure failure = writeFailure(t);
        if (failure != null) {
            if (failure.closedPipe()) {
                return 0; // the reader of our output is gone (| head): nothing is wrong, nobody is listening
            }
            if (failure.stream().equals("output")) {
                print(err, "nibble: error: " + oneLine(failure.getMessage()), t);
            }
            return 1;
        }
        print(err, "nibble: error: " + describe(t, cl == null ? null : cl.getCommandSpec()), t);
        return 1;
    }

    /** For threads other than main (and shutdown hooks): one line on stderr, none for a reader that left. */
    static void uncaught(Thread thread, Throwable t) {
        StandardStreams.WriteFailure failure = writeFailure(t);
        if (failure != null && (failure.closedPipe() || !failure.stream().equals("output"))) {
            return;
        }
        System.err.println("nibble: error: " + describe(t, null) + " (thread " + thread.getName() + ")");
        if (debug()) {
            t.printStackTrace();
        }
        System.err.flush();
    }

    private static void print(PrintWriter err, String line, Throwable t) {
        try {
            err.println(line);
            if (debug()) {
                t.printStackTrace(err);
            }
            err.flush();
        } catch (StandardStreams.WriteFailure stderrGone) {
            // nowhere left to say it: the exit code does
        }
    }

    /** NIBBLE_DEBUG set (and not 0): stack traces too. */
    static boolean debug() {
        String v = System.getenv("NIBBLE_DEBUG");
        return v != null && !v.isEmpty() && !v.equals("0");
    }

    static StandardStreams.WriteFailure writeFailure(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof StandardStreams.WriteFailure w) {
                return w;
            }
            if (c.getCause() == c) {
                break;
            }
        }
        return null;
    }

    /** One line for {@code t}, with no stack trace; {@code command} (may be null) names options in advice. */
    static String describe(Throwable t, CommandLine.Model.CommandSpec command) {
        return oneLine(message(unwrap(t), command));
    }

    /** Wrappers that add nothing of their own: their cause says it. */
    private static Throwable unwrap(Throwable t) {
        Throwable shown = t;
        for (int i = 0; i < 16; i++) {
            Throwable cause = shown.getCause();
            boolean wrapper = shown instanceof CompletionException || shown instanceof ExecutionException
                    || shown instanceof java.lang.reflect.InvocationTargetException
                    || shown instanceof java.lang.reflect.UndeclaredThrowableException
                    || shown instanceof UncheckedIOException;
            if (cause == null || cause == shown || !wrapper) {
                break;
            }
            String own = shown.getMessage();
            if (own != null && !own.equals(cause.toString()) && !own.equals(cause.getMessage())) {
                break; // a message of its own, such as "FILE: cannot write a result: ..."
            }
            shown = cause;
        }
        return shown;
    }

    private static String message(Throwable t, CommandLine.Model.CommandSpec command) {
        String message = t.getMessage();
        if (t instanceof OutOfMemoryError) {
            return outOfMemory(message, command);
        }
        if (t instanceof StackOverflowError) {
            return "stack overflow: the input nests too deeply to be processed (a chat template, JSON or file with "
                    + "thousands of nested levels); simplify it, or give Java a larger stack (NIBBLE_JAVA_OPTS=-Xss64m)";
        }
        if (t instanceof ExceptionInInitializerError init) {
            Throwable cause = init.getCause() != null ? init.getCause() : init.getException();
            if (cause != null) {
                return message(unwrap(cause), command);
            }
            return initializerMessage(message);
        }
        if (t instanceof NoClassDefFoundError && t.getCause() instanceof ExceptionInInitializerError first) {
            // a class whose initialisation failed before: the first failure is the cause, summarised by the JVM
            return first.getCause() != null ? message(unwrap(first.getCause()), command) : initializerMessage(first.getMessage());
        }
        if (t instanceof FileSystemException f) {
            return fileSystem(f);
        }
        if (t instanceof CharacterCodingException) {
            return "an input is not valid UTF-8 text (" + (message == null ? t.getClass().getSimpleName() : message)
                    + ")" + inputFiles(command) + "; save it as UTF-8";
        }
        boolean io = t instanceof IOException || t instanceof UncheckedIOException;
        if (io && message != null) {
            String bare = errnoAdvice(message);
            if (bare != null) { // a system error with no file: on writing, it is the command's output file
                String output = outputFile(command);
                return (output != null ? output + ": cannot write: " : "") + message + "; " + bare;
            }
            int colon = message.lastIndexOf(": ");
            String advice = colon < 0 || message.indexOf(';', colon) >= 0 ? null : errnoAdvice(message.substring(colon + 2));
            if (advice != null) { // "FILE: cannot write a result: No space left on device"
                return message + "; " + advice;
            }
        }
        if (message == null || message.isBlank()) {
            return t.getClass().getName().startsWith("java.") ? t.getClass().getSimpleName() : t.getClass().getName();
        }
        if (t instanceof Error || !(io || t instanceof IllegalArgumentException || t instanceof IllegalStateException
                || t instanceof UnsupportedOperationException || t.getClass().getPackageName().startsWith("dev.nibble"))) {
            return t.getClass().getSimpleName() + ": " + message;
        }
        return message;
    }

    private static String outOfMemory(String message, CommandLine.Model.CommandSpec command) {
        boolean ctx = command != null && command.findOption("--ctx") != null;
        String what = message == null ? "" : " (" + message + ")";
        if (message != null && message.contains("array size")) {
            return "out of memory" + what + ": a count in the input is beyond what Java's arrays hold (2^31 elements);"
                    + " the input is corrupt or too large: check it, or split it";
        }
        if (message != null && (message.startsWith("Unable to allocate") || message.startsWith("Cannot reserve"))) {
            return "out of memory" + what + ": the machine has not that much free memory"
                    + (ctx ? "; use a smaller --ctx" : "") + ", or raise -Xmx (NIBBLE_JAVA_OPTS=-Xmx8g) if Java's heap is the limit";
        }
        return "out of memory" + what + ": raise -Xmx (NIBBLE_JAVA_OPTS=-Xmx8g)" + (ctx ? " or use a smaller --ctx" : "");
    }

    /** "Exception java.lang.IllegalStateException: why [in thread "main"]" (the JVM's summary) to "why". */
    private static String initializerMessage(String message) {
        if (message == null) {
            return "a class failed to initialise";
        }
        String m = message.replaceFirst("\\s*\\[in thread \"[^\"]*\"]\\s*$", "");
        return m.replaceFirst("^Exception [\\w.$]+: ", "");
    }

    /** A file-system error: the file, what is wrong and what to do. */
    static String fileSystem(FileSystemException f) {
        String file = f.getFile() != null ? f.getFile() : "";
        String other = f.getOtherFile() != null ? " -> " + f.getOtherFile() : "";
        String reason = f.getReason();
        if (f instanceof NoSuchFileException) {
            Path parent = file.isEmpty() ? null : absoluteParent(file);
            if (parent != null && !Files.isDirectory(parent)) {
                return file + other + ": no such file (there is no folder " + parent + "); check the path";
            }
            return file + other + ": " + (reason != null ? reason : "no such file") + "; check the path";
        }
        if (f instanceof AccessDeniedException) {
            return file + other + ": permission denied" + (reason != null ? " (" + reason + ")" : "")
                    + "; check its permissions and its folder's (ls -ld), or use another path";
        }
        if (f instanceof NotDirectoryException) {
            return file + other + ": not a folder; give the path of a folder";
        }
        if (f instanceof FileAlreadyExistsException) {
            return file + other + ": already exists; remove it or choose another name";
        }
        if (f instanceof DirectoryNotEmptyException) {
            return file + other + ": the folder is not empty; empty it or choose another path";
        }
        if (f instanceof FileSystemLoopException) {
            return file + other + ": the symbolic links under it form a loop; fix the links";
        }
        if (f instanceof NotLinkException) {
            return file + other + ": not a symbolic link";
        }
        if (reason == null) {
            return file.isEmpty() ? String.valueOf(f.getMessage()) : file + other + ": cannot be read or written; check the path";
        }
        String advice = errnoAdvice(reason);
        return file + other + ": " + reason + (advice != null ? "; " + advice : "; check the path");
    }

    private static Path absoluteParent(String file) {
        try {
            return Path.of(file).toAbsolutePath().getParent();
        } catch (RuntimeException e) {
            return null;
        }
    }

    /** What to do about a system error (strerror's English text), or null when it is not one nibble knows. */
    static String errnoAdvice(String reason) {
        String r = reason.toLowerCase(Locale.ROOT).strip();
        return switch (r) {
            case "no space left on device" -> "free some space or write elsewhere";
            case "disk quota exceeded" -> "free some space within your quota or write elsewhere";
            case "file too large" -> "the file system or the file size limit (ulimit -f) allows no file this large; "
                    + "write it elsewhere or raise the limit";
            case "read-only file system" -> "write to another folder";
            case "is a directory" -> "it is a folder: give the path of a file";
            case "not a directory" -> "a part of the path is a file, not a folder; check the path";
            case "no such device", "no such device or address" -> "it is not a regular file (a device, FIFO or socket); "
                    + "give the path of a regular file";
            case "permission denied", "operation not permitted" -> "check its permissions";
            case "too many levels of symbolic links" -> "the symbolic links loop; fix the links";
            case "file name too long" -> "use a shorter name";
            case "too many open files" -> "raise the limit (ulimit -n)";
            case "input/output error" -> "the device reported an error; check the disk";
            case "text file busy" -> "the file is being run; choose another path";
            case "stale file handle", "stale nfs file handle" -> "the file was replaced on the server; run again";
            default -> null;
        };
    }

    /** The output file of the command (its -o, --output or --save), or null. */
    private static String outputFile(CommandLine.Model.CommandSpec command) {
        if (command == null) {
            return null;
        }
        for (String name : new String[] {"--output", "--save"}) {
            CommandLine.Model.OptionSpec o = command.findOption(name);
            if (o != null && o.getValue() != null) {
                return String.valueOf((Object) o.getValue());
            }
        }
        return null;
    }

    /** " (reading FILE or FILE)": the text files the command was given, for errors that do not say which. */
    private static String inputFiles(CommandLine.Model.CommandSpec command) {
        if (command == null) {
            return "";
        }
        List<String> files = new ArrayList<>();
        for (String name : new String[] {"--file", "--messages", "--input"}) {
            CommandLine.Model.OptionSpec o = command.findOption(name);
            if (o != null && o.getValue() != null) {
                files.add(String.valueOf((Object) o.getValue()));
            }
        }
        return files.isEmpty() ? "" : " in " + String.join(" or ", files);
    }

    /** The message on one line: line breaks (a multi-line exception message) become spaces. */
    static String oneLine(String message) {
        return message.strip().replaceAll("\\s*\\R\\s*", " ");
    }
}
