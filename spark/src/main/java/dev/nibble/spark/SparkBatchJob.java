package dev.nibble.spark;

import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.count;
import static org.apache.spark.sql.functions.sum;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import org.apache.spark.sql.DataFrameWriter;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SaveMode;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;

/**
 * {@code nibble batch} as a Spark job:
 * <pre>
 * spark-submit --class dev.nibble.spark.SparkBatchJob nibble-spark.jar \
 *     --model /models/model.gguf --input requests.jsonl --output results/ [--parallel 16] [--format jsonl|parquet]
 * </pre>
 * Reads the requests with Spark's JSON reader (nibble batch's own line form), generates on the executors and writes
 * the results with Spark's writer, whose output commit protocol keeps exactly one result per request whatever tasks
 * are retried or run twice speculatively.
 */
public final class SparkBatchJob {

    static final String USAGE = """
            Usage: spark-submit --class dev.nibble.spark.SparkBatchJob nibble-spark.jar --model PATH --input PATH \
            --output DIR [options]
              --model PATH          GGUF model: a path every executor can read, or a file shipped with --files
              --input PATH          requests, one JSON object per line: {"id", "prompt" | "messages", ...} (a file,
                                    folder or glob Spark can read)
              --output DIR          results folder, written by Spark (must not exist unless --overwrite)
              --format F            jsonl (default) or parquet
              --parallel N          sequences each task generates together (default 16)
              --partitions N        tasks to spread the requests over (default: as many as run at once,
                                    spark.default.parallelism / spark.task.cpus; 0 keeps the input's partitions)
              -n, --n-predict N     new tokens at most for requests without max_tokens (default -1: until an end token)
              --temperature T --top-k K --top-p P --min-p P --repeat-penalty X --frequency-penalty X
              --presence-penalty X  sampling defaults (as nibble generate's: 0.8, 40, 0.95, 0.05, 1, 0, 0)
              -s, --seed S          seed of requests that give none (default: random, printed)
              --stop TEXT           stop before this text, in every request (repeatable)
              --chat                answer each prompt as a user message in the model's chat format
              --system TEXT         a system prompt for requests answered in the chat format
              -c, --ctx N           positions one sequence may use (default: what the longest request needs)
              --device D            auto (default), cpu, cuda or cuda:N
              --threads N           CPU threads of each executor's model (default: the executor's CPUs)
              --overwrite           replace the output folder if it exists
            """;

    /** The command line, parsed. */
    record Options(String model, String input, String output, String format, int parallel, Integer partitions,
                   boolean overwrite, SparkGeneration generation) {
    }

    /** What a run wrote, read back from its output. */
    public record Summary(long results, long errors, long completionTokens, double seconds) {
        public double tokensPerSecond() {
            return seconds > 0 ? completionTokens / seconds : 0;
        }
    }

    private SparkBatchJob() {
    }

    public static void main(String[] args) {
        Options options;
        try {
            options = parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("nibble: " + e.getMessage());
            System.err.print(USAGE);
            System.exit(2);
            return;
        }
        if (options == null) {
            System.out.print(USAGE);
            return;
        }
        SparkSession spark = SparkSession.builder().appName("nibble batch").getOrCreate();
        try {
            run(spark, options, System.err);
        } finally {
            spark.stop();
        }
    }

    /** Runs the job on {@code spark} with command line {@code args}; says what it does on {@code log}. */
    public static Summary run(SparkSession spark, String[] args, PrintStream log) {
        Options options = parse(args);
        if (options == null) {
            throw new IllegalArgumentException("no job: --help");
        }
        return run(spark, options, log);
    }

    static Summary run(SparkSession spark, Options o, PrintStream log) {
        Dataset<Row> requests = SparkGeneration.readRequests(spark, o.input());
        List<Row> duplicates = requests.filter(col("id").isNotNull()).groupBy("id").count()
                .filter(col("count").gt(1)).limit(5).collectAsList();
        if (!duplicates.isEmpty()) {
            List<String> shown = new ArrayList<>();
            for (Row d : duplicates) {
                shown.add(d.getString(0) + " (" + d.getLong(1) + " times)");
            }
            throw new IllegalArgumentException(o.input() + ": ids must be unique, and these are not: "
                    + String.join(", ", shown) + " (nothing was run)");
        }
        int partitions = o.partitions() != null ? o.partitions() : Math.max(1,
                spark.sparkContext().defaultParallelism()
                / Integer.parseInt(spark.sparkContext().getConf().get("spark.task.cpus", "1")));
        if (partitions > 0 && partitions != requests.rdd().getNumPartitions()) {
            requests = requests.repartition(partitions);
        }
        SparkGeneration generation = o.generation();
        log.println("nibble: seed " + generation.seed() + " for requests that give none");
        Dataset<Row> results = generation.generate(requests);
        DataFrameWriter<Row> writer = results.write().mode(o.overwrite() ? SaveMode.Overwrite : SaveMode.ErrorIfExists);
        long start = System.nanoTime();
        if (o.format().equals("parquet")) {
            writer.parquet(o.output());
        } else {
            writer.json(o.output());
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        Dataset<Row> written = o.format().equals("parquet") ? spark.read().parquet(o.output())
                : spark.read().schema(SparkGeneration.resultSchema(DataTypes.StringType)).json(o.output());
        Row totals = written.agg(count("*"), count(col("error")), sum(col("completion_tokens"))).first();
        Summary summary = new Summary(totals.getLong(0), totals.getLong(1), totals.isNullAt(2) ? 0 : totals.getLong(2),
                seconds);
        log.println(String.format(Locale.ROOT, "nibble: %d results in %s (%d errors); %d tokens generated in %.1f s: "
                        + "%.2f tokens/s", summary.results(), o.output(), summary.errors(), summary.completionTokens(),
                summary.seconds(), summary.tokensPerSecond()));
        return summary;
    }

    /** The options of {@code args}; null for --help. */
    static Options parse(String[] args) {
        String model = null;
        String input = null;
        String output = null;
        String format = "jsonl";
        int parallel = 16;
        Integer partitions = null;
        boolean overwrite = false;
        List<Runnable> sets = new ArrayList<>();
        SparkGeneration[] g = new SparkGeneration[1];
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "-h", "--help" -> {
                    return null;
                }
                case "--overwrite" -> overwrite = true;
                case "--chat" -> sets.add(() -> g[0].chat(true));
                default -> {
                    if (i + 1 >= args.length) {
                        throw new IllegalArgumentException(a.startsWith("-") ? a + " needs a value"
                                : "unexpected argument " + a);
                    }
                    String v = args[++i];
                    switch (a) {
                        case "-m", "--model" -> model = v;
                        case "-i", "--input" -> input = v;
                        case "-o", "--output" -> output = v;
                        case "--format" -> {
                            format = v.toLowerCase(Locale.ROOT).equals("json") ? "jsonl" : v.toLowerCase(Locale.ROOT);
                            if (!format.equals("jsonl") && !format.equals("parquet")) {
                                throw new IllegalArgumentException("--format must be jsonl or parquet, is " + v);
                            }
                        }
                        case "--parallel" -> parallel = integer(a, v, 1);
                        case "--partitions" -> partitions = integer(a, v, 0);
                        case "-n", "--n-predict" -> {
                            int n = integer(a, v, -1);
                            sets.add(() -> g[0].maxTokens(n));
                        }
                        case "--temperature" -> {
                            float x = number(a, v);
                            sets.add(() -> g[0].temperature(x));
                        }
                        case "--top-k" -> {
                            int k = integer(a, v, 0);
                            sets.add(() -> g[0].topK(k));
                        }
                        case "--top-p" -> {
                            float x = number(a, v);
                            sets.add(() -> g[0].topP(x));
                        }
                        case "--min-p" -> {
                            float x = number(a, v);
                            sets.add(() -> g[0].minP(x));
                        }
                        case "--repeat-penalty" -> {
                            float x = number(a, v);
                            sets.add(() -> g[0].repeatPenalty(x));
                        }
                        case "--frequency-penalty" -> {
                            float x = number(a, v);
                            sets.add(() -> g[0].frequencyPenalty(x));
                        }
                        case "--presence-penalty" -> {
                            float x = number(a, v);
                            sets.add(() -> g[0].presencePenalty(x));
                        }
                        case "-s", "--seed" -> {
                            long s = longValue(a, v);
                            sets.add(() -> g[0].seed(s));
                        }
                        case "--stop" -> {
                            if (v.isEmpty()) {
                                throw new IllegalArgumentException("--stop must not be empty");
                            }
                            sets.add(() -> g[0].stop(v));
                        }
                        case "--system" -> sets.add(() -> g[0].system(v));
                        case "-c", "--ctx" -> {
                            int n = integer(a, v, 0);
                            sets.add(() -> g[0].context(n));
                        }
                        case "--device" -> sets.add(() -> g[0].device(v));
                        case "--threads" -> {
                            int n = integer(a, v, 0);
                            sets.add(() -> g[0].threads(n));
                        }
                        default -> throw new IllegalArgumentException("unknown option " + a);
                    }
                }
            }
        }
        if (model == null || input == null || output == null) {
            throw new IllegalArgumentException("--model, --input and --output are required");
        }
        g[0] = SparkGeneration.model(model).parallel(parallel);
        sets.forEach(Runnable::run);
        g[0].sampling(); // refuses out-of-range defaults before anything starts
        return new Options(model, input, output, format, parallel, partitions, overwrite, g[0]);
    }

    private static int integer(String option, String value, int min) {
        long v = longValue(option, value);
        if (v < min || v > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(option + " must be an integer of at least " + min + ", is " + value);
        }
        return (int) v;
    }

    private static long longValue(String option, String value) {
        try {
            return Long.parseLong(value);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(option + " must be an integer, is " + value);
        }
    }

    private static float number(String option, String value) {
        try {
            return Float.parseFloat(value);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(option + " must be a number, is " + value);
        }
    }
}
