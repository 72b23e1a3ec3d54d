package dev.nibble.cli.batch;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.cli.DeviceOptions;
import dev.nibble.cli.InputFiles;
import dev.nibble.cli.LlamaCppFlags;
import dev.nibble.cli.ModelOption;
import dev.nibble.cli.chat.ModelChatFormat;
import dev.nibble.cli.generate.SamplingOptions;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.BatchEngine;
import dev.nibble.runtime.Generation;
import dev.nibble.runtime.GenerationResult;
import dev.nibble.runtime.GenerationSettings;
import dev.nibble.runtime.Model;
import dev.nibble.runtime.Placement;
import dev.nibble.runtime.Sampler;
import dev.nibble.runtime.SamplerSettings;
import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.function.IntFunction;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/**
 * {@code nibble batch}: runs every request of a JSONL file through the batch engine (many sequences per forward pass)
 * and appends each result to the output as soon as it finishes; a rerun of the same command finishes what is missing.
 */
@Command(name = "batch", mixinStandardHelpOptions = true,
        description = {"Runs every request of a JSONL file, many at once, and appends one result line per request.",
            "Input lines: {\"id\": ..., \"prompt\": \"...\"} or {\"id\": ..., \"messages\": [...]}, with optional "
                    + "max_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed, stop;",
            "or OpenAI batch lines ({\"custom_id\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\" | "
                    + "\"/v1/completions\", \"body\"}), answered in OpenAI's batch output form.",
            "Rerunning the same command skips requests already in the output and runs the rest."})
public final class BatchCommand implements Callable<Integer> {

    @Option(names = {"-m", "--model"}, required = true, paramLabel = "MODEL",
            description = "GGUF model file (default: $NIBBLE_MODEL).")
    Path model;

    @Option(names = {"-i", "--input"}, required = true, paramLabel = "FILE", description = "Requests, one JSON object per line.")
    Path input;

    @Option(names = {"-o", "--output"}, required = true, paramLabel = "FILE",
            description = "Results, one JSON object per line, appended as requests finish.")
    Path output;

    @Option(names = {"-np", "--parallel"}, defaultValue = "16", paramLabel = "N",
            description = "Sequences generated together (default ${DEFAULT-VALUE}; at most the backend's pass size).")
    int parallel;

    @Option(names = {"-n", "--n-predict", "--predict"}, defaultValue = "-1", paramLabel = "N",
            description = "New tokens at most for requests without max_tokens (-1: until an end token or the context is full).")
    int maxTokens;

    @Option(names = "--chat", description = "Answer each \"prompt\" as a user message in the model's chat format.")
    boolean chat;

    @Option(names = "--system", paramLabel = "TEXT", description = "A system prompt for requests answered in the chat format "
            + "that have none (implies --chat for prompts).")
    String system;

    @Option(names = "--template", paramLabel = "NAME", defaultValue = ModelChatFormat.AUTO,
            description = "Chat template: auto, llama2, llama3 or chatml (default ${DEFAULT-VALUE}).")
    String template;

    @Mixin
    SamplingOptions sampling;

    @Option(names = "--stop", paramLabel = "TEXT", description = "Stop before this text, for every request (repeatable).")
    List<String> stop = List.of();

    @Mixin
    DeviceOptions device;

    @Option(names = {"-c", "--ctx-size", "--ctx"}, defaultValue = "0", paramLabel = "N",
            description = "Positions one sequence may use, prompt and answer (0: what the longest request needs, at most the "
                    + "model's; default: $NIBBLE_CTX, else 0).")
    int ctx;

    @Mixin
    LlamaCppFlags llamaCpp;

    @Spec
    CommandSpec spec;

    private final ObjectMapper json = new ObjectMapper();

    @Override
    public Integer call() throws Exception {
        PrintWriter err = spec.commandLine().getErr();
        if (parallel < 1) {
            throw new ParameterException(spec.commandLine(), "--parallel must be at least 1");
        }
        // Each file checked before anything opens it (a FIFO would block the open): one line naming it.
        ModelOption.checkGguf(model, spec);
        InputFiles.regularFile(input, "-i", "a JSONL file of requests");
        InputFiles.outputFile(output, "-o");
        if (Files.isRegularFile(output) && Files.isSameFile(input, output)) {
            throw new ParameterException(spec.commandLine(), "-o must not be the input file");
        }
        List<BatchRequest> requests = read(input);
        Map<String, Integer> lines = new HashMap<>();
        for (BatchRequest r : requests) {
            if (r.id() != null) {
                Integer before = lines.putIfAbsent(r.key(), r.line());
                if (before != null) {
                    throw new IllegalArgumentException(input + ": id " + r.key() + " is on lines " + before + " and "
                            + r.line() + "; ids must be unique (nothing was run)");
                }
            }
        }
        long seed = sampling.seed();
        SamplingOptions.Resolved sampler = sampling.resolve(model, seed);
        SamplerSettings defaults = sampler.settings();
        try (ResultFile results = ResultFile.open(output, json)) {
            if (results.repairedBytes() > 0) {
                err.println("nibble: " + output + ": cut off a partial last line (" + results.repairedBytes()
                        + " bytes, from a run that was killed while writing); its request runs again");
            }
            List<BatchRequest> pending = requests.stream().filter(r -> !results.done().contains(r.key())).toList();
            if (pending.size() < requests.size() && !pending.isEmpty()) {
                err.println("nibble: " + (requests.size() - pending.size()) + " of " + requests.size()
                        + " results are already in " + output + "; running the other " + pending.size());
            }
            if (pending.isEmpty()) {
                err.println("nibble: nothing to do: " + (requests.isEmpty() ? input + " has no requests"
                        : "every request has its result in " + output));
                return 0;
            }
            err.println("nibble: seed " + seed + " for requests that give none" + (sampling.seedGiven() ? ""
                    : " (random; --seed to repeat)") + "; " + sampler.description());
            return run(pending, results, defaults, err);
        }
    }

    /** Reads the input, strictly as UTF-8; blank lines are skipped (their numbers count). */
    private List<BatchRequest> read(Path file) throws IOException {
        if (!Files.isRegularFile(file)) {
            throw new IOException(file + ": not a file; give -i a JSONL file of requests");
        }
        List<BatchRequest> out = new ArrayList<>();
        var decoder = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        try (BufferedReader in = new BufferedReader(new InputStreamReader(Files.newInputStream(file), decoder))) {
            int number = 0;
            String line;
            while (true) {
                try {
                    line = in.readLine();
                } catch (CharacterCodingException e) {
                    throw new IOException(file + ": line " + (number + 1) + " is not valid UTF-8; save the file as UTF-8");
                }
                if (line == null) {
                    break;
                }
                number++;
                if (!line.isBlank()) {
                    out.add(BatchRequest.parse(json, number, line));
                }
            }
        }
        return out;
    }

    /** A request ready to run: what it is and the generation to make for it. */
    private record Job(BatchRequest request, int promptTokens, int need, IntFunction<Generation> generation) {
    }

    private int run(List<BatchRequest> pending, ResultFile results, SamplerSettings defaults, PrintWriter err)
            throws Exception {
        ResultLines lines = new ResultLines(json, model.getFileName().toString());
        Progress progress = Progress.of(err, pending.size());
        Placement placement = device.open(err);
        try (Model m = Model.load(model, placement, 0, DeviceOptions.loadProgress(err))) {
            DeviceOptions.reportPlacement(m, err);
            Tokenizer tokenizer = Tokenizer.from(VocabularyGguf.read(m.file()));
            ChatFormat format = null;
            List<Job> jobs = new ArrayList<>();
            for (BatchRequest r : pending) {
                if (r.error() != null) {
                    write(results, lines.error(r, r.error(), false), progress, null);
                    continue;
                }
                boolean answer = r.chat() || chat || system != null;
                if (answer && format == null) {
                    ModelChatFormat f = ModelChatFormat.load(model, tokenizer, template);
                    format = f.format();
                    err.println("nibble: chat template: " + f.description());
                }
                try {
                    jobs.add(job(r, answer ? format : null, tokenizer, m, defaults));
                } catch (IllegalArgumentException e) {
                    write(results, lines.error(r, "line " + r.line() + ": " + e.getMessage(), false), progress, null);
                }
            }
            if (jobs.isEmpty()) {
                progress.finish(results.path());
                return 0;
            }
            int trained = m.config().contextLength();
            int longest = jobs.stream().mapToInt(Job::need).max().orElse(1);
            int context = ctx > 0 ? ctx : Math.min(trained, longest);
            BatchEngine.Plan plan = BatchEngine.plan(m, parallel, context);
            err.println("nibble: " + plan.describe());
            err.flush();
            try (BatchEngine engine = new BatchEngine(m, tokenizer, plan.options())) {
                Thread onInterrupt = Thread.ofPlatform().unstarted(() -> interrupted(results, progress, err));
                Runtime.getRuntime().addShutdownHook(onInterrupt);
                try {
                    progress.begin();
                    List<CompletableFuture<?>> futures = new ArrayList<>();
                    for (Job job : jobs) {
                        BatchRequest r = job.request();
                        futures.add(engine.submit(job.generation()).handle((result, failure) -> {
                            Throwable cause = failure instanceof CompletionException c ? c.getCause() : failure;
                            if (cause instanceof CancellationException) {
                                return null; // interrupted: not a result, the rerun does it
                            }
                            String line = cause == null ? lines.result(r, result)
                                    : lines.error(r, "line " + r.line() + ": " + cause.getMessage(),
                                    !(cause instanceof IllegalArgumentException));
                            write(results, line, progress, result);
                            return null;
                        }));
                    }
                    try {
                        CompletableFuture.allOf(futures.toArray(CompletableFuture[]::new)).join();
                    } catch (CompletionException e) { // writing a result failed (a full disk): say that, once
                        throw e.getCause() instanceof RuntimeException r ? r : e;
                    }
                } finally {
                    try {
                        Runtime.getRuntime().removeShutdownHook(onInterrupt);
                    } catch (IllegalStateException exiting) {
                        // Ctrl-C: the hook is running and says what happened
                    }
                }
            }
            progress.finish(results.path());
            return 0;
        } finally {
            progress.stop();
            placement.close();
        }
    }

    private Job job(BatchRequest r, ChatFormat format, Tokenizer tokenizer, Model m, SamplerSettings defaults) {
        SamplerSettings sampler = r.sampling().over(defaults);
        List<String> stops = new ArrayList<>(stop);
        stops.addAll(r.stop());
        int max = r.maxTokens() != null ? r.maxTokens() : maxTokens;
        GenerationSettings settings = new GenerationSettings(max, sampler, stops);
        int trained = m.config().contextLength();
        int[] ids;
        IntFunction<Generation> make;
        if (format != null) {
            List<ChatMessage> conversation = new ArrayList<>();
            if (r.messages() != null) {
                if (system != null && !r.messages().getFirst().role().equals(ChatMessage.SYSTEM)) {
                    conversation.add(ChatMessage.system(system));
                }
                conversation.addAll(r.messages());
            } else {
                if (system != null) {
                    conversation.add(ChatMessage.system(system));
                }
                conversation.add(ChatMessage.user(r.prompt()));
            }
            ids = format.encode(conversation, true);
            int[] prompt = ids;
            make = context -> Generation.answering(prompt, settings, new Sampler(sampler)::sample, format, context,
                    text -> { });
        } else {
            ids = tokenizer.encode(r.prompt(), tokenizer.vocabulary().addBos(), true);
            if (ids.length == 0) {
                throw new IllegalArgumentException("the prompt is empty and this model adds no BOS token");
            }
            int[] prompt = ids;
            make = context -> Generation.continuing(prompt, settings, tokenizer, m.config().eosIds(), context,
                    text -> { });
        }
        int need = (int) Math.min(trained, max < 0 ? trained : (long) ids.length + max);
        return new Job(r, ids.length, Math.max(need, ids.length + 1), make);
    }

    private static void write(ResultFile results, String line, Progress progress, GenerationResult result) {
        try {
            if (results.append(line)) {
                progress.done(result);
            }
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(results.path() + ": cannot write a result: " + e.getMessage(), e);
        }
    }

    /** Ctrl-C (or a kill): stop running, let the line being written end, and say how to go on. */
    private static void interrupted(ResultFile results, Progress progress, PrintWriter err) {
        progress.stop();
        try {
            results.close();
        } catch (IOException e) {
            err.println("nibble: " + results.path() + ": " + e.getMessage());
        }
        err.println();
        err.println("nibble: interrupted; " + progress.completed() + " results written to " + results.path()
                + " in this run; run the same command again to finish the rest");
        err.flush();
    }
}
