package dev.nibble.runtime;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Chooses the next token. The steps run in Hugging Face's logits-processor order: repetition penalty (then the
 * OpenAI-style frequency and presence penalties, which Hugging Face lacks), temperature, top-k, top-p, min-p; then a
 * draw from what is left. Temperature 0 takes the arg max after the penalties.
 */
public final class Sampler {

    private final SamplerSettings settings;
    private final SplittableRandom random;

    public Sampler(SamplerSettings settings) {
        this.settings = settings;
        this.random = new SplittableRandom(settings.seed());
    }

    public SamplerSettings settings() {
        return settings;
    }

    /** The next token, given the logits and the {@code historyLength} tokens of the sequence so far. */
    public int sample(float[] logits, int[] history, int historyLength) {
        float[] scores = logits.clone();
        applyPenalties(scores, history, historyLength);
        if (settings.temperature() == 0) {
            return argmax(scores);
        }
        double[] p = distribution(scores);
        double r = random.nextDouble();
        double cumulative = 0;
        int last = -1;
        for (int i = 0; i < p.length; i++) {
            if (p[i] > 0) {
                cumulative += p[i];
                last = i;
                if (r < cumulative) {
                    return i;
                }
            }
        }
        return last; // rounding left r just above the total
    }

    /** The probability of each token after penalties, temperature and the filters (for temperature > 0). */
    double[] probabilities(float[] logits, int[] history, int historyLength) {
        float[] scores = logits.clone();
        applyPenalties(scores, history, historyLength);
        return distribution(scores);
    }

    private void applyPenalties(float[] scores, int[] history, int historyLength) {
        float rep = settings.repeatPenalty(), freq = settings.frequencyPenalty(), pres = settings.presencePenalty();
        if (rep == 1 && freq == 0 && pres == 0) {
            return;
        }
        int[] counts = new int[scores.length];
        for (int i = 0; i < historyLength; i++) {
            counts[history[i]]++;
        }
        for (int id = 0; id < scores.length; id++) {
            if (counts[id] > 0) {
                // Hugging Face: a positive logit is divided by the penalty, a negative one multiplied.
                float s = scores[id] > 0 ? scores[id] / rep : scores[id] * rep;
                scores[id] = s - counts[id] * freq - pres;
            }
        }
    }

    private double[] distribution(float[] scores) {
        int n = scores.length;
        float t = settings.temperature();
        // Token ids sorted by score, highest first: sortable float bits in the high half, the id in the low half.
        long[] keys = new long[n];
        for (int i = 0; i < n; i++) {
            float s = scores[i] / t;
            scores[i] = s;
            int bits = Float.floatToIntBits(s);
            int sortable = bits >= 0 ? bits : bits ^ 0x7fffffff;
            keys[i] = ((long) sortable << 32) | i;
        }
        Arrays.sort(keys);
        int[] order = new int[n];
        for (int i = 0; i < n; i++) {
            order[i] = (int) keys[n - 1 - i];
        }

        int kept = n;
        if (settings.topK() > 0 && settings.topK() < n) {
            // As Hugging Face: drop scores below the k-th highest, so ties with it stay.
            float kth = scores[order[settings.topK() - 1]];
            kept = settings.topK();
            while (kept < n && scores[order[kept]] >= kth) {
                kept++;
            }
        }
        double[] p = softmax(scores, order, kept);
        if (settings.topP() < 1) {
            // As Hugging Face: going up from the least likely, drop tokens while their total is <= 1 - top_p.
            double tail = 0;
            int k = kept;
            while (k > 1) {
                tail += p[k - 1];
                if (tail > 1 - settings.topP()) {
                    break;
                }
                k--;
            }
            kept = k;
            p = softmax(scores, order, kept);
        }
        if (settings.minP() > 0) {
            double threshold = settings.minP() * p[0];
            int k = 1;
            while (k < kept && p[k] >= threshold) {
                k++;
            }
            kept = k;
            p = softmax(scores, order, kept);
        }
        double[] byId = new double[n];
        for (int i = 0; i < kept; i++) {
            byId[order[i]] = p[i];
        }
        return byId;
    }

    /** Softmax over the first {@code kept} tokens of {@code order}; returns their probabilities in that order. */
    private static double[] softmax(float[] scores, int[] order, int kept) {
        double max = scores[order[0]];
        double[] p = new double[kept];
        double sum = 0;
        for (int i = 0; i < kept; i++) {
            p[i] = Math.exp(scores[order[i]] - max);
            sum += p[i];
        }
        for (int i = 0; i < kept; i++) {
            p[i] /= sum;
        }
        return p;
    }

    static int argmax(float[] scores) {
        int best = 0;
        for (int i = 1; i < scores.length; i++) {
            if (scores[i] > scores[best]) {
                best = i;
            }
        }
        return best;
    }
}
