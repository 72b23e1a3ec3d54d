package dev.nibble.runtime;

import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.function.Consumer;

/**
 * A model loaded for a program, in one call, as the command line loads it:
 * <pre>{@code
 * try (LanguageModel model = LanguageModel.load(Path.of("model.gguf")).device("auto").contextSize(4096).open()) {
 *     System.out.println(model.generate("The jury", GenerationSettings.of(40, SamplerSettings.greedy())).text());
 *     System.out.println(model.chat(List.of(ChatMessage.user("Hi")), GenerationSettings.of(100, SamplerSettings.greedy())).text());
 * }
 * }</pre>
 * Safe to use from many threads at once: every request goes to one {@link BatchEngine}, so concurrent requests share
 * each forward pass. Methods that return a future stream text to a callback on the engine's thread and end the
 * request when the future is cancelled. Failures are unchecked: {@link UncheckedIOException} for the file,
 * {@link IllegalArgumentException} for a request that cannot run (a prompt longer than the context),
 * {@link DeviceUnavailableException} and {@link InsufficientMemoryException} when loading.
 */
public final class LanguageModel implements AutoCloseable {

    /** How to load: defaults are the command line's (device auto, all CPUs, the model's context capped by memory). */
    public static final class Loader {
        private final Path file;
        private String device = "auto";
        private int threads;
        private long gpuMemory;
        private int gpuLayers = Placement.FIT;
        private int contextSize;
        private int parallel = 4;
        private LoadProgress progress = LoadProgress.NONE;

        private Loader(Path file) {
            this.file = file;
        }

        /** auto, cpu, cuda or cuda:N (see {@link Devices#open}). */
        public Loader device(String spec) {
            device = spec;
            return this;
        }

        /** CPU threads (0: one per CPU the process may use). */
        public Loader threads(int n) {
            threads = n;
            return this;
        }

        /** The most GPU memory to use, in bytes (0: what is free). */
        public Loader gpuMemory(long bytes) {
            gpuMemory = bytes;
            return this;
        }

        /**
         * Layers the GPU runs, the first ones; the rest run on the CPU (default: as many as fit in its memory; 0: the
         * CPU runs everything). Ignored on the CPU.
         */
        public Loader gpuLayers(int n) {
            gpuLayers = n;
            return this;
        }

        /** Positions one request may use, prompt and answer (0: the model's own, capped by free memory). */
        public Loader contextSize(int n) {
            contextSize = n;
            return this;
        }

        /** Requests that run together (each forward pass carries one token of each). */
        public Loader parallel(int n) {
            parallel = n;
            return this;
        }

        /** Receives the bytes of weights placed so far while they go to a GPU. */
        public Loader progress(LoadProgress p) {
            progress = p;
            return this;
        }

        /** Loads the model; everything is checked to fit before any weight is copied. */
        public LanguageModel open() {
            Placement placement = Devices.open(device, threads, gpuMemory, gpuLayers).placement();
            Model model = null;
            try {
                model = Model.load(file, placement, 0, progress);
                Tokenizer tokenizer = Tokenizer.from(VocabularyGguf.read(model.file()));
                int context = contextSize > 0 ? contextSize : model.defaultContext(Model.hostFreeMemory());
                BatchEngine engine = new BatchEngine(model, tokenizer, BatchEngine.plan(model, parallel, context)
                        .options());
                return new LanguageModel(placement, model, tokenizer, ChatFormat.forModel(model.file(), tokenizer),
                        engine);
            } catch (IOException e) {
                close(model, placement);
                throw new UncheckedIOException(e.getMessage(), e);
            } catch (RuntimeException e) {
                close(model, placement);
                throw e;
            }
        }

        private static void close(Model model, Placement placement) {
            if (model != null) {
                model.close();
            }
            placement.close();
        }
    }

    private final Placement placement;
    private final Model model;
    private final Tokenizer tokenizer;
    private final ChatFormat chatFormat;
    private final BatchEngine engine;

    private LanguageModel(Placement placement, Model model, Tokenizer tokenizer, ChatFormat chatFormat,
                          BatchEngine engine) {
        this.placement = placement;
        this.model = model;
        this.tokenizer = tokenizer;
        this.chatFormat = chatFormat;
        this.engine = engine;
    }

    /** Starts loading {@code file}, a GGUF model: set what differs from the defaults, then {@link Loader#open()}. */
    public static Loader load(Path file) {
        return new Loader(file);
    }

    /** The continuation of {@code prompt}, waiting for it. */
    public GenerationResult generate(String prompt, GenerationSettings settings) {
        return await(generate(prompt, settings, text -> { }));
    }

    /** The continuation of {@code prompt}, streamed to {@code onText}; cancel the future to stop it. */
    public CompletableFuture<GenerationResult> generate(String prompt, GenerationSettings settings,
                                                        Consumer<String> onText) {
        return engine.submit(prompt, settings, onText);
    }

    /** The answer to {@code messages} (ending with the user's) in the model's own chat template, waiting for it. */
    public GenerationResult chat(List<ChatMessage> messages, GenerationSettings settings) {
        return await(chat(messages, settings, text -> { }));
    }

    /** The answer to {@code messages}, streamed to {@code onText}; cancel the future to stop it. */
    public CompletableFuture<GenerationResult> chat(List<ChatMessage> messages, GenerationSettings settings,
                                                    Consumer<String> onText) {
        return engine.submit(chatFormat, messages, settings, onText);
    }

    private static GenerationResult await(CompletableFuture<GenerationResult> result) {
        try {
            return result.join();
        } catch (CompletionException e) {
            throw e.getCause() instanceof RuntimeException r ? r : e;
        }
    }

    public Model model() {
        return model;
    }

    public Tokenizer tokenizer() {
        return tokenizer;
    }

    /** The model's own chat template (or the built-in one its vocabulary suggests). */
    public ChatFormat chatFormat() {
        return chatFormat;
    }

    /** The engine every request goes through, for {@link BatchEngine#submit(java.util.function.IntFunction)}. */
    public BatchEngine engine() {
        return engine;
    }

    /** One line naming the device (or the devices and their layers), e.g. {@code cpu avx512 (2 threads)}. */
    public String device() {
        return model.description();
    }

    /** Ends what still runs (its futures are cancelled), frees the model and the device. */
    @Override
    public void close() {
        engine.close();
        model.close();
        placement.close();
    }
}
