package dev.nibble.spark;

import dev.nibble.runtime.SamplerSettings;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

/**
 * Batch generation on Spark: requests as a {@code Dataset<Row>} in, results as a {@code Dataset<Row>} out.
 * <pre>{@code
 * Dataset<Row> requests = SparkGeneration.readRequests(spark, "requests.jsonl");
 * Dataset<Row> results = SparkGeneration.model("/models/model.gguf").parallel(16).maxTokens(128).seed(42)
 *         .generate(requests);
 * results.write().json("results");   // Spark's output commit protocol: each result once, whatever is retried
 * }</pre>
 * Requests have the fields of a {@code nibble batch} input line: {@code id} (a string, int or bigint column),
 * {@code prompt} (a string) or {@code messages} (an array of structs with string {@code role} and {@code content},
 * or a string holding their JSON array),
 * and optionally {@code max_tokens}, {@code temperature}, {@code top_k}, {@code top_p}, {@code min_p},
 * {@code repetition_penalty}, {@code frequency_penalty}, {@code presence_penalty}, {@code seed} and {@code stop} (a
 * string or an array of strings); the options set here are the defaults of requests that do not give them. Results
 * ({@link #resultSchema}) are one row per request: {@code id}, {@code text}, {@code finish_reason} (stop, length,
 * context or error), {@code prompt_tokens}, {@code completion_tokens} and {@code error} (null unless the request could
 * not run). A request that cannot run is an error row, never a failed job.
 *
 * <p>Each task runs its partition through one continuous-batching engine on the model its executor JVM maps once
 * and shares between tasks ({@link ExecutorModels}). A partition is read whole before it runs (to size the context by
 * its longest request, as nibble batch does), so keep partitions to thousands of requests rather than millions.
 */
public final class SparkGeneration {

    private final String model;
    private String device = "auto";
    private int threads;
    private int parallel = 16;
    private int context;
    private int maxTokens = -1;
    private float temperature = 0.8f;
    private int topK = 40;
    private float topP = 0.95f;
    private float minP = 0.05f;
    private float repeatPenalty = 1f;
    private float frequencyPenalty;
    private float presencePenalty;
    private Long seed;
    private final List<String> stop = new ArrayList<>();
    private boolean chat;
    private String system;

    private SparkGeneration(String model) {
        this.model = model;
    }

    /**
     * Generation with the GGUF model at {@code path}: a path every executor can read (a shared file system), or the
     * name of a file shipped with {@code spark-submit --files} (found with {@code SparkFiles.get}). The driver must
     * see the file too: executors check theirs against its size and checksum.
     */
    public static SparkGeneration model(String path) {
        return new SparkGeneration(path);
    }

    /** auto (default: a CUDA GPU when there is one), cpu, cuda or cuda:N. */
    public SparkGeneration device(String spec) {
        device = spec;
        return this;
    }

    /** CPU threads of each executor's model (0, the default: one per CPU the executor's process may use). */
    public SparkGeneration threads(int n) {
        threads = n;
        return this;
    }

    /** Sequences one task generates together (default 16; at most the backend's pass size). */
    public SparkGeneration parallel(int n) {
        if (n < 1) {
            throw new IllegalArgumentException("parallel must be at least 1, is " + n);
        }
        parallel = n;
        return this;
    }

    /** Positions one sequence may use, prompt and answer (0, the default: what the partition's longest request needs). */
    public SparkGeneration context(int n) {
        context = n;
        return this;
    }

    /** New tokens at most for requests without max_tokens (-1, the default: until an end token or a full context). */
    public SparkGeneration maxTokens(int n) {
        maxTokens = n;
        return this;
    }

    public SparkGeneration temperature(float t) {
        temperature = t;
        return this;
    }

    public SparkGeneration topK(int k) {
        topK = k;
        return this;
    }

    public SparkGeneration topP(float p) {
        topP = p;
        return this;
    }

    public SparkGeneration minP(float p) {
        minP = p;
        return this;
    }

    public SparkGeneration repeatPenalty(float x) {
        repeatPenalty = x;
        return this;
    }

    public SparkGeneration frequencyPenalty(float x) {
        frequencyPenalty = x;
        return this;
    }

    public SparkGeneration presencePenalty(float x) {
        presencePenalty = x;
        return this;
    }

    /** The seed of requests that give none (default: a random one, chosen once on the driver: see {@link #seed()}). */
    public SparkGeneration seed(long s) {
        seed = s;
        return this;
    }

    /** The seed of requests that give none; chosen now when none was set, so every task and retry uses the same. */
    public long seed() {
        if (seed == null) {
            seed = System.nanoTime();
        }
        return seed;
    }

    /** Stop before this text, in every request (added to each request's own). */
    public SparkGeneration stop(String... texts) {
        stop.addAll(List.of(texts));
        return this;
    }

    /** Answer each prompt as a user message in the model's chat format. */
    public SparkGeneration chat(boolean on) {
        chat = on;
        return this;
    }

    /** A system prompt for requests answered in the chat format that have none (implies {@link #chat} for prompts). */
    public SparkGeneration system(String text) {
        system = text;
        return this;
    }

    /** The sampling defaults as set; an out-of-range value is an {@link IllegalArgumentException} naming it. */
    public SamplerSettings sampling() {
        return new SamplerSettings(temperature, topK, topP, minP, repeatPenalty, frequencyPenalty, presencePenalty,
                seed());
    }

    /**
     * The results of {@code requests} (lazily: nothing runs until an action, such as writing them). Checks the
     * model file here on the driver and the request columns' types; each executor checks its model file against the
     * driver's before mapping it.
     */
    public Dataset<Row> generate(Dataset<Row> requests) {
        Request.Columns columns = Request.Columns.of(requests.schema());
        Settings settings = new Settings(ModelFile.of(model), device, threads, parallel, context, maxTokens,
                new Settings.Sampler(sampling()), stop, chat, system);
        return requests.mapPartitions(new PartitionGenerator(settings, columns),
                Encoders.row(resultSchema(columns.idType())));
    }

    /** The results' columns, with {@code id} of the requests' id type. */
    public static StructType resultSchema(DataType idType) {
        return new StructType()
                .add("id", idType, true)
                .add("text", DataTypes.StringType, false)
                .add("finish_reason", DataTypes.StringType, false)
                .add("prompt_tokens", DataTypes.IntegerType, false)
                .add("completion_tokens", DataTypes.IntegerType, false)
                .add("error", DataTypes.StringType, true);
    }

    /** The schema a JSON lines file of requests is read with ({@link #readRequests}): ids are strings. */
    public static StructType requestSchema() {
        return Request.jsonSchema();
    }

    /**
     * A JSON lines file (or folder, or glob) of requests in {@code nibble batch}'s own form, read by Spark with
     * {@link #requestSchema} in PERMISSIVE mode ({@code messages} is read as its JSON text, which {@link #generate}
     * reads by nibble batch's rules): a line that does not fit the schema is kept whole in
     * {@code _corrupt_record}, and {@link #generate} reads it by nibble batch's rules (it runs, or is an error row
     * saying what is wrong). Ids are read as strings ({@code 7} and {@code "7"} are the same id).
     */
    public static Dataset<Row> readRequests(SparkSession spark, String path) {
        return spark.read().schema(requestSchema()).option("mode", "PERMISSIVE")
                .option("columnNameOfCorruptRecord", Request.CORRUPT).json(path);
    }
}
