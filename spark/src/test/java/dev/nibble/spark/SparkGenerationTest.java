package dev.nibble.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.runtime.BatchEngine;
import dev.nibble.runtime.CpuBackend;
import dev.nibble.runtime.GenerationResult;
import dev.nibble.runtime.GenerationSettings;
import dev.nibble.runtime.LoadProgress;
import dev.nibble.runtime.Placement;
import dev.nibble.runtime.SamplerSettings;
import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.testing.TestData;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.IntStream;
import org.apache.spark.SparkException;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.function.MapPartitionsFunction;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Batch generation on Spark in local mode (two task threads, up to three attempts per task), one session for the
 * whole class, on the tiny model: results equal the runtime's batch engine (what {@code nibble batch} runs), retried
 * tasks write each result once, malformed rows become error rows.
 */
class SparkGenerationTest {

    private static final Path MODEL = TestData.resolve("tiny-llama.q8_0.gguf");
    private static final StructType MESSAGE = new StructType().add("role", DataTypes.StringType)
            .add("content", DataTypes.StringType);
    private static final StructType REQUESTS = new StructType()
            .add("id", DataTypes.StringType)
            .add("prompt", DataTypes.StringType)
            .add("messages", DataTypes.createArrayType(MESSAGE))
            .add("max_tokens", DataTypes.IntegerType)
            .add("temperature", DataTypes.DoubleType)
            .add("seed", DataTypes.LongType)
            .add("stop", DataTypes.createArrayType(DataTypes.StringType));

    private static SparkSession spark;

    @TempDir
    Path dir;

    @BeforeAll
    static void start() {
        spark = SparkSession.builder().master("local[2,3]").appName("nibble-spark-test")
                .config("spark.ui.enabled", "false")
                .config("spark.driver.host", "127.0.0.1")
                .config("spark.driver.bindAddress", "127.0.0.1")
                .config("spark.sql.shuffle.partitions", "2")
                // tiny queries: compiling whole-stage code and re-planning cost more than they save
                .config("spark.sql.codegen.wholeStage", "false")
                .config("spark.sql.adaptive.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .getOrCreate();
    }

    @AfterAll
    static void stop() {
        if (spark != null) {
            spark.stop();
        }
    }

    private static Row request(String id, String prompt, List<ChatMessage> messages, Integer max, Double temperature,
                               Long seed, List<String> stop) {
        List<Row> m = messages == null ? null
                : messages.stream().map(x -> RowFactory.create(x.role(), x.content())).toList();
        return RowFactory.create(id, prompt, m, max, temperature, seed, stop);
    }

    /** What the runtime's batch engine (nibble batch's) gives for each request, with defaults greedy... or seeded. */
    private static Map<String, GenerationResult> expected(List<Row> requests, SamplerSettings defaults) throws Exception {
        Map<String, CompletableFuture<GenerationResult>> futures = new HashMap<>();
        try (BatchEngine engine = BatchEngine.open(MODEL, Placement.of(new CpuBackend(0)), new BatchEngine.Options(4, 512, 0),
                LoadProgress.NONE)) {
            ChatFormat format = ChatFormat.forModel(engine.model().file(), engine.tokenizer());
            for (Row r : requests) {
                SamplerSettings s = new SamplerSettings(r.isNullAt(4) ? defaults.temperature() : (float) r.getDouble(4),
                        defaults.topK(), defaults.topP(), defaults.minP(), 1f, 0f, 0f,
                        r.isNullAt(5) ? defaults.seed() : r.getLong(5));
                @SuppressWarnings("unchecked")
                List<String> stop = r.isNullAt(6) ? List.of() : (List<String>) r.get(6);
                GenerationSettings settings = new GenerationSettings(r.getInt(3), s, stop);
                if (r.isNullAt(2)) {
                    futures.put(r.getString(0), engine.submit(r.getString(1), settings, text -> { }));
                } else {
                    @SuppressWarnings("unchecked")
                    List<ChatMessage> messages = ((List<Row>) r.get(2)).stream()
                            .map(m -> new ChatMessage(m.getString(0), m.getString(1))).toList();
                    futures.put(r.getString(0), engine.submit(format, messages, settings, text -> { }));
                }
            }
            Map<String, GenerationResult> out = new HashMap<>();
            for (var e : futures.entrySet()) {
                out.put(e.getKey(), e.getValue().join());
            }
            return out;
        }
    }

    private static Map<String, Row> byId(List<Row> rows) {
        Map<String, Row> out = new HashMap<>();
        for (Row r : rows) {
            assertNull(out.put(r.getString(0), r), "id " + r.getString(0) + " twice");
        }
        return out;
    }

    @Test
    void resultsEqualTheBatchEngineGreedyAndSeeded() throws Exception {
        List<Row> requests = List.of(
                request("g1", "The jury", null, 24, null, null, null),
                request("g2", "Once upon a time", null, 16, null, null, List.of(".")),
                request("g3", null, List.of(ChatMessage.user("Who won the election?")), 20, null, null, null),
                request("s1", "The jury", null, 24, 0.9, 7L, null),
                request("s2", "The president said", null, 24, 1.0, null, null),
                request("s3", null, List.of(ChatMessage.system("Be brief."), ChatMessage.user("Why?")), 20, 0.8, 3L,
                        null),
                request("g4", "In the morning", null, 12, 0.0, null, null),
                request("g5", "She", null, 30, null, null, null));
        Dataset<Row> input = spark.createDataFrame(requests, REQUESTS); // local rows: two partitions
        assertEquals(2, input.rdd().getNumPartitions());
        long loadsBefore = ExecutorModels.loads();

        SparkGeneration greedy = SparkGeneration.model(MODEL.toString()).parallel(4).temperature(0).seed(42);
        Map<String, Row> got = byId(greedy.generate(input).collectAsList());
        Map<String, GenerationResult> want = expected(requests, greedy.sampling());
        assertEquals(want.keySet(), got.keySet());
        for (var e : want.entrySet()) {
            Row row = got.get(e.getKey());
            GenerationResult w = e.getValue();
            assertEquals(w.text(), row.getString(1), e.getKey());
            assertEquals(PartitionGenerator.finishReason(w.stopReason()), row.getString(2), e.getKey());
            assertEquals(w.promptTokens(), row.getInt(3), e.getKey());
            assertEquals(w.generatedTokens(), row.getInt(4), e.getKey());
            assertTrue(row.isNullAt(5), e.getKey());
        }

        // sampled by default: the run's seed for requests without one, their own for the others
        SparkGeneration sampled = SparkGeneration.model(MODEL.toString()).parallel(3).temperature(0.8f).seed(1234);
        got = byId(sampled.generate(input).collectAsList());
        want = expected(requests, sampled.sampling());
        for (var e : want.entrySet()) {
            assertEquals(e.getValue().text(), got.get(e.getKey()).getString(1), e.getKey());
            assertEquals(e.getValue().generatedTokens(), got.get(e.getKey()).getInt(4), e.getKey());
        }
        // two jobs of two concurrent tasks each, one mapping of the model
        assertTrue(ExecutorModels.loads() - loadsBefore <= 1, "the model was loaded "
                + (ExecutorModels.loads() - loadsBefore) + " times");
    }

    /** Fails the first attempt of partition 0 after it has passed on some results (which the writer has begun). */
    static final class FailOnce implements MapPartitionsFunction<Row, Row> {
        static final AtomicInteger FAILURES = new AtomicInteger();

        @Override
        public Iterator<Row> call(Iterator<Row> rows) {
            TaskContext task = TaskContext.get();
            boolean fail = task.attemptNumber() == 0 && task.partitionId() == 0;
            return new Iterator<>() {
                int given;

                @Override
                public boolean hasNext() {
                    return rows.hasNext();
                }

                @Override
                public Row next() {
                    if (fail && given == 3) {
                        FAILURES.incrementAndGet();
                        throw new IllegalStateException("injected failure of the first attempt");
                    }
                    given++;
                    return rows.next();
                }
            };
        }
    }

    @Test
    void aTaskThatFailsOnceStillWritesEveryIdExactlyOnce() {
        List<Row> requests = IntStream.range(0, 16)
                .mapToObj(i -> request("r" + i, "Story number " + i + ":", null, 6 + i % 5, null, null, null))
                .toList();
        Dataset<Row> input = spark.createDataFrame(requests, REQUESTS);
        Dataset<Row> results = SparkGeneration.model(MODEL.toString()).parallel(4).temperature(0).generate(input);
        int before = FailOnce.FAILURES.get();
        Path out = dir.resolve("results.parquet");
        results.mapPartitions(new FailOnce(), Encoders.row(results.schema())).write().parquet(out.toString());
        assertEquals(before + 1, FailOnce.FAILURES.get(), "the failure was injected once");

        List<Row> written = spark.read().parquet(out.toString()).collectAsList();
        List<String> ids = written.stream().map(r -> r.getString(0)).sorted().toList();
        assertEquals(requests.stream().map(r -> r.getString(0)).sorted().toList(), ids);
        assertTrue(written.stream().allMatch(r -> r.isNullAt(5) && r.getInt(4) > 0), written.toString());
    }

    @Test
    void malformedRowsBecomeErrorRows() throws Exception {
        Path input = dir.resolve("requests.jsonl");
        Files.writeString(input, String.join("\n",
                "{\"id\": \"ok\", \"prompt\": \"The jury\", \"max_tokens\": 5, \"temperature\": 0}",
                "{\"id\": 7, \"prompt\": \"The jury\", \"max_tokens\": 5, \"temperature\": 0, \"stop\": \"zzz\"}",
                "{\"id\": \"parts\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", "
                        + "\"text\": \"Hi\"}]}], \"max_tokens\": 4, \"temperature\": 0}",
                "{\"id\": \"plain\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 4, "
                        + "\"temperature\": 0}",
                "this is not JSON",
                "{\"prompt\": \"no id\"}",
                "{\"id\": \"both\", \"prompt\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": \"b\"}]}",
                "{\"id\": \"neither\", \"max_tokens\": 3}",
                "{\"id\": \"ten\", \"prompt\": \"a\", \"max_tokens\": \"ten\"}",
                "{\"id\": \"hot\", \"prompt\": \"a\", \"temperature\": -1}",
                "{\"id\": \"assistant-last\", \"messages\": [{\"role\": \"assistant\", \"content\": \"b\"}]}",
                "{\"id\": \"empty-stop\", \"prompt\": \"a\", \"stop\": [\"\"]}",
                "[1, 2]",
                ""), StandardCharsets.UTF_8);
        Dataset<Row> requests = SparkGeneration.readRequests(spark, input.toString());
        List<Row> rows = SparkGeneration.model(MODEL.toString()).parallel(2).generate(requests).collectAsList();
        assertEquals(13, rows.size(), rows.toString());
        Map<String, Row> byId = new HashMap<>();
        List<Row> anonymous = new ArrayList<>();
        for (Row r : rows) {
            if (r.isNullAt(0)) {
                anonymous.add(r);
            } else {
                byId.put(r.getString(0), r);
            }
        }
        for (String ok : List.of("ok", "7", "parts", "plain")) {
            assertTrue(byId.get(ok).isNullAt(5), ok + ": " + byId.get(ok));
            assertTrue(byId.get(ok).getInt(4) > 0, ok + ": " + byId.get(ok));
        }
        // a content given as text parts is the same message as the text
        assertEquals(byId.get("plain").getString(1), byId.get("parts").getString(1));
        assertEquals(byId.get("plain").getInt(3), byId.get("parts").getInt(3));
        Map<String, String> errors = Map.of(
                "both", "give exactly one of \"prompt\" and \"messages\"",
                "neither", "give exactly one of \"prompt\" and \"messages\"",
                "ten", "\"max_tokens\" must be an integer",
                "hot", "temperature must be 0 or more, is -1.0",
                "assistant-last", "the last message must be the user's, to be answered",
                "empty-stop", "a stop string must not be empty");
        for (var e : errors.entrySet()) {
            Row r = byId.get(e.getKey());
            assertEquals("error", r.getString(2), e.getKey());
            assertEquals(e.getValue(), r.getString(5), e.getKey());
            assertEquals("", r.getString(1));
            assertEquals(0, r.getInt(3) + r.getInt(4));
        }
        assertEquals(3, anonymous.size(), anonymous.toString());
        String messages = anonymous.stream().map(r -> r.getString(5)).sorted().toList().toString();
        assertTrue(messages.contains("not valid JSON") && messages.contains("this is not JSON"), messages);
        assertTrue(messages.contains("no \"id\"") && messages.contains("no id"), messages);
        assertTrue(messages.contains("not a JSON object: [1, 2]"), messages);
    }

    @Test
    void theJobsOutputReadBackMatchesTheInputIdsOneToOne() throws Exception {
        Path input = dir.resolve("in.jsonl");
        List<String> ids = new ArrayList<>();
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            String id = i % 3 == 0 ? String.valueOf(i) : "\"q" + i + "\"";
            ids.add(id.replace("\"", ""));
            lines.add(i % 4 == 1
                    ? "{\"id\": " + id + ", \"messages\": [{\"role\": \"user\", \"content\": \"Question " + i + "?\"}]}"
                    : "{\"id\": " + id + ", \"prompt\": \"Line " + i + "\", \"seed\": " + i + "}");
        }
        Files.write(input, lines, StandardCharsets.UTF_8);
        Path out = dir.resolve("out");
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        SparkBatchJob.Summary summary = SparkBatchJob.run(spark, new String[] {"--model", MODEL.toString(),
            "--input", input.toString(), "--output", out.toString(), "--parallel", "4", "-n", "6",
            "--seed", "9", "--partitions", "3"}, new PrintStream(log, true, StandardCharsets.UTF_8));
        assertEquals(20, summary.results(), log.toString(StandardCharsets.UTF_8));
        assertEquals(0, summary.errors());
        assertTrue(log.toString(StandardCharsets.UTF_8).contains("20 results in"), log.toString(StandardCharsets.UTF_8));

        Dataset<Row> written = spark.read().json(out.toString());
        List<String> got = written.select("id").collectAsList().stream().map(r -> r.getString(0)).sorted().toList();
        assertEquals(ids.stream().sorted().toList(), got);
        assertEquals(List.of("completion_tokens", "finish_reason", "id", "prompt_tokens", "text"),
                Arrays.stream(written.schema().fieldNames()).sorted().toList(), "no error field when none failed");

        // the output exists: the writer refuses to overwrite it unless asked; duplicate ids are refused before running
        assertThrows(Exception.class, () -> SparkBatchJob.run(spark, new String[] {"--model", MODEL.toString(),
            "--input", input.toString(), "--output", out.toString()}, new PrintStream(new ByteArrayOutputStream())));
        Files.writeString(input, "{\"id\": 3, \"prompt\": \"again\"}\n", StandardOpenOption.APPEND);
        IllegalArgumentException duplicate = assertThrows(IllegalArgumentException.class, () -> SparkBatchJob.run(
                spark, new String[] {"--model", MODEL.toString(), "--input", input.toString(), "--output",
                    dir.resolve("out2").toString()}, new PrintStream(new ByteArrayOutputStream())));
        assertTrue(duplicate.getMessage().contains("3 (2 times)"), duplicate.getMessage());
    }

    @Test
    void aMissingOrDifferentModelIsATaskErrorNamingTheHost() throws Exception {
        Path copy = dir.resolve("model.gguf");
        Files.copy(MODEL, copy);
        Dataset<Row> input = spark.createDataFrame(List.of(request("a", "The jury", null, 4, null, null, null)),
                REQUESTS);
        Dataset<Row> results = SparkGeneration.model(copy.toString()).generate(input); // the driver sees it now
        byte[] bytes = Files.readAllBytes(copy);
        bytes[bytes.length - 1] ^= 1;
        Files.write(copy, bytes);
        SparkException different = assertThrows(SparkException.class, results::collectAsList);
        assertTrue(different.getMessage().contains("is not the driver's") && different.getMessage().contains("host "),
                different.getMessage());

        Files.delete(copy); // as an executor without the file finds it
        ModelFile seen = ModelFile.of(MODEL.toString());
        IllegalStateException missing = assertThrows(IllegalStateException.class,
                () -> new ModelFile(copy.toString(), seen.size(), seen.checksum()).resolve());
        assertTrue(missing.getMessage().contains("not found on host "), missing.getMessage());
        assertEquals(MODEL, new ModelFile(MODEL.toString(), seen.size(), seen.checksum()).resolve());
    }
}
