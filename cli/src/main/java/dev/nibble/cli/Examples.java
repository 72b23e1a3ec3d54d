package dev.nibble.cli;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;

/**
 * The end of every command's --help (and man page): examples, the environment variables it reads and the llama.cpp
 * flags it accepts. One place for all commands, so that they read alike.
 */
final class Examples {

    private static final Map<String, List<String>> EXAMPLES = Map.ofEntries(
            Map.entry("nibble", List.of(
                    "nibble generate -m model.gguf -p \"The jury\" -n 40",
                    "nibble chat -m model.gguf",
                    "nibble convert ~/models/Llama-2-7b-chat-hf -o llama-2-7b-chat.gguf",
                    "nibble serve -m model.gguf --port 8080",
                    "source <(nibble completion bash)")),
            Map.entry("generate", List.of(
                    "nibble generate -m model.gguf -p \"The jury\" -n 40",
                    "nibble generate -m model.gguf -p \"The jury\" -n 40 --temp 0",
                    "nibble generate -m model.gguf -f prompt.txt --no-display-prompt --quiet",
                    "nibble generate -m model.gguf --chat -p \"Who won?\" --json",
                    "NIBBLE_MODEL=model.gguf nibble generate -p \"The jury\" -c 2048 -t 8")),
            Map.entry("chat", List.of(
                    "nibble chat -m model.gguf --system \"You are terse.\"",
                    "echo \"Who won?\" | nibble chat -m model.gguf --temp 0")),
            Map.entry("batch", List.of(
                    "nibble batch -m model.gguf -i requests.jsonl -o results.jsonl -n 128")),
            Map.entry("serve", List.of(
                    "nibble serve -m model.gguf --port 8080 --parallel 4")),
            Map.entry("perplexity", List.of(
                    "nibble perplexity -m model.gguf -f val.txt -c 256")),
            Map.entry("bench", List.of(
                    "nibble bench -m model.gguf -p 512 -n 128 -r 5",
                    "nibble bench --synthetic 7b:q4_0 --device cuda --json")),
            Map.entry("tokenize", List.of(
                    "nibble tokenize -m model.gguf \"The jury said\"",
                    "nibble tokenize -m ~/models/Llama-2-7b-hf --pieces -f prompt.txt",
                    "nibble tokenize -m model.gguf --detokenize \"1 337 502 1148 555\"")),
            Map.entry("convert", List.of(
                    "nibble convert ~/models/Llama-2-7b-chat-hf -o llama-2-7b-chat.gguf",
                    "nibble convert MODEL_DIR -o OUT.gguf --type q8_0 --threads 8")),
            Map.entry("inspect", List.of(
                    "nibble inspect model.gguf",
                    "nibble inspect ~/models/Llama-2-7b-hf --json")),
            Map.entry("completion", List.of(
                    "source <(nibble completion bash)     # in ~/.bashrc",
                    "source <(nibble completion zsh)      # in ~/.zshrc")));

    private Examples() {
    }

    /** Sets the footer of {@code cl} and of every command under it: every command named here has examples. */
    static void addTo(CommandLine cl) {
        CommandSpec spec = cl.getCommandSpec();
        List<String> footer = new ArrayList<>();
        List<String> examples = EXAMPLES.get(spec.name());
        if (examples != null) {
            examples.forEach(e -> footer.add("  " + e));
        }
        String environment = EnvironmentDefaults.describe(spec);
        if (environment != null) {
            footer.add("");
            footer.add("Environment: " + environment + " give defaults for these options.");
        }
        String llamaCpp = LlamaCppFlags.describe(spec);
        if (!llamaCpp.isEmpty()) {
            footer.add("");
            footer.add("llama.cpp's " + llamaCpp + " are accepted and ignored, each with one line saying what "
                    + "nibble does instead.");
        }
        if (!footer.isEmpty()) {
            // A heading too: the man page has the footer only under one.
            spec.usageMessage().footerHeading("%nExamples:%n").footer(footer.toArray(String[]::new));
        }
        cl.getSubcommands().values().forEach(Examples::addTo);
    }
}
