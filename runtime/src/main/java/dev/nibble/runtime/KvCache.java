package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The keys and values of one sequence for every layer, in the backend's memory and its cache type: {@code capacity}
 * positions of {@code kvHeads * headDim}, and the attention workspace for them. Positions fill from 0;
 * {@link #size()} is how many are filled.
 */
public final class KvCache implements AutoCloseable {

    private final Arena arena = Arena.ofShared();
    private final MemorySegment[] keys;
    private final MemorySegment[] values;
    private final MemorySegment work;
    private final int capacity;
    private int size;
    private Backend.Recording decodeStep; // the model's one-token step over this cache, recorded on first use
    private Object decodeStepOwner;

    KvCache(LlamaConfig config, Backend backend, int capacity) {
        if (capacity < 1) {
            throw new IllegalArgumentException("context size must be at least 1, is " + capacity);
        }
        this.capacity = capacity;
        keys = new MemorySegment[config.layers()];
        values = new MemorySegment[config.layers()];
        long bytes = (long) capacity * config.kvDim() * backend.cacheType().byteSize(1);
        try {
            for (int l = 0; l < config.layers(); l++) {
                keys[l] = backend.allocate(bytes, arena);
                values[l] = backend.allocate(bytes, arena);
            }
            long workBytes = backend.attentionWorkBytes(backend.batchTokens(), config.heads(), config.headDim(), capacity);
            work = workBytes > 0 ? backend.allocate(workBytes, arena) : MemorySegment.NULL;
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** Bytes a cache of {@code capacity} positions of {@code type} takes for {@code config}. */
    public static long bytes(LlamaConfig config, long capacity, GgmlType type) {
        return 2L * config.layers() * capacity * config.kvDim() * type.byteSize(1);
    }

    /**
     * The context to use when the user gave none: the model's own context length, reduced so the cache takes at most
     * {@code budgetBytes}.
     */
    public static int defaultCapacity(LlamaConfig config, GgmlType type, long budgetBytes) {
        long perPosition = bytes(config, 1, type);
        long fits = Math.max(1, budgetBytes / perPosition);
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

    /** The attention workspace (see {@link Backend#attentionWorkBytes}). */
    MemorySegment work() {
        return work;
    }

    /** The one-token step {@code owner} recorded over this cache, or null. */
    Backend.Recording decodeStep(Object owner) {
        return decodeStepOwner == owner ? decodeStep : null;
    }

    /** Keeps {@code owner}'s recorded one-token step (closing one recorded before) until the cache closes. */
    void decodeStep(Object owner, Backend.Recording step) {
        if (decodeStep != null) {
            decodeStep.close();
        }
        decodeStep = step;
        decodeStepOwner = owner;
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
        if (decodeStep != null) {
            decodeStep.close();
            decodeStep = null;
        }
        if (arena.scope().isAlive()) {
            arena.close();
        }
    }
}
