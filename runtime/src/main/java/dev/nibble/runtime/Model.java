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
 * A Llama model loaded from a GGUF file and its forward pass on a {@link Placement}: one {@link Backend}, or
 * consecutive ranges of layers on several (the first layers on a GPU, the rest on the CPU), the residual stream
 * crossing once per boundary and pass. One pass ({@link #step}) runs up to {@link #batch()} tokens of any sequences
 * of one {@link KvPool} (matrix-matrix products, each weight read once per pass); a pass of one token per sequence is
 * recorded once per token count and replayed (a CUDA graph on a GPU). Safe to share between threads: passes take
 * turns on the activation buffers, which are allocated once.
 */
public final class Model implements AutoCloseable {

    /**
     * Positions of KV cache planned per sequence when layers are fitted to a backend's memory and no context was
     * given: enough for a chat, and what a user who wants more states with {@code --ctx}.
     */
    static final int FIT_CONTEXT = 4096;

    private final GgufFile file;
    private final LlamaConfig config;
    private final ModelWeights weights;
    private final List<Stage> stages;
    private final List<LayerRange> ranges; // which backend runs which layers
    private final String placementReport;
    private final boolean readsFile;      // some weights are read from the mapping (a host backend runs layers)
    private final int batch;

    private final Arena arena;
    private final MemorySegment ids;     // token ids of the batch, int32, on the first stage's backend
    private final MemorySegment logits;  // batch × vocab, on the last stage's backend
    // Host side of what crosses to and from the backends.
    private final MemorySegment hostIds;
    private final MemorySegment hostPositions;
    private final MemorySegment hostStarts;
    private final MemorySegment hostLogits;
    private final MemorySegment hostStream; // the residual stream between two stages

    /**
     * Layers [first, end) on one backend, with that backend's activation buffers for one batch (like llama2.c's
     * RunState) and its copy of the RoPE factors.
     */
    private static final class Stage {
        final Backend backend;
        final int first;
        final int end;
        final MemorySegment x;         // residual stream, batch × dim
        final MemorySegment xb;        // normed input of a sublayer / its output, batch × dim
        final MemorySegment q;         // queries, batch × dim
        final MemorySegment k;         // keys of the batch before they enter the cache, batch × kvDim
        final MemorySegment v;         // values, likewise
        final MemorySegment att;       // attention output, batch × dim
        final MemorySegment hb;        // SwiGLU gate, batch × ffnDim
        final MemorySegment hb2;       // SwiGLU up (scratch), batch × ffnDim
        final MemorySegment positions; // positions of the batch, int32
        final MemorySegment starts;    // the pool row of each one's sequence's position 0, int32
        final MemorySegment ropeFactors;

        Stage(Backend backend, int first, int end, LlamaConfig c, ModelWeights mapped, int batch, Arena arena) {
            this.backend = backend;
            this.first = first;
            this.end = end;
            long[] sizes = activationBytes(c, batch);
            x = backend.allocate(sizes[0], arena);
            xb = backend.allocate(sizes[0], arena);
            q = backend.allocate(sizes[0], arena);
            att = backend.allocate(sizes[0], arena);
            k = backend.allocate(sizes[1], arena);
            v = backend.allocate(sizes[1], arena);
            hb = backend.allocate(sizes[2], arena);
            hb2 = backend.allocate(sizes[2], arena);
            positions = backend.allocate(sizes[4], arena);
            starts = backend.allocate(sizes[4], arena);
            ropeFactors = mapped.ropeFactors() == null ? null : backend.placeVector(mapped.ropeFactors(), arena);
        }
    }

    private Model(GgufFile file, LlamaConfig config, ModelWeights mapped, List<LayerRange> ranges, String report,
                  LoadProgress progress, Arena arena) {
        this.file = file;
        this.config = config;
        this.arena = arena;
        this.placementReport = report;
        this.batch = batchOf(ranges);
        this.ranges = List.copyOf(ranges);
        Backend[] layerBackends = new Backend[config.layers()];
        List<Stage> built = new ArrayList<>();
        for (LayerRange r : ranges) {
            Arrays.fill(layerBackends, r.first(), r.end(), r.backend());
            built.add(new Stage(r.backend(), r.first(), r.end(), config, mapped, batch, arena));
        }
        stages = List.copyOf(built);
        Backend first = stages.get(0).backend;
        Backend last = stages.get(stages.size() - 1).backend;
        this.weights = mapped.placeOn(layerBackends, first, last, arena, progress);
        boolean mapping = false;
        for (ModelWeights.Layer l : weights.layers()) {
            mapping |= !file.mapping().asOverlappingSlice(l.wq().data()).isEmpty();
        }
        readsFile = mapping || !file.mapping().asOverlappingSlice(weights.output().data()).isEmpty();
        long[] sizes = activationBytes(config, batch);
        ids = first.allocate(sizes[4], arena);
        logits = last.allocate(sizes[3], arena);
        hostIds = arena.allocate(ValueLayout.JAVA_INT, batch);
        hostPositions = arena.allocate(ValueLayout.JAVA_INT, batch);
        hostStarts = arena.allocate(ValueLayout.JAVA_INT, batch);
        hostLogits = arena.allocate(sizes[3], 64);
        hostStream = stages.size() > 1 ? arena.allocate(sizes[0], 64) : MemorySegment.NULL;
    }

    /** Tokens of one pass: what every backend that runs layers takes. */
    private static int batchOf(List<LayerRange> ranges) {
        int b = Integer.MAX_VALUE;
        for (LayerRange r : ranges) {
            b = Math.min(b, r.backend().batchTokens());
        }
        return b;
    }

    /** Bytes of the activation buffers of one batch: rows of dim, of kvDim, of ffnDim, of vocab, and of one int. */
    private static long[] activationBytes(LlamaConfig c, int batch) {
        long f = Float.BYTES;
        return new long[] {batch * c.dim() * f, batch * c.kvDim() * f, batch * c.ffnDim() * f,
                (long) batch * c.vocabSize() * f, batch * f};
    }

    /** Maps {@code path}, reads its config and places its weights on the backend, which stays owned by the caller. */
    public static Model load(Path path, Backend backend) throws IOException {
        return load(path, Placement.of(backend), 0, LoadProgress.NONE);
    }

    /** {@link #load(Path, Placement, int, LoadProgress)} with every layer on {@code backend}. */
    public static Model load(Path path, Backend backend, int contextTokens, LoadProgress progress) throws IOException {
        return load(path, Placement.of(backend), contextTokens, progress);
    }

    /**
     * Maps {@code path}, reads its config, decides which backend of {@code placement} runs which layers (see
     * {@link Placement}) and places the weights there; the placement stays owned by the caller. First checks that
     * each backend's weights, activations and a KV cache of {@code contextTokens} positions fit in its memory (0: only
     * weights and activations, though layers fitted to a backend's memory leave room for {@value #FIT_CONTEXT}
     * positions); the check fails with what each part needs and what is free, before anything is copied.
     * {@code progress} receives the bytes placed so far while the weights go to the backends.
     */
    public static Model load(Path path, Placement placement, int contextTokens, LoadProgress progress)
            throws IOException {
        GgufFile file = GgufFile.open(path);
        Arena arena = Arena.ofShared();
        try {
            LlamaConfig config = LlamaConfig.from(file.metadata(), path);
            ModelWeights mapped = ModelWeights.from(file, config);
            StringBuilder report = new StringBuilder();
            List<LayerRange> ranges = decide(config, mapped, placement, contextTokens, report);
            int batch = batchOf(ranges);
            for (int i = 0; i < ranges.size(); i++) {
                LayerRange r = ranges.get(i);
                plan(config, mapped, r.backend(), batch, r.first(), r.end(), i == 0, i == ranges.size() - 1,
                        contextTokens).check(r.backend());
            }
            return new Model(file, config, mapped, ranges, report.isEmpty() ? null : report.toString(), progress,
                    arena);
        } catch (IOException | RuntimeException e) {
            arena.close();
            file.close();
            throw e;
        }
    }

    /**
     * Which layers each backend of {@code placement} runs, in order: its count when given (at most the layers left),
     * else as many as fit in its free memory (see {@link #fit}), the last backend taking the rest; backends left
     * without layers drop out. For a placement of several backends, {@code report} gets one line saying where each
     * layer went and why.
     */
    private static List<LayerRange> decide(LlamaConfig c, ModelWeights w, Placement placement, int contextTokens,
                                      StringBuilder report) {
        List<Backend> backends = placement.backends();
        int layers = c.layers();
        int batch = Integer.MAX_VALUE;
        for (Backend b : backends) {
            batch = Math.min(batch, b.batchTokens());
        }
        int planned = contextTokens > 0 ? contextTokens : Math.min(c.contextLength(), FIT_CONTEXT);
        List<LayerRange> ranges = new ArrayList<>();
        List<String> why = new ArrayList<>();
        int next = 0;
        for (int i = 0; i < backends.size(); i++) {
            Backend b = backends.get(i);
            int left = layers - next;
            int count;
            if (i == backends.size() - 1) {
                count = left;
            } else if (placement.asked(i) != Placement.FIT) {
                count = Math.min(placement.asked(i), left);
                why.add(count + (count == 1 ? " layer" : " layers") + " on " + b.description() + ", as asked");
            } else {
                count = fit(c, w, b, batch, next, left, planned);
                long free = b.availableBytes();
                MemoryPlan one = plan(c, w, b, batch, next, next + 1, next == 0, false, planned);
                MemoryPlan none = plan(c, w, b, batch, next, next, next == 0, false, planned);
                why.add(count + " of " + left + " fit in the " + (free == Long.MAX_VALUE ? "host memory"
                        : size(free) + " free") + " on " + b.description() + " (a layer takes "
                        + size(one.weightBytes() - none.weightBytes()) + " of weights and "
                        + size(one.cacheBytes()) + " of KV cache for " + planned + " positions"
                        + (contextTokens > 0 ? "" : ", --ctx plans for another length") + ")");
            }
            if (count > 0) {
                ranges.add(new LayerRange(b, next, next + count));
            }
            next += count;
        }
        if (backends.size() > 1) {
            List<String> parts = new ArrayList<>();
            for (LayerRange r : ranges) {
                parts.add((r.end() - r.first() == 1 ? "layer " + r.first() : "layers " + r.first() + "-" + (r.end() - 1))
                        + " on " + r.backend().description());
            }
            report.append(String.join(", ", parts)).append(" (").append(String.join("; ", why)).append(")");
        }
        return ranges;
    }

    /**
     * The most of the {@code left} layers from {@code first} on that fit in {@code b}'s free memory with their share
     * of a KV cache of {@code planned} positions: all of them with the output matrix when they fit (then over
     * {@code b}'s own batch: it runs alone), else as many as fit without it, over a batch of {@code batch}.
     */
    private static int fit(LlamaConfig c, ModelWeights w, Backend b, int batch, int first, int left, int planned) {
        long free = b.availableBytes();
        if (free == Long.MAX_VALUE) {
            return left; // host memory: the weights stay in the mapping
        }
        if (plan(c, w, b, first == 0 ? b.batchTokens() : batch, first, first + left, first == 0, true, planned)
                .total() <= free) {
            return left;
        }
        for (int m = left - 1; m > 0; m--) {
            if (plan(c, w, b, batch, first, first + m, first == 0, false, planned).total() <= free) {
                return m;
            }
        }
        return 0;
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

    /**
     * What backend {@code b} needs to run layers [first, end) (with the embedding table when {@code embeds}, the
     * output norm and matrix when {@code outputs}) over a batch of {@code batch} tokens and a KV cache of
     * {@code contextTokens} positions.
     */
    static MemoryPlan plan(LlamaConfig config, ModelWeights weights, Backend b, int batch, int first, int end,
                           boolean embeds, boolean outputs, int contextTokens) {
        long weightBytes = weights.placedBytes(b, first, end, embeds, outputs);
        long[] a = activationBytes(config, batch);
        // as the stage allocates them (and the ids or logits of the first or last), and the attention workspace of a
        // cache as long as the model's context
        long workspace = 4 * a[0] + 2 * a[1] + 2 * a[2] + 2 * a[4] + (embeds ? a[4] : 0) + (outputs ? a[3] : 0)
                + b.attentionWorkBytes(batch, config.heads(), config.headDim(),
                Math.max(contextTokens, Math.min(config.contextLength(), KvCache.MAX_DEFAULT_CONTEXT)));
        long cache = KvPool.bytes(config, end - first, contextTokens, b.cacheType());
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

    /**
     * One line naming where the model runs: the backend, or each backend with its layers
     * ({@code cuda:0 … (layers 0-44) + cpu avx512 (16 threads) (layers 45-79)}).
     */
    public String description() {
        if (stages.size() == 1) {
            return stages.get(0).backend.description();
        }
        List<String> parts = new ArrayList<>();
        for (Stage s : stages) {
            parts.add(s.backend.description() + " (layers " + s.first + "-" + (s.end - 1) + ")");
        }
        return String.join(" + ", parts);
    }

    /**
     * For a model placed on several backends, one line saying which layers went where and why (the layer counts
     * asked, or what each backend's memory held); null when one backend runs everything.
     */
    public String placementReport() {
        return placementReport;
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

    /** Tokens that go through the weights together in one pass (what every backend that runs layers takes). */
    public int batch() {
        return batch;
    }

    /** Bytes one position of KV cache takes, every layer on its backend (in that backend's cache type). */
    public long cacheBytesPerPosition() {
        long bytes = 0;
        for (Stage s : stages) {
            bytes += KvPool.bytes(config, s.end - s.first, 1, s.backend.cacheType());
        }
        return bytes;
    }

    /**
     * The context to use when the user gave none: the model's own context length, at most
     * {@link KvCache#MAX_DEFAULT_CONTEXT}, reduced so that the cache fits in {@link #cacheBudget} for sequences of
     * that length ({@link KvCache#defaultCapacityNote} says which applied).
     */
    public int defaultContext(long hostFreeBytes) {
        int span = Math.min(config.contextLength(), KvCache.MAX_DEFAULT_CONTEXT);
        return KvCache.defaultCapacity(config, cacheBytesPerPosition(), cacheBudget(hostFreeBytes, span));
    }

    /**
     * Bytes a KV cache of sequences of up to {@code span} positions may take, at {@link #cacheBytesPerPosition}: on
     * each backend, what it has free beside its attention workspace, or half of {@code hostFreeBytes} (the machine's
     * free memory, see {@link #hostFreeMemory}) when it computes in host memory, which is shared with everything else
     * on the machine; the backend that holds the fewest positions decides.
     */
    public long cacheBudget(long hostFreeBytes, int span) {
        long positions = Long.MAX_VALUE;
        for (Stage s : stages) {
            long available = s.backend.availableBytes();
            long budget = available == Long.MAX_VALUE ? hostFreeBytes / 2
                    : available - s.backend.attentionWorkBytes(batch, config.heads(), config.headDim(), span);
            positions = Math.min(positions, Math.max(0, budget) / KvPool.bytes(config, s.end - s.first, 1,
                    s.backend.cacheType()));
        }
        long perPosition = cacheBytesPerPosition();
        return positions > Long.MAX_VALUE / perPosition ? Long.MAX_VALUE : positions * perPosition;
    }

    /** Physical memory free now, or the JVM's view of it when the platform does not say. */
    public static long hostFreeMemory() {
        if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
            return os.getFreeMemorySize();
        }
        return Runtime.getRuntime().maxMemory();
    }

    /** A cache for one sequence of up to {@code capacity} tokens, in a pool of its own in the backends' memory. */
    public KvCache newCache(int capacity) {
        return KvCache.alone(config, ranges, capacity);
    }

    /**
     * A KV cache pool of {@code rows} positions in the backends' memory for many sequences of up to {@code span}
     * positions each, which one {@link #step} may run together.
     */
    public KvPool newPool(int rows, int span) {
        return new KvPool(config, ranges, rows, span);
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
        stages.get(0).backend.write(hostIds.asSlice(0, intBytes), ids.asSlice(0, intBytes));
        for (Stage st : stages) {
            st.backend.write(hostPositions.asSlice(0, intBytes), st.positions.asSlice(0, intBytes));
            st.backend.write(hostStarts.asSlice(0, intBytes), st.starts.asSlice(0, intBytes));
        }
        KvPool pool = layout.pool;
        int logitRows;
        if (layout.singles == n) {
            // one token of each sequence, the decode step: recorded once per count and pool, then replayed
            Backend.Recording step = pool.step(this, n);
            if (step == null) {
                step = recordDecode(layout);
                pool.step(this, n, step);
            }
            step.run();
            logitRows = n;
        } else {
            layers(layout, null);
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
            stages.get(stages.size() - 1).backend.read(logits.asSlice(0, bytes), hostLogits.asSlice(0, bytes));
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
                Stage st = stageOf(l);
                for (MemorySegment stream : new MemorySegment[] {st.x, st.xb}) {
                    st.backend.read(stream.asSlice(0, bytes), host);
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
     * The transformer blocks over the tokens in ids/positions/starts, stage after stage, calling {@code afterLayer}
     * (when not null) with each layer's index once it is done; the residual stream ends in the last stage's x and its
     * final norm in that stage's xb.
     */
    private void layers(Layout lay, IntConsumer afterLayer) {
        for (int s = 0; s < stages.size(); s++) {
            stageLayers(s, lay, afterLayer);
            if (s + 1 < stages.size()) {
                cross(s, lay.tokens);
            }
        }
    }

    /**
     * The pass of one token per sequence, recorded per stage (nothing in a stage depends on host values that change
     * from step to step) and replayed with the crossings between stages.
     */
    private Backend.Recording recordDecode(Layout lay) {
        int n = lay.tokens;
        List<Backend.Recording> parts = new ArrayList<>();
        try {
            for (int s = 0; s < stages.size(); s++) {
                int stage = s;
                boolean last = s == stages.size() - 1;
                parts.add(stages.get(s).backend.record(() -> {
                    stageLayers(stage, lay, null);
                    if (last) {
                        outputLogits(0, n, 0);
                    }
                }));
            }
        } catch (RuntimeException | Error e) {
            parts.forEach(Backend.Recording::close);
            throw e;
        }
        if (parts.size() == 1) {
            return parts.get(0);
        }
        return new Backend.Recording() {
            @Override
            public void run() {
                for (int s = 0; s < parts.size(); s++) {
                    parts.get(s).run();
                    if (s + 1 < parts.size()) {
                        cross(s, n);
                    }
                }
            }

            @Override
            public void close() {
                parts.forEach(Backend.Recording::close);
            }
        };
    }

    /** The layers of stage {@code s}: the first stage starts from the embeddings, the others from the stream that crossed. */
    private void stageLayers(int s, Layout lay, IntConsumer afterLayer) {
        Stage st = stages.get(s);
        Backend backend = st.backend;
        LlamaConfig c = config;
        int n = lay.tokens;
        int dim = c.dim();
        float eps = c.rmsEps();
        KvPool pool = lay.pool;
        long rowBytes = (long) dim * Float.BYTES;
        MemorySegment x = st.x;
        MemorySegment xb = st.xb;
        MemorySegment q = st.q;
        MemorySegment att = st.att;
        if (s == 0) {
            backend.embed(weights.tokenEmbedding(), ids, n, x);
        }
        for (int l = st.first; l < st.end; l++) {
            ModelWeights.Layer w = weights.layers()[l];
            // attention; the previous layer's feed-forward output (in xb) joins the residual stream with this norm
            if (l == st.first) {
                backend.rmsNorm(x, w.attentionNorm(), n, dim, eps, xb);
            } else {
                backend.addRmsNorm(x, xb, w.attentionNorm(), n, dim, eps, xb);
            }
            backend.matmulSharedInput(new Matrix[] {w.wq(), w.wk(), w.wv()}, xb, n, new MemorySegment[] {q, st.k, st.v});
            backend.ropeStore(q, st.k, st.v, n, c.heads(), c.kvHeads(), c.headDim(), st.positions, st.starts,
                    c.ropeTheta(), c.ropeScale(), st.ropeFactors, pool.keys(l), pool.values(l));
            if (lay.singles > 0) {
                backend.attention(q, lay.singles, st.positions, st.starts, c.heads(), c.kvHeads(), c.headDim(),
                        pool.keys(l), pool.values(l), pool.span(), pool.work(l), att);
            }
            for (int i = lay.singles; i < lay.order.size(); i++) {
                KvCache cache = lay.order.get(i).cache();
                int off = lay.offset[i];
                int len = lay.order.get(i).tokens().length;
                backend.attention(q.asSlice(off * rowBytes, len * rowBytes), len,
                        st.positions.asSlice((long) off * Integer.BYTES, (long) len * Integer.BYTES), null, c.heads(),
                        c.kvHeads(), c.headDim(), pool.range(pool.keys(l), cache.start(), cache.capacity()),
                        pool.range(pool.values(l), cache.start(), cache.capacity()), cache.capacity(), pool.work(l),
                        att.asSlice(off * rowBytes, len * rowBytes));
            }
            backend.matmul(w.wo(), att, n, xb);

            // feed-forward: down(silu(gate(x)) * up(x))
            backend.addRmsNorm(x, xb, w.ffnNorm(), n, dim, eps, xb);
            backend.matmulSwiglu(w.gate(), w.up(), xb, n, st.hb, st.hb2);
            backend.matmul(w.down(), st.hb, n, xb);
            if (afterLayer != null) {
                afterLayer.accept(l);
            }
        }
        if (s == stages.size() - 1) {
            backend.addRmsNorm(x, xb, weights.outputNorm(), n, dim, eps, xb);
        } else {
            backend.add(x, xb, (long) n * dim, x); // the last feed-forward output joins the stream before it crosses
        }
    }

    /** The residual stream of a pass's tokens from stage {@code s} to the next, through host memory. */
    private void cross(int s, int tokens) {
        long bytes = (long) tokens * config.dim() * Float.BYTES;
        Stage from = stages.get(s);
        Stage to = stages.get(s + 1);
        from.backend.read(from.x.asSlice(0, bytes), hostStream.asSlice(0, bytes));
        to.backend.write(hostStream.asSlice(0, bytes), to.x.asSlice(0, bytes));
    }

    private Stage stageOf(int layer) {
        for (Stage s : stages) {
            if (layer < s.end) {
                return s;
            }
        }
        throw new IllegalArgumentException("no layer " + layer);
    }

    /** Output projection of rows [first, first + count) of the final norm (xb) into logits from row {@code to}. */
    private void outputLogits(int first, int count, int to) {
        long rowBytes = (long) config.dim() * Float.BYTES;
        long logitBytes = (long) config.vocabSize() * Float.BYTES;
        Stage last = stages.get(stages.size() - 1);
        last.backend.matmul(weights.output(), last.xb.asSlice(first * rowBytes, count * rowBytes), count,
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
     * the mapping keeps the old inode, intact, until the model closes. A GPU holds its own copy of the weights: when it
     * runs every layer, nothing reads the file. (Modification times have the file system's granularity, a few milliseconds on
     * some: a rewrite within that tick of loading goes unseen here, though a truncation still faults cleanly.)
     */
    private void checkFileIntact() throws IOException {
        if (fileChanged) {
            throw changedWhileInUse(null);
        }
        if (!readsFile) {
            return; // the weights live in the backends' memory
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
