package dev.nibble.runtime;

import java.lang.foreign.MemorySegment;

/**
 * The operations one Llama forward pass needs, on one device. Activations are rows of F32 ({@code tokens} rows of a
 * given width, contiguous); weights are {@link Matrix} slices of the model file. Calls run to completion before they
 * return; one backend is used by one thread at a time.
 */
public interface Backend extends AutoCloseable {

    /** One line naming the device and the code path in use, e.g. {@code cpu avx512 (2 threads)}. */
    String description();

    /** {@code out[t][r] = sum_c w[r][c] * x[t][c]} for every token {@code t < tokens}; x is tokens × cols, out tokens × rows. */
    void matmul(Matrix w, MemorySegment x, int tokens, MemorySegment out);

    /** Copies (dequantizing) row {@code ids[i]} (int32) of {@code table} into row i of {@code out}, for {@code i < count}. */
    void embed(Matrix table, MemorySegment ids, int count, MemorySegment out);

    /** {@code out[t] = x[t] / rms(x[t]) * weight} for each of {@code tokens} rows of {@code dim}; out may be x. */
    void rmsNorm(MemorySegment x, MemorySegment weight, int tokens, int dim, float eps, MemorySegment out);

    /**
     * Rotates each head of each token in place: pair {@code (2i, 2i+1)} of token t by the angle
     * {@code positions[t] * freqScale * theta^(-2i/headDim) / freqFactors[i]} (no factors when freqFactors is null).
     * Rows are {@code heads * headDim} wide; positions are int32.
     */
    void rope(MemorySegment x, int tokens, int heads, int headDim, MemorySegment positions, float theta,
              float freqScale, MemorySegment freqFactors);

    /**
     * Causal attention of {@code tokens} query rows over the first {@code cached} positions of the keys and values
     * (rows of {@code kvHeads * headDim}, this batch's already written): query t sees positions
     * {@code 0 .. positions[t]}, and query head h reads KV head {@code h / (heads / kvHeads)}. Scores are scaled by
     * {@code 1/sqrt(headDim)}. q and out are tokens × (heads × headDim).
     */
    void attention(MemorySegment q, int tokens, MemorySegment positions, int heads, int kvHeads, int headDim,
                   MemorySegment keys, MemorySegment values, int cached, MemorySegment out);

    /** {@code out[i] = silu(gate[i]) * up[i]} for {@code i < n}; out may be gate. */
    void swiglu(MemorySegment gate, MemorySegment up, long n, MemorySegment out);

    /** {@code out[i] = a[i] + b[i]} for {@code i < n}; out may be a. */
    void add(MemorySegment a, MemorySegment b, long n, MemorySegment out);

    /** Releases what the backend holds (threads, scratch memory). */
    @Override
    void close();
}
