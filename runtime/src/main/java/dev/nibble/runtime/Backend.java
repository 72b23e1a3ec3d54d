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

    /** Copies (dequantizing) row {@code ids[i]} of {@code table} into row i of {@code out}, for {@code i < count}. */
    void embed(Matrix table, int[] ids, int from, int count, MemorySegment out);

    /** {@code out[t] = x[t] / rms(x[t]) * weight} for each of {@code tokens} rows of {@code dim}; out may be x. */
    void rmsNorm(MemorySegment x, MemorySegment weight, int tokens, int dim, float eps, MemorySegment out);

    /**
     * Rotates each head of each token in place: pair {@code (2i, 2i+1)} of token t by the angle
     * {@code (startPos + t) * freqs[i]}. Rows are {@code heads * headDim} wide.
     */
    void rope(MemorySegment x, int tokens, int heads, int headDim, int startPos, float[] freqs);

    /**
     * Causal attention of {@code tokens} query rows at positions {@code startPos ..} over the cached keys and values
     * at positions {@code 0 .. startPos + t} (rows of {@code kvHeads * headDim}); query head h reads KV head
     * {@code h / (heads / kvHeads)}. Scores are scaled by {@code 1/sqrt(headDim)}. out is tokens × (heads × headDim).
     */
    void attention(MemorySegment q, MemorySegment keys, MemorySegment values, int tokens, int startPos,
                   int heads, int kvHeads, int headDim, MemorySegment out);

    /** {@code gate[i] = silu(gate[i]) * up[i]} for {@code i < n}. */
    void swiglu(MemorySegment gate, MemorySegment up, long n);

    /** {@code x[i] += y[i]} for {@code i < n}. */
    void add(MemorySegment x, MemorySegment y, long n);

    /** Releases what the backend holds (threads, scratch memory). */
    @Override
    void close();
}
