package dev.nibble.formats.safetensors;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.nibble.formats.FormatException;
import dev.nibble.testing.FuzzChecks;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Coverage-guided fuzzing of the safetensors reader: the header length, the JSON header, every tensor's dtype, shape
 * and byte range. Seeds: the bad headers of {@link SafetensorsFileTest} and a few valid files, written by
 * {@link #main}.
 */
class SafetensorsFuzzTest {

    @FuzzTest(maxDuration = "60s")
    void safetensors(byte[] data) throws Exception {
        Path file = FuzzChecks.write("fuzz.safetensors", data);
        FuzzChecks.bounded(data.length, 128, 4 << 20, () -> read(file));
    }

    private static void read(Path file) throws IOException {
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            f.metadata().size();
            for (CheckpointTensor t : f.tensors()) {
                if (t.data().byteSize() > 0) {
                    t.data().get(ValueLayout.JAVA_BYTE, t.data().byteSize() - 1);
                }
            }
        } catch (FormatException e) {
            FuzzChecks.cleanRefusal(e);
        }
    }

    /** Writes the seed inputs into {@code args[0]} (the formats module's directory). */
    public static void main(String[] args) throws IOException {
        Map<String, byte[]> seeds = new LinkedHashMap<>();
        seeds.put("valid-three-tensors", file("{\"__metadata__\":{\"format\":\"pt\"},"
                + "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                + "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[16,24]},"
                + "\"c\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[24,26]}}", 26));
        seeds.put("empty-tensor", file("{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]}}", 0));
        seeds.put("unsupported-dtype", file("{\"x\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16));
        seeds.put("size-lie", file("{\"w\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,40]}}", 48));
        seeds.put("offsets-beyond-file", file("{\"w\":{\"dtype\":\"F16\",\"shape\":[8],\"data_offsets\":[8,24]}}", 20));
        seeds.put("overlap", file("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20));
        seeds.put("negative-dim", file("{\"n\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,16]}}", 16));
        seeds.put("overflowing-shape", file("{\"n\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,16]}}", 16));
        seeds.put("missing-offsets", file("{\"m\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4));
        seeds.put("fractional-dim", file("{\"m\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4));
        seeds.put("array-header", file("[1,2]", 4));
        seeds.put("metadata-not-string", file("{\"__metadata__\":{\"k\":3}}", 0));
        seeds.put("not-json", file("{\"a\": nope}", 0));
        seeds.put("duplicate-key", file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                + "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4));
        seeds.put("trailing-text", file("{} {}", 0));
        seeds.put("deep-nesting", file("[".repeat(2000) + "]".repeat(2000), 0));
        byte[] utf8 = file("{\"\u00e9\":1}", 0);
        utf8[10] = (byte) 0xFF;
        seeds.put("invalid-utf8", utf8);
        for (long length : new long[] {1L << 62, -1L, 101L << 20, 0, 1}) {
            seeds.put("header-length-" + Long.toUnsignedString(length),
                    ByteBuffer.allocate(64).order(ByteOrder.LITTLE_ENDIAN).putLong(length).array());
        }
        Path dir = Path.of(args[0], "src/test/resources/dev/nibble/formats/safetensors/SafetensorsFuzzTestInputs/safetensors");
        Files.createDirectories(dir);
        for (Map.Entry<String, byte[]> e : seeds.entrySet()) {
            Files.write(dir.resolve(e.getKey()), e.getValue());
        }
    }

    private static byte[] file(String header, int dataBytes) {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        for (int i = 0; i < dataBytes; i++) {
            b.put((byte) (i * 37 + 11));
        }
        return b.array();
    }
}
