package dev.nibble.cli;

import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import picocli.CommandLine;
import picocli.CommandLine.Model.ArgSpec;
import picocli.CommandLine.Model.OptionSpec;

/**
 * Defaults from the environment, as llama.cpp's {@code LLAMA_ARG_*}: an option given on the command line wins, then
 * the variable, then the option's own default. A variable that is set but not valid is one usage error naming it.
 */
final class EnvironmentDefaults implements CommandLine.IDefaultValueProvider {

    /** One variable: the option it gives a default for, on which commands, and what values it takes. */
    record Variable(String name, String option, Set<String> commands, Pattern valid, String expected) {
    }

    private static final Set<String> RUNNING = Set.of("generate", "chat", "batch", "serve", "perplexity", "bench");

    /** Every variable; the README's table lists the same. */
    static final List<Variable> VARIABLES = List.of(
            new Variable("NIBBLE_MODEL", "--model", Set.of("generate", "chat", "batch", "serve", "perplexity", "tokenize"),
                    Pattern.compile("(?s).*\\S.*"), "a model file"),
            new Variable("NIBBLE_THREADS", "--threads", RUNNING, Pattern.compile("[0-9]{1,6}"),
                    "a whole number of CPU threads (0: one per CPU)"),
            new Variable("NIBBLE_CTX", "--ctx-size", Set.of("generate", "chat", "batch", "serve"),
                    Pattern.compile("[0-9]{1,9}"), "a context size in tokens (0: the model's)"),
            new Variable("NIBBLE_DEVICE", "--device", RUNNING, Pattern.compile("auto|cpu|cuda|cuda:[0-9]{1,3}"),
                    "auto, cpu, cuda or cuda:N"));

    private final Map<String, String> environment;

    EnvironmentDefaults(Map<String, String> environment) {
        this.environment = environment;
    }

    @Override
    public String defaultValue(ArgSpec arg) {
        if (!(arg instanceof OptionSpec option) || arg.command() == null) {
            return null;
        }
        for (Variable v : VARIABLES) {
            if (v.option().equals(option.longestName()) && v.commands().contains(arg.command().name())) {
                String value = environment.get(v.name());
                if (value == null || value.isEmpty()) {
                    return null;
                }
                if (!v.valid().matcher(value.strip()).matches()) {
                    throw new CommandLine.ParameterException(arg.command().commandLine(), v.name() + "=" + value
                            + " is not " + v.expected() + "; correct or unset it, or give " + v.option());
                }
                return value.strip();
            }
        }
        return null;
    }

    /** The variables {@code command} reads, for its help: "NIBBLE_MODEL (-m), ...", or null when none. */
    static String describe(CommandLine.Model.CommandSpec command) {
        String list = VARIABLES.stream()
                .filter(v -> v.commands().contains(command.name()) && command.findOption(v.option()) != null)
                .map(v -> v.name() + " (" + command.findOption(v.option()).shortestName() + ")")
                .collect(Collectors.joining(", "));
        return list.isEmpty() ? null : list;
    }
}
