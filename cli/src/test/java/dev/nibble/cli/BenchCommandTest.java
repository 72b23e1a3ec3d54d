package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.cli.bench.SyntheticModel;
import dev.nibble.formats.GgmlType;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.runtime.CpuBackend;
import dev.nibble.runtime.KvCache;
import dev.nibble.runtime.Model;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code nibble bench} and its synthetic models. */
class BenchCommandTest {

    @TempDir
    Path dir;

    @Test
    void jsonReportsTheMedianOfEachTest() throws Exception {
        CliRun r = CliRun.of("bench", "-m", GenerateCommandTest.model().toString(), "-p", "16", "-n", "4", "-r", "3", "--json");
        assertEquals(0, r.exitCode(), r.err());
        JsonNode results = new ObjectMapper().readTree(r.out());
        assertEquals(2, results.size());
        assertEquals("pp16", results.get(0).get("test").asText());
        assertEquals("tg4", results.get(1).get("test").asText());
        for (JsonNode t : results) {
            assertEquals(3, t.get("tokens_per_second").size());
            double median = t.get("tokens_per_second_median").asDouble();
            assertTrue(median >= t.get("tokens_per_second_min").asDouble() && median <= t.get("tokens_per_second_max").asDouble());
            assertTrue(median > 0);
        }
    }

    @Test
    void syntheticModelsOfEveryTypeLoadAndRun() throws Exception {
        SyntheticModel.Shape small = new SyntheticModel.Shape("test", 512, 768, 2, 8, 2, 600, 64);
        for (GgmlType type : EnumSet.allOf(GgmlType.class)) {
            Path file = dir.resolve(type + ".gguf");
            SyntheticModel.write(file, small, type, 3);
            try (GgufFile f = GgufFile.open(file)) {
                assertEquals(type, f.tensor("blk.1.ffn_down.weight").orElseThrow().type());
            }
            try (CpuBackend b = new CpuBackend(0); Model m = Model.load(file, b); KvCache cache = m.newCache(8)) {
                float[] logits = m.forward(new int[] {1, 5, 300}, cache, false);
                for (float v : logits) {
                    assertTrue(Float.isFinite(v), type + ": random weights give finite logits");
                }
            }
            Files.delete(file);
        }
    }

    @Test
    void syntheticSpecsAreParsedAndBadOnesNamed() {
        assertEquals(GgmlType.Q4_0, SyntheticModel.parse("7b").type());
        assertEquals(GgmlType.Q4_K, SyntheticModel.parse("13b:q4_k").type());
        assertEquals(8, SyntheticModel.parse("70B").shape().kvHeads());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> SyntheticModel.parse("8b")).getMessage().contains("7b"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> SyntheticModel.parse("7b:q3")).getMessage().contains("q4_0"));
    }

    @Test
    void saveWithoutSyntheticIsRefused() {
        CliRun r = CliRun.of("bench", "-m", GenerateCommandTest.model().toString(), "--save", dir.resolve("x").toString());
        assertEquals(1, r.exitCode());
        assertTrue(r.err().contains("--save goes with --synthetic"), r.err());
    }
}
