package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * What every backend that computes in host memory shares: its memory is the host's, weights stay in the file mapping
 * (zero copy, so several processes share the page cache), the KV cache is F32, operations run when called.
 */
public abstract class HostBackend implements Backend {

    /** The CPU's matrix-matrix kernels gain little beyond 64 tokens, and smaller batches keep the activations small. */
    @Override
    public int batchTokens() {
        return 64;
    }

    @Override
    public MemorySegment allocate(long bytes, Arena arena) {
        return arena.allocate(bytes, 64);
    }

    @Override
    public void write(MemorySegment host, MemorySegment dst) {
        dst.copyFrom(host);
    }

    @Override
    public void read(MemorySegment src, MemorySegment host) {
        host.copyFrom(src);
    }

    @Override
    public GgmlType cacheType() {
        return GgmlType.F32;
    }

    @Override
    public long placedBytes(GgmlType type, int rows, int cols) {
        return 0;
    }

    @Override
    public Matrix place(Matrix w, Arena arena) {
        return w;
    }

    @Override
    public MemorySegment placeVector(MemorySegment vector, Arena arena) {
        return vector;
    }

    @Override
    public long availableBytes() {
        return Long.MAX_VALUE;
    }

    @Override
    public Recording record(Runnable step) {
        return new Recording() {
            @Override
            public void run() {
                step.run();
            }

            @Override
            public void close() {}
        };
    }

    @Override
    public void storeKv(MemorySegment rows, int tokens, MemorySegment positions, MemorySegment starts,
                        MemorySegment cache, int rowLength) {
        long rowBytes = (long) rowLength * Float.BYTES;
        long capacity = cache.byteSize() / rowBytes;
        for (int t = 0; t < tokens; t++) {
            long slot = positions.getAtIndex(ValueLayout.JAVA_INT, t)
                    + (starts == null ? 0L : starts.getAtIndex(ValueLayout.JAVA_INT, t));
            if (slot < 0 || slot >= capacity) {
                throw new IllegalArgumentException("cache row " + slot + " is outside the " + capacity + " of the cache");
            }
            MemorySegment.copy(rows, t * rowBytes, cache, slot * rowBytes, rowBytes);
        }
    }

    @Override
    public long attentionWorkBytes(int tokens, int heads, int headDim, int span) {
        return 0;
    }
}
