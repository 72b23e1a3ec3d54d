package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The keys and values of every sequence a model runs, for every layer, in one block of backend memory of
 * {@link #rows()} positions: each sequence's {@link KvCache} is a contiguous range of rows, reserved when it opens
 * (its prompt and the most tokens it may generate) and given back when it closes, so memory follows the sequences in
 * flight rather than places × the longest context. A forward pass may carry tokens of any sequences of one pool.
 *
 * <p>Why contiguous ranges and not paged blocks: attention then reads each sequence's keys as one strided run (the
 * kernels take a start row per token and nothing else), and a sequence's length is bounded when it opens. The cost is
 * fragmentation: a request waits while no free range is long enough, though enough rows are free in pieces. With
 * requests of similar lengths, as batches usually are, ranges are reused whole.
 *
 * <p>Not thread-safe: the {@link Model} that runs the pool serialises its use.
 */
public final class KvPool implements AutoCloseable {

    private final Arena arena = Arena.ofShared();
    private final MemorySegment[] keys;
    private final MemorySegment[] values;
    private final MemorySegment work;
    private final int rows;
    private final int span;
    private final long rowBytes;
    /** Free ranges as {start, length}, sorted by start, never adjacent (merged when freed). */
    private final List<int[]> free = new ArrayList<>();
    /** The one-token-per-sequence steps of {@link #stepsOwner} over this pool, by token count (see Model). */
    private final Map<Integer, Backend.Recording> steps = new HashMap<>();
    private Object stepsOwner;
    private volatile int freeRows;

    /**
     * A pool of {@code rows} positions in {@code backend}'s memory, whose sequences hold at most {@code span}
     * positions each.
     */
    KvPool(LlamaConfig config, Backend backend, int rows, int span) {
        if (rows < 1 || span < 1) {
            throw new IllegalArgumentException("a KV cache needs at least 1 position, has " + rows);
        }
        this.rows = rows;
        this.span = Math.min(span, rows);
        keys = new MemorySegment[config.layers()];
        values = new MemorySegment[config.layers()];
        rowBytes = (long) config.kvDim() * backend.cacheType().byteSize(1);
        long bytes = rows * rowBytes;
        try {
            for (int l = 0; l < config.layers(); l++) {
                keys[l] = backend.allocate(bytes, arena);
                values[l] = backend.allocate(bytes, arena);
            }
            long workBytes = backend.attentionWorkBytes(backend.batchTokens(), config.heads(), config.headDim(),
                    this.span);
            work = workBytes > 0 ? backend.allocate(workBytes, arena) : MemorySegment.NULL;
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
        free.add(new int[] {0, rows});
        freeRows = rows;
    }

    /** Bytes a cache of {@code positions} positions of {@code type} takes for {@code config}. */
    public static long bytes(LlamaConfig config, long positions, GgmlType type) {
        return 2L * config.layers() * positions * config.kvDim() * type.byteSize(1);
    }

    /** Positions the pool holds. */
    public int rows() {
        return rows;
    }

    /** The most positions one sequence may hold. */
    public int span() {
        return span;
    }

    /** Positions not reserved by any open sequence (safe to read from any thread: a moment's view). */
    public int freeRows() {
        return freeRows;
    }

    /**
     * Reserves {@code length} contiguous positions (the first free range long enough) for a new sequence, or returns
     * null when no free range is that long now.
     */
    public KvCache open(int length) {
        if (length < 1 || length > span) {
            throw new IllegalArgumentException("a sequence of " + length + " positions does not fit this KV cache, whose"
                    + " sequences hold 1 to " + span);
        }
        for (int i = 0; i < free.size(); i++) {
            int[] r = free.get(i);
            if (r[1] >= length) {
                int start = r[0];
                if (r[1] == length) {
                    free.remove(i);
                } else {
                    r[0] += length;
                    r[1] -= length;
                }
                freeRows -= length;
                return new KvCache(this, start, length);
            }
        }
        return null;
    }

    /** Gives back the rows of a closed sequence, merging them with free neighbours. */
    void release(int start, int length) {
        freeRows += length;
        int i = 0;
        while (i < free.size() && free.get(i)[0] < start) {
            i++;
        }
        free.add(i, new int[] {start, length});
        if (i + 1 < free.size() && start + length == free.get(i + 1)[0]) {
            free.get(i)[1] += free.remove(i + 1)[1];
        }
        if (i > 0 && free.get(i - 1)[0] + free.get(i - 1)[1] == start) {
            free.get(i - 1)[1] += free.remove(i)[1];
        }
    }

    /** Keys of {@code layer}: {@link #rows()} rows of {@code kvDim} elements of the backend's cache type. */
    MemorySegment keys(int layer) {
        return keys[layer];
    }

    /** Values of {@code layer}, laid out like {@link #keys}. */
    MemorySegment values(int layer) {
        return values[layer];
    }

    /** Rows [start, start + length) of one layer's keys or values. */
    MemorySegment range(MemorySegment layer, int start, int length) {
        return layer.asSlice(start * rowBytes, length * rowBytes);
    }

    /** The attention workspace (see {@link Backend#attentionWorkBytes}) for a batch over sequences of {@link #span}. */
    MemorySegment work() {
        return work;
    }

    /** The step of {@code tokens} single tokens {@code owner} recorded over this pool, or null. */
    Backend.Recording step(Object owner, int tokens) {
        return stepsOwner == owner ? steps.get(tokens) : null;
    }

    /** Keeps {@code owner}'s recorded step of {@code tokens} tokens until the pool closes (another owner's are closed). */
    void step(Object owner, int tokens, Backend.Recording step) {
        if (stepsOwner != owner) {
            closeSteps();
            stepsOwner = owner;
        }
        Backend.Recording old = steps.put(tokens, step);
        if (old != null) {
            old.close();
        }
    }

    private void closeSteps() {
        steps.values().forEach(Backend.Recording::close);
        steps.clear();
    }

    /** Frees the memory; every sequence of the pool is gone with it. */
    @Override
    public void close() {
        closeSteps();
        if (arena.scope().isAlive()) {
            arena.close();
        }
    }
}
