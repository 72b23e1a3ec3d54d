package dev.nibble.cli;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Pattern;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code -m/--model}: the GGUF file a command runs, default {@code $NIBBLE_MODEL}. A folder is refused in one line:
 * a Hugging Face model folder with the {@code nibble convert} command that makes the GGUF file, any other folder as
 * not a model; so is anything else that is not a regular file (a FIFO, whose opening would block; a device).
 */
public final class ModelOption {

    @Option(names = {"-m", "--model"}, required = true, paramLabel = "MODEL",
            description = "GGUF model file (default: $NIBBLE_MODEL).")
    Path model;

    @Spec(Spec.Target.MIXEE)
    CommandSpec command;

    /** The model file, checked: an existing regular file, not a folder, FIFO or device. */
    public Path gguf() {
        return check(model, false, command);
    }

    /**
     * Checks a model path: a missing path (naming $NIBBLE_MODEL when the value came from it) and a folder are one line
     * each; with {@code foldersToo}, a Hugging Face folder (config.json or tokenizer files) is accepted.
     */
    static Path check(Path model, boolean foldersToo, CommandSpec command) {
        boolean fromEnvironment = command != null && command.commandLine().getParseResult() != null
                && !command.commandLine().getParseResult().hasMatchedOption("--model");
        String named = fromEnvironment ? "NIBBLE_MODEL=" + model : model.toString();
        if (Files.isDirectory(model)) {
            boolean huggingFace = Files.isRegularFile(model.resolve("config.json"));
            boolean tokenizer = Files.isRegularFile(model.resolve("tokenizer.model"))
                    || Files.isRegularFile(model.resolve("tokenizer.json"));
            if (foldersToo && (huggingFace || tokenizer)) {
                return model;
            }
            if (huggingFace) {
                throw new IllegalArgumentException(named + " is a Hugging Face model folder; make a GGUF file of it first: "
                        + convertCommand(model));
            }
            throw new IllegalArgumentException(named + " is a folder, not a model; give -m a .gguf file"
                    + (foldersToo ? " or a Hugging Face model folder" : ""));
        }
        if (!Files.exists(model)) {
            throw new IllegalArgumentException(named + ": no such model file; give -m a .gguf file");
        }
        if (!Files.isRegularFile(model)) {
            // checked before anything opens it: opening a FIFO blocks until someone writes to it
            throw new IllegalArgumentException(named + " is " + InputFiles.kind(model) + ", not a regular file; give -m a "
                    + ".gguf file");
        }
        return model;
    }

    /**
     * For commands with a {@code -m} option of their own: {@code model} checked as {@link #gguf()} does (an existing
     * regular file; a folder, a FIFO or a device refused in one line, before anything opens it).
     */
    public static Path checkGguf(Path model, CommandSpec command) {
        return check(model, false, command);
    }

    private static final Pattern PLAIN = Pattern.compile("[A-Za-z0-9_./:@%+=,~-]+");

    /** {@code nibble convert DIR -o DIR.gguf --type q4_k_m}, quoted for a POSIX shell where needed. */
    static String convertCommand(Path dir) {
        Path named = dir.getFileName() == null || dir.getFileName().toString().matches("\\.+")
                ? dir.toAbsolutePath().normalize() : dir;
        return "nibble convert " + quote(named.toString()) + " -o " + quote(named + ".gguf") + " --type q4_k_m";
    }

    private static String quote(String s) {
        return PLAIN.matcher(s).matches() ? s : "'" + s.replace("'", "'\\''") + "'";
    }
}
