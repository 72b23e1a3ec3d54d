package dev.nibble.cli.generate;

import dev.nibble.runtime.GenerationResult;
import dev.nibble.runtime.GenerationSettings;
import dev.nibble.runtime.Generator;
import dev.nibble.runtime.SamplerSettings;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code nibble generate}: continues a prompt, streaming the text to stdout and a timing line to stderr. */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = {"Continues PROMPT with the model, printing the prompt and then the text as it is generated.",
            "Sampling runs in Hugging Face's order: penalties, temperature, top-k, top-p, min-p. --temperature 0 is greedy.",
            "Stops at an end-of-generation token, a --stop string (not printed), -n new tokens or a full context."})
public final class GenerateCommand implements Callable<Integer> {

    @Option(names = {"-m", "--model"}, required = true, paramLabel = "MODEL", description = "GGUF model file.")
    Path model;

    @Option(names = {"-p", "--prompt"}, required = true, paramLabel = "PROMPT", description = "Text to continue (may be empty).")
    String prompt;

    @Option(names = {"-n", "--n-predict"}, defaultValue = "-1", paramLabel = "N",
            description = "New tokens at most (-1: until an end token or the context is full; default ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--temperature", paramLabel = "T", defaultValue = "0.8", description = "0 is greedy (default ${DEFAULT-VALUE}).")
    float temperature;

    @Option(names = "--top-k", paramLabel = "K", defaultValue = "40", description = "0 is off (default ${DEFAULT-VALUE}).")
    int topK;

    @Option(names = "--top-p", paramLabel = "P", defaultValue = "0.95", description = "1 is off (default ${DEFAULT-VALUE}).")
    float topP;

    @Option(names = "--min-p", paramLabel = "P", defaultValue = "0.05", description = "0 is off (default ${DEFAULT-VALUE}).")
    float minP;

    @Option(names = "--repeat-penalty", paramLabel = "X", defaultValue = "1.0", description = "Hugging Face's repetition penalty; 1 is off (default ${DEFAULT-VALUE}).")
    float repeatPenalty;

    @Option(names = "--frequency-penalty", paramLabel = "X", defaultValue = "0", description = "0 is off (default ${DEFAULT-VALUE}).")
    float frequencyPenalty;

    @Option(names = "--presence-penalty", paramLabel = "X", defaultValue = "0", description = "0 is off (default ${DEFAULT-VALUE}).")
    float presencePenalty;

    @Option(names = {"-s", "--seed"}, paramLabel = "SEED", description = "Seed for sampling (default: a random one, printed).")
    Long seed;

    @Option(names = "--stop", paramLabel = "TEXT", description = "Stop before this text (repeatable).")
    List<String> stop = List.of();

    @Option(names = {"-t", "--threads"}, defaultValue = "0", paramLabel = "N", description = "CPU threads (0: one per CPU).")
    int threads;

    @Option(names = {"-c", "--ctx"}, defaultValue = "0", paramLabel = "N",
            description = "Context size in tokens (0: the model's, capped by free memory).")
    int ctx;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        long actualSeed = seed != null ? seed : System.nanoTime();
        SamplerSettings sampler = new SamplerSettings(temperature, topK, topP, minP, repeatPenalty,
                frequencyPenalty, presencePenalty, actualSeed);
        GenerationSettings settings = new GenerationSettings(maxTokens, sampler, stop);
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        try (Generator generator = Generator.open(model, threads, ctx)) {
            int trained = generator.model().config().contextLength();
            if (ctx == 0 && generator.contextSize() < trained) {
                err.println("nibble: context " + generator.contextSize() + " tokens (the model's " + trained
                        + " would not fit in half the free memory; --ctx sets it)");
            } else if (ctx > trained) {
                err.println("nibble: warning: --ctx " + ctx + " is beyond the " + trained
                        + " tokens the model was trained on; text past that point may degrade");
            }
            out.print(prompt);
            out.flush();
            GenerationResult r = generator.generate(prompt, settings, text -> {
                out.print(text);
                out.flush();
            });
            out.println();
            out.flush();
            if (r.stopReason() == GenerationResult.StopReason.CONTEXT_FULL) {
                err.println("nibble: the context of " + generator.contextSize()
                        + " tokens is full; generation stopped (a larger --ctx allows more)");
            }
            err.println(String.format(Locale.ROOT,
                    "nibble: prompt %d tokens, %.2f tok/s; generation %d tokens, %.2f tok/s; stop: %s; seed %d; %s",
                    r.promptTokens(), r.promptTokensPerSecond(), r.generatedTokens(), r.generationTokensPerSecond(),
                    r.stopReason().name().toLowerCase(Locale.ROOT).replace('_', ' '), actualSeed,
                    generator.model().backend().description()));
            err.flush();
        }
        return 0;
    }
}
