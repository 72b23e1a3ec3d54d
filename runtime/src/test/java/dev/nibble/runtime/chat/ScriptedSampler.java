package dev.nibble.runtime.chat;

import java.util.ArrayDeque;
import java.util.Deque;

/** A sampler that plays back token ids given in advance, ignoring the logits. */
final class ScriptedSampler implements TokenSampler {

    private final Deque<Integer> script = new ArrayDeque<>();

    void add(int... ids) {
        for (int id : ids) {
            script.add(id);
        }
    }

    void clear() {
        script.clear();
    }

    @Override
    public int sample(float[] logits, int[] history, int length) {
        if (script.isEmpty()) {
            throw new IllegalStateException("the script ran out");
        }
        return script.poll();
    }
}
