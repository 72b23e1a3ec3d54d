package dev.nibble.runtime;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.runtime.nativelib.NativeKernelException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;
import java.util.function.IntConsumer;

/**
 * A Llama model loaded from a GGUF file and its forward pass on one {@link Backend}. One pass ({@link #step}) runs up
 * to {@link #batch()} tokens of any sequences of one {@link KvPool} (matrix-matrix products, each weight read once per
 * pass); a pass of one token per sequence is recorded once per token count and replayed (a CUDA graph on a GPU).
 * Safe to share between threads: passes take turns on the activation buffers, which are allocated once.
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
    private final MemorySegment starts;  // the pool row of each one's sequence's position 0, int32
    // Host side of what crosses to and from the backend.
    private final MemorySegment hostIds;
    private final MemorySegment hostPositions;
    private final MemorySegment hostStarts;
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
        starts = backend.allocate(sizes[4], arena);
        hostIds = arena.allocate(ValueLayout.JAVA_INT, batch);
        hostPositions = arena.allocate(ValueLayout.JAVA_INT, batch);
        hostStarts = arena.allocate(ValueLayout.JAVA_INT, batch);
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
            long sum = weightBytes + workspaceBytes;
            return cacheBytes > Long.MAX_VALUE - sum ? Long.MAX_VALUE : sum + cacheBytes;
        }

        /**
         * Refuses, naming every part, a plan that does not fit in what the backend has free (for a backend computing
         * in host memory, in what the machine has available: see {@link KvPool#hostAvailableBytes}).
         */
        void check(Backend backend) {
            long available = backend.availableBytes();
            boolean host = available == Long.MAX_VALUE;
            if (host) {
                available = KvPool.hostAvailableBytes();
            }
            if (total() > available) {
                String cache = contextTokens > 0 ? ", KV cache " + (cacheBytes == Long.MAX_VALUE ? "more than 8 EiB"
                        : size(cacheBytes)) + " for " + contextTokens + " tokens" : "; the KV cache comes on top";
                throw new InsufficientMemoryException("not enough memory on " + backend.description() + ": the model needs "
                        + (total() == Long.MAX_VALUE ? "more than 8 EiB" : size(total())) + " (weights " + size(weightBytes)
                        + ", workspace " + size(workspaceBytes) + cache + ") and " + size(available)
                        + (host ? " is available on this machine" : " is free")
                        + "; use a smaller --ctx, a smaller model, or another device");
            }
        }
    }

    static MemoryPlan plan(LlamaConfig config, ModelWeights weights, Backend backend, int contextTokens) {
        long weightBytes = weights.placedBytes(backend);
        int batch = backend.batchTokens();
        long[] a = activationBytes(config, batch);
        // as allocated in the constructor, and the attention workspace of a cache as long as the model's context
        long workspace = 4 * a[0] + 2 * a[1] + 2 * a[2] + a[3] + 3 * a[4]
                + backend.attentionWorkBytes(batch, config.heads(), config.headDim(),
                Math.max(contextTokens, Math.min(config.contextLength(), KvCache.MAX_DEFAULT_CONTEXT)));
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

    /**
     * Refuses a tokenizer of {@code tokens} tokens for this model unless its vocabulary has exactly the model's rows:
     * ids would otherwise pick the wrong embeddings and logits (garbage text, a wrong perplexity) or none at all.
     */
    public void checkVocabulary(int tokens) {
        if (tokens != config.vocabSize()) {
            throw new IllegalArgumentException(file.path() + ": the tokenizer has " + tokens + " tokens but the model "
                    + config.vocabSize() + "; the vocabulary does not belong to these weights (convert the model again)");
        }
    }

    /** Tokens that go through the weights together in one pass (the backend's batch). */
    public int batch() {
        return batch;
    }

    /**
     * The context to use when the user gave none: the model's own context length, at most
     * {@link KvCache#MAX_DEFAULT_CONTEXT}, reduced so that the cache fits in {@link #cacheBudget} for sequences of
     * that length ({@link KvCache#defaultCapacityNote} says which applied).
     */
    public int defaultContext(long hostFreeBytes) {
        int span = Math.min(config.contextLength(), KvCache.MAX_DEFAULT_CONTEXT);
        return KvCache.defaultCapacity(config, backend.cacheType(), cacheBudget(hostFreeBytes, span));
    }

    /**
     * Bytes a KV cache of sequences of up to {@code span} positions may take: what the backend has free beside its
     * attention workspace, or half of {@code hostFreeBytes} (the machine's free memory, see {@link #hostFreeMemory})
     * when the backend computes in host memory, which is shared with everything else on the machine.
     */
    public long cacheBudget(long hostFreeBytes, int span) {
        long available = backend.availableBytes();
        return available == Long.MAX_VALUE ? hostFreeBytes / 2
                : available - backend.attentionWorkBytes(batch, config.heads(), config.headDim(), span);
    }

    /** Physical memory free now, or the JVM's view of it when the platform does not say. */
    public static long hostFreeMemory() {
        if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
            return os.getFreeMemorySize();
        }
        return Runtime.getRuntime().maxMemory();
    }

    /** A cache for one sequence of up to {@code capacity} tokens, in a pool of its own in the backend's memory. */
    public KvCache newCache(int capacity) {
        return KvCache.alone(config, backend, capacity);
    }

    /**
     * A KV cache pool of {@code rows} positions in the backend's memory for many sequences of up to {@code span}
     * positions each, which one {@link #step} may run together.
     */
    public KvPool newPool(int rows, int span) {
        return new KvPool(config, backend, rows, span);
    }

    /** Which logits a segment of a {@link #step} wants. */
    public enum Logits {
        /** none: prompt tokens whose next token is already known */
        NONE,
        /** those of its last token: the distribution of the next one */
        LAST,
        /** those of every token (perplexity) */
        ALL
    }

    /** Tokens of one sequence that a {@link #step} runs at the next positions of its cache and appends to it. */
    public record Segment(KvCache cache, int[] tokens, Logits logits) {
    }

    /**
     * Runs {@code tokens} at the next positions of {@code cache} and appends them to it, in passes of up to
     * {@link #batch()} tokens. Returns the logits of the last token ({@code vocab} floats), or with {@code allLogits}
     * those of every token ({@code tokens.length × vocab}).
     */
    public float[] forward(int[] tokens, KvCache cache, boolean allLogits) throws IOException {
        if (tokens.length == 0) {
            throw new IllegalArgumentException("no tokens to run");
        }
        if (tokens.length > cache.remaining()) {
            throw new IllegalArgumentException(tokens.length + " tokens do not fit in the " + cache.remaining()
                    + " free positions of the context (" + cache.capacity() + ")");
        }
        int vocab = config.vocabSize();
        float[] result = new float[allLogits ? tokens.length * vocab : vocab];
        for (int from = 0; from < tokens.length; from += batch) {
            int n = Math.min(batch, tokens.length - from);
            boolean last = from + n == tokens.length;
            Logits wanted = allLogits ? Logits.ALL : last ? Logits.LAST : Logits.NONE;
            float[] logits = step(List.of(new Segment(cache, Arrays.copyOfRange(tokens, from, from + n), wanted)))[0];
            if (logits != null) {
                System.arraycopy(logits, 0, result, allLogits ? from * vocab : 0, logits.length);
            }
        }
        return result;
    }

    /**
     * One forward pass over the tokens of several sequences of one pool (at most {@link #batch()} tokens in all, each
     * sequence at most once): each segment's tokens run at the next positions of its cache and are appended to it.
     * Returns, for segment i, null ({@link Logits#NONE}), the logits of its last token ({@code vocab} floats) or those
     * of all its tokens. Every weight is read once for all the tokens. Safe to call from several threads: passes
     * take turns.
     */
    public synchronized float[][] step(List<Segment> segments) throws IOException {
        Layout layout = layout(segments);
        checkFileIntact();
        try {
            return pass(layout, segments);
        } catch (NativeKernelException e) {
            if (!e.isFault()) {
                throw e;
            }
            fileChanged = true; // a kernel's read of the mapped weights faulted: the file shrank under it
            throw changedWhileInUse(e);
        } catch (NonFiniteException e) {
            checkFileIntact(); // garbage from a file rewritten during the pass is that, not a broken model
            throw e;
        }
    }

    private float[][] pass(Layout layout, List<Segment> segments) {
        int n = layout.tokens;
        for (int i = 0; i < n; i++) {
            Segment seg = layout.order.get(layout.segmentOf[i]);
            int j = i - layout.offset[layout.segmentOf[i]];
            hostIds.setAtIndex(ValueLayout.JAVA_INT, i, seg.tokens()[j]);
            hostPositions.setAtIndex(ValueLayout.JAVA_INT, i, seg.cache().size() + j);
            hostStarts.setAtIndex(ValueLayout.JAVA_INT, i, seg.cache().start());
        }
        long intBytes = (long) n * Integer.BYTES;
        backend.write(hostIds.asSlice(0, intBytes), ids.asSlice(0, intBytes));
        backend.write(hostPositions.asSlice(0, intBytes), positions.asSlice(0, intBytes));
        backend.write(hostStarts.asSlice(0, intBytes), starts.asSlice(0, intBytes));
        KvPool pool = layout.pool;
        int logitRows;
        if (layout.singles == n) {
            // one token of each sequence, the decode step: recorded once per count and pool, then replayed
            Backend.Recording step = pool.step(this, n);
            if (step == null) {
                step = backend.record(() -> {
                    layers(layout);
                    outputLogits(0, n, 0);
                });
                pool.step(this, n, step);
            }
            step.run();
            logitRows = n;
        } else {
            layers(layout);
            logitRows = layout.singles;
            if (logitRows > 0) {
                outputLogits(0, logitRows, 0);
            }
            for (int s = layout.singles; s < layout.order.size(); s++) {
                Segment seg = layout.order.get(s);
                int len = seg.tokens().length;
                if (seg.logits() == Logits.LAST) {
                    outputLogits(layout.offset[s] + len - 1, 1, logitRows++);
                } else if (seg.logits() == Logits.ALL) {
                    outputLogits(layout.offset[s], len, logitRows);
                    logitRows += len;
                }
            }
        }
        int vocab = config.vocabSize();
        long bytes = (long) logitRows * vocab * Float.BYTES;
        if (bytes > 0) {
            backend.read(logits.asSlice(0, bytes), hostLogits.asSlice(0, bytes));
        }
        float[][] result = new float[segments.size()][];
        boolean finite = true;
        for (int s = 0; s < layout.order.size(); s++) {
            Segment seg = layout.order.get(s);
            if (seg.logits() == Logits.NONE) {
                continue;
            }
            int rows = seg.logits() == Logits.ALL ? seg.tokens().length : 1;
            float[] out = new float[rows * vocab];
            MemorySegment.copy(hostLogits, ValueLayout.JAVA_FLOAT, (long) layout.logitRow[s] * vocab * Float.BYTES, out,
                    0, out.length);
            finite &= allFinite(out);
            result[layout.index[s]] = out;
        }
        if (!finite) {
            throw nonFinite(layout);
        }
        for (Segment seg : segments) {
            seg.cache().advance(seg.tokens().length);
        }
        return result;
    }

    private static boolean allFinite(float[] values) {
        for (float v : values) {
            if (!Float.isFinite(v)) {
                return false;
            }
        }
        return true;
    }

    /**
     * The pass produced NaN or an infinity: runs it again (it writes the same cache rows), looking at the residual
     * stream after each layer, to say where. Sampling from such logits would give garbage text or no valid token.
     */
    private NonFiniteException nonFinite(Layout lay) {
        int n = lay.tokens;
        long bytes = (long) n * config.dim() * Float.BYTES;
        int[] where = {config.layers()}; // past the last layer: the final norm or the output matrix
        try (Arena scratch = Arena.ofConfined()) {
            MemorySegment host = scratch.allocate(bytes, 64);
            layers(lay, l -> {
                for (MemorySegment stream : new MemorySegment[] {x, xb}) {
                    backend.read(stream.asSlice(0, bytes), host);
                    for (long i = 0; i < bytes / Float.BYTES; i++) {
                        if (!Float.isFinite(host.getAtIndex(ValueLayout.JAVA_FLOAT, i))) {
                            where[0] = Math.min(where[0], l);
                            throw new StopDiagnosis();
                        }
                    }
                }
            });
        } catch (StopDiagnosis found) {
            // where[0] holds the layer
        }
        String at = where[0] < config.layers() ? "at layer " + where[0] + " of " + config.layers()
                : "in its output (the final norm or the output matrix)";
        return new NonFiniteException(file.path() + ": the model produced NaN/Inf " + at
                + "; its weights hold NaN or infinite values, or overflow f32: the file is damaged or was converted"
                + " from a broken checkpoint (convert it again, or check the source weights)");
    }

    /** Ends the layer-by-layer diagnosis at the first non-finite value. */
    private static final class StopDiagnosis extends RuntimeException {
        StopDiagnosis() {
            super(null, null, false, false);
        }
    }

    /**
     * Where each segment's tokens go in the pass: single tokens first (attention with a start row per token, the one
     * decode kernel for any mix of sequences), then each longer segment (attention over its own rows, every key it
     * loads shared by its tokens).
     */
    private static final class Layout {
        KvPool pool;
        int tokens;
        int singles;
        final List<Segment> order = new ArrayList<>();
        int[] index;     // order position -> segment index in the caller's list
        int[] offset;    // order position -> first row in the pass
        int[] logitRow;  // order position -> first row of its logits
        int[] segmentOf; // row -> order position
    }

    private Layout layout(List<Segment> segments) {
        if (segments.isEmpty()) {
            throw new IllegalArgumentException("no tokens to run");
        }
        Layout lay = new Layout();
        List<Integer> index = new ArrayList<>();
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < segments.size(); i++) {
                Segment seg = segments.get(i);
                if ((seg.tokens().length == 1) == (pass == 0)) {
                    lay.order.add(seg);
                    index.add(i);
                }
            }
        }
        int m = lay.order.size();
        lay.index = index.stream().mapToInt(Integer::intValue).toArray();
        lay.offset = new int[m];
        lay.logitRow = new int[m];
        Set<KvCache> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        int rows = 0;
        for (int s = 0; s < m; s++) {
            Segment seg = lay.order.get(s);
            KvCache cache = seg.cache();
            int len = seg.tokens().length;
            if (len == 0) {
                throw new IllegalArgumentException("a segment has no tokens");
            }
            if (cache.isClosed()) {
                throw new IllegalStateException("a sequence's KV cache was closed");
            }
            if (lay.pool == null) {
                lay.pool = cache.pool();
            } else if (lay.pool != cache.pool()) {
                throw new IllegalArgumentException("one pass runs sequences of one KV pool only");
            }
            if (!seen.add(cache)) {
                throw new IllegalArgumentException("a sequence appears twice in one pass");
            }
            if (len > cache.remaining()) {
                throw new IllegalArgumentException(len + " tokens do not fit in the " + cache.remaining()
                        + " free positions of the context (" + cache.capacity() + ")");
            }
            for (int t : seg.tokens()) {
                if (t < 0 || t >= config.vocabSize()) {
                    throw new IllegalArgumentException("token id " + t + " is outside the vocabulary of "
                            + config.vocabSize());
                }
            }
            if (len == 1) {
                lay.singles++;
            }
            lay.offset[s] = rows;
            rows += len;
        }
        // logits: one row per single token (all of them, in order), then those the longer segments want
        int logitRows = lay.singles;
        for (int s = 0; s < m; s++) {
            Segment seg = lay.order.get(s);
            if (s < lay.singles) {
                lay.logitRow[s] = s;
            } else {
                lay.logitRow[s] = logitRows;
                logitRows += seg.logits() == Logits.ALL ? seg.tokens().length : seg.logits() == Logits.LAST ? 1 : 0;
            }
        }
        if (rows > batch) {
            throw new IllegalArgumentException(rows + " tokens in one pass; the backend takes at most " + batch);
        }
        lay.tokens = rows;
        lay.segmentOf = new int[rows];
        for (int s = 0; s < m; s++) {
            Arrays.fill(lay.segmentOf, lay.offset[s], lay.offset[s] + lay.order.get(s).tokens().length, s);
        }
        return lay;
    }

    /**
     * The transformer blocks over the tokens in ids/positions/starts; the residual stream ends in x and its final norm
     * in xb. Nothing here depends on host values that change from step to step, so a backend may record it.
     */
    private void layers(Layout lay) {
        layers(lay, null);
    }

    /** {@link #layers(Layout)}, calling {@code afterLayer} (when not null) with each layer's index once it is done. */
    private void layers(Layout lay, IntConsumer afterLayer) {
        LlamaConfig c = config;
        int n = lay.tokens;
        int dim = c.dim();
        float eps = c.rmsEps();
        KvPool pool = lay.pool;
        long rowBytes = (long) dim * Float.BYTES;
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
            backend.ropeStore(q, k, v, n, c.heads(), c.kvHeads(), c.headDim(), positions, starts, c.ropeTheta(),
                    c.ropeScale(), weights.ropeFactors(), pool.keys(l), pool.values(l));
            if (lay.singles > 0) {
                backend.attention(q, lay.singles, positions, starts, c.heads(), c.kvHeads(), c.headDim(),
                        pool.keys(l), pool.values(l), pool.span(), pool.work(), att);
            }
            for (int s = lay.singles; s < lay.order.size(); s++) {
                KvCache cache = lay.order.get(s).cache();
                int off = lay.offset[s];
                int len = lay.order.get(s).tokens().length;
                backend.attention(q.asSlice(off * rowBytes, len * rowBytes), len,
                        positions.asSlice((long) off * Integer.BYTES, (long) len * Integer.BYTES), null, c.heads(),
                        c.kvHeads(), c.headDim(), pool.range(pool.keys(l), cache.start(), cache.capacity()),
                        pool.range(pool.values(l), cache.start(), cache.capacity()), cache.capacity(), pool.work(),
                        att.asSlice(off * rowBytes, len * rowBytes));
            }
            backend.matmul(w.wo(), att, n, xb);

            // feed-forward: down(silu(gate(x)) * up(x))
            backend.addRmsNorm(x, xb, w.ffnNorm(), n, dim, eps, xb);
            backend.matmulSwiglu(w.gate(), w.up(), xb, n, hb, hb2);
            backend.matmul(w.down(), hb, n, xb);
            if (afterLayer != null) {
                afterLayer.accept(l);
            }
        }
        backend.addRmsNorm(x, xb, weights.outputNorm(), n, dim, eps, xb);
    }

    /** Output projection of rows [first, first + count) of the final norm (xb) into logits from row {@code to}. */
    private void outputLogits(int first, int count, int to) {
        long rowBytes = (long) config.dim() * Float.BYTES;
        long logitBytes = (long) config.vocabSize() * Float.BYTES;
        backend.matmul(weights.output(), xb.asSlice(first * rowBytes, count * rowBytes), count,
                logits.asSlice(to * logitBytes, count * logitBytes));
    }

    /** Set once the file was found changed: every later pass fails the same way, as the mapping may hold anything. */
    private volatile boolean fileChanged;

    /**
     * On the CPU the weights are read in place from the mapped file, so a file that changes under the mapping changes
     * them: one that shrinks faults on the next read (SIGBUS, which libnibble_cpu turns into an error of that call,
     * see {@link #step}), one rewritten in place gives garbage. Before each pass the file is compared with what it was
     * at load: the same file (device and inode) with another size or modification time fails the pass, and every later
     * one. A file replaced by a rename ({@code mv new.gguf model.gguf}, or an atomic writer) or deleted is no change:
     * the mapping keeps the old inode, intact, until the model closes. A GPU holds its own copy of the weights, and
     * then nothing reads the file. (Modification times have the file system's granularity, a few milliseconds on
     * some: a rewrite within that tick of loading goes unseen here, though a truncation still faults cleanly.)
     */
    private void checkFileIntact() throws IOException {
        if (fileChanged) {
            throw changedWhileInUse(null);
        }
        if (file.mapping().asOverlappingSlice(weights.output().data()).isEmpty()) {
            return; // the weights live in the backend's memory
        }
        BasicFileAttributes now;
        try {
            now = Files.readAttributes(file.path(), BasicFileAttributes.class);
        } catch (NoSuchFileException e) {
            return; // deleted files stay mapped intact on POSIX systems
        } catch (IOException e) {
            throw new FormatException(file.path(), "file", -1, "cannot be checked while in use: " + e.getMessage());
        }
        GgufFile.Identity then = file.identity();
        if (then.key() != null && !then.key().equals(now.fileKey())) {
            return; // another file now has the name; ours is still mapped, intact
        }
        if (now.size() != then.size() || !now.lastModifiedTime().equals(then.lastModified())) {
            fileChanged = true;
            throw changedWhileInUse(null);
        }
    }

    private IOException changedWhileInUse(Throwable cause) {
        return new IOException(file.path() + ": the file changed while in use (it was truncated or overwritten);"
                + " reload it (restart the command)", cause);
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
