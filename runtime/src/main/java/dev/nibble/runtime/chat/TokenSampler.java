package dev.nibble.runtime.chat;

/** Picks the next token from logits; {@code history[0, length)} are the tokens so far (for repetition penalties). */
@FunctionalInterface
public interface TokenSampler {

    int sample(float[] logits, int[] history, int length);
}
