package dev.nibble.runtime;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.gguf.GgufFile;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * A Llama model loaded from a GGUF file and its forward pass on one {@link Backend}. Prompt tokens go through in
 * batches of up to {@link #batch()} (matrix-matrix products, each weight read once per batch); generated tokens one at
 * a time, as a step the backend records once per cache and replays (a CUDA graph on a GPU).
 * Not thread-safe: the activation buffers are allocated once and reused by every call.
 */
public final class Model implements AutoCloseable {

    private final GgufFile file;
    private final LlamaConfig config;
    private final ModelWeights weights;
    private final Backend backend;
    private final int batch;

    // Activations for one batch in backend memory, allocated up front (like llama2.c's RunState).
    private final Arena arena;
    private final MemorySegment x;       // residual stream, batch × dim
    private final MemorySegment xb;      // normed input of a sublayer / its output, batch × dim
    private final MemorySegment q;       // queries, batch × dim
    private final MemorySegment k;       // keys of the batch before they enter the cache, batch × kvDim
    private final MemorySegment v;       // values, likewise
    private final MemorySegment att;     // attention output, batch × dim
    private final MemorySegment hb;      // SwiGLU gate, batch × ffnDim
    private final MemorySegment hb2;     // SwiGLU up (scratch), batch × ffnDim
    private final MemorySegment logits;  // batch × vocab
    private final MemorySegment ids;     // token ids of the batch, int32
    private final MemorySegment positions; // their positions, int32
    // Host side of what crosses to and from the backend.
    private final MemorySegment hostIds;
    private final MemorySegment hostPositions;
    private final MemorySegment hostLogits;

    private Model(GgufFile file, LlamaConfig config, ModelWeights weights, Backend backend, Arena arena) {
        this.file = file;
        this.config = config;
        this.weights = weights;
        this.backend = backend;
        this.arena = arena;
        this.batch = backend.batchTokens();
        long[] sizes = activationBytes(config, batch);
        x = backend.allocate(sizes[0], arena);
        xb = backend.allocate(sizes[0], arena);
        q = backend.allocate(sizes[0], arena);
        att = backend.allocate(sizes[0], arena);
        k = backend.allocate(sizes[1], arena);
        v = backend.allocate(sizes[1], arena);
        hb = backend.allocate(sizes[2], arena);
        hb2 = backend.allocate(sizes[2], arena);
        logits = backend.allocate(sizes[3], arena);
        ids = backend.allocate(sizes[4], arena);
        positions = backend.allocate(sizes[4], arena);
        hostIds = arena.allocate(ValueLayout.JAVA_INT, batch);
        hostPositions = arena.allocate(ValueLayout.JAVA_INT, batch);
        hostLogits = arena.allocate(sizes[3], 64);
    }

    /** Bytes of the activation buffers of one batch: rows of dim, of kvDim, of ffnDim, of vocab, and of one int. */
    private static long[] activationBytes(LlamaConfig c, int batch) {
        long f = Float.BYTES;
        return new long[] {batch * c.dim() * f, batch * c.kvDim() * f, batch * c.ffnDim() * f,
                (long) batch * c.vocabSize() * f, batch * f};
    }

    /** Maps {@code path}, reads its config and places its weights on the backend, which stays owned by the caller. */
    public static Model load(Path path, Backend backend) throws IOException {
        return load(path, backend, 0, LoadProgress.NONE);
    }

    /**
     * Like {@link #load(Path, Backend)}, first checking that the weights, the activations and a KV cache of
     * {@code contextTokens} positions fit in the backend's memory (0: only weights and activations); the check fails
     * with what each part needs and what is free, before anything is copied. {@code progress} receives the bytes
     * placed so far while the weights go to the backend.
     */
    public static Model load(Path path, Backend backend, int contextTokens, LoadProgress progress) throws IOException {
        GgufFile file = GgufFile.open(path);
        Arena arena = Arena.ofShared();
        try {
            LlamaConfig config = LlamaConfig.from(file.metadata(), path);
            ModelWeights mapped = ModelWeights.from(file, config);
            MemoryPlan plan = plan(config, mapped, backend, contextTokens);
            plan.check(backend);
            ModelWeights placed = mapped.placeOn(backend, arena, progress);
            return new Model(file, config, placed, backend, arena);
        } catch (IOException | RuntimeException e) {
            arena.close();
            file.close();
            throw e;
        }
    }

    /** What a model needs in backend memory: weights as placed, activations and workspace, a KV cache of some length. */
    public record MemoryPlan(long weightBytes, long workspaceBytes, long cacheBytes, int contextTokens) {

        public long total() {
            return weightBytes + workspaceBytes + cacheBytes;
        }

        /** Refuses, naming every part, a plan that does not fit in what the backend has free. */
        void check(Backend backend) {
            long available = backend.availableBytes();
            if (total() > available) {
                String cache = contextTokens > 0 ? ", KV cache " + size(cacheBytes) + " for " + contextTokens + " tokens"
                        : "; the KV cache comes on top";
                throw new InsufficientMemoryException("not enough memory on " + backend.description() + ": the model needs "
                        + size(total()) + " (weights " + size(weightBytes) + ", workspace " + size(workspaceBytes)
                        + cache + ") and " + size(available)
                        + " is free; use a smaller --ctx, a smaller model, or another device");
            }
        }
    }

    static MemoryPlan plan(LlamaConfig config, ModelWeights weights, Backend backend, int contextTokens) {
        long weightBytes = weights.placedBytes(backend);
        int batch = backend.batchTokens();
        long[] a = activationBytes(config, batch);
        // as allocated in the constructor, and the attention workspace of a cache as long as the model's context
        long workspace = 4 * a[0] + 2 * a[1] + 2 * a[2] + a[3] + 2 * a[4]
                + backend.attentionWorkBytes(batch, config.heads(), config.headDim(),
                Math.max(contextTokens, config.contextLength()));
        long cache = KvCache.bytes(config, contextTokens, backend.cacheType());
        return new MemoryPlan(weightBytes, workspace, cache, contextTokens);
    }

    /** A size for messages: GiB or MiB with one decimal, or KiB. */
    public static String size(long bytes) {
        if (bytes >= 1L << 30) {
            return String.format(java.util.Locale.ROOT, "%.1f GiB", bytes / (double) (1L << 30));
        }
        if (bytes >= 1L << 20) {
            return String.format(java.util.Locale.ROOT, "%.1f MiB", bytes / (double) (1L << 20));
        }
        return (bytes + 1023) / 1024 + " KiB";
    }

    public LlamaConfig config() {
        return config;
    }

    public ModelWeights weights() {
        return weights;
    }

    public GgufFile file() {
        return file;
    }

    public Backend backend() {
        return backend;
    }

    /** Tokens that go through the weights together in one pass (the backend's batch). */
    public int batch() {
        return batch;
    }

    /**
     * The context to use when the user gave none: the model's own context length, reduced so that the cache fits in
     * what the backend has free now, or takes at most half of the machine's free memory when the backend computes
     * in host memory.
     */
    public int defaultContext(long hostFreeBytes) {
        long available = backend.availableBytes();
        // host memory is shared with everything else on the machine; a device's is ours once the weights are placed
        long budget = available == Long.MAX_VALUE ? hostFreeBytes / 2
                : available - backend.attentionWorkBytes(batch, config.heads(), config.headDim(), config.contextLength());
        return KvCache.defaultCapacity(config, backend.cacheType(), budget);
    }

    /** A cache for one sequence of up to {@code capacity} tokens, in the backend's memory. */
    public KvCache newCache(int capacity) {
        return new KvCache(config, backend, capacity);
    }

    /**
     * Runs {@code tokens} at the next positions of {@code cache} and appends them to it. Returns the logits of the last
     * token ({@code vocab} floats), or with {@code allLogits} those of every token ({@code tokens.length × vocab}).
     */
    public float[] forward(int[] tokens, KvCache cache, boolean allLogits) throws IOException {
        if (tokens.length == 0) {
            throw new IllegalArgumentException("no tokens to run");
        }
        if (tokens.length > cache.remaining()) {
            throw new IllegalArgumentException(tokens.length + " tokens do not fit in the " + cache.remaining()
                    + " free positions of the context (" + cache.capacity() + ")");
        }
        for (int t : tokens) {
            if (t < 0 || t >= config.vocabSize()) {
                throw new IllegalArgumentException("token id " + t + " is outside the vocabulary of " + config.vocabSize());
            }
        }
        checkFileIntact();
        int vocab = config.vocabSize();
        float[] result = new float[allLogits ? tokens.length * vocab : vocab];
        for (int from = 0; from < tokens.length; from += batch) {
            int n = Math.min(batch, tokens.length - from);
            int start = cache.size();
            for (int t = 0; t < n; t++) {
                hostIds.setAtIndex(ValueLayout.JAVA_INT, t, tokens[from + t]);
                hostPositions.setAtIndex(ValueLayout.JAVA_INT, t, start + t);
            }
            long intBytes = (long) n * Integer.BYTES;
            backend.write(hostIds.asSlice(0, intBytes), ids.asSlice(0, intBytes));
            backend.write(hostPositions.asSlice(0, intBytes), positions.asSlice(0, intBytes));
            boolean last = from + n == tokens.length;
            if (n == 1 && !allLogits) {
                decodeStep(cache).run();
            } else {
                layers(n, cache);
                if (allLogits) {
                    outputLogits(0, n);
                } else if (last) {
                    outputLogits(n - 1, 1);
                }
            }
            cache.advance(n);
            if (allLogits || last) {
                int rows = allLogits ? n : 1;
                long bytes = (long) rows * vocab * Float.BYTES;
                backend.read(logits.asSlice(0, bytes), hostLogits.asSlice(0, bytes));
                MemorySegment.copy(hostLogits, ValueLayout.JAVA_FLOAT, 0, result, allLogits ? from * vocab : 0,
                        rows * vocab);
            }
        }
        return result;
    }

    /** The one-token step over {@code cache}: recorded on first use, then replayed (positions are read on the device). */
    private Backend.Recording decodeStep(KvCache cache) {
        Backend.Recording step = cache.decodeStep(this);
        if (step == null) {
            step = backend.record(() -> {
                layers(1, cache);
                outputLogits(0, 1);
            });
            cache.decodeStep(this, step);
        }
        return step;
    }

    /**
     * The transformer blocks over the n tokens in ids/positions; the residual stream ends in x and its final norm in
     * xb. Nothing here depends on host values that change from step to step, so a backend may record it.
     */
    private void layers(int n, KvCache cache) {
        LlamaConfig c = config;
        int dim = c.dim();
        float eps = c.rmsEps();
        backend.embed(weights.tokenEmbedding(), ids, n, x);
        for (int l = 0; l < c.layers(); l++) {
            ModelWeights.Layer w = weights.layers()[l];
            // attention; the previous layer's feed-forward output (in xb) joins the residual stream with this norm
            if (l == 0) {
                backend.rmsNorm(x, w.attentionNorm(), n, dim, eps, xb);
            } else {
                backend.addRmsNorm(x, xb, w.attentionNorm(), n, dim, eps, xb);
            }
            backend.matmulSharedInput(new Matrix[] {w.wq(), w.wk(), w.wv()}, xb, n, new MemorySegment[] {q, k, v});
            backend.ropeStore(q, k, v, n, c.heads(), c.kvHeads(), c.headDim(), positions, null, c.ropeTheta(), c.ropeScale(),
                    weights.ropeFactors(), cache.keys(l), cache.values(l));
            backend.attention(q, n, positions, null, c.heads(), c.kvHeads(), c.headDim(), cache.keys(l), cache.values(l),
                    cache.capacity(), cache.work(), att);
            backend.matmul(w.wo(), att, n, xb);

            // feed-forward: down(silu(gate(x)) * up(x))
            backend.addRmsNorm(x, xb, w.ffnNorm(), n, dim, eps, xb);
            backend.matmulSwiglu(w.gate(), w.up(), xb, n, hb, hb2);
            backend.matmul(w.down(), hb, n, xb);
        }
        backend.addRmsNorm(x, xb, weights.outputNorm(), n, dim, eps, xb);
    }

    /** Output projection of rows [first, first + count) of the final norm (xb) into the first rows of logits. */
    private void outputLogits(int first, int count) {
        long rowBytes = (long) config.dim() * Float.BYTES;
        backend.matmul(weights.output(), xb.asSlice(first * rowBytes, count * rowBytes), count, logits);
    }

    /**
     * A mapped file that shrinks under us would fault on the next read (SIGBUS in native code), so check its size
     * before each pass: a clean error instead of a crash whenever the truncation happened between passes.
     */
    private void checkFileIntact() throws FormatException {
        long now;
        try {
            now = Files.size(file.path());
        } catch (NoSuchFileException e) {
            return; // deleted files stay mapped intact on POSIX systems
        } catch (IOException e) {
            throw new FormatException(file.path(), "file", -1, "cannot be checked while in use: " + e.getMessage());
        }
        if (now < file.fileSize()) {
            throw new FormatException(file.path(), "file", now, "shrank from " + file.fileSize() + " to " + now
                    + " bytes while the model was loaded; it was truncated or is being rewritten");
        }
    }

    /** Frees the activations and placed weights and unmaps the file (the backend stays open). */
    @Override
    public void close() {
        if (arena.scope().isAlive()) {
            arena.close();
        }
        file.close();
    }
}
