package dev.nibble.cli.generate;

import dev.nibble.converter.LlamaMetadata;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.formats.gguf.GgufMetadata;
import dev.nibble.runtime.SamplerSettings;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import picocli.CommandLine.Option;

/**
 * The sampling options every generating command shares ({@code generate}, {@code chat}, {@code batch}, {@code serve}).
 * A value not given is the model's own default (its generation_config.json, stored by {@code nibble convert} under
 * {@code nibble.generation.*}) when it has one, else llama.cpp's; {@link Resolved#description()} says which.
 */
public final class SamplingOptions {

    /** llama.cpp's defaults, used for what neither the command line nor the model gives. */
    private static final SamplerSettings BUILT_IN = SamplerSettings.defaults(0);

    @Option(names = {"--temp", "--temperature"}, paramLabel = "T",
            description = "0 is greedy (default: the model's, else 0.8).")
    Float temperature;

    @Option(names = "--top-k", paramLabel = "K", description = "0 is off (default: the model's, else 40).")
    Integer topK;

    @Option(names = "--top-p", paramLabel = "P", description = "1 is off (default: the model's, else 0.95).")
    Float topP;

    @Option(names = "--min-p", paramLabel = "P", description = "0 is off (default 0.05).")
    Float minP;

    @Option(names = "--repeat-penalty", paramLabel = "X",
            description = "Hugging Face's repetition penalty; 1 is off (default: the model's, else 1).")
    Float repeatPenalty;

    @Option(names = "--frequency-penalty", paramLabel = "X", description = "0 is off (default 0).")
    Float frequencyPenalty;

    @Option(names = "--presence-penalty", paramLabel = "X", description = "0 is off (default 0).")
    Float presencePenalty;

    @Option(names = {"-s", "--seed"}, paramLabel = "SEED", description = "Seed for sampling (default: a random one, printed).")
    Long seed;

    /**
     * The settings to sample with, and where they came from for the timing line: "sampling: --temperature 0",
     * "sampling: model defaults (temperature 0.6, top-p 0.9)", both, or "sampling: nibble defaults (...)".
     */
    public record Resolved(SamplerSettings settings, String description) {
    }

    /** Whether --seed was given. */
    public boolean seedGiven() {
        return seed != null;
    }

    /** The seed given, or a fresh one. */
    public long seed() {
        return seed != null ? seed : System.nanoTime();
    }

    /** The settings with {@code seed}: the options given, then the defaults stored in {@code model}'s file. */
    public Resolved resolve(Path model, long seed) throws IOException {
        try (GgufFile file = GgufFile.open(model)) {
            return resolve(file.metadata(), seed);
        }
    }

    /** The settings with {@code seed}: the options given, then the model's defaults in {@code metadata}, then llama.cpp's. */
    public Resolved resolve(GgufMetadata metadata, long seed) {
        Map<String, Float> model = modelDefaults(metadata);
        List<String> given = new ArrayList<>();
        List<String> fromModel = new ArrayList<>();
        float t = pick("temperature", temperature, model, BUILT_IN.temperature(), given, fromModel);
        float k = pick("top-k", topK == null ? null : topK.floatValue(), model, BUILT_IN.topK(), given, fromModel);
        float p = pick("top-p", topP, model, BUILT_IN.topP(), given, fromModel);
        float m = pick("min-p", minP, model, BUILT_IN.minP(), given, fromModel);
        float r = pick("repeat-penalty", repeatPenalty, model, BUILT_IN.repeatPenalty(), given, fromModel);
        float f = pick("frequency-penalty", frequencyPenalty, model, BUILT_IN.frequencyPenalty(), given, fromModel);
        float n = pick("presence-penalty", presencePenalty, model, BUILT_IN.presencePenalty(), given, fromModel);
        SamplerSettings settings;
        try {
            settings = new SamplerSettings(t, (int) k, p, m, r, f, n, seed);
        } catch (IllegalArgumentException e) {
            throw fromModel.isEmpty() ? e : new IllegalArgumentException(e.getMessage() + " (the model's default: "
                    + String.join(", ", fromModel) + "; give the option to override it)");
        }
        List<String> parts = new ArrayList<>();
        if (!given.isEmpty()) {
            parts.add(String.join(" ", given));
        }
        if (!fromModel.isEmpty()) {
            parts.add("model defaults (" + String.join(", ", fromModel) + ")");
        }
        if (parts.isEmpty()) {
            parts.add("nibble defaults (temperature " + number(t) + ", top-k " + number(k) + ", top-p " + number(p)
                    + ", min-p " + number(m) + ")");
        }
        return new Resolved(settings, "sampling: " + String.join("; ", parts));
    }

    /** The option given, else the model's value, else the built-in one; noted in {@code given} or {@code fromModel}. */
    private static float pick(String name, Float option, Map<String, Float> model, float builtIn, List<String> given,
                              List<String> fromModel) {
        if (option != null) {
            given.add("--" + name + " " + number(option));
            return option;
        }
        Float stored = model.get(name);
        if (stored != null) {
            fromModel.add(name + " " + number(stored));
            return stored;
        }
        return builtIn;
    }

    /**
     * The sampling defaults stored in a model by {@code nibble convert}, by option name. {@code do_sample: false}
     * means greedy, as in transformers: temperature 0.
     */
    static Map<String, Float> modelDefaults(GgufMetadata metadata) {
        Map<String, Float> out = new LinkedHashMap<>();
        if (!metadata.findBoolean(LlamaMetadata.DO_SAMPLE).orElse(true)) {
            out.put("temperature", 0f);
        } else {
            metadata.findDouble(LlamaMetadata.TEMPERATURE).ifPresent(v -> out.put("temperature", (float) v));
        }
        metadata.findLong(LlamaMetadata.TOP_K).ifPresent(v -> out.put("top-k", (float) v));
        metadata.findDouble(LlamaMetadata.TOP_P).ifPresent(v -> out.put("top-p", (float) v));
        metadata.findDouble(LlamaMetadata.REPETITION_PENALTY).ifPresent(v -> out.put("repeat-penalty", (float) v));
        return out;
    }

    /** 0.6 as "0.6" and 40 as "40". */
    static String number(float v) {
        return v == Math.rint(v) && Math.abs(v) < 1e9 ? Long.toString((long) v) : Float.toString(v);
    }
}
