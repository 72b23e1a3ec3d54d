package dev.nibble.runtime.chat;

import dev.nibble.runtime.KvCache;
import dev.nibble.runtime.Model;
import java.io.IOException;

/** A chat's engine on a loaded model: one KV cache, cut back to what the next turn shares and extended from there. */
public final class ModelChatEngine implements ChatEngine {

    private final Model model;
    private final KvCache cache;

    /** Runs {@code model} on {@code cache}; both stay the caller's to close. */
    public ModelChatEngine(Model model, KvCache cache) {
        this.model = model;
        this.cache = cache;
    }

    @Override
    public int contextSize() {
        return cache.capacity();
    }

    @Override
    public void truncate(int length) {
        cache.truncate(length);
    }

    @Override
    public float[] append(int[] tokens) throws IOException {
        return model.forward(tokens, cache, false);
    }
}
