package dev.nibble.converter;

import dev.nibble.testing.TestData;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.OptionalInt;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class GenerationConfigTest {

    @TempDir
    Path dir;

    @Test
    void tinyLlamaHasOneEosAndNoSamplingDefaults() throws IOException {
        GenerationConfig g = GenerationConfig.load(TestData.tinySafetensors());
        assertArrayEquals(new int[] {2}, g.eosTokenIds());
        assertEquals(OptionalDouble.empty(), g.temperature());
        assertEquals(OptionalInt.empty(), g.topK());
    }

    @Test
    void eosListAndSamplingValuesAreRead() throws IOException {
        Files.writeString(dir.resolve("generation_config.json"), """
                {"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009],
                 "temperature": 0.6, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1}""");
        GenerationConfig g = GenerationConfig.load(dir);
        assertArrayEquals(new int[] {128001, 128008, 128009}, g.eosTokenIds());
        assertEquals(Optional.of(true), g.doSample());
        assertEquals(OptionalDouble.of(0.6), g.temperature());
        assertEquals(OptionalDouble.of(0.9), g.topP());
        assertEquals(OptionalInt.of(40), g.topK());
        assertEquals(OptionalDouble.of(1.1), g.repetitionPenalty());
    }

    @Test
    void eosFallsBackToConfigJsonWhenGenerationConfigIsAbsent() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{\"eos_token_id\": [7, 9]}");
        assertArrayEquals(new int[] {7, 9}, GenerationConfig.load(dir).eosTokenIds());
    }

    @Test
    void nonIntegerEosIsRejectedWithFileAndItem() throws IOException {
        Files.writeString(dir.resolve("generation_config.json"), "{\"eos_token_id\": [2, \"x\"]}");
        FormatException e = assertThrows(FormatException.class, () -> GenerationConfig.load(dir));
        assertTrue(e.getMessage().contains("generation_config.json") && e.getMessage().contains("eos_token_id[1]"),
                e.getMessage());
    }
}
