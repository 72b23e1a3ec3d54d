package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import dev.nibble.runtime.nativelib.NibbleCpu;
import java.lang.foreign.MemorySegment;

/** The CPU backend: every operation is one call into libnibble_cpu (SIMD kernels, its own worker pool). */
public final class CpuBackend extends HostBackend {

    private static final String[] ISA_NAMES = {"scalar", "avx2", "avx512"};

    /** Starts the kernel library's worker pool with {@code threads} threads (0 or less: one per CPU). */
    public CpuBackend(int threads) {
        NibbleCpu.poolInit(threads);
    }

    @Override
    public String description() {
        int isa = NibbleCpu.isa();
        return "cpu " + (isa >= 0 && isa < ISA_NAMES.length ? ISA_NAMES[isa] : "isa " + isa)
                + " (" + NibbleCpu.poolThreads() + " threads)";
    }

    @Override
    public void matmul(Matrix w, MemorySegment x, int tokens, MemorySegment out) {
        NibbleCpu.matmul(w.type(), w.data(), w.rows(), w.cols(), x, tokens, out);
    }

    @Override
    public void embed(Matrix table, MemorySegment ids, int count, MemorySegment out) {
        NibbleCpu.embed(table.type(), table.data(), table.rows(), table.cols(), ids, count, out);
    }

    @Override
    public void rmsNorm(MemorySegment x, MemorySegment weight, int tokens, int dim, float eps, MemorySegment out) {
        NibbleCpu.rmsnorm(x, weight, tokens, dim, eps, out);
    }

    @Override
    public void rope(MemorySegment x, int tokens, int heads, int headDim, MemorySegment positions, float theta,
                     float freqScale, MemorySegment freqFactors) {
        NibbleCpu.rope(x, tokens, heads, headDim, positions, theta, freqScale,
                freqFactors == null ? MemorySegment.NULL : freqFactors);
    }

    @Override
    public void attention(MemorySegment q, int tokens, MemorySegment positions, int heads, int kvHeads, int headDim,
                          MemorySegment keys, MemorySegment values, int capacity, MemorySegment work,
                          MemorySegment out) {
        NibbleCpu.attention(q, tokens, positions, heads, kvHeads, headDim, GgmlType.F32, keys, values, capacity,
                (long) kvHeads * headDim, (float) (1 / Math.sqrt(headDim)), out);
    }

    @Override
    public void swiglu(MemorySegment gate, MemorySegment up, long n, MemorySegment out) {
        NibbleCpu.swiglu(gate, up, n, out);
    }

    @Override
    public void add(MemorySegment a, MemorySegment b, long n, MemorySegment out) {
        NibbleCpu.add(a, b, n, out);
    }

    /** The pool lives as long as the library; nothing to free per backend. */
    @Override
    public void close() {}
}
