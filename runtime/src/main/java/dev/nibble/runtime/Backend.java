package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * One device that runs a Llama forward pass: it owns memory as well as compute (DESIGN §2).
 *
 * <p>Activations, the KV cache and the weights live where the device reaches them: {@link #allocate} gives backend
 * memory, {@link #place} puts a weight there (the CPU keeps the zero-copy file mapping; a GPU uploads it once).
 * A segment the backend owns may be device memory that Java must never read or write directly: host data enters
 * through {@link #write} and results leave through {@link #read}, the one point where the host waits for the device.
 * Operations are queued in order and may run asynchronously (on a CUDA stream); a backend is used by one thread at a
 * time. Activations are rows of F32 ({@code tokens} rows of a given width, contiguous); token ids and positions are
 * int32 in backend memory.
 */
public interface Backend extends AutoCloseable {

    /** One line naming the device and the code path in use, e.g. {@code cpu avx512 (2 threads)}. */
    String description();

    /** Tokens one forward pass takes at most: a prompt goes through in batches of this many (each weight read once). */
    int batchTokens();

    /** Backend memory of {@code bytes} bytes (contents undefined), freed when {@code arena} closes. */
    MemorySegment allocate(long bytes, Arena arena);

    /** Copies host memory into backend memory, queued after the operations before it. */
    void write(MemorySegment host, MemorySegment dst);

    /** Waits for every queued operation, then copies backend memory to the host. */
    void read(MemorySegment src, MemorySegment host);

    /** Element type of the KV cache on this backend (F32 on the CPU, F16 on a GPU). */
    GgmlType cacheType();

    /**
     * Bytes {@link #place} takes in backend memory for a weight of {@code rows} × {@code cols} in {@code type} (a vector
     * is one row of F32), 0 when weights stay in the file mapping.
     */
    long placedBytes(GgmlType type, int rows, int cols);

    /** {@code w} where this backend's matmul reads it, alive until {@code arena} closes. */
    Matrix place(Matrix w, Arena arena);

    /** An F32 vector (a norm weight, RoPE factors) where this backend's kernels read it. */
    MemorySegment placeVector(MemorySegment vector, Arena arena);

    /**
     * Memory this backend can still give out, in bytes, or {@code Long.MAX_VALUE} when its memory is the host's (the
     * caller then decides from the machine's free memory).
     */
    long availableBytes();

    /**
     * Records {@code step}, which only queues operations of this backend on memory that stays where it is, so that
     * {@link Recording#run} repeats it: a GPU captures it once as a graph and replays it without host work between
     * kernels. Recording runs nothing.
     */
    Recording record(Runnable step);

    /** A recorded step; close it before the memory it uses is freed. */
    interface Recording extends AutoCloseable {
        void run();

        @Override
        void close();
    }

    /** {@code out[t][r] = sum_c w[r][c] * x[t][c]} for every token {@code t < tokens}; x is tokens × cols, out tokens × rows. */
    void matmul(Matrix w, MemorySegment x, int tokens, MemorySegment out);

    /** {@code outs[j] = ws[j] x} for every j: the projections that share one input (Q, K and V), maybe in one pass. */
    default void matmulSharedInput(Matrix[] ws, MemorySegment x, int tokens, MemorySegment[] outs) {
        for (int j = 0; j < ws.length; j++) {
            matmul(ws[j], x, tokens, outs[j]);
        }
    }

    /**
     * The first half of the feed-forward: {@code out = silu(gate x) * (up x)}, tokens × gate.rows; {@code scratch}
     * holds as many floats and may be overwritten.
     */
    default void matmulSwiglu(Matrix gate, Matrix up, MemorySegment x, int tokens, MemorySegment out,
                              MemorySegment scratch) {
        matmul(gate, x, tokens, out);
        matmul(up, x, tokens, scratch);
        swiglu(out, scratch, (long) tokens * gate.rows(), out);
    }

    /** Copies (dequantizing) row {@code ids[i]} (int32) of {@code table} into row i of {@code out}, for {@code i < count}. */
    void embed(Matrix table, MemorySegment ids, int count, MemorySegment out);

    /** {@code out[t] = x[t] / rms(x[t]) * weight} for each of {@code tokens} rows of {@code dim}; out may be x. */
    void rmsNorm(MemorySegment x, MemorySegment weight, int tokens, int dim, float eps, MemorySegment out);

    /** The residual add and the next norm: {@code x += b}, then {@code out = rmsNorm(x) * weight}; out may be b. */
    default void addRmsNorm(MemorySegment x, MemorySegment b, MemorySegment weight, int tokens, int dim, float eps,
                            MemorySegment out) {
        add(x, b, (long) tokens * dim, x);
        rmsNorm(x, weight, tokens, dim, eps, out);
    }

    /**
     * Rotates each head of each token in place: pair {@code (2i, 2i+1)} of token t by the angle
     * {@code positions[t] * freqScale * theta^(-2i/headDim) / freqFactors[i]} (no factors when freqFactors is null).
     * Rows are {@code heads * headDim} wide; positions are int32.
     */
    void rope(MemorySegment x, int tokens, int heads, int headDim, MemorySegment positions, float theta,
              float freqScale, MemorySegment freqFactors);

    /**
     * Stores {@code tokens} rows of F32 into one layer's keys or values, in {@link #cacheType()}: row t goes to cache
     * row {@code starts[t] + positions[t]} (int32; {@code starts} null: {@code positions[t]}). The row width is the
     * cache's.
     */
    void storeKv(MemorySegment rows, int tokens, MemorySegment positions, MemorySegment starts, MemorySegment cache,
                 int rowLength);

    /**
     * RoPE on the queries (in place) and keys of {@code tokens} tokens at {@code positions}, then the keys and values
     * stored into one layer's caches as {@link #storeKv} does; k may be changed.
     */
    default void ropeStore(MemorySegment q, MemorySegment k, MemorySegment v, int tokens, int heads, int kvHeads,
                           int headDim, MemorySegment positions, MemorySegment starts, float theta, float freqScale,
                           MemorySegment freqFactors, MemorySegment keyCache, MemorySegment valueCache) {
        rope(q, tokens, heads, headDim, positions, theta, freqScale, freqFactors);
        rope(k, tokens, kvHeads, headDim, positions, theta, freqScale, freqFactors);
        storeKv(k, tokens, positions, starts, keyCache, kvHeads * headDim);
        storeKv(v, tokens, positions, starts, valueCache, kvHeads * headDim);
    }

    /**
     * Workspace {@link #attention} needs for {@code tokens} queries, with or without starts, over sequences of up to
     * {@code span} positions.
     */
    long attentionWorkBytes(int tokens, int heads, int headDim, int span);

    /**
     * Causal attention of {@code tokens} query rows over one layer's keys and values (rows of {@code kvHeads * headDim}
     * in {@link #cacheType()}, this batch's already stored). Token t's sequence begins at cache row {@code starts[t]}
     * (int32; {@code starts} null: every token's at row 0, one sequence) and the token sees its positions
     * {@code 0 .. min(positions[t], span - 1)}; query head h reads KV head {@code h / (heads / kvHeads)}. Scores are
     * scaled by {@code 1/sqrt(headDim)}. q and out are tokens × (heads × headDim); work holds
     * {@link #attentionWorkBytes}. The caller guarantees that every row a token sees lies inside keys and values.
     * Without starts a device may share each key it loads between the tokens; with starts each token is its own.
     */
    void attention(MemorySegment q, int tokens, MemorySegment positions, MemorySegment starts, int heads, int kvHeads,
                   int headDim, MemorySegment keys, MemorySegment values, int span, MemorySegment work,
                   MemorySegment out);

    /** {@code out[i] = silu(gate[i]) * up[i]} for {@code i < n}; out may be gate. */
    void swiglu(MemorySegment gate, MemorySegment up, long n, MemorySegment out);

    /** {@code out[i] = a[i] + b[i]} for {@code i < n}; out may be a. */
    void add(MemorySegment a, MemorySegment b, long n, MemorySegment out);

    /** Releases what the backend holds (threads, device context). */
    @Override
    void close();
}
