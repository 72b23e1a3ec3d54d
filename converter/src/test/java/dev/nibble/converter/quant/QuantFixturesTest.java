package dev.nibble.converter.quant;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** The "real weights" part of the fixture input really is tiny-llama's weights, as test-data/quant/README.md says. */
class QuantFixturesTest {

    /** Row {@code row} of a 2-D fp16 tensor, read with a minimal parse of the safetensors header. */
    private static float[] safetensorsRow(Path file, String name, int row) throws IOException {
        byte[] all = Files.readAllBytes(file);
        ByteBuffer buf = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        int headerLength = (int) buf.getLong(0);
        JsonNode entry = new ObjectMapper().readTree(new String(all, 8, headerLength, java.nio.charset.StandardCharsets.UTF_8)).get(name);
        assertEquals("F16", entry.get("dtype").asText());
        int cols = entry.get("shape").get(1).asInt();
        long start = 8 + headerLength + entry.get("data_offsets").get(0).asLong() + 2L * cols * row;
        float[] out = new float[cols];
        for (int i = 0; i < cols; i++) {
            out[i] = Float.float16ToFloat(buf.getShort((int) (start + 2L * i)));
        }
        return out;
    }

    @Test
    void realWeightPartOfTheInputIsTinyLlamaTensors() throws IOException {
        Path model = QuantFixtures.root().resolve("tiny-llama/safetensors/model.safetensors");
        float[] input = QuantFixtures.floats("input.f32");
        float[][] parts = {
            safetensorsRow(model, "model.layers.0.self_attn.q_proj.weight", 0),
            safetensorsRow(model, "model.layers.0.self_attn.q_proj.weight", 1),
            safetensorsRow(model, "model.layers.3.mlp.down_proj.weight", 0),
            safetensorsRow(model, "model.embed_tokens.weight", 5),
        };
        int at = 0;
        for (float[] part : parts) {
            for (float v : part) {
                assertEquals(v, input[at], "input element " + at);
                at++;
            }
        }
        assertEquals(1536, at);
    }
}
