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
 * not a model.
 */
public final class ModelOption {

    @Option(names = {"-m", "--model"}, required = true, paramLabel = "MODEL",
            description = "GGUF model file (default: $NIBBLE_MODEL).")
    Path model;

    @Spec(Spec.Target.MIXEE)
    CommandSpec command;

    /** The model file, checked: an existing file, not a folder. */
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
        return model;
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
