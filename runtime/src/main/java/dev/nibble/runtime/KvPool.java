package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * The keys and values of every sequence a model runs: per layer, one block of {@link #rows()} positions in the memory
 * of the backend that runs the layer. Each sequence's {@link KvCache} is a contiguous range of rows, reserved when it
 * opens (its prompt and the most tokens it may generate) and given back when it closes, so memory follows the
 * sequences in flight rather than places × the longest context. A forward pass may carry tokens of any sequences of one pool.
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
    private final MemorySegment[] work; // per layer: the attention workspace of the layer's backend
    private final int rows;
    private final int span;
    /** Free ranges as {start, length}, sorted by start, never adjacent (merged when freed). */
    private final List<int[]> free = new ArrayList<>();
    /** The one-token-per-sequence steps of {@link #stepsOwner} over this pool, by token count (see Model). */
    private final Map<Integer, Backend.Recording> steps = new HashMap<>();
    private Object stepsOwner;
    private volatile int freeRows;

    /** A pool of {@code rows} positions in {@code backend}'s memory, whose sequences hold at most {@code span} each. */
    KvPool(LlamaConfig config, Backend backend, int rows, int span) {
        this(config, List.of(new LayerRange(backend, 0, config.layers())), rows, span);
    }

    /**
     * A pool of {@code rows} positions whose sequences hold at most {@code span} positions each; the keys and values
     * of each range's layers live in the memory of its backend. Each backend's part is checked to fit before anything
     * is allocated.
     */
    KvPool(LlamaConfig config, List<LayerRange> ranges, int rows, int span) {
        if (rows < 1 || span < 1) {
            throw new IllegalArgumentException("a KV cache needs at least 1 position, has " + rows);
        }
        this.rows = rows;
        this.span = Math.min(span, rows);
        Map<Backend, Integer> layersOn = new IdentityHashMap<>();
        for (LayerRange r : ranges) {
            layersOn.merge(r.backend(), r.layers(), Integer::sum);
        }
        layersOn.forEach((b, layers) -> checkFits(config, b, layers, rows, workBytes(config, b, this.span)));
        keys = new MemorySegment[config.layers()];
        values = new MemorySegment[config.layers()];
        work = new MemorySegment[config.layers()];
        try {
            Map<Backend, MemorySegment> works = new IdentityHashMap<>();
            for (LayerRange r : ranges) {
                Backend b = r.backend();
                long bytes = rows * (long) config.kvDim() * b.cacheType().byteSize(1);
                long w = workBytes(config, b, this.span);
                MemorySegment shared = works.computeIfAbsent(b, x -> w > 0 ? x.allocate(w, arena) : MemorySegment.NULL);
                for (int l = r.first(); l < r.end(); l++) {
                    keys[l] = b.allocate(bytes, arena);
                    values[l] = b.allocate(bytes, arena);
                    work[l] = shared;
                }
            }
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
        free.add(new int[] {0, rows});
        freeRows = rows;
    }

    private static long workBytes(LlamaConfig config, Backend backend, int span) {
        return backend.attentionWorkBytes(backend.batchTokens(), config.heads(), config.headDim(), span);
    }

    /**
     * Bytes a cache of {@code positions} positions of {@code type} takes for {@code config}; {@link Long#MAX_VALUE}
     * when that does not fit in a long (a file may declare 2^31 - 1 layers), so that every check refuses it.
     */
    public static long bytes(LlamaConfig config, long positions, GgmlType type) {
        return bytes(config, config.layers(), positions, type);
    }

    /** Bytes the keys and values of {@code layers} layers take for {@code positions} positions of {@code type}. */
    static long bytes(LlamaConfig config, int layers, long positions, GgmlType type) {
        try {
            return Math.multiplyExact(Math.multiplyExact(Math.multiplyExact(2L * layers, positions),
                    (long) config.kvDim()), type.byteSize(1));
        } catch (ArithmeticException e) {
            return Long.MAX_VALUE;
        }
    }

    /**
     * Refuses, before anything is allocated, a backend's part of a pool ({@code layers} layers) that does not fit in
     * what the backend has free, or, for a backend computing in host memory, in what the machine has available; the
     * message gives the numbers.
     */
    private static void checkFits(LlamaConfig config, Backend backend, int layers, int rows, long workBytes) {
        long cache = bytes(config, layers, rows, backend.cacheType());
        long total = cache > Long.MAX_VALUE - workBytes ? Long.MAX_VALUE : cache + workBytes;
        long available = backend.availableBytes();
        boolean host = available == Long.MAX_VALUE;
        if (host) {
            available = hostAvailableBytes();
        }
        if (total > available) {
            throw new InsufficientMemoryException("not enough memory for a KV cache of " + rows + " positions: it needs "
                    + (cache == Long.MAX_VALUE ? "more than 8 EiB" : Model.size(total)) + " (" + layers
                    + " layers x 2 x " + rows + " positions x " + config.kvDim() + " values of " + backend.cacheType()
                    + (workBytes > 0 ? ", and " + Model.size(workBytes) + " of attention workspace" : "") + ") and "
                    + Model.size(available) + " is " + (host ? "available on this machine" : "free on "
                    + backend.description()) + "; use a smaller --ctx");
        }
    }

    /**
     * Memory the machine can give a new allocation now: Linux's MemAvailable (free memory plus reclaimable caches,
     * such as the pages of a mapped model), or the JVM's view of free memory where that is lower or the only one
     * known (inside a container with a memory limit the JVM reports the limit less what is used).
     */
    public static long hostAvailableBytes() {
        long jvm = Runtime.getRuntime().maxMemory();
        long jvmTotal = Long.MAX_VALUE;
        if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
            jvm = os.getFreeMemorySize();
            jvmTotal = os.getTotalMemorySize();
        }
        long memAvailable = -1;
        long memTotal = -1;
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (line.startsWith("MemAvailable:")) {
                    memAvailable = kib(line);
                } else if (line.startsWith("MemTotal:")) {
                    memTotal = kib(line);
                }
            }
        } catch (IOException | RuntimeException e) {
            return jvm;
        }
        // A container limit below the machine's memory: MemAvailable speaks for the whole machine, the JVM for the limit.
        if (memAvailable < 0 || (memTotal > 0 && jvmTotal < memTotal)) {
            return jvm;
        }
        return Math.max(jvm, memAvailable);
    }

    private static long kib(String meminfoLine) {
        String digits = meminfoLine.replaceAll("[^0-9]", "");
        return Long.parseLong(digits) * 1024;
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
        long rowBytes = layer.byteSize() / rows;
        return layer.asSlice(start * rowBytes, length * rowBytes);
    }

    /**
     * The attention workspace (see {@link Backend#attentionWorkBytes}) of {@code layer}'s backend, for a batch over
     * sequences of {@link #span}; layers on one backend share it.
     */
    MemorySegment work(int layer) {
        return work[layer];
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
