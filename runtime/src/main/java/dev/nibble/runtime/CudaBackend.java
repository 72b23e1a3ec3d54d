package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import dev.nibble.runtime.nativelib.NibbleCuda;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The CUDA backend: weights uploaded once into device memory (in the layout the kernels read fastest), activations
 * and an f16 KV cache there too, every operation queued on one stream of one GPU, results reaching the host only
 * through {@link #read}. The one-token decode step is recorded as a CUDA graph and replayed, so a step costs one
 * launch from Java and no host synchronisation per layer.
 */
public final class CudaBackend implements Backend {

    /** Kept free beyond what the plan counts, for the CUDA runtime's own allocations and fragmentation. */
    private static final long HEADROOM = 256L << 20;

    private final NibbleCuda cuda;
    private final NibbleCuda.DeviceInfo info;
    private final long cap;        // bytes nibble may use on this device in all (--gpu-memory), or Long.MAX_VALUE
    private final long overhead;   // device memory the context itself took when it opened
    private long allocated;        // bytes of device memory allocated through this backend now
    private long peak;             // the most allocated + overhead has been

    /**
     * Opens device {@code index}; nibble will use at most {@code capBytes} of its memory in all (0: no cap beyond the
     * device's free memory).
     */
    public CudaBackend(int index, long capBytes) {
        int count = NibbleCuda.deviceCount();
        if (index < 0 || index >= count) {
            throw new DeviceUnavailableException("there is no CUDA device " + index + " (this machine has " + count
                    + "); use --device cuda:0" + (count > 1 ? " to cuda:" + (count - 1) : ""));
        }
        NibbleCuda.DeviceInfo before = NibbleCuda.deviceInfo(index);
        this.cuda = NibbleCuda.open(index);
        this.info = before;
        this.cap = capBytes > 0 ? capBytes : Long.MAX_VALUE;
        this.overhead = Math.max(0, before.freeBytes() - cuda.memInfo()[0]);
        this.peak = overhead;
    }

    /** The device this backend runs on. */
    public NibbleCuda.DeviceInfo device() {
        return info;
    }

    @Override
    public String description() {
        return "cuda:" + info.index() + " " + info.name() + " (sm_" + info.computeCapability() + ", "
                + Model.size(info.totalBytes()) + (cap == Long.MAX_VALUE ? "" : ", --gpu-memory " + Model.size(cap)) + ")";
    }

    /** Prompts go through in batches of 512: enough rows to keep the tensor cores busy. */
    @Override
    public int batchTokens() {
        return 512;
    }

    @Override
    public MemorySegment allocate(long bytes, Arena arena) {
        if (allocated + overhead + bytes > cap) {
            throw new InsufficientMemoryException("not enough memory on " + description() + ": " + Model.size(bytes)
                    + " more would bring nibble's use to " + Model.size(allocated + overhead + bytes)
                    + ", over the --gpu-memory cap");
        }
        MemorySegment d;
        try {
            d = cuda.alloc(bytes);
        } catch (RuntimeException e) {
            throw new InsufficientMemoryException("not enough memory on " + description() + " for " + Model.size(bytes)
                    + " more (" + Model.size(cuda.memInfo()[0]) + " free): " + e.getMessage());
        }
        allocated += bytes;
        peak = Math.max(peak, allocated + overhead);
        return d.reinterpret(bytes, arena, freed -> {
            cuda.free(freed);
            allocated -= bytes;
        });
    }

    /** The most device memory nibble has held at once since this backend opened: allocations plus the context. */
    public long peakBytes() {
        return peak;
    }

    @Override
    public void write(MemorySegment host, MemorySegment dst) {
        cuda.write(host, dst);
    }

    @Override
    public void read(MemorySegment src, MemorySegment host) {
        cuda.read(src, host);
    }

    @Override
    public GgmlType cacheType() {
        return GgmlType.F16;
    }

    @Override
    public long placedBytes(GgmlType type, int rows, int cols) {
        return NibbleCuda.weightBytes(type, rows, cols);
    }

    @Override
    public Matrix place(Matrix w, Arena arena) {
        MemorySegment d = allocate(NibbleCuda.weightBytes(w.type(), w.rows(), w.cols()), arena);
        cuda.uploadWeight(w.type(), w.data(), w.rows(), w.cols(), d);
        return new Matrix(w.name(), w.type(), w.rows(), w.cols(), d);
    }

    @Override
    public MemorySegment placeVector(MemorySegment vector, Arena arena) {
        MemorySegment d = allocate(vector.byteSize(), arena);
        cuda.upload(vector, d);
        return d;
    }

    @Override
    public long availableBytes() {
        long free = cuda.memInfo()[0] - HEADROOM;
        long underCap = cap == Long.MAX_VALUE ? Long.MAX_VALUE : cap - allocated - overhead;
        return Math.max(0, Math.min(free, underCap));
    }

    @Override
    public Recording record(Runnable step) {
        cuda.captureBegin();
        MemorySegment graph;
        try {
            step.run();
        } catch (RuntimeException | Error e) {
            try {
                NibbleCuda.graphFree(cuda.captureEnd());
            } catch (RuntimeException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
        graph = cuda.captureEnd();
        return new Recording() {
            private boolean closed;

            @Override
            public void run() {
                cuda.graphLaunch(graph);
            }

            @Override
            public void close() {
                if (!closed) {
                    closed = true;
                    NibbleCuda.graphFree(graph);
                }
            }
        };
    }

    @Override
    public void matmul(Matrix w, MemorySegment x, int tokens, MemorySegment out) {
        cuda.matmul(w.type(), w.data(), w.rows(), w.cols(), x, tokens, out);
    }

    @Override
    public void matmulSharedInput(Matrix[] ws, MemorySegment x, int tokens, MemorySegment[] outs) {
        GgmlType[] types = new GgmlType[ws.length];
        MemorySegment[] data = new MemorySegment[ws.length];
        long[] rows = new long[ws.length];
        for (int j = 0; j < ws.length; j++) {
            if (ws[j].cols() != ws[0].cols()) {
                throw new IllegalArgumentException(ws[j].name() + " does not share the input of " + ws[0].name());
            }
            types[j] = ws[j].type();
            data[j] = ws[j].data();
            rows[j] = ws[j].rows();
        }
        cuda.matmulSharedInput(types, data, rows, ws[0].cols(), x, tokens, outs);
    }

    @Override
    public void matmulSwiglu(Matrix gate, Matrix up, MemorySegment x, int tokens, MemorySegment out,
                             MemorySegment scratch) {
        if (gate.type() != up.type() || gate.rows() != up.rows() || gate.cols() != up.cols()) {
            Backend.super.matmulSwiglu(gate, up, x, tokens, out, scratch);
            return;
        }
        cuda.matmulSwiglu(gate.type(), gate.data(), up.data(), gate.rows(), gate.cols(), x, tokens, out);
    }

    @Override
    public void ropeStore(MemorySegment q, MemorySegment k, MemorySegment v, int tokens, int heads, int kvHeads,
                          int headDim, MemorySegment positions, MemorySegment starts, float theta, float freqScale,
                          MemorySegment freqFactors, MemorySegment keyCache, MemorySegment valueCache) {
        cuda.ropeStore(q, k, v, tokens, heads, kvHeads, headDim, positions, orNull(starts), theta, freqScale,
                orNull(freqFactors), keyCache, valueCache);
    }

    @Override
    public void embed(Matrix table, MemorySegment ids, int count, MemorySegment out) {
        cuda.embed(table.type(), table.data(), table.rows(), table.cols(), ids, count, out);
    }

    @Override
    public void rmsNorm(MemorySegment x, MemorySegment weight, int tokens, int dim, float eps, MemorySegment out) {
        cuda.rmsnorm(x, weight, tokens, dim, eps, out);
    }

    @Override
    public void addRmsNorm(MemorySegment x, MemorySegment b, MemorySegment weight, int tokens, int dim, float eps,
                           MemorySegment out) {
        cuda.addRmsnorm(x, b, weight, tokens, dim, eps, out);
    }

    @Override
    public void rope(MemorySegment x, int tokens, int heads, int headDim, MemorySegment positions, float theta,
                     float freqScale, MemorySegment freqFactors) {
        cuda.rope(x, tokens, heads, headDim, positions, theta, freqScale, orNull(freqFactors));
    }

    /** An optional argument as the library takes it: NULL for none. */
    private static MemorySegment orNull(MemorySegment s) {
        return s == null ? MemorySegment.NULL : s;
    }

    @Override
    public void storeKv(MemorySegment rows, int tokens, MemorySegment positions, MemorySegment starts,
                        MemorySegment cache, int rowLength) {
        cuda.kvStore(rows, tokens, rowLength, positions, orNull(starts), cache);
    }

    /** The library's bound already covers every call of up to {@code tokens} tokens, with starts or without. */
    @Override
    public long attentionWorkBytes(int tokens, int heads, int headDim, int span) {
        return NibbleCuda.attentionWorkBytes(tokens, heads, headDim, span);
    }

    @Override
    public void attention(MemorySegment q, int tokens, MemorySegment positions, MemorySegment starts, int heads,
                          int kvHeads, int headDim, MemorySegment keys, MemorySegment values, int span,
                          MemorySegment work, MemorySegment out) {
        cuda.attention(q, tokens, positions, orNull(starts), heads, kvHeads, headDim, keys, values, span,
                (long) kvHeads * headDim, (float) (1 / Math.sqrt(headDim)), work, out);
    }

    @Override
    public void swiglu(MemorySegment gate, MemorySegment up, long n, MemorySegment out) {
        cuda.swiglu(gate, up, n, out);
    }

    @Override
    public void add(MemorySegment a, MemorySegment b, long n, MemorySegment out) {
        cuda.add(a, b, n, out);
    }

    /** Closes the context; memory allocated through it must have been freed (its arenas closed) before. */
    @Override
    public void close() {
        cuda.close();
    }
}
