package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.Random;
import org.junit.jupiter.api.Test;

class SamplerTest {

    private static final int[] NO_HISTORY = {};

    private static SamplerSettings settings(float temperature, int topK, float topP, float minP) {
        return new SamplerSettings(temperature, topK, topP, minP, 1f, 0f, 0f, 42);
    }

    /** Logits ln(p) for the distribution {0.5, 0.3, 0.15, 0.05}, shuffled across ids 3, 0, 2, 1. */
    private static final float[] LOGITS = {(float) Math.log(0.3), (float) Math.log(0.05), (float) Math.log(0.15), (float) Math.log(0.5)};

    @Test
    void temperatureOneGivesTheSoftmax() {
        double[] p = new Sampler(settings(1, 0, 1, 0)).probabilities(LOGITS, NO_HISTORY, 0);
        assertArrayEquals(new double[] {0.3, 0.05, 0.15, 0.5}, p, 1e-6);
    }

    @Test
    void temperatureDividesLogits() {
        float[] logits = {1, 2, 3, 4};
        double[] p = new Sampler(settings(2, 0, 1, 0)).probabilities(logits, NO_HISTORY, 0);
        double z = Math.exp(0.5) + Math.exp(1) + Math.exp(1.5) + Math.exp(2);
        assertArrayEquals(new double[] {Math.exp(0.5) / z, Math.exp(1) / z, Math.exp(1.5) / z, Math.exp(2) / z}, p, 1e-6);
    }

    @Test
    void topKKeepsTheKMostLikelyAndTiesWithTheKth() {
        double[] p = new Sampler(settings(1, 2, 1, 0)).probabilities(LOGITS, NO_HISTORY, 0);
        assertArrayEquals(new double[] {0.3 / 0.8, 0, 0, 0.5 / 0.8}, p, 1e-6);
        float[] tied = {1, 3, 3, 0};
        double[] q = new Sampler(settings(1, 1, 1, 0)).probabilities(tied, NO_HISTORY, 0);
        assertArrayEquals(new double[] {0, 0.5, 0.5, 0}, q, 1e-6);
    }

    @Test
    void topPDropsTheTailWhoseMassIsAtMostOneMinusP() {
        // ascending cumulative mass 0.05, 0.20, 0.50, 1.0: with top_p 0.75 the tail up to 0.20 goes
        double[] p = new Sampler(settings(1, 0, 0.75f, 0)).probabilities(LOGITS, NO_HISTORY, 0);
        assertArrayEquals(new double[] {0.3 / 0.8, 0, 0, 0.5 / 0.8}, p, 1e-6);
        // top_p 0.85: 0.05 + 0.15 = 0.20 > 0.15, so only the 0.05 token goes
        double[] q = new Sampler(settings(1, 0, 0.85f, 0)).probabilities(LOGITS, NO_HISTORY, 0);
        assertArrayEquals(new double[] {0.3 / 0.95, 0, 0.15 / 0.95, 0.5 / 0.95}, q, 1e-6);
    }

    @Test
    void minPDropsTokensBelowAFractionOfTheTop() {
        // threshold 0.35 * 0.5 = 0.175: keeps 0.5 and 0.3
        double[] p = new Sampler(settings(1, 0, 1, 0.35f)).probabilities(LOGITS, NO_HISTORY, 0);
        assertArrayEquals(new double[] {0.3 / 0.8, 0, 0, 0.5 / 0.8}, p, 1e-6);
        // threshold 0.1 keeps 0.15 too
        double[] q = new Sampler(settings(1, 0, 1, 0.2f)).probabilities(LOGITS, NO_HISTORY, 0);
        assertArrayEquals(new double[] {0.3 / 0.95, 0, 0.15 / 0.95, 0.5 / 0.95}, q, 1e-6);
    }

    @Test
    void minPIsJudgedAfterTemperatureAsInHuggingFace() {
        // temperature 0.5 squares the probabilities: 0.25, 0.09, 0.0225, 0.0025 (sum 0.365), then min-p 0.3 keeps
        // tokens with p >= 0.3 * 0.25/0.365: only 0.25 and 0.09 survive
        double[] p = new Sampler(settings(0.5f, 0, 1, 0.3f)).probabilities(LOGITS, NO_HISTORY, 0);
        assertArrayEquals(new double[] {0.09 / 0.34, 0, 0, 0.25 / 0.34}, p, 1e-6);
    }

    @Test
    void filtersComposeInOrderTopKThenTopPThenMinP() {
        // top-k 3 keeps {0.5, 0.3, 0.15} renormalised to /0.95; top-p 0.7 then drops 0.15/0.95 = 0.158 <= 0.3
        double[] p = new Sampler(settings(1, 3, 0.7f, 0)).probabilities(LOGITS, NO_HISTORY, 0);
        assertArrayEquals(new double[] {0.3 / 0.8, 0, 0, 0.5 / 0.8}, p, 1e-6);
    }

    @Test
    void repetitionPenaltyDividesPositiveAndMultipliesNegativeLogits() {
        float[] logits = {2, -1, 0.5f};
        SamplerSettings s = new SamplerSettings(1, 0, 1, 0, 2f, 0, 0, 1);
        double[] p = new Sampler(s).probabilities(logits, new int[] {0, 1, 0, 7}, 3);
        double z = Math.exp(1) + Math.exp(-2) + Math.exp(0.5);
        assertArrayEquals(new double[] {Math.exp(1) / z, Math.exp(-2) / z, Math.exp(0.5) / z}, p, 1e-6);
    }

    @Test
    void frequencyAndPresencePenaltiesCountOccurrences() {
        float[] logits = {2, 1, 0.5f};
        SamplerSettings s = new SamplerSettings(1, 0, 1, 0, 1f, 0.25f, 0.5f, 1);
        double[] p = new Sampler(s).probabilities(logits, new int[] {0, 0, 1}, 3);
        // token 0: 2 - 2*0.25 - 0.5 = 1; token 1: 1 - 0.25 - 0.5 = 0.25; token 2 untouched
        double z = Math.exp(1) + Math.exp(0.25) + Math.exp(0.5);
        assertArrayEquals(new double[] {Math.exp(1) / z, Math.exp(0.25) / z, Math.exp(0.5) / z}, p, 1e-6);
    }

    @Test
    void greedyTakesTheArgMaxAfterPenalties() {
        float[] logits = {3, 2.5f, 1};
        assertEquals(0, new Sampler(SamplerSettings.greedy()).sample(logits, NO_HISTORY, 0));
        SamplerSettings penalised = new SamplerSettings(0, 0, 1, 0, 1.5f, 0, 0, 0);
        assertEquals(1, new Sampler(penalised).sample(logits, new int[] {0}, 1));
    }

    @Test
    void samplingFollowsTheDistributionAndRepeatsWithTheSeed() {
        Random rnd = new Random(7);
        float[] logits = new float[50];
        for (int i = 0; i < logits.length; i++) {
            logits[i] = (float) rnd.nextGaussian();
        }
        SamplerSettings s = new SamplerSettings(0.9f, 20, 0.9f, 0.02f, 1f, 0, 0, 1234);
        double[] expected = new Sampler(s).probabilities(logits, NO_HISTORY, 0);
        Sampler a = new Sampler(s), b = new Sampler(s);
        int draws = 40_000;
        int[] counts = new int[logits.length];
        for (int i = 0; i < draws; i++) {
            int x = a.sample(logits, NO_HISTORY, 0);
            assertEquals(x, b.sample(logits, NO_HISTORY, 0), "same seed, same draws");
            counts[x]++;
        }
        for (int i = 0; i < logits.length; i++) {
            double sd = Math.sqrt(draws * expected[i] * (1 - expected[i]));
            assertEquals(draws * expected[i], counts[i], 5 * sd + 1, "token " + i);
        }
        Sampler other = new Sampler(new SamplerSettings(0.9f, 20, 0.9f, 0.02f, 1f, 0, 0, 99));
        int[] x = new int[64], y = new int[64];
        Sampler first = new Sampler(s);
        for (int i = 0; i < 64; i++) {
            x[i] = first.sample(logits, NO_HISTORY, 0);
            y[i] = other.sample(logits, NO_HISTORY, 0);
        }
        assertNotEquals(java.util.Arrays.toString(x), java.util.Arrays.toString(y), "another seed, other draws");
    }

    @Test
    void badSettingsAreRefusedWithTheirName() {
        assertThrows(IllegalArgumentException.class, () -> new SamplerSettings(-1, 0, 1, 0, 1, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplerSettings(1, -2, 1, 0, 1, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplerSettings(1, 0, 0, 0, 1, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplerSettings(1, 0, 1, 1.5f, 1, 0, 0, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplerSettings(1, 0, 1, 0, 0, 0, 0, 0));
    }
}
