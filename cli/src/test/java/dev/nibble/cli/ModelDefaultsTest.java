package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The model's own sampling defaults: {@code convert} stores generation_config.json's, and every generating command
 * uses them for what the command line does not give, and says so.
 */
class ModelDefaultsTest {

    @TempDir
    static Path dir;

    static Path greedy;

    /** The tiny model converted with a generation_config.json that asks for greedy decoding and top-k 5. */
    @BeforeAll
    static void convert() throws IOException {
        Path hf = Files.createDirectory(dir.resolve("hf"));
        try (var files = Files.list(CliRun.testData().resolve("tiny-llama/safetensors"))) {
            for (Path f : files.toList()) {
                Files.copy(f, hf.resolve(f.getFileName().toString()));
            }
        }
        Files.writeString(hf.resolve("generation_config.json"),
                "{\"eos_token_id\": 2, \"do_sample\": false, \"top_k\": 5, \"top_p\": 0.9}");
        greedy = dir.resolve("greedy.gguf");
        CliRun r = CliRun.of("convert", hf.toString(), "-o", greedy.toString(), "--type", "q8_0");
        assertEquals(0, r.exitCode(), r.err());
    }

    @Test
    void generateUsesTheModelsDefaultsWhenNoneAreGiven() {
        CliRun model = CliRun.of("generate", "-m", greedy.toString(), "-p", "The jury", "-n", "16");
        assertEquals(0, model.exitCode(), model.err());
        assertTrue(model.err().contains("; sampling: model defaults (temperature 0, top-k 5, top-p 0.9)\n"), model.err());
        CliRun greedyByHand = CliRun.of("generate", "-m", greedy.toString(), "-p", "The jury", "-n", "16", "--temp", "0");
        assertEquals(greedyByHand.out(), model.out(), "do_sample false is greedy");

        CliRun given = CliRun.of("generate", "-m", greedy.toString(), "-p", "The jury", "-n", "16", "--temp", "1.5",
                "--top-k", "0", "--seed", "3");
        assertTrue(given.err().contains("; sampling: --temperature 1.5 --top-k 0; model defaults (top-p 0.9)\n"),
                given.err());
        assertNotEquals(model.out(), given.out());

        CliRun none = CliRun.of("generate", "-m", GenerateCommandTest.model().toString(), "-p", "The jury", "-n", "2");
        assertTrue(none.err().contains("; sampling: nibble defaults (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05)\n"),
                none.err());
        assertTrue(CliRun.of("generate", "--help").out().contains("(default: the model's, else 0.8)"));
    }

    @Test
    void chatAndBatchUseThemToo() throws IOException {
        InputStream saved = System.in;
        try {
            System.setIn(new ByteArrayInputStream(new byte[0]));
            CliRun chat = CliRun.of("chat", "-m", greedy.toString(), "-n", "4");
            assertEquals(0, chat.exitCode(), chat.err());
            assertTrue(chat.err().contains("sampling: model defaults (temperature 0, top-k 5, top-p 0.9)"), chat.err());
        } finally {
            System.setIn(saved);
        }
        Path in = Files.writeString(dir.resolve("in.jsonl"), "{\"id\": 1, \"prompt\": \"The jury\", \"max_tokens\": 4}\n");
        CliRun batch = CliRun.of("batch", "-m", greedy.toString(), "-i", in.toString(), "-o",
                dir.resolve("out.jsonl").toString());
        assertEquals(0, batch.exitCode(), batch.err());
        assertTrue(batch.err().contains("; sampling: model defaults (temperature 0, top-k 5, top-p 0.9)"), batch.err());
    }
}
