package dev.nibble.runtime;

/**
 * How the next token is chosen from the logits.
 *
 * @param temperature       0 picks the most likely token (greedy); otherwise logits are divided by it
 * @param topK              keep the k most likely tokens (0: all)
 * @param topP              keep the most likely tokens whose probabilities sum to at least p (1: all)
 * @param minP              drop tokens less likely than {@code minP} × the most likely one (0: none)
 * @param repeatPenalty     Hugging Face's repetition penalty on every token already in the sequence (1: none)
 * @param frequencyPenalty  subtracted from a token's logit once per earlier occurrence (0: none)
 * @param presencePenalty   subtracted from the logit of any token that already occurred (0: none)
 * @param seed              seed of the random choice, so runs can be repeated
 */
public record SamplerSettings(float temperature, int topK, float topP, float minP, float repeatPenalty,
                              float frequencyPenalty, float presencePenalty, long seed) {

    public SamplerSettings {
        if (!(temperature >= 0) || Float.isInfinite(temperature)) {
            throw new IllegalArgumentException("temperature must be 0 or more, is " + temperature);
        }
        if (topK < 0) {
            throw new IllegalArgumentException("top-k must be 0 (off) or more, is " + topK);
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new IllegalArgumentException("top-p must be in (0, 1], is " + topP);
        }
        if (!(minP >= 0 && minP <= 1)) {
            throw new IllegalArgumentException("min-p must be in [0, 1], is " + minP);
        }
        if (!(repeatPenalty > 0) || Float.isInfinite(repeatPenalty)) {
            throw new IllegalArgumentException("repeat penalty must be positive, is " + repeatPenalty);
        }
        if (!Float.isFinite(frequencyPenalty) || !Float.isFinite(presencePenalty)) {
            throw new IllegalArgumentException("frequency and presence penalties must be finite numbers");
        }
    }

    /** The defaults of {@code nibble generate}: llama.cpp's (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05). */
    public static SamplerSettings defaults(long seed) {
        return new SamplerSettings(0.8f, 40, 0.95f, 0.05f, 1f, 0f, 0f, seed);
    }

    /** Always the most likely token. */
    public static SamplerSettings greedy() {
        return new SamplerSettings(0f, 0, 1f, 0f, 1f, 0f, 0f, 0);
    }

    /** A builder starting from {@link #defaults}, with a random seed unless one is set. */
    public static Builder builder() {
        return new Builder();
    }

    /** Sampler settings by name: {@code SamplerSettings.builder().temperature(0.7f).topP(0.9f).seed(42).build()}. */
    public static final class Builder {
        private final SamplerSettings d = defaults(0);
        private float temperature = d.temperature, topP = d.topP, minP = d.minP, repeatPenalty = d.repeatPenalty;
        private float frequencyPenalty, presencePenalty;
        private int topK = d.topK;
        private Long seed;

        private Builder() {
        }

        /** 0 picks the most likely token (greedy). */
        public Builder temperature(float t) {
            temperature = t;
            return this;
        }

        /** 0: off. */
        public Builder topK(int k) {
            topK = k;
            return this;
        }

        /** 1: off. */
        public Builder topP(float p) {
            topP = p;
            return this;
        }

        /** 0: off. */
        public Builder minP(float p) {
            minP = p;
            return this;
        }

        /** Hugging Face's repetition penalty; 1: off. */
        public Builder repeatPenalty(float x) {
            repeatPenalty = x;
            return this;
        }

        public Builder frequencyPenalty(float x) {
            frequencyPenalty = x;
            return this;
        }

        public Builder presencePenalty(float x) {
            presencePenalty = x;
            return this;
        }

        public Builder seed(long s) {
            seed = s;
            return this;
        }

        /** The settings; an out-of-range value is an {@link IllegalArgumentException} naming it. */
        public SamplerSettings build() {
            return new SamplerSettings(temperature, topK, topP, minP, repeatPenalty, frequencyPenalty, presencePenalty,
                    seed != null ? seed : System.nanoTime());
        }
    }
}
