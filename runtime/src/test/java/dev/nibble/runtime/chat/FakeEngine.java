package dev.nibble.runtime.chat;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;

/** An engine without a model: keeps the token ids its cache would hold and counts the tokens it is asked to run. */
final class FakeEngine implements ChatEngine {

    final List<Integer> cache = new ArrayList<>();
    int processed;
    /** Called after each append with the number of tokens in the cache. */
    java.util.function.IntConsumer afterAppend = n -> { };
    private final int contextSize;
    private final int vocabSize;

    FakeEngine(int contextSize, int vocabSize) {
        this.contextSize = contextSize;
        this.vocabSize = vocabSize;
    }

    @Override
    public int contextSize() {
        return contextSize;
    }

    @Override
    public void truncate(int length) {
        assertTrue(length <= cache.size(), "truncate beyond the cache");
        cache.subList(length, cache.size()).clear();
    }

    @Override
    public float[] append(int[] tokens) {
        assertTrue(tokens.length > 0, "nothing to run");
        for (int t : tokens) {
            cache.add(t);
        }
        assertTrue(cache.size() <= contextSize, "the cache overflowed: " + cache.size() + " > " + contextSize);
        processed += tokens.length;
        afterAppend.accept(cache.size());
        return new float[vocabSize];
    }

    int[] cached() {
        return cache.stream().mapToInt(Integer::intValue).toArray();
    }
}
