package dev.nibble.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.formats.GgmlType;
import dev.nibble.formats.gguf.GgufMetadata;
import dev.nibble.formats.gguf.GgufTensorInfo;
import dev.nibble.formats.gguf.GgufWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class InspectCommandTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    private Path writeGguf() throws Exception {
        Path file = tmp.resolve("m.gguf");
        GgufMetadata metadata = GgufMetadata.builder()
                .putString("general.architecture", "llama")
                .putU32("llama.block_count", 2)
                .putStringArray("tokenizer.ggml.tokens", List.of("<unk>", "<s>", "</s>", "a", "b", "c", "d", "e", "f", "g"))
                .build();
        List<GgufTensorInfo> infos = List.of(
                new GgufTensorInfo("token_embd.weight", GgmlType.Q4_0, new long[] {64, 10}),
                new GgufTensorInfo("output_norm.weight", GgmlType.F32, new long[] {64}));
        Random random = new Random(7);
        try (Arena arena = Arena.ofConfined(); GgufWriter w = GgufWriter.create(file, metadata, infos, false)) {
            for (GgufTensorInfo info : infos) {
                MemorySegment data = arena.allocate(info.byteSize());
                for (long i = 0; i < data.byteSize(); i++) {
                    data.set(ValueLayout.JAVA_BYTE, i, (byte) random.nextInt());
                }
                w.write(data);
            }
            w.finish();
        }
        return file;
    }

    @Test
    void ggufReportListsMetadataTensorsAndTotals() throws Exception {
        CliRun run = CliRun.of("inspect", writeGguf().toString());
        assertEquals(0, run.exitCode(), run.err());
        assertTrue(run.out().contains("GGUF v3"), run.out());
        assertTrue(run.out().contains("general.architecture"), run.out());
        assertTrue(run.out().contains("... (10 elements)"), "long arrays are abbreviated: " + run.out());
        assertTrue(run.out().matches("(?s).*token_embd\\.weight\\s+Q4_0\\s+\\[64, 10].*"), run.out());
        assertTrue(run.out().matches("(?s).*tensors:\\s+2, 704 parameters, 616 B.*"), run.out());
    }

    @Test
    void ggufJsonCarriesEveryValueAndExactTotals() throws Exception {
        CliRun run = CliRun.of("inspect", "--json", writeGguf().toString());
        assertEquals(0, run.exitCode(), run.err());
        JsonNode root = JSON.readTree(run.out());
        assertEquals(10, root.at("/metadata/tokenizer.ggml.tokens/value").size());
        assertEquals("UINT32", root.at("/metadata/llama.block_count/type").asText());
        assertEquals(2, root.at("/metadata/llama.block_count/value").asInt());
        // Q4_0: 64 x 10 weights = 20 blocks of 18 bytes; F32: 64 x 4 bytes.
        assertEquals(20 * 18, root.at("/tensors/0/bytes").asLong());
        assertEquals(20 * 18 + 64 * 4, root.at("/totals/bytes").asLong());
        assertEquals(64 * 10 + 64, root.at("/totals/elements").asLong());
    }

    @Test
    void safetensorsAndPytorchCopiesOfTheTinyModelShowTheSameTensors() throws Exception {
        Path tiny = CliRun.testData().resolve("tiny-llama");
        JsonNode st = JSON.readTree(CliRun.of("inspect", "--json", tiny.resolve("safetensors").toString()).out());
        JsonNode bin = JSON.readTree(CliRun.of("inspect", "--json", tiny.resolve("bin").toString()).out());
        assertEquals("safetensors", st.get("format").asText());
        assertEquals("PyTorch zip", bin.get("format").asText());
        assertEquals(57, st.at("/totals/tensors").asInt());
        assertEquals(st.get("tensors"), bin.get("tensors"));
        assertEquals(256, st.at("/metadata/config.hidden_size/value").asInt());
        assertEquals(5_570_000, st.at("/totals/elements").asLong(), 10_000, "a 5.6 M-parameter model");
        assertEquals(2 * st.at("/totals/elements").asLong(), st.at("/totals/by_type/F16/bytes").asLong());
    }

    @Test
    void missingFileIsAnErrorNamingIt() {
        CliRun run = CliRun.of("inspect", tmp.resolve("nope.gguf").toString());
        assertEquals(1, run.exitCode());
        assertTrue(run.err().contains("nope.gguf"), run.err());
    }

    @Test
    void truncatedGgufIsAnErrorWithFileAndOffset() throws Exception {
        Path file = writeGguf();
        byte[] bytes = Files.readAllBytes(file);
        Path cut = tmp.resolve("cut.gguf");
        Files.write(cut, java.util.Arrays.copyOf(bytes, 100));
        CliRun run = CliRun.of("inspect", cut.toString());
        assertEquals(1, run.exitCode());
        assertTrue(run.err().startsWith("nibble: error: " + cut), run.err());
        assertTrue(run.err().contains("at byte"), run.err());
    }
}
