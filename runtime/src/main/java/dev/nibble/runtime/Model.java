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
 * A Llama model loaded from a GGUF file and its forward pass. Prompt tokens go through in batches of up to
 * {@link #BATCH} (matrix-matrix products, each weight read once per batch); generated tokens one at a time.
 * Not thread-safe: the activation buffers are allocated once and reused by every call.
 */
public final class Model implements AutoCloseable {

    /** Tokens processed together in one pass over the weights. */
    public static final int BATCH = 64;

    private final GgufFile file;
    private final LlamaConfig config;
    private final ModelWeights weights;
    private final Backend backend;

    // Activations for one batch, allocated up front (like llama2.c's RunState).
    private final Arena arena = Arena.ofShared();
    private final MemorySegment x;       // residual stream, BATCH × dim
    private final MemorySegment xb;      // normed input of a sublayer / its output, BATCH × dim
    private final MemorySegment q;       // queries, BATCH × dim
    private final MemorySegment att;     // attention output, BATCH × dim
    private final MemorySegment hb;      // SwiGLU gate, BATCH × ffnDim
    private final MemorySegment hb2;     // SwiGLU up, BATCH × ffnDim
    private final MemorySegment logits;  // BATCH × vocab
    private final MemorySegment ids;     // token ids of the batch, int32
    private final MemorySegment positions; // their positions, int32

    private Model(GgufFile file, LlamaConfig config, ModelWeights weights, Backend backend) {
        this.file = file;
        this.config = config;
        this.weights = weights;
        this.backend = backend;
        long f = Float.BYTES;
        x = arena.allocate(BATCH * config.dim() * f, 64);
        xb = arena.allocate(BATCH * config.dim() * f, 64);
        q = arena.allocate(BATCH * config.dim() * f, 64);
        att = arena.allocate(BATCH * config.dim() * f, 64);
        hb = arena.allocate(BATCH * config.ffnDim() * f, 64);
        hb2 = arena.allocate(BATCH * config.ffnDim() * f, 64);
        logits = arena.allocate((long) BATCH * config.vocabSize() * f, 64);
        ids = arena.allocate(ValueLayout.JAVA_INT, BATCH);
        positions = arena.allocate(ValueLayout.JAVA_INT, BATCH);
    }

    /** Maps {@code path}, reads its config and finds its weights; the backend stays owned by the caller. */
    public static Model load(Path path, Backend backend) throws IOException {
        GgufFile file = GgufFile.open(path);
        try {
            LlamaConfig config = LlamaConfig.from(file.metadata(), path);
            return new Model(file, config, ModelWeights.from(file, config), backend);
        } catch (IOException | RuntimeException e) {
            file.close();
            throw e;
        }
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

    /** A cache for one sequence of up to {@code capacity} tokens. */
    public KvCache newCache(int capacity) {
        return new KvCache(config, capacity);
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
        for (int from = 0; from < tokens.length; from += BATCH) {
            int n = Math.min(BATCH, tokens.length - from);
            int start = cache.size();
            layers(tokens, from, n, start, cache);
            cache.advance(n);
            boolean last = from + n == tokens.length;
            if (allLogits) {
                outputLogits(0, n);
                MemorySegment.copy(logits, ValueLayout.JAVA_FLOAT, 0, result, from * vocab, n * vocab);
            } else if (last) {
                outputLogits(n - 1, 1);
                MemorySegment.copy(logits, ValueLayout.JAVA_FLOAT, 0, result, 0, vocab);
            }
        }
        return result;
    }

    /** The transformer blocks over tokens[from, from + n) at positions start.. (the residual stream ends in x). */
    private void layers(int[] tokens, int from, int n, int start, KvCache cache) {
        LlamaConfig c = config;
        int dim = c.dim();
        for (int t = 0; t < n; t++) {
            ids.setAtIndex(ValueLayout.JAVA_INT, t, tokens[from + t]);
            positions.setAtIndex(ValueLayout.JAVA_INT, t, start + t);
        }
        backend.embed(weights.tokenEmbedding(), ids, n, x);
        for (int l = 0; l < c.layers(); l++) {
            ModelWeights.Layer w = weights.layers()[l];
            MemorySegment keys = cache.rows(cache.keys(l), start, n);
            MemorySegment values = cache.rows(cache.values(l), start, n);

            // attention: K and V are written straight into the cache at their positions
            backend.rmsNorm(x, w.attentionNorm(), n, dim, c.rmsEps(), xb);
            backend.matmul(w.wq(), xb, n, q);
            backend.matmul(w.wk(), xb, n, keys);
            backend.matmul(w.wv(), xb, n, values);
            backend.rope(q, n, c.heads(), c.headDim(), positions, c.ropeTheta(), c.ropeScale(), weights.ropeFactors());
            backend.rope(keys, n, c.kvHeads(), c.headDim(), positions, c.ropeTheta(), c.ropeScale(), weights.ropeFactors());
            backend.attention(q, n, positions, c.heads(), c.kvHeads(), c.headDim(), cache.keys(l), cache.values(l),
                    start + n, att);
            backend.matmul(w.wo(), att, n, xb);
            backend.add(x, xb, (long) n * dim, x);

            // feed-forward: down(silu(gate(x)) * up(x))
            backend.rmsNorm(x, w.ffnNorm(), n, dim, c.rmsEps(), xb);
            backend.matmul(w.gate(), xb, n, hb);
            backend.matmul(w.up(), xb, n, hb2);
            backend.swiglu(hb, hb2, (long) n * c.ffnDim(), hb);
            backend.matmul(w.down(), hb, n, xb);
            backend.add(x, xb, (long) n * dim, x);
        }
    }

    /** Final norm and output projection of rows [first, first + count) of x into the first rows of logits. */
    private void outputLogits(int first, int count) {
        long rowBytes = (long) config.dim() * Float.BYTES;
        MemorySegment rows = x.asSlice(first * rowBytes, count * rowBytes);
        backend.rmsNorm(rows, weights.outputNorm(), count, config.dim(), config.rmsEps(), xb);
        backend.matmul(weights.output(), xb, count, logits);
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

    /** Frees the activations and unmaps the file (the backend stays open). */
    @Override
    public void close() {
        if (arena.scope().isAlive()) {
            arena.close();
        }
        file.close();
    }
}
