package dev.nibble.runtime;

import dev.nibble.testing.TestData;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** The Hugging Face reference outputs of test-data/tiny-llama: refs.json and the arrays in refs.safetensors. */
final class TinyLlamaRefs {

    final JsonNode json;
    private final JsonNode header;
    private final ByteBuffer data;

    private TinyLlamaRefs(JsonNode json, JsonNode header, ByteBuffer data) {
        this.json = json;
        this.header = header;
        this.data = data;
    }

    static Path testData() {
        return TestData.root();
    }

    static Path dir() {
        return testData().resolve("tiny-llama");
    }

    /** Reads refs.json and indexes refs.safetensors (a little-endian u64 header length, a JSON header, raw data). */
    static TinyLlamaRefs load() throws IOException {
        ObjectMapper mapper = new ObjectMapper();
        JsonNode json = mapper.readTree(dir().resolve("refs.json").toFile());
        byte[] raw = Files.readAllBytes(dir().resolve("refs.safetensors"));
        ByteBuffer buf = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        int headerLength = (int) buf.getLong(0);
        JsonNode header = mapper.readTree(new String(raw, 8, headerLength, StandardCharsets.UTF_8));
        return new TinyLlamaRefs(json, header, buf.slice(8 + headerLength, raw.length - 8 - headerLength).order(ByteOrder.LITTLE_ENDIAN));
    }

    float[] floats(String name) {
        JsonNode t = header.get(name);
        if (t == null || !t.get("dtype").asText().equals("F32")) {
            throw new IllegalArgumentException("refs.safetensors has no F32 array " + name);
        }
        int begin = t.get("data_offsets").get(0).asInt(), end = t.get("data_offsets").get(1).asInt();
        float[] out = new float[(end - begin) / 4];
        for (int i = 0; i < out.length; i++) {
            out[i] = data.getFloat(begin + 4 * i);
        }
        return out;
    }

    int[] ids(String prompt) {
        return ints(json.get("prompts").get(prompt).get("ids"));
    }

    int[] greedy(String prompt) {
        return ints(json.get("greedy").get(prompt).get("greedy48_no_stop_ids"));
    }

    static int[] ints(JsonNode array) {
        int[] out = new int[array.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = array.get(i).asInt();
        }
        return out;
    }

    /** ‖a − b‖ / ‖b‖. */
    static double relativeError(float[] a, float[] b) {
        if (a.length != b.length) {
            throw new IllegalArgumentException("lengths differ: " + a.length + " vs " + b.length);
        }
        double num = 0, den = 0;
        for (int i = 0; i < a.length; i++) {
            double d = (double) a[i] - b[i];
            num += d * d;
            den += (double) b[i] * b[i];
        }
        return Math.sqrt(num / den);
    }
}
