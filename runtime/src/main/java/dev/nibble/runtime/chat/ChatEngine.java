package dev.nibble.runtime.chat;

import java.io.IOException;

/** What a chat needs from the inference engine: one sequence whose KV cache grows at the end and can be cut back. */
public interface ChatEngine {

    /** Positions the KV cache holds. */
    int contextSize();

    /** Keeps the first {@code length} positions of the cache; the rest is forgotten (and later overwritten). */
    void truncate(int length);

    /** Runs tokens at the end of the cache and returns the logits for the token after the last. */
    float[] append(int[] tokens) throws IOException;
}
