package dev.nibble.runtime;

import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.Consumer;
import java.util.function.IntFunction;

/**
 * Many generations at once on one model (continuous batching): every forward pass carries one token of each sequence
 * that is generating and, in what room the pass has left, prompt tokens of sequences that are starting; a sequence
 * that ends gives its place and its KV cache rows to the next request at once. Each weight is read once per pass for
 * all of them, so many sequences cost little more than one while decoding is bound by memory bandwidth.
 *
 * <pre>{@code
 * try (BatchEngine engine = BatchEngine.open(Path.of("model.gguf"), Placement.of(new CpuBackend(0)),
 *         new BatchEngine.Options(16, 2048, 0), LoadProgress.NONE)) {
 *     List<CompletableFuture<GenerationResult>> results = new ArrayList<>();
 *     for (String prompt : prompts) {
 *         results.add(engine.submit(prompt, GenerationSettings.of(128, SamplerSettings.greedy()), text -> { }));
 *     }
 *     for (var r : results) {
 *         System.out.println(r.join().text());
 *     }
 * }
 * }</pre>
 * Every method is safe to call from any thread; results and streamed text arrive on the engine's own thread, so
 * callbacks should be quick. Each request's text equals what {@link Generator} gives for it alone. Cancelling a
 * request's future ends its sequence at the next pass and frees its place.
 */
public final class BatchEngine implements AutoCloseable {

    /**
     * How the engine runs.
     *
     * @param parallel    sequences in flight at most (each pass carries one token of each)
     * @param context     positions one sequence may use, prompt and answer together (0: the model's own length)
     * @param poolTokens  positions of the one KV cache all sequences share (0: {@code parallel × context}); a sequence
     *                    reserves its prompt and its token limit (at most {@code context}) when it starts
     */
    public record Options(int parallel, int context, int poolTokens) {
        public Options {
            if (parallel < 1 || context < 0 || poolTokens < 0) {
                throw new IllegalArgumentException("parallel must be at least 1 and the sizes 0 or more: " + parallel
                        + ", " + context + ", " + poolTokens);
            }
        }
    }

    /**
     * What a model's backend can hold: {@code places} sequences (at most the tokens of one pass) of up to
     * {@code context} positions, in a pool of {@code poolTokens} positions ({@code poolBytes}), which is less than
     * places × context when memory is short: then fewer sequences of full length fit at once.
     */
    public record Plan(int places, int context, int poolTokens, long poolBytes, int askedPlaces, String device) {

        public Options options() {
            return new Options(places, context, poolTokens);
        }

        /** One line for the user, before a run starts. */
        public String describe() {
            return "KV cache " + poolTokens + " positions (" + Model.size(poolBytes) + ") shared by up to " + places
                    + " sequences of at most " + context + " positions each"
                    + (poolTokens < (long) places * context ? "; at full length only " + poolTokens / context
                    + " fit at once" : "")
                    + (askedPlaces > places ? " (--parallel " + askedPlaces + " is more than the " + places
                    + " tokens of one pass on " + device + ")" : "");
        }
    }

    /**
     * Sizes the KV pool for {@code parallel} sequences of up to {@code context} positions on {@code model}'s backend:
     * all of them at full length when memory allows, else as many positions as the free memory holds (see
     * {@link Model#cacheBudget}). Refuses, with the numbers, when not even one sequence fits.
     */
    public static Plan plan(Model model, int parallel, int context) {
        int places = Math.min(parallel, model.batch());
        long perPosition = model.cacheBytesPerPosition();
        long budget = model.cacheBudget(Model.hostFreeMemory(), context);
        long fit = Math.max(0, budget / perPosition);
        if (fit < context) {
            throw new InsufficientMemoryException("the KV cache for one sequence of " + context + " positions needs "
                    + Model.size(context * perPosition) + " on " + model.description() + " and "
                    + Model.size(Math.max(budget, 0)) + " is free; use a smaller --ctx or -n");
        }
        int rows = (int) Math.min((long) places * context, Math.min(fit, Integer.MAX_VALUE));
        return new Plan(places, context, rows, rows * perPosition, parallel, model.description());
    }

    /** A request waiting or running: its loop, its cache once it has started, how much of its prompt has run. */
    private static final class Sequence {
        final Generation generation;
        final int[] prompt;
        final CompletableFuture<GenerationResult> result = new CompletableFuture<>();
        KvCache cache;
        int prefilled;

        Sequence(Generation generation) {
            this.generation = generation;
            this.prompt = generation.prompt();
        }

        /** Positions it reserves: its prompt and its token limit, at most the context. */
        int reservation(int context, int maxTokens) {
            return (int) Math.min(context, maxTokens < 0 ? context : (long) prompt.length + maxTokens);
        }
    }

    private final Model model;
    private final Tokenizer tokenizer;
    private final KvPool pool;
    private final int parallel;
    private final int context;
    private final Runnable onClose;
    private final LinkedBlockingQueue<Sequence> incoming = new LinkedBlockingQueue<>();
    private final ArrayDeque<Sequence> waiting = new ArrayDeque<>();
    // copy-on-write: monitoring views read it from other threads; at most `parallel` entries, changed once per request
    private final List<Sequence> running = new CopyOnWriteArrayList<>();
    private final Thread worker;
    private volatile boolean closed;

    /** An engine over {@code model}, which the caller keeps (and may share with other engines and generators). */
    public BatchEngine(Model model, Tokenizer tokenizer, Options options) {
        this(model, tokenizer, options, () -> { });
    }

    private BatchEngine(Model model, Tokenizer tokenizer, Options options, Runnable onClose) {
        model.checkVocabulary(tokenizer.vocabulary().size());
        this.model = model;
        this.tokenizer = tokenizer;
        this.context = options.context() > 0 ? options.context() : model.config().contextLength();
        // one token of each running sequence must fit one pass
        this.parallel = Math.min(options.parallel(), model.batch());
        int rows = options.poolTokens() > 0 ? options.poolTokens()
                : (int) Math.min(Integer.MAX_VALUE, (long) parallel * context);
        this.pool = model.newPool(rows, context);
        this.onClose = onClose;
        worker = Thread.ofPlatform().name("nibble-batch").daemon().start(this::loop);
    }

    /**
     * Loads a GGUF model on {@code placement}, which the engine then owns (closed with it, or here if loading fails).
     * The KV cache pool is checked to fit before any weight is copied.
     */
    public static BatchEngine open(Path modelFile, Placement placement, Options options, LoadProgress progress)
            throws IOException {
        Model model = null;
        try {
            int context = options.context();
            long rows = options.poolTokens() > 0 ? options.poolTokens() : (long) options.parallel() * context;
            model = Model.load(modelFile, placement, (int) Math.min(Integer.MAX_VALUE, rows), progress);
            Tokenizer tokenizer = Tokenizer.from(VocabularyGguf.read(model.file()));
            Model loaded = model;
            return new BatchEngine(model, tokenizer, options, () -> {
                loaded.close();
                placement.close();
            });
        } catch (IOException | RuntimeException e) {
            if (model != null) {
                model.close();
            }
            placement.close();
            throw e;
        }
    }

    public Model model() {
        return model;
    }

    public Tokenizer tokenizer() {
        return tokenizer;
    }

    /** Sequences that run together at most. */
    public int parallel() {
        return parallel;
    }

    /** Positions one sequence may use, prompt and answer together. */
    public int context() {
        return context;
    }

    /** Positions of the KV cache pool all sequences share. */
    public int poolTokens() {
        return pool.rows();
    }

    /** Positions of the pool no running sequence has reserved (only a moment's view: the engine runs meanwhile). */
    public int freePoolTokens() {
        return pool.freeRows();
    }

    /** Bytes of the KV cache pool. */
    public long poolBytes() {
        return pool.rows() * model.cacheBytesPerPosition();
    }

    /**
     * Continues {@code prompt} (encoded with BOS when the vocabulary asks for it), streaming its text to
     * {@code output}. The future fails with {@link IllegalArgumentException} when the prompt does not fit the context.
     */
    public CompletableFuture<GenerationResult> submit(String prompt, GenerationSettings settings,
                                                      Consumer<String> output) {
        int[] ids = tokenizer.encode(prompt, tokenizer.vocabulary().addBos(), true);
        return submit(ctx -> Generation.continuing(ids, settings, tokenizer, model.config().eosIds(), ctx, output));
    }

    /** Answers the conversation {@code messages} (ending with a user message) in {@code format}. */
    public CompletableFuture<GenerationResult> submit(ChatFormat format, List<ChatMessage> messages,
                                                      GenerationSettings settings, Consumer<String> output) {
        int[] ids = format.encode(messages, true);
        return submit(ctx -> Generation.answering(ids, settings, new Sampler(settings.sampler())::sample, format, ctx,
                output));
    }

    /**
     * Runs the generation {@code maker} makes for a context of the engine's size (see {@link Generation#continuing}
     * and {@link Generation#answering}): for callers that encode their prompts themselves. The future fails with
     * {@link IllegalArgumentException} when the maker refuses the prompt (too long for the context).
     */
    public CompletableFuture<GenerationResult> submit(IntFunction<Generation> maker) {
        Generation generation;
        try {
            generation = maker.apply(context);
        } catch (IllegalArgumentException e) {
            return CompletableFuture.failedFuture(e);
        }
        Sequence s = new Sequence(generation);
        if (closed) {
            s.result.completeExceptionally(new CancellationException("the batch engine is closed"));
            return s.result;
        }
        incoming.add(s);
        return s.result;
    }

    /** The scheduler: admits waiting requests while places and cache rows allow, runs one pass, repeats. */
    private void loop() {
        while (!closed) {
            try {
                if (running.isEmpty() && waiting.isEmpty()) {
                    waiting.add(incoming.take());
                }
                incoming.drainTo(waiting);
                admit();
                if (!running.isEmpty()) {
                    step();
                }
            } catch (InterruptedException e) {
                break;
            } catch (Throwable t) { // a failed pass fails its sequences, not the engine
                for (Sequence s : running) {
                    finish(s, t);
                }
            }
        }
        CancellationException gone = new CancellationException("the batch engine was closed before this request ended");
        incoming.drainTo(waiting);
        for (Sequence s : running) {
            finish(s, gone);
        }
        for (Sequence s : waiting) {
            s.result.completeExceptionally(gone);
        }
    }

    /** Starts waiting requests in order, while there are places and a free range of cache rows for the next one. */
    private void admit() {
        while (running.size() < parallel && !waiting.isEmpty()) {
            Sequence s = waiting.peek();
            if (s.result.isCancelled()) {
                waiting.poll();
                continue;
            }
            int rows = s.reservation(context, s.generation.maxTokens());
            if (rows > pool.span()) {
                waiting.poll();
                s.result.completeExceptionally(new IllegalArgumentException("the request needs " + rows
                        + " positions and a sequence may hold " + pool.span()));
                continue;
            }
            KvCache cache = pool.open(rows);
            if (cache == null) {
                if (running.isEmpty()) { // nothing will free rows: the pool is smaller than this one request
                    waiting.poll();
                    s.result.completeExceptionally(new IllegalArgumentException("the request needs " + rows
                            + " positions of the KV cache and it holds " + pool.rows()));
                    continue;
                }
                return; // wait for a sequence to end; later requests wait too, so none is passed over for ever
            }
            waiting.poll();
            s.cache = cache;
            running.add(s);
        }
    }

    /** One pass: a token of every generating sequence first, then prompt tokens in the room left. */
    private void step() throws IOException {
        List<Model.Segment> segments = new ArrayList<>();
        List<Sequence> owners = new ArrayList<>();
        int room = model.batch();
        for (Sequence s : running) {
            if (s.prefilled == s.prompt.length) {
                segments.add(new Model.Segment(s.cache, new int[] {s.generation.next()}, Model.Logits.LAST));
                owners.add(s);
                room--;
            }
        }
        for (Sequence s : running) {
            if (room == 0) {
                break;
            }
            if (s.prefilled < s.prompt.length) {
                int n = Math.min(room, s.prompt.length - s.prefilled);
                boolean last = s.prefilled + n == s.prompt.length;
                segments.add(new Model.Segment(s.cache, Arrays.copyOfRange(s.prompt, s.prefilled, s.prefilled + n),
                        last ? Model.Logits.LAST : Model.Logits.NONE));
                owners.add(s);
                room -= n;
            }
        }
        float[][] logits = model.step(segments);
        for (int i = 0; i < owners.size(); i++) {
            Sequence s = owners.get(i);
            if (s.result.isCancelled()) { // the caller gave up on it: end it at this token
                s.generation.cancel();
            }
            if (s.prefilled < s.prompt.length) {
                s.prefilled += segments.get(i).tokens().length;
            }
            try {
                if (logits[i] != null && !s.generation.accept(logits[i])) {
                    finish(s, null);
                }
            } catch (RuntimeException e) { // its own callback failed: that request fails, the others go on
                s.generation.cancel();
                finish(s, e);
            }
        }
    }

    /** Ends a running sequence: its place and rows are free before its caller hears of it. */
    private void finish(Sequence s, Throwable failure) {
        running.remove(s);
        s.cache.close();
        if (failure == null) {
            s.result.complete(s.generation.result());
        } else {
            s.result.completeExceptionally(failure);
        }
    }

    /**
     * Stops the engine: requests not yet ended fail with a {@link CancellationException}; waits for the current pass.
     * An engine made by {@link #open} also closes its model and backend.
     */
    @Override
    public void close() {
        if (Thread.currentThread() == worker) {
            throw new IllegalStateException("a batch engine cannot be closed from its own callbacks");
        }
        closed = true;
        worker.interrupt();
        try {
            worker.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        pool.close();
        onClose.run();
    }

    // Views for monitoring (a server's /metrics): read from any thread without stopping the engine, so each is only a
    // moment's view, possibly a pass old; none changes anything.

    /** Sequences running now (prefilling or generating), at most {@link #parallel()}. */
    public int running() {
        return running.size();
    }

    /** Positions of the KV cache pool that running sequences have reserved. */
    public int reservedPoolTokens() {
        long reserved = 0;
        for (Sequence s : running) {
            reserved += s.cache.capacity();
        }
        return (int) Math.min(reserved, pool.rows());
    }
}
