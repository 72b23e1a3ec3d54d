package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import java.util.List;

/**
 * The keys and values of one sequence: {@link #capacity()} contiguous positions of a {@link KvPool}, every layer.
 * Positions fill from 0; {@link #size()} is how many are filled. Closing gives the positions back to the pool (and
 * closes the pool when the cache was made alone by {@link Model#newCache}). Not thread-safe.
 */
public final class KvCache implements AutoCloseable {

    private final KvPool pool;
    private final int start;
    private final int capacity;
    private final boolean ownsPool;
    private int size;
    private boolean closed;

    KvCache(KvPool pool, int start, int capacity) {
        this(pool, start, capacity, false);
    }

    private KvCache(KvPool pool, int start, int capacity, boolean ownsPool) {
        this.pool = pool;
        this.start = start;
        this.capacity = capacity;
        this.ownsPool = ownsPool;
    }

    /** A cache of {@code capacity} positions in a pool of its own, closed with it. */
    static KvCache alone(LlamaConfig config, List<LayerRange> ranges, int capacity) {
        if (capacity < 1) {
            throw new IllegalArgumentException("context size must be at least 1, is " + capacity);
        }
        return new KvCache(new KvPool(config, ranges, capacity, capacity), 0, capacity, true);
    }

    /** Bytes a cache of {@code capacity} positions of {@code type} takes for {@code config}. */
    public static long bytes(LlamaConfig config, long capacity, GgmlType type) {
        return KvPool.bytes(config, capacity, type);
    }

    /**
     * The longest context used when the user gave none, whatever the model declares: a file may claim 2^31 - 1
     * positions, and even a real 1M-token model rarely needs its whole context for one sequence. {@code --ctx} asks
     * for more.
     */
    public static final int MAX_DEFAULT_CONTEXT = 131_072;

    /**
     * The context to use when the user gave none: the model's own context length, at most
     * {@link #MAX_DEFAULT_CONTEXT}, reduced so the cache, at {@code perPosition} bytes a position, takes at most
     * {@code budgetBytes}.
     */
    public static int defaultCapacity(LlamaConfig config, long perPosition, long budgetBytes) {
        long fits = Math.max(1, budgetBytes / Math.max(1, perPosition));
        return (int) Math.min(Math.min(config.contextLength(), MAX_DEFAULT_CONTEXT), fits);
    }

    /**
     * One line saying why {@link #defaultCapacity} chose {@code capacity} for a model of {@code config}, or null when
     * it is the model's own context length: for callers to tell the user.
     */
    public static String defaultCapacityNote(LlamaConfig config, long perPosition, long budgetBytes, int capacity) {
        int trained = config.contextLength();
        if (capacity >= trained) {
            return null;
        }
        if (capacity == MAX_DEFAULT_CONTEXT && (double) MAX_DEFAULT_CONTEXT * perPosition <= budgetBytes) {
            return "context " + capacity + " tokens (the model declares " + trained + "; without --ctx at most "
                    + MAX_DEFAULT_CONTEXT + " are used, --ctx sets more)";
        }
        return "context " + capacity + " tokens (the model's " + trained + " would need "
                + Model.size(Math.min(trained, MAX_DEFAULT_CONTEXT) * perPosition) + " of KV cache and "
                + Model.size(Math.max(0, budgetBytes)) + " may be used; --ctx sets it)";
    }

    KvPool pool() {
        return pool;
    }

    /** The pool row of this sequence's position 0. */
    int start() {
        return start;
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

    boolean isClosed() {
        return closed;
    }

    /** Gives the positions back to the pool; a second close does nothing. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (ownsPool) {
            pool.close();
        } else {
            pool.release(start, capacity);
        }
    }
}
