package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.CpuBackend;
import dev.nibble.runtime.GenerationSettings;
import dev.nibble.runtime.Generator;
import dev.nibble.runtime.Model;
import dev.nibble.runtime.SamplerSettings;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code nibble batch} on the tiny model: both input forms, bad lines, resuming, and a run killed with kill -9. */
class BatchCommandTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private Path write(String name, String... lines) throws IOException {
        Path p = dir.resolve(name);
        Files.writeString(p, String.join("\n", lines) + "\n");
        return p;
    }

    private static List<JsonNode> results(Path out) throws IOException {
        List<JsonNode> list = new ArrayList<>();
        for (String line : Files.readAllLines(out)) {
            list.add(JSON.readTree(line));
        }
        return list;
    }

    private static Map<String, JsonNode> byId(List<JsonNode> results) {
        Map<String, JsonNode> map = new HashMap<>();
        for (JsonNode r : results) {
            String key = r.has("custom_id") ? r.get("custom_id").toString() : r.get("id").toString();
            assertTrue(map.put(key, r) == null, "one result per id: " + key);
        }
        return map;
    }

    /** What {@code generate} gives for a prompt alone, through the same API it uses. */
    private static String alone(String prompt, GenerationSettings settings) throws IOException {
        try (CpuBackend backend = new CpuBackend(0);
             Model model = Model.load(GenerateCommandTest.model(), backend);
             Generator g = new Generator(model, Tokenizer.from(VocabularyGguf.read(model.file())), 512)) {
            return g.generate(prompt, settings, s -> { }).text();
        }
    }

    @Test
    void bothFormsAnswerEachRequestAsGenerateWouldAndBadLinesBecomeErrors() throws IOException {
        Path in = write("requests.jsonl",
                "{\"id\": 1, \"prompt\": \"The jury\", \"max_tokens\": 20, \"temperature\": 0}",
                "{\"id\": \"seeded\", \"prompt\": \"Once upon a time\", \"max_tokens\": 16, \"seed\": 5, \"temperature\": 0.9}",
                "",
                "{\"id\": 3, \"messages\": [{\"role\": \"user\", \"content\": \"Tell me a story.\"}], \"max_tokens\": 12}",
                "not json",
                "{\"custom_id\": \"oa-chat\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": "
                        + "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 8}}",
                "{\"custom_id\": \"oa-text\", \"method\": \"POST\", \"url\": \"/v1/completions\", \"body\": "
                        + "{\"prompt\": \"The little dog\", \"max_tokens\": 12, \"temperature\": 0, \"stop\": [\"zzz\"]}}",
                "{\"id\": 4, \"prompt\": \"x\", \"temperature\": -1}",
                "{\"custom_id\": \"oa-bad\", \"method\": \"POST\", \"url\": \"/v1/embeddings\", \"body\": {}}",
                "{\"id\": 5, \"prompt\": \"" + "word ".repeat(80) + "\", \"max_tokens\": 4}");
        Path out = dir.resolve("results.jsonl");
        CliRun r = CliRun.of("batch", "-m", GenerateCommandTest.model().toString(), "-i", in.toString(), "-o",
                out.toString(), "--parallel", "3", "--ctx", "64");
        assertEquals(0, r.exitCode(), r.err());
        Map<String, JsonNode> got = byId(results(out));
        assertEquals(9, got.size(), "one line per request, the blank line is none: " + got.keySet());

        JsonNode first = got.get("1");
        assertEquals(alone("The jury", GenerationSettings.of(20, SamplerSettings.greedy())), first.get("text").asText());
        assertEquals("length", first.get("finish_reason").asText());
        assertEquals(20, first.get("usage").get("completion_tokens").asInt());
        assertEquals(4, first.get("usage").get("prompt_tokens").asInt());
        SamplerSettings seeded = new SamplerSettings(0.9f, 40, 0.95f, 0.05f, 1f, 0f, 0f, 5);
        assertEquals(alone("Once upon a time", GenerationSettings.of(16, seeded)), got.get("\"seeded\"").get("text").asText());

        JsonNode text = got.get("\"oa-text\"");
        assertEquals("batch_req_7", text.get("id").asText());
        assertEquals(200, text.get("response").get("status_code").asInt());
        JsonNode body = text.get("response").get("body");
        assertEquals("text_completion", body.get("object").asText());
        assertEquals(alone("The little dog", GenerationSettings.of(12, SamplerSettings.greedy())),
                body.get("choices").get(0).get("text").asText());
        assertEquals(17, body.get("usage").get("total_tokens").asInt());
        JsonNode chat = got.get("\"oa-chat\"").get("response").get("body");
        assertEquals("chat.completion", chat.get("object").asText());
        assertEquals("assistant", chat.get("choices").get(0).get("message").get("role").asText());
        assertTrue(List.of("stop", "length").contains(chat.get("choices").get(0).get("finish_reason").asText()),
                "OpenAI's finish reasons only: " + chat);

        JsonNode notJson = got.get("null");
        assertEquals("error", notJson.get("finish_reason").asText());
        assertEquals(5, notJson.get("line").asInt());
        assertTrue(notJson.get("error").asText().startsWith("line 5: not valid JSON"), notJson.toString());
        assertTrue(got.get("4").get("error").asText().contains("line 8: temperature must be 0 or more"));
        JsonNode badUrl = got.get("\"oa-bad\"").get("response");
        assertEquals(400, badUrl.get("status_code").asInt());
        assertTrue(badUrl.get("body").get("error").get("message").asText().contains("url must be"), badUrl.toString());
        JsonNode tooLong = got.get("5");
        assertEquals("error", tooLong.get("finish_reason").asText());
        assertTrue(tooLong.get("error").asText().contains("but the context holds 64"), tooLong.toString());
        assertTrue(r.err().contains("9 requests in"), r.err());
        assertTrue(r.err().contains("(4 errors)"), r.err());
    }

    @Test
    void duplicateIdsAreRefusedBeforeAnythingRuns() throws IOException {
        Path in = write("dup.jsonl", "{\"id\": \"a\", \"prompt\": \"x\"}", "{\"id\": \"b\", \"prompt\": \"y\"}",
                "{\"id\": \"a\", \"prompt\": \"z\"}");
        Path out = dir.resolve("out.jsonl");
        CliRun r = CliRun.of("batch", "-m", GenerateCommandTest.model().toString(), "-i", in.toString(), "-o",
                out.toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("id \"a\" is on lines 1 and 3; ids must be unique (nothing was run)"), r.err());
        assertFalse(Files.exists(out));
    }

    @Test
    void anEmptyInputHasNothingToDo() throws IOException {
        Path in = write("empty.jsonl", "", "  ");
        CliRun r = CliRun.of("batch", "-m", GenerateCommandTest.model().toString(), "-i", in.toString(), "-o",
                dir.resolve("out.jsonl").toString());
        assertEquals(0, r.exitCode(), r.err());
        assertTrue(r.err().contains("has no requests"), r.err());
    }

    @Test
    void aRerunRepairsATornLastLineAndRunsOnlyWhatIsMissing() throws IOException {
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            lines.add("{\"id\": " + i + ", \"prompt\": \"The jury said " + i + "\", \"max_tokens\": " + (4 + i)
                    + ", \"temperature\": 0}");
        }
        Path in = write("req.jsonl", lines.toArray(String[]::new));
        Path out = dir.resolve("out.jsonl");
        String[] args = {"batch", "-m", GenerateCommandTest.model().toString(), "-i", in.toString(), "-o", out.toString(),
            "--parallel", "2"};
        assertEquals(0, CliRun.of(args).exitCode());
        List<String> complete = Files.readAllLines(out);
        // as if killed while writing the fifth result: four whole lines and half of one
        String torn = String.join("\n", complete.subList(0, 4)) + "\n" + complete.get(4).substring(0, 20);
        Files.writeString(out, torn);
        CliRun rerun = CliRun.of(args);
        assertEquals(0, rerun.exitCode(), rerun.err());
        assertTrue(rerun.err().contains("cut off a partial last line"), rerun.err());
        assertTrue(rerun.err().contains("4 of 6 results are already in"), rerun.err());
        Map<String, JsonNode> got = byId(results(out));
        assertEquals(6, got.size());
        Map<String, JsonNode> first = byId(complete.stream().map(BatchCommandTest::parse).toList());
        for (String id : first.keySet()) {
            assertEquals(first.get(id).get("text"), got.get(id).get("text"), "greedy result of " + id);
        }
    }

    private static JsonNode parse(String line) {
        try {
            return JSON.readTree(line);
        } catch (IOException e) {
            throw new AssertionError(line, e);
        }
    }

    /** Starts {@code nibble batch} in a child JVM and waits until {@code out} holds at least {@code lines} results. */
    private Process startAndWait(Path in, Path out, int lines) throws Exception {
        List<String> command = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                "dev.nibble.cli.Nibble", "batch", "-m", GenerateCommandTest.model().toString(), "-i", in.toString(),
                "-o", out.toString(), "--parallel", "1", "-t", "1"); // slow enough that a signal lands mid-run
        Process child = new ProcessBuilder(command).redirectErrorStream(true)
                .redirectOutput(dir.resolve("child.log").toFile()).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (child.isAlive() && System.nanoTime() < deadline
                && (!Files.exists(out) || Files.readAllLines(out, StandardCharsets.UTF_8).size() < lines)) {
            Thread.sleep(20);
        }
        assertTrue(child.isAlive(), "the child was still running: " + Files.readString(dir.resolve("child.log")));
        return child;
    }

    private Path manyRequests(int count) throws IOException {
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            lines.add("{\"id\": \"r" + i + "\", \"prompt\": \"In the morning " + i + "\", \"max_tokens\": 24, \"seed\": "
                    + i + "}");
        }
        return write("many.jsonl", lines.toArray(String[]::new));
    }

    /** A rerun completes the file: every line parses, every id once. */
    private void rerunAndCheck(Path in, Path out, int count) throws IOException {
        CliRun rerun = CliRun.of("batch", "-m", GenerateCommandTest.model().toString(), "-i", in.toString(), "-o",
                out.toString(), "--parallel", "8");
        assertEquals(0, rerun.exitCode(), rerun.err());
        Map<String, JsonNode> got = byId(results(out));
        assertEquals(count, got.size());
        for (int i = 0; i < count; i++) {
            assertNotNull(got.get("\"r" + i + "\""), "result of r" + i);
        }
    }

    @Test
    void aRunKilledAtAnyMomentLosesOnlyWhatWasInFlight() throws Exception {
        int count = 300;
        Path in = manyRequests(count);
        Path out = dir.resolve("many.out.jsonl");
        Process child = startAndWait(in, out, 10);
        new ProcessBuilder("kill", "-9", Long.toString(child.pid())).start().waitFor();
        child.waitFor(30, TimeUnit.SECONDS);
        assertTrue(Files.readAllLines(out).size() < count, "killed before the end");
        rerunAndCheck(in, out, count);
    }

    @Test
    void ctrlCStopsAfterTheLineBeingWrittenAndSaysHowToResume() throws Exception {
        int count = 300;
        Path in = manyRequests(count);
        Path out = dir.resolve("many.out.jsonl");
        Process child = startAndWait(in, out, 10);
        new ProcessBuilder("kill", "-INT", Long.toString(child.pid())).start().waitFor();
        assertTrue(child.waitFor(60, TimeUnit.SECONDS), "the run ended after Ctrl-C");
        String log = Files.readString(dir.resolve("child.log"));
        assertTrue(log.contains("interrupted; ") && log.contains("run the same command again to finish the rest"), log);
        assertFalse(log.contains("Exception"), log);
        byte[] bytes = Files.readAllBytes(out);
        assertEquals('\n', bytes[bytes.length - 1], "the file ends with a whole line");
        assertTrue(Files.readAllLines(out).size() < count, "stopped before the end");
        rerunAndCheck(in, out, count);
    }
}
