package dev.nibble.runtime;

import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.tokenizer.StreamingDecoder;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.function.Consumer;

/**
 * Generates text from a prompt: the public Java API for programs that run a model without the CLI.
 * <pre>{@code
 * try (Generator g = Generator.open(Path.of("model.gguf"), 0, 0)) {
 *     g.generate("The jury", GenerationSettings.of(40, SamplerSettings.greedy()), System.out::print);
 * }
 * }</pre>
 * One generator runs one sequence at a time; each {@link #generate} call starts from an empty context.
 */
public final class Generator implements AutoCloseable {

    private final Model model;
    private final Tokenizer tokenizer;
    private final KvCache cache;
    private final Backend ownedBackend;

    /** Runs {@code model} with {@code tokenizer} in a context of {@code contextSize} tokens; the caller keeps the model. */
    public Generator(Model model, Tokenizer tokenizer, int contextSize) {
        this(model, tokenizer, contextSize, null);
    }

    private Generator(Model model, Tokenizer tokenizer, int contextSize, Backend ownedBackend) {
        if (tokenizer.vocabulary().size() != model.config().vocabSize()) {
            throw new IllegalArgumentException("the tokenizer has " + tokenizer.vocabulary().size()
                    + " tokens but the model " + model.config().vocabSize());
        }
        this.model = model;
        this.tokenizer = tokenizer;
        this.cache = model.newCache(contextSize);
        this.ownedBackend = ownedBackend;
    }

    /**
     * Loads a GGUF model on the CPU with {@code threads} threads (0: one per CPU) and a context of {@code contextSize}
     * tokens (0: the model's own, capped so the KV cache takes at most half the free memory).
     */
    public static Generator open(Path modelFile, int threads, int contextSize) throws IOException {
        return open(modelFile, new CpuBackend(threads), contextSize, LoadProgress.NONE);
    }

    /**
     * Loads a GGUF model on {@code backend}, which the generator then owns (closed with it, or here if loading fails),
     * with a context of {@code contextSize} tokens (0: the model's own, capped to what the backend's memory holds).
     * Everything is checked to fit before any weight is copied; {@code progress} receives the bytes placed so far.
     */
    public static Generator open(Path modelFile, Backend backend, int contextSize, LoadProgress progress)
            throws IOException {
        Model model = null;
        try {
            model = Model.load(modelFile, backend, contextSize, progress);
            Tokenizer tokenizer = Tokenizer.from(VocabularyGguf.read(model.file()));
            int ctx = contextSize > 0 ? contextSize : model.defaultContext(freeMemory());
            return new Generator(model, tokenizer, ctx, backend);
        } catch (IOException | RuntimeException e) {
            if (model != null) {
                model.close();
            }
            backend.close();
            throw e;
        }
    }

    /** Physical memory free now, or the JVM's view of it when the platform does not say. */
    static long freeMemory() {
        if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
            return os.getFreeMemorySize();
        }
        return Runtime.getRuntime().maxMemory();
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
     */
    public GenerationResult generate(String prompt, GenerationSettings settings, Consumer<String> output)
            throws IOException {
        int[] promptIds = encodePrompt(prompt);
        if (promptIds.length == 0) {
            throw new IllegalArgumentException("the prompt is empty and this model adds no BOS token; give some text");
        }
        if (promptIds.length >= cache.capacity()) {
            throw new IllegalArgumentException("the prompt is " + promptIds.length + " tokens but the context holds "
                    + cache.capacity() + " (prompt and output together); shorten the prompt or raise --ctx"
                    + (cache.capacity() < model.config().contextLength()
                    ? " (the model allows " + model.config().contextLength() + ")" : ""));
        }
        cache.clear();
        Sampler sampler = new Sampler(settings.sampler());
        StopStringFilter filter = new StopStringFilter(settings.stopStrings(), output);
        StreamingDecoder decoder = tokenizer.streamingDecoder(true);
        for (int id : promptIds) {
            decoder.next(id); // so the first new token's leading space is kept, as when decoding prompt and output together
        }
        int[] history = new int[cache.capacity() + 1]; // the last token is sampled but never run
        System.arraycopy(promptIds, 0, history, 0, promptIds.length);
        int length = promptIds.length;

        long t0 = System.nanoTime();
        float[] logits = model.forward(promptIds, cache, false);
        long t1 = System.nanoTime();
        int generated = 0;
        GenerationResult.StopReason reason;
        while (true) {
            if (settings.maxTokens() >= 0 && generated == settings.maxTokens()) {
                reason = GenerationResult.StopReason.MAX_TOKENS;
                break;
            }
            int next = sampler.sample(logits, history, length);
            generated++;
            if (isEndToken(next)) {
                reason = GenerationResult.StopReason.END_TOKEN;
                break;
            }
            history[length++] = next;
            if (filter.accept(decoder.next(next))) {
                reason = GenerationResult.StopReason.STOP_STRING;
                break;
            }
            if (cache.remaining() == 0) {
                reason = GenerationResult.StopReason.CONTEXT_FULL;
                break;
            }
            if (settings.maxTokens() >= 0 && generated == settings.maxTokens()) {
                reason = GenerationResult.StopReason.MAX_TOKENS;
                break;
            }
            logits = model.forward(new int[] {next}, cache, false);
        }
        if (reason != GenerationResult.StopReason.STOP_STRING) {
            filter.accept(decoder.finish());
            filter.flush();
        }
        long t2 = System.nanoTime();
        return new GenerationResult(filter.text(), promptIds.length, generated, reason, t1 - t0, t2 - t1);
    }

    private boolean isEndToken(int id) {
        for (int eos : model.config().eosIds()) {
            if (eos == id) {
                return true;
            }
        }
        return false;
    }

    /** Frees the KV cache; a generator made by {@link #open} also closes its model and backend. */
    @Override
    public void close() {
        cache.close();
        if (ownedBackend != null) {
            model.close();
            ownedBackend.close();
        }
    }
}
