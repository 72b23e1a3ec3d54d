package dev.nibble.runtime;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The keys and values of one sequence, F32, for every layer: {@code capacity} positions of {@code kvHeads * headDim}.
 * Positions fill from 0; {@link #size()} is how many are filled.
 */
public final class KvCache implements AutoCloseable {

    private final Arena arena = Arena.ofShared();
    private final MemorySegment[] keys;
    private final MemorySegment[] values;
    private final int capacity;
    private final int kvDim;
    private int size;

    public KvCache(LlamaConfig config, int capacity) {
        if (capacity < 1) {
            throw new IllegalArgumentException("context size must be at least 1, is " + capacity);
        }
        this.capacity = capacity;
        this.kvDim = config.kvDim();
        keys = new MemorySegment[config.layers()];
        values = new MemorySegment[config.layers()];
        long bytes = (long) capacity * kvDim * Float.BYTES;
        for (int l = 0; l < config.layers(); l++) {
            keys[l] = arena.allocate(bytes, 64);
            values[l] = arena.allocate(bytes, 64);
        }
    }

    /** Bytes a cache of {@code capacity} positions takes for {@code config}. */
    public static long bytes(LlamaConfig config, long capacity) {
        return 2L * config.layers() * capacity * config.kvDim() * Float.BYTES;
    }

    /**
     * The context to use when the user gave none: the model's own context length, reduced so the cache takes at most
     * half the memory the machine has free.
     */
    public static int defaultCapacity(LlamaConfig config, long freeMemoryBytes) {
        long perPosition = bytes(config, 1);
        long fits = Math.max(1, freeMemoryBytes / 2 / perPosition);
        return (int) Math.min(config.contextLength(), fits);
    }

    /** Keys of {@code layer}: {@code capacity} rows of {@code kvDim} floats. */
    public MemorySegment keys(int layer) {
        return keys[layer];
    }

    /** Values of {@code layer}, laid out like {@link #keys}. */
    public MemorySegment values(int layer) {
        return values[layer];
    }

    /** The slice of {@code rows} positions starting at {@code position} within one layer's keys or values. */
    MemorySegment rows(MemorySegment layer, int position, int rows) {
        return layer.asSlice((long) position * kvDim * Float.BYTES, (long) rows * kvDim * Float.BYTES);
    }

    public int capacity() {
        return capacity;
    }

    /** Positions filled. */
    public int size() {
        return size;
    }

    /** Positions still free. */
    public int remaining() {
        return capacity - size;
    }

    void advance(int positions) {
        size += positions;
    }

    /** Forgets every position (the memory is reused). */
    public void clear() {
        size = 0;
    }

    /**
     * Keeps the first {@code positions} positions and forgets the rest, which the next tokens overwrite: a chat's next
     * turn keeps the part of the prompt it shares with what the cache holds and runs only the rest.
     */
    public void truncate(int positions) {
        if (positions < 0 || positions > size) {
            throw new IllegalArgumentException("cannot keep " + positions + " positions of a cache holding " + size);
        }
        size = positions;
    }

    /** Frees the cache. */
    @Override
    public void close() {
        if (arena.scope().isAlive()) {
            arena.close();
        }
    }
}
