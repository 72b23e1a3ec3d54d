package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import dev.nibble.formats.gguf.GgufFile;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ConvertCommandTest {

    @TempDir
    Path dir;

    private final String tiny = CliRun.testData().resolve("tiny-llama/safetensors").toString();

    @Test
    void convertsTheTinyModelAndReportsTheTypes() throws IOException {
        Path out = dir.resolve("tiny.gguf");
        CliRun run = CliRun.of("convert", tiny, "-o", out.toString(), "--type", "q4_0", "--threads", "1", "--name", "tiny");
        assertEquals(0, run.exitCode(), run.err());
        assertTrue(run.out().contains("wrote " + out) && run.out().contains("Q4_0=43"), run.out());
        try (GgufFile f = GgufFile.open(out)) {
            assertEquals("tiny", f.metadata().getString("general.name"));
            assertEquals(GgmlType.Q6_K, f.tensor("output.weight").orElseThrow().type());
        }
    }

    @Test
    void defaultTypeIsQ4KM() throws IOException {
        Path out = dir.resolve("tiny.gguf");
        assertEquals(0, CliRun.of("convert", tiny, "-o", out.toString()).exitCode());
        try (GgufFile f = GgufFile.open(out)) {
            assertEquals(15, f.metadata().getLong("general.file_type"));
        }
    }

    @Test
    void existingOutputIsAnErrorWithoutForce() throws IOException {
        Path out = dir.resolve("tiny.gguf");
        Files.write(out, new byte[] {7});
        CliRun run = CliRun.of("convert", tiny, "-o", out.toString(), "--type", "f16");
        assertEquals(1, run.exitCode());
        assertTrue(run.err().contains("--force"), run.err());
        assertArrayEquals(new byte[] {7}, Files.readAllBytes(out));
        assertEquals(0, CliRun.of("convert", tiny, "-o", out.toString(), "--type", "f16", "--force").exitCode());
        assertTrue(Files.size(out) > 1_000_000);
    }

    @Test
    void aLinkOutOfTheModelFolderIsOneErrorLineUnlessAllowed() throws IOException {
        Path model = Files.createDirectory(dir.resolve("model"));
        try (var files = Files.list(Path.of(tiny))) {
            for (Path f : files.toList()) {
                Files.copy(f, model.resolve(f.getFileName()));
            }
        }
        Path outside = Files.move(model.resolve("generation_config.json"), dir.resolve("generation_config.json"));
        Files.createSymbolicLink(model.resolve("generation_config.json"), outside);
        Path out = dir.resolve("tiny.gguf");
        CliRun run = CliRun.of("convert", model.toString(), "-o", out.toString(), "--type", "f16");
        assertEquals(1, run.exitCode());
        assertEquals("nibble: error: " + model.resolve("generation_config.json") + " is a link to " + outside.toRealPath()
                + ", outside the model folder, and would be copied into the model; copy the file into " + model
                + ", or pass --allow-external-links if it belongs to the model", run.err().strip());
        assertFalse(Files.exists(out));
        run = CliRun.of("convert", model.toString(), "-o", out.toString(), "--type", "f16", "--allow-external-links");
        assertEquals(0, run.exitCode(), run.err());
    }

    @Test
    void unknownTypeIsAUsageErrorListingTheChoices() {
        CliRun run = CliRun.of("convert", tiny, "-o", dir.resolve("x.gguf").toString(), "--type", "q3_k");
        assertEquals(2, run.exitCode());
        assertTrue(run.err().contains("q4_k_m, q4_0, q8_0, f16, bf16, f32, iq4_nl, nf4"), run.err());
    }

    @Test
    void folderWithoutConfigIsReportedByName() {
        CliRun run = CliRun.of("convert", dir.toString(), "-o", dir.resolve("x.gguf").toString());
        assertEquals(1, run.exitCode());
        assertTrue(run.err().contains("config.json"), run.err());
        assertFalse(Files.exists(dir.resolve("x.gguf")));
    }
}
