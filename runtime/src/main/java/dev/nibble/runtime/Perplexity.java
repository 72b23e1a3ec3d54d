package dev.nibble.runtime;

import java.io.IOException;
import java.util.Arrays;
import java.util.function.IntConsumer;

/**
 * Perplexity of a model on a text: the text's tokens (no special tokens) are cut into non-overlapping windows of
 * {@code context - 1} tokens, each run after a BOS token from an empty cache; every token after BOS is scored
 * (the last window may be shorter). ppl = exp(total negative log-likelihood / scored tokens).
 */
public final class Perplexity {

    /** The outcome: perplexity, summed NLL in nats, scored tokens, windows run. */
    public record Result(double perplexity, double totalNll, long scoredTokens, int windows) {}

    private Perplexity() {}

    /**
     * Scores {@code textTokens} with {@code model}. {@code progress} receives the number of windows done after each.
     */
    public static Result compute(Model model, int[] textTokens, int bosId, int context, IntConsumer progress)
            throws IOException {
        if (context < 2) {
            throw new IllegalArgumentException("the context must hold BOS and at least one token; --ctx is " + context);
        }
        if (textTokens.length == 0) {
            throw new IllegalArgumentException("the text has no tokens to score");
        }
        int vocab = model.config().vocabSize();
        double nll = 0;
        long scored = 0;
        int windows = 0;
        try (KvCache cache = model.newCache(context)) {
            for (int from = 0; from < textTokens.length; from += context - 1) {
                int n = Math.min(context - 1, textTokens.length - from);
                int[] window = new int[n + 1];
                window[0] = bosId;
                System.arraycopy(textTokens, from, window, 1, n);
                cache.clear();
                // In slices of one batch, so the logits held at once stay small whatever the context.
                for (int s = 0; s < n; s += model.batch()) {
                    int len = Math.min(model.batch(), n - s);
                    float[] logits = model.forward(Arrays.copyOfRange(window, s, s + len), cache, true);
                    for (int j = 0; j < len; j++) {
                        nll -= logProbability(logits, j * vocab, vocab, window[s + j + 1]);
                    }
                    scored += len;
                }
                windows++;
                progress.accept(windows);
            }
        }
        return new Result(Math.exp(nll / scored), nll, scored, windows);
    }

    /** log softmax(logits[offset .. offset + n))[target], in double. */
    static double logProbability(float[] logits, int offset, int n, int target) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, logits[offset + i]);
        }
        double sum = 0;
        for (int i = 0; i < n; i++) {
            sum += Math.exp(logits[offset + i] - max);
        }
        return logits[offset + target] - max - Math.log(sum);
    }
}
