package dev.nibble.cli.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.nibble.formats.gguf.GgufTensor;
import dev.nibble.cli.DeviceOptions;
import dev.nibble.cli.InputFiles;
import dev.nibble.cli.LlamaCppFlags;
import dev.nibble.cli.ModelOption;
import dev.nibble.runtime.Backend;
import dev.nibble.runtime.CudaBackend;
import dev.nibble.runtime.KvCache;
import dev.nibble.runtime.KvPool;
import dev.nibble.runtime.Model;
import dev.nibble.runtime.Placement;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code nibble bench}: prompt and generation speed, measured like llama-bench (median of several runs). */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = {"Measures prompt processing (a batch of -p tokens) and generation (-n tokens one at a time) "
                + "in tokens per second, each from an empty context, the median of -r runs after a warm-up.",
            "--synthetic builds a Llama-2-shaped model with random weights in a temporary file (deleted afterwards), "
                + "so speed can be measured without downloading weights."})
public final class BenchCommand implements Callable<Integer> {

    /** The most runs of one test (-r). */
    static final int MAX_REPETITIONS = 1000;

    static final class Source {
        @Option(names = {"-m", "--model"}, paramLabel = "MODEL", description = "GGUF model file.")
        Path model;

        @Option(names = "--synthetic", paramLabel = "SIZE[:TYPE]",
                description = "7b, 13b or 70b, optionally with a weight type (default q4_0), e.g. 7b:q4_k.")
        String synthetic;
    }

    @ArgGroup(multiplicity = "1")
    Source source;

    @Option(names = {"-p", "--n-prompt"}, paramLabel = "N", defaultValue = "512", description = "Prompt tokens (0: skip; default ${DEFAULT-VALUE}).")
    int prompt;

    @Option(names = {"-n", "--n-gen"}, paramLabel = "N", defaultValue = "128", description = "Generated tokens (0: skip; default ${DEFAULT-VALUE}).")
    int gen;

    @Option(names = {"-r", "--repetitions"}, paramLabel = "N", defaultValue = "5", description = "Runs of each test (default ${DEFAULT-VALUE}).")
    int repetitions;

    @Mixin
    DeviceOptions device;

    @Mixin
    LlamaCppFlags llamaCpp;

    @Option(names = {"-c", "--ctx-size", "--ctx"}, paramLabel = "N", defaultValue = "0",
            description = "KV cache size in tokens (default: just enough for the test).")
    int ctx;

    @Option(names = "--save", paramLabel = "FILE",
            description = "With --synthetic: write the model to FILE and keep it (e.g. to run llama-bench on it).")
    Path save;

    @Option(names = "--parallel", paramLabel = "N[,N...]", split = ",",
            description = "Batched generation instead: for each N, N sequences each holding -p prompt tokens generate -n "
                    + "tokens together (one token of each per pass); reports the aggregate tokens per second, as "
                    + "llama-batched-bench's S_TG.")
    List<Integer> parallel;

    @Option(names = "--json", description = "Print the results as JSON.")
    boolean json;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() throws IOException {
        if (prompt < 0 || gen < 0 || repetitions < 1 || prompt + gen == 0) {
            throw new IllegalArgumentException("need -p >= 0, -n >= 0 (not both 0) and -r >= 1");
        }
        if (repetitions > MAX_REPETITIONS) {
            throw new IllegalArgumentException("-r " + repetitions + " is more than the " + MAX_REPETITIONS
                    + " runs bench makes of a test; give a smaller -r");
        }
        if (ctx < 0) {
            throw new IllegalArgumentException("--ctx must be 0 (just enough for the test) or more, is " + ctx);
        }
        PrintWriter err = spec.commandLine().getErr();
        Path file = source.model;
        Path temp = null;
        if (file != null) {
            ModelOption.checkGguf(file, spec); // a folder, FIFO or device: one line, before anything opens it
        }
        if (source.synthetic != null) {
            SyntheticModel.Spec s = SyntheticModel.parse(source.synthetic);
            if (save != null) {
                InputFiles.outputFile(save, "--save");
                file = save;
            } else {
                temp = Files.createTempFile("nibble-synthetic-", ".gguf");
                temp.toFile().deleteOnExit();
                file = temp;
            }
            err.println("nibble: writing a synthetic Llama-2-" + s.shape().name() + " " + s.type() + " model to " + file);
            err.flush();
            SyntheticModel.write(file, s.shape(), s.type(), 1);
        } else if (save != null) {
            throw new IllegalArgumentException("--save goes with --synthetic");
        }
        if (parallel != null && (gen == 0 || parallel.stream().anyMatch(n -> n < 1))) {
            throw new IllegalArgumentException("--parallel needs counts of 1 or more and -n above 0");
        }
        int most = parallel == null ? 1 : parallel.stream().mapToInt(Integer::intValue).max().orElse(1);
        // Positions one sequence needs, and the cache of all of them: long, so that no -p or --parallel wraps around.
        long span = parallel == null ? Math.max(prompt, gen) + 1L : (long) prompt + gen;
        long rows = parallel == null ? Math.max(ctx, span) : most * span;
        if (rows > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("-p " + prompt + " and -n " + gen + (parallel == null ? "" : " for " + most
                    + " sequences") + " need a KV cache of " + rows + " positions, more than the " + Integer.MAX_VALUE
                    + " one cache may hold; give a smaller -p, -n or --parallel");
        }
        int context = (int) rows;
        try (Placement placement = device.open(err);
             Model model = Model.load(file, placement, context, DeviceOptions.loadProgress(err))) {
            DeviceOptions.reportPlacement(model, err);
            // The memory for the cache was checked by the load; the positions against the model's context here.
            int trained = model.config().contextLength();
            int allowed = Math.max(trained, ctx);
            if (span > allowed) {
                throw new IllegalArgumentException((parallel == null ? "-p " + prompt + " and -n " + gen + " need "
                        : "-p " + prompt + " plus -n " + gen + " need ") + span + " positions, more than the model's context"
                        + " of " + trained + " tokens" + (ctx > trained ? " and --ctx " + ctx : "") + "; give "
                        + (parallel == null ? "-p and -n of at most " + (allowed - 1) : "-p plus -n of at most " + allowed)
                        + ", or a larger --ctx to go past the model's context on purpose");
            }
            List<Map<String, Object>> results = parallel == null ? run(model, placement, context)
                    : runParallel(model, placement);
            print(results);
        } finally {
            if (temp != null) {
                Files.deleteIfExists(temp);
            }
        }
        return 0;
    }

    private List<Map<String, Object>> run(Model model, Placement placement, int context) throws IOException {
        long bytes = 0, params = 0;
        for (GgufTensor t : model.file().tensors()) {
            bytes += t.info().byteSize();
            params += t.info().elementCount();
        }
        SplittableRandom random = new SplittableRandom(7);
        int[] ids = random.ints(Math.max(prompt, 1), 0, model.config().vocabSize()).toArray();
        List<Map<String, Object>> results = new ArrayList<>();
        try (KvCache cache = model.newCache(context)) {
            // Warm-up: one batch and one token, which also pulls every weight into the page cache (or records the
            // GPU's decode step).
            model.forward(Arrays.copyOf(ids, Math.min(Math.max(prompt, 1), model.batch())), cache, false);
            cache.clear();
            model.forward(new int[] {ids[0]}, cache, false);
            if (prompt > 0) {
                double[] rates = new double[repetitions];
                for (int r = 0; r < repetitions; r++) {
                    cache.clear();
                    long t0 = System.nanoTime();
                    model.forward(Arrays.copyOf(ids, prompt), cache, false);
                    rates[r] = prompt * 1e9 / (System.nanoTime() - t0);
                }
                results.add(result(model, placement, bytes, params, "pp" + prompt, rates));
            }
            if (gen > 0) {
                double[] rates = new double[repetitions];
                for (int r = 0; r < repetitions; r++) {
                    cache.clear();
                    long t0 = System.nanoTime();
                    for (int i = 0; i < gen; i++) {
                        model.forward(new int[] {ids[i % ids.length]}, cache, false);
                    }
                    rates[r] = gen * 1e9 / (System.nanoTime() - t0);
                }
                results.add(result(model, placement, bytes, params, "tg" + gen, rates));
            }
        }
        return results;
    }

    /**
     * For each count n: n sequences of one KV pool, each holding the same -p prompt tokens (run untimed), generate -n
     * tokens together, one pass per token of all of them; the rate is n × gen over the time of those passes.
     */
    private List<Map<String, Object>> runParallel(Model model, Placement placement) throws IOException {
        long bytes = 0, params = 0;
        for (GgufTensor t : model.file().tensors()) {
            bytes += t.info().byteSize();
            params += t.info().elementCount();
        }
        SplittableRandom random = new SplittableRandom(7);
        int[] ids = random.ints(Math.max(prompt, 1) + gen, 0, model.config().vocabSize()).toArray();
        List<Map<String, Object>> results = new ArrayList<>();
        int span = prompt + gen;
        for (int n : parallel) {
            if (n > model.batch()) {
                throw new IllegalArgumentException("--parallel " + n + " is more than the " + model.batch()
                        + " tokens one pass takes on " + model.description());
            }
            try (KvPool pool = model.newPool(n * span, span)) {
                List<KvCache> caches = new ArrayList<>();
                for (int i = 0; i < n; i++) {
                    caches.add(pool.open(span));
                }
                double[] rates = new double[repetitions + 1]; // the first run is the warm-up
                for (int r = 0; r <= repetitions; r++) {
                    for (KvCache cache : caches) {
                        cache.clear();
                        if (prompt > 0) {
                            model.forward(Arrays.copyOf(ids, prompt), cache, false);
                        }
                    }
                    long t0 = System.nanoTime();
                    for (int i = 0; i < gen; i++) {
                        List<Model.Segment> step = new ArrayList<>(n);
                        for (KvCache cache : caches) {
                            step.add(new Model.Segment(cache, new int[] {ids[prompt + i]}, Model.Logits.LAST));
                        }
                        model.step(step);
                    }
                    rates[r] = (double) n * gen * 1e9 / (System.nanoTime() - t0);
                }
                results.add(result(model, placement, bytes, params, "pp" + prompt + "+tg" + gen + " x" + n,
                        Arrays.copyOfRange(rates, 1, rates.length)));
            }
        }
        return results;
    }

    private Map<String, Object> result(Model model, Placement placement, long bytes, long params, String test,
                                       double[] rates) {
        double[] sorted = rates.clone();
        Arrays.sort(sorted);
        double median = sorted.length % 2 == 1 ? sorted[sorted.length / 2]
                : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("model", model.file().metadata().findString("general.name").orElse(model.file().path().getFileName().toString()));
        r.put("file", model.file().path().toString());
        r.put("size_bytes", bytes);
        r.put("params", params);
        r.put("backend", model.description());
        r.put("test", test);
        r.put("runs", rates.length);
        r.put("tokens_per_second_median", median);
        r.put("tokens_per_second_min", sorted[0]);
        r.put("tokens_per_second_max", sorted[sorted.length - 1]);
        r.put("tokens_per_second", rates);
        for (Backend backend : placement.backends()) {
            if (backend instanceof CudaBackend gpu) { // the first GPU's: one GPU per placement so far
                r.put("device_memory_peak_bytes", gpu.peakBytes());
                break;
            }
        }
        return r;
    }

    private void print(List<Map<String, Object>> results) throws IOException {
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            out.println(new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(results));
        } else {
            out.println("| model | size | params | backend | test | t/s (median) | min | max |");
            out.println("| --- | ---: | ---: | --- | --- | ---: | ---: | ---: |");
            for (Map<String, Object> r : results) {
                out.println(String.format(Locale.ROOT, "| %s | %.2f GiB | %.2f B | %s | %s | %.2f | %.2f | %.2f |",
                        r.get("model"), (long) r.get("size_bytes") / (double) (1L << 30), (long) r.get("params") / 1e9,
                        r.get("backend"), r.get("test"), r.get("tokens_per_second_median"),
                        r.get("tokens_per_second_min"), r.get("tokens_per_second_max")));
            }
        }
        out.flush();
    }
}
