package dev.nibble.cli.openai;

import dev.nibble.runtime.SamplerSettings;

/**
 * The sampling fields of one request, each null when the request does not give it (the defaults then apply):
 * OpenAI's {@code temperature}, {@code top_p}, {@code frequency_penalty}, {@code presence_penalty}, {@code seed} and
 * the extensions llama-server and vLLM accept too, {@code top_k}, {@code min_p}, {@code repetition_penalty}.
 */
public record Sampling(Float temperature, Integer topK, Float topP, Float minP, Float repeatPenalty,
                       Float frequencyPenalty, Float presencePenalty, Long seed) {

    /** No field given. */
    public static final Sampling NONE = new Sampling(null, null, null, null, null, null, null, null);

    /**
     * These fields over the defaults {@code d}; throws {@link IllegalArgumentException} for a value out of range
     * (a negative temperature, a top-p of 0).
     */
    public SamplerSettings over(SamplerSettings d) {
        return new SamplerSettings(temperature != null ? temperature : d.temperature(),
                topK != null ? topK : d.topK(), topP != null ? topP : d.topP(), minP != null ? minP : d.minP(),
                repeatPenalty != null ? repeatPenalty : d.repeatPenalty(),
                frequencyPenalty != null ? frequencyPenalty : d.frequencyPenalty(),
                presencePenalty != null ? presencePenalty : d.presencePenalty(), seed != null ? seed : d.seed());
    }
}
