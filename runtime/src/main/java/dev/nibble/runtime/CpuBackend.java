package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import dev.nibble.runtime.nativelib.NibbleCpu;
import java.lang.foreign.MemorySegment;

/**
 * The CPU backend: every operation is one call into libnibble_cpu (SIMD kernels), in a kernel context of its own (its
 * worker pool, scratch and instruction-set path), so that several backends live side by side in one process.
 */
public final class CpuBackend extends HostBackend {

    private static final String[] ISA_NAMES = {"scalar", "avx2", "avx512"};

    private final NibbleCpu cpu;

    /** Opens a kernel context whose worker pool has {@code threads} threads (0 or less: one per CPU). */
    public CpuBackend(int threads) {
        cpu = NibbleCpu.open(Math.max(threads, 0));
    }

    @Override
    public String description() {
        int isa = cpu.isa();
        return "cpu " + (isa >= 0 && isa < ISA_NAMES.length ? ISA_NAMES[isa] : "isa " + isa)
                + " (" + cpu.threads() + " threads)";
    }

    @Override
    public void matmul(Matrix w, MemorySegment x, int tokens, MemorySegment out) {
        cpu.matmul(w.type(), w.data(), w.rows(), w.cols(), x, tokens, out);
    }

    @Override
    public void embed(Matrix table, MemorySegment ids, int count, MemorySegment out) {
        cpu.embed(table.type(), table.data(), table.rows(), table.cols(), ids, count, out);
    }

    @Override
    public void rmsNorm(MemorySegment x, MemorySegment weight, int tokens, int dim, float eps, MemorySegment out) {
        cpu.rmsnorm(x, weight, tokens, dim, eps, out);
    }

    @Override
    public void rope(MemorySegment x, int tokens, int heads, int headDim, MemorySegment positions, float theta,
                     float freqScale, MemorySegment freqFactors) {
        cpu.rope(x, tokens, heads, headDim, positions, theta, freqScale,
                freqFactors == null ? MemorySegment.NULL : freqFactors);
    }

    @Override
    public void attention(MemorySegment q, int tokens, MemorySegment positions, MemorySegment starts, int heads,
                          int kvHeads, int headDim, MemorySegment keys, MemorySegment values, int span,
                          MemorySegment work, MemorySegment out) {
        cpu.attention(q, tokens, positions, starts == null ? MemorySegment.NULL : starts, heads, kvHeads, headDim,
                GgmlType.F32, keys, values, span, (long) kvHeads * headDim, (float) (1 / Math.sqrt(headDim)), out);
    }

    @Override
    public void swiglu(MemorySegment gate, MemorySegment up, long n, MemorySegment out) {
        cpu.swiglu(gate, up, n, out);
    }

    @Override
    public void add(MemorySegment a, MemorySegment b, long n, MemorySegment out) {
        cpu.add(a, b, n, out);
    }

    /** Stops the context's worker threads; the backend must not be used afterwards. */
    @Override
    public void close() {
        cpu.close();
    }
}
