package dev.nibble.cli.generate;

import dev.nibble.runtime.SamplerSettings;
import picocli.CommandLine.Option;

/** The sampling options {@code nibble generate} and {@code nibble chat} share. */
public final class SamplingOptions {

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

    /** Whether --seed was given. */
    public boolean seedGiven() {
        return seed != null;
    }

    /** The seed given, or a fresh one. */
    public long seed() {
        return seed != null ? seed : System.nanoTime();
    }

    /** The sampler settings with {@code seed}. */
    public SamplerSettings settings(long seed) {
        return new SamplerSettings(temperature, topK, topP, minP, repeatPenalty, frequencyPenalty, presencePenalty, seed);
    }
}
