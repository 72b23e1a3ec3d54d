package dev.nibble.converter;

/** How a model stretches RoPE beyond its training context, as declared in config.json. */
public sealed interface RopeScaling {

    /** The scale applied to the context length. */
    double factor();

    /** Positions divided by {@code factor} (GGUF {@code rope.scaling.type = "linear"}). */
    record Linear(double factor) implements RopeScaling {
    }

    /**
     * Llama 3.1's frequency-dependent scaling: low frequencies are divided by {@code factor}, high ones kept, and the band
     * between blended. llama.cpp stores the per-frequency divisors as the tensor {@code rope_freqs.weight}.
     */
    record Llama3(double factor, double lowFreqFactor, double highFreqFactor, int originalMaxPositions) implements RopeScaling {

        /**
         * The divisor for each of the {@code headDim / 2} rotary frequencies {@code theta^(-2i/headDim)}; the same rule as
         * transformers' {@code _compute_llama3_parameters} and llama.cpp's converter.
         */
        public float[] frequencyFactors(double ropeTheta, int headDim) {
            float[] factors = new float[headDim / 2];
            double lowFreqWavelen = originalMaxPositions / lowFreqFactor;
            double highFreqWavelen = originalMaxPositions / highFreqFactor;
            for (int i = 0; i < factors.length; i++) {
                double freq = 1.0 / Math.pow(ropeTheta, (2.0 * i) / headDim);
                double wavelen = 2 * Math.PI / freq;
                if (wavelen < highFreqWavelen) {
                    factors[i] = 1f;
                } else if (wavelen > lowFreqWavelen) {
                    factors[i] = (float) factor;
                } else {
                    double smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                    factors[i] = (float) (1 / ((1 - smooth) / factor + smooth));
                }
            }
            return factors;
        }
    }
}
