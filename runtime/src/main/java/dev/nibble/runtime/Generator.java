package dev.nibble.runtime;

import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.chat.PromptTooLongException;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;

/**
 * Generates text from a prompt: the public Java API for programs that run a model without the CLI.
 * <pre>{@code
 * try (Generator g = Generator.open(Path.of("model.gguf"), 0, 0)) {
 *     g.generate("The jury", GenerationSettings.of(40, SamplerSettings.greedy()), System.out::print);
 * }
 * }</pre>
 * One generator runs one sequence at a time (a second thread's call is refused); each {@link #generate} call starts
 * from an empty context. Generators on several threads may share one {@link Model}; for many sequences at once use
 * {@link BatchEngine}.
 */
public final class Generator implements AutoCloseable {

    private final Model model;
    private final Tokenizer tokenizer;
    private final KvCache cache;
    private final Placement owned;
    private final AtomicBoolean busy = new AtomicBoolean();

    /** Runs {@code model} with {@code tokenizer} in a context of {@code contextSize} tokens; the caller keeps the model. */
    public Generator(Model model, Tokenizer tokenizer, int contextSize) {
        this(model, tokenizer, contextSize, null);
    }

    private Generator(Model model, Tokenizer tokenizer, int contextSize, Placement owned) {
        model.checkVocabulary(tokenizer.vocabulary().size());
        this.model = model;
        this.tokenizer = tokenizer;
        this.cache = model.newCache(contextSize);
        this.owned = owned;
    }

    /**
     * Loads a GGUF model on the CPU with {@code threads} threads (0: one per CPU) and a context of {@code contextSize}
     * tokens (0: the model's own, capped so the KV cache takes at most half the free memory).
     */
    public static Generator open(Path modelFile, int threads, int contextSize) throws IOException {
        return open(modelFile, Placement.of(new CpuBackend(threads)), contextSize, LoadProgress.NONE);
    }

    /**
     * Loads a GGUF model on {@code placement}, which the generator then owns (closed with it, or here if loading
     * fails), with a context of {@code contextSize} tokens (0: the model's own, capped to what the backends' memory
     * holds).
     * Everything is checked to fit before any weight is copied; {@code progress} receives the bytes placed so far.
     */
    public static Generator open(Path modelFile, Placement placement, int contextSize, LoadProgress progress)
            throws IOException {
        Model model = null;
        try {
            model = Model.load(modelFile, placement, contextSize, progress);
            Tokenizer tokenizer = Tokenizer.from(VocabularyGguf.read(model.file()));
            int ctx = contextSize > 0 ? contextSize : model.defaultContext(Model.hostFreeMemory());
            return new Generator(model, tokenizer, ctx, placement);
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

    /**
     * The KV cache, for callers that drive the model themselves: a chat keeps it across turns and runs only each new
     * turn ({@link #generate} starts it afresh).
     */
    public KvCache cache() {
        return cache;
    }

    /** The context size in tokens (prompt and generated together). */
    public int contextSize() {
        return cache.capacity();
    }

    /** Encodes a prompt as generation does: BOS first when the vocabulary asks for it, special tokens recognised. */
    public int[] encodePrompt(String prompt) {
        return tokenizer.encode(prompt, tokenizer.vocabulary().addBos(), true);
    }

    /**
     * Generates a continuation of {@code prompt}, passing each piece of text to {@code output} as soon as it is
     * complete (never a part of a stop string). A prompt that does not leave room for one new token is refused.
     * A generator runs one sequence: a call while another thread's call runs is refused.
     */
    public GenerationResult generate(String prompt, GenerationSettings settings, Consumer<String> output)
            throws IOException {
        int[] promptIds = encodePrompt(prompt);
        if (promptIds.length == 0) {
            throw new IllegalArgumentException("the prompt is empty and this model adds no BOS token; give some text");
        }
        if (promptIds.length >= cache.capacity()) {
            throw new PromptTooLongException("the prompt is " + promptIds.length + " tokens but the context holds "
                    + cache.capacity() + " (prompt and output together); shorten the prompt or raise --ctx"
                    + (cache.capacity() < model.config().contextLength()
                    ? " (the model allows " + model.config().contextLength() + ")" : ""));
        }
        return run(Generation.continuing(promptIds, settings, tokenizer, model.config().eosIds(), cache.capacity(),
                output), 0);
    }

    /**
     * Drives {@code generation} over this generator's cache, of which the first {@code reuse} positions already hold
     * the prompt's first tokens: runs the rest of the prompt, then each token it samples, until it ends.
     */
    public GenerationResult run(Generation generation, int reuse) throws IOException {
        if (!busy.compareAndSet(false, true)) {
            throw new IllegalStateException("this Generator is already generating on another thread; a Generator runs one"
                    + " sequence: make one per thread (they may share one Model)");
        }
        try {
            int[] prompt = generation.prompt();
            cache.truncate(Math.min(Math.min(reuse, prompt.length - 1), cache.size())); // the last one runs for its logits
            float[] logits = model.forward(Arrays.copyOfRange(prompt, cache.size(), prompt.length), cache, false);
            while (generation.accept(logits)) {
                logits = model.forward(new int[] {generation.next()}, cache, false);
            }
            return generation.result();
        } finally {
            busy.set(false);
        }
    }

    /** Frees the KV cache; a generator made by {@link #open} also closes its model and backends. */
    @Override
    public void close() {
        cache.close();
        if (owned != null) {
            model.close();
            owned.close();
        }
    }
}
