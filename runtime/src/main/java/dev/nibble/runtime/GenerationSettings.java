package dev.nibble.runtime;

import java.util.List;

/**
 * What one generation call does.
 *
 * @param maxTokens    new tokens at most (negative: until an end token, a stop string or the context is full)
 * @param sampler      how each token is chosen
 * @param stopStrings  generation ends before the first of these in the output; the stop string is not returned
 * @param logprobs     whether the result lists each generated token with its log-probability
 */
public record GenerationSettings(int maxTokens, SamplerSettings sampler, List<String> stopStrings, boolean logprobs) {

    /** Settings without log-probabilities. */
    public GenerationSettings(int maxTokens, SamplerSettings sampler, List<String> stopStrings) {
        this(maxTokens, sampler, stopStrings, false);
    }

    public GenerationSettings {
        stopStrings = List.copyOf(stopStrings);
        for (String s : stopStrings) {
            if (s.isEmpty()) {
                throw new IllegalArgumentException("a stop string must not be empty");
            }
        }
    }

    /** Up to {@code maxTokens} tokens chosen by {@code sampler}, no stop strings. */
    public static GenerationSettings of(int maxTokens, SamplerSettings sampler) {
        return new GenerationSettings(maxTokens, sampler, List.of());
    }

    /** These settings, also stopping before any of {@code stops}. */
    public GenerationSettings withStop(String... stops) {
        List<String> all = new java.util.ArrayList<>(stopStrings);
        all.addAll(List.of(stops));
        return new GenerationSettings(maxTokens, sampler, all, logprobs);
    }

    /** These settings, with each generated token's log-probability in the result. */
    public GenerationSettings withLogprobs() {
        return new GenerationSettings(maxTokens, sampler, stopStrings, true);
    }
}
