package dev.nibble.cli.serve;

import dev.nibble.cli.DeviceOptions;
import dev.nibble.cli.LlamaCppFlags;
import dev.nibble.cli.ModelOption;
import dev.nibble.cli.chat.ModelChatFormat;
import dev.nibble.cli.generate.SamplingOptions;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.BatchEngine;
import dev.nibble.runtime.Devices;
import dev.nibble.runtime.Model;
import dev.nibble.runtime.Placement;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.PrintWriter;
import java.net.InetAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/**
 * {@code nibble serve}: an OpenAI-compatible HTTP server ({@link ApiServer}) on the batch engine, so that many
 * clients share each forward pass. Runs until Ctrl-C, which stops accepting, lets running requests finish for
 * {@code --grace} seconds, cancels the rest and exits.
 */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = {"Serves the model over an OpenAI-compatible HTTP API: POST /v1/chat/completions, "
                + "POST /v1/completions (streaming too), GET /v1/models, GET /health, GET /metrics.",
            "Requests share the batch engine (continuous batching); those beyond --parallel wait in a queue of "
                    + "--queue, beyond which they are answered 429. Ctrl-C stops it gracefully."})
public final class ServeCommand implements Callable<Integer> {

    /** Context of one sequence when --ctx is 0, at most (a model may allow far more than one request needs). */
    static final int DEFAULT_CONTEXT = 4096;

    @Option(names = {"-m", "--model"}, required = true, paramLabel = "MODEL",
            description = "GGUF model file (default: $NIBBLE_MODEL).")
    Path model;

    @Option(names = "--host", defaultValue = "127.0.0.1", paramLabel = "ADDRESS",
            description = "Address to listen on (default ${DEFAULT-VALUE}: this machine only; 0.0.0.0: every network).")
    String host;

    @Option(names = "--port", defaultValue = "8080", paramLabel = "PORT",
            description = "TCP port (default ${DEFAULT-VALUE}; 0: a free one, printed).")
    int port;

    @Option(names = {"-np", "--parallel"}, defaultValue = "4", paramLabel = "N",
            description = "Requests generated together (default ${DEFAULT-VALUE}; at most the backend's pass size).")
    int parallel;

    @Option(names = "--queue", defaultValue = "-1", paramLabel = "N",
            description = "Requests that may wait for a place beyond --parallel; more are answered 429 "
                    + "(default: 4 × --parallel).")
    int queue;

    @Option(names = {"-c", "--ctx-size", "--ctx"}, defaultValue = "0", paramLabel = "N",
            description = "Positions one request may use, prompt and answer (0: the model's, at most " + DEFAULT_CONTEXT
                    + "; default: $NIBBLE_CTX, else 0).")
    int ctx;

    @Option(names = {"-n", "--n-predict", "--predict"}, defaultValue = "-1", paramLabel = "N",
            description = "New tokens at most for requests without max_tokens (-1: until an end token or the context is full).")
    int maxTokens;

    @Option(names = "--api-key", paramLabel = "KEY", defaultValue = "${env:NIBBLE_API_KEY}",
            description = "Clients must send \"Authorization: Bearer KEY\" (default: $NIBBLE_API_KEY; none when unset).")
    String apiKey;

    @Option(names = "--alias", paramLabel = "NAME",
            description = "The model's name in responses and /v1/models (default: the file's name).")
    String alias;

    @Option(names = "--max-body", defaultValue = "1M", paramLabel = "SIZE",
            description = "Largest request body; larger ones are answered 413 (default ${DEFAULT-VALUE}).")
    String maxBody;

    @Option(names = "--grace", defaultValue = "10", paramLabel = "SECONDS",
            description = "On Ctrl-C, how long running requests may take to finish before they are cancelled "
                    + "(default ${DEFAULT-VALUE}).")
    int grace;

    @Option(names = "--template", paramLabel = "NAME", defaultValue = ModelChatFormat.AUTO,
            description = "Chat template: auto, llama2, llama3 or chatml (default ${DEFAULT-VALUE}).")
    String template;

    @Mixin
    SamplingOptions sampling;

    @Mixin
    DeviceOptions device;

    @Mixin
    LlamaCppFlags llamaCpp;

    @Spec
    CommandSpec spec;

    private final CountDownLatch stopped = new CountDownLatch(1);
    private final AtomicBoolean stopping = new AtomicBoolean();
    private volatile Runnable stop;

    @Override
    public Integer call() throws Exception {
        PrintWriter err = spec.commandLine().getErr();
        if (parallel < 1) {
            throw new ParameterException(spec.commandLine(), "--parallel must be at least 1");
        }
        if (ctx < 0 || grace < 0 || port < 0 || port > 65535) {
            throw new ParameterException(spec.commandLine(), "--ctx and --grace must be 0 or more and --port 0 to 65535");
        }
        ModelOption.checkGguf(model, spec); // a folder, FIFO or device: one line, before anything opens it
        long bodyLimit;
        try {
            bodyLimit = Devices.parseSize(maxBody);
        } catch (IllegalArgumentException e) {
            throw new ParameterException(spec.commandLine(), "--max-body: " + e.getMessage());
        }
        Placement placement = device.open(err);
        Model m = null;
        BatchEngine engine = null;
        ApiServer server = null;
        Thread hook = Thread.ofPlatform().name("nibble-serve-shutdown").unstarted(this::shutdown);
        try {
            m = Model.load(model, placement, 0, DeviceOptions.loadProgress(err));
            DeviceOptions.reportPlacement(m, err);
            Tokenizer tokenizer = Tokenizer.from(VocabularyGguf.read(m.file()));
            ModelChatFormat format = ModelChatFormat.load(model, tokenizer, template);
            err.println("nibble: chat template: " + format.description());
            int context = ctx > 0 ? ctx : Math.min(m.config().contextLength(), DEFAULT_CONTEXT);
            BatchEngine.Plan plan = BatchEngine.plan(m, parallel, context);
            int waiting = queue >= 0 ? queue : 4 * plan.places();
            err.println("nibble: " + plan.describe() + "; " + waiting + " more may wait");
            engine = new BatchEngine(m, tokenizer, plan.options());
            long seed = sampling.seed();
            SamplingOptions.Resolved sampler = sampling.resolve(m.file().metadata(), seed);
            err.println("nibble: " + sampler.description() + ", for requests that give none");
            String key = apiKey == null || apiKey.isBlank() ? null : apiKey.strip();
            server = ApiServer.start(engine, format.format(), new ApiServer.Settings(host, port, waiting, bodyLimit,
                    key, alias != null ? alias : model.getFileName().toString(), sampler.settings(),
                    !sampling.seedGiven(), maxTokens, ApiServer.KEEP_ALIVE));
            ApiServer running = server;
            BatchEngine runningEngine = engine;
            Model loaded = m;
            stop = () -> {
                err.println("nibble: stopping: no new requests; running ones have " + grace + " s to finish");
                err.flush();
                running.shutdown(Duration.ofSeconds(grace));
                runningEngine.close();
                loaded.close();
                placement.close();
                err.println("nibble: stopped (" + running.answered() + " completions answered)");
                err.flush();
            };
            Runtime.getRuntime().addShutdownHook(hook);
            if (key == null && !InetAddress.getByName(host).isLoopbackAddress()) {
                err.println("nibble: warning: listening on " + host + " with no API key: anyone who can reach this"
                        + " machine may use the model (--api-key or NIBBLE_API_KEY)");
            }
            err.println("nibble: listening on " + server.uri() + " (OpenAI API at " + server.uri() + "/v1"
                    + (key != null ? ", API key required" : "") + "); Ctrl-C stops");
            err.flush();
        } catch (Exception | Error e) {
            if (stop != null) {
                try {
                    Runtime.getRuntime().removeShutdownHook(hook);
                } catch (IllegalStateException | IllegalArgumentException exiting) {
                    // exiting anyway, or never registered
                }
                shutdown();
                throw e;
            }
            if (engine != null) {
                engine.close();
            }
            if (m != null) {
                m.close();
            }
            placement.close();
            throw e;
        }
        stopped.await();
        try {
            Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException exiting) {
            // Ctrl-C: the hook is what stopped the server
        }
        return 0;
    }

    /**
     * Stops the server as Ctrl-C does (its shutdown hook calls this): no new requests, running ones finish within
     * the grace period or are cancelled, the model is closed, and {@link #call()} returns. Does nothing before the
     * server has started; waits for a stop already under way.
     */
    public void shutdown() {
        Runnable s = stop;
        if (s == null) {
            return;
        }
        if (stopping.compareAndSet(false, true)) {
            try {
                s.run();
            } finally {
                stopped.countDown();
            }
        } else {
            try {
                stopped.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
