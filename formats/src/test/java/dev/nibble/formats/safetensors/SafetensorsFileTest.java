package dev.nibble.formats.safetensors;

import static dev.nibble.formats.checkpoint.Fixtures.randomTensors;
import static dev.nibble.formats.checkpoint.Fixtures.tinySafetensors;
import static dev.nibble.formats.checkpoint.Fixtures.writeSafetensors;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.GgmlType;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class SafetensorsFileTest {

    @TempDir
    Path dir;

    private static String sha256(CheckpointTensor t) throws NoSuchAlgorithmException {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(t.data().toArray(ValueLayout.JAVA_BYTE)));
    }

    @Test
    void realFileHasEveryTensorWithShapeDtypeAndBytes() throws Exception {
        try (SafetensorsFile f = SafetensorsFile.open(tinySafetensors())) {
            // 6 layers x 9 tensors + embeddings, final norm, lm_head (config.json of tiny-llama).
            assertEquals(57, f.tensors().size());
            assertEquals(Map.of("format", "pt"), f.metadata());
            assertEquals("lm_head.weight", f.tensors().getFirst().name());
            CheckpointTensor norm = f.tensor("model.norm.weight").orElseThrow();
            assertEquals(GgmlType.F16, norm.dtype());
            assertArrayEquals(new long[] {256}, norm.shape());
            // Digests computed with Python's json + hashlib straight from the file.
            assertEquals("6dc05f62dc803b2318e61d11cfef55fc2377003626627ddcabad1535cdf07e2f", sha256(norm));
            CheckpointTensor down = f.tensor("model.layers.5.mlp.down_proj.weight").orElseThrow();
            assertArrayEquals(new long[] {256, 768}, down.shape());
            assertEquals("a10619153c0db4ee70e04e5bdfce8bf65b16fc15e86eee9bdd32c87d674de8a5", sha256(down));
            assertTrue(down.data().isMapped() && down.data().isReadOnly(), "tensors are read-only views of the mapping");
            assertEquals(f.path(), down.file());
        }
    }

    @Test
    void closingUnmapsTheTensors() throws Exception {
        CheckpointTensor t;
        try (SafetensorsFile f = SafetensorsFile.open(tinySafetensors())) {
            t = f.tensors().getFirst();
            t.data().get(ValueLayout.JAVA_BYTE, 0);
        }
        assertThrows(IllegalStateException.class, () -> t.data().get(ValueLayout.JAVA_BYTE, 0));
    }

    @Test
    void scalarEmptyAndMixedFloatTensorsAreRead() throws Exception {
        Path p = dir.resolve("mixed.safetensors");
        byte[] data = new byte[4 + 6 + 4];
        new Random(7).nextBytes(data);
        writeSafetensors(p, """
                {"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},
                 "h":{"dtype":"F16","shape":[3],"data_offsets":[4,10]},
                 "e":{"dtype":"F32","shape":[0,5],"data_offsets":[10,10]},
                 "b":{"dtype":"BF16","shape":[1,2],"data_offsets":[10,14]}}""", data);
        try (SafetensorsFile f = SafetensorsFile.open(p)) {
            assertEquals(List.of("s", "h", "e", "b"), f.tensors().stream().map(CheckpointTensor::name).toList());
            assertEquals(GgmlType.BF16, f.tensor("b").orElseThrow().dtype());
            assertEquals(0, f.tensor("e").orElseThrow().data().byteSize());
            assertArrayEquals(Arrays.copyOfRange(data, 4, 10), f.tensor("h").orElseThrow().data().toArray(ValueLayout.JAVA_BYTE));
            assertEquals(1, f.tensor("s").orElseThrow().elementCount());
        }
    }

    private FormatException rejected(String header, int dataBytes) throws IOException {
        Path p = dir.resolve("bad.safetensors");
        writeSafetensors(p, header, new byte[dataBytes]);
        return assertThrows(FormatException.class, () -> SafetensorsFile.open(p).close());
    }

    @ParameterizedTest
    @ValueSource(strings = {"I64", "U8", "F8_E4M3", "F64", "BOOL", "I32"})
    void unsupportedDtypeIsRejectedNamingTheTensor(String dtype) throws IOException {
        FormatException e = rejected("{\"x\":{\"dtype\":\"" + dtype + "\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16);
        assertTrue(e.getMessage().contains("tensor 'x' has dtype " + dtype + "; nibble reads F32, F16 and BF16"), e.getMessage());
    }

    @Test
    void headerThatLiesAboutTheSizeIsRejectedNamingTheTensor() throws IOException {
        FormatException e = rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,40]}}", 48);
        assertTrue(e.getMessage().contains("tensor 'w'") && e.getMessage().contains("needs 48 bytes"), e.getMessage());
    }

    @Test
    void offsetsBeyondTheFileAreRejectedWithOffset() throws IOException {
        String header = "{\"w\":{\"dtype\":\"F16\",\"shape\":[8],\"data_offsets\":[8,24]}}";
        FormatException e = rejected(header, 20);
        assertTrue(e.getMessage().contains("tensor 'w'") && e.getMessage().contains("within the 20-byte data region"), e.getMessage());
        assertEquals(8 + header.length() + 8, e.offset());
    }

    @Test
    void overlappingTensorsAreRejected() throws IOException {
        FormatException e = rejected("""
                {"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}""", 20);
        assertTrue(e.getMessage().contains("tensor 'b'") && e.getMessage().contains("overlap tensor 'a'"), e.getMessage());
    }

    @Test
    void negativeDimensionsAreRejected() throws IOException {
        FormatException e = rejected("{\"n\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,16]}}", 16);
        assertTrue(e.getMessage().contains("tensor 'n'") && e.getMessage().contains("shape'[0] is -1"), e.getMessage());
    }

    @Test
    void overflowingShapeIsRejected() throws IOException {
        FormatException e = rejected("{\"n\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,16]}}", 16);
        assertTrue(e.getMessage().contains("tensor 'n'"), e.getMessage());
    }

    @Test
    void missingFieldsAndWrongTypesAreRejected() throws IOException {
        assertTrue(rejected("{\"m\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4).getMessage().contains("'data_offsets' must be"));
        assertTrue(rejected("{\"m\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4).getMessage().contains("no string 'dtype'"));
        assertTrue(rejected("{\"m\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4).getMessage().contains("not a non-negative integer"));
        assertTrue(rejected("{\"m\":[1,2]}", 4).getMessage().contains("tensor 'm'"));
        assertTrue(rejected("[1,2]", 4).getMessage().contains("must be a JSON object"));
        assertTrue(rejected("{\"__metadata__\":{\"k\":3}}", 0).getMessage().contains("must be a string"));
    }

    @Test
    void nonJsonAndDuplicateKeysAndTrailingTextAreRejectedWithOffset() throws IOException {
        FormatException e = rejected("{\"a\": nope}", 0);
        assertTrue(e.getMessage().contains("not valid JSON"), e.getMessage());
        assertTrue(e.offset() >= 8, "offset " + e.offset());
        String dup = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
        assertTrue(rejected(dup, 4).getMessage().contains("Duplicate field 'a'"));
        assertTrue(rejected("{} {}", 0).getMessage().contains("not valid JSON"));
    }

    @Test
    void invalidUtf8HeaderIsRejectedWithOffset() throws IOException {
        Path p = dir.resolve("utf8.safetensors");
        byte[] header = "{\"\u00e9\":1}".getBytes(StandardCharsets.UTF_8);
        header[2] = (byte) 0xFF;
        byte[] file = ByteBuffer.allocate(8 + header.length).order(ByteOrder.LITTLE_ENDIAN).putLong(header.length).put(header).array();
        Files.write(p, file);
        FormatException e = assertThrows(FormatException.class, () -> SafetensorsFile.open(p));
        assertTrue(e.getMessage().contains("not valid UTF-8"), e.getMessage());
        assertEquals(10, e.offset());
    }

    @ParameterizedTest
    @ValueSource(longs = {1L << 62, -1L, 101L << 20, 0, 1})
    void impossibleHeaderLengthIsRejected(long length) throws IOException {
        Path p = dir.resolve("len.safetensors");
        Files.write(p, ByteBuffer.allocate(64).order(ByteOrder.LITTLE_ENDIAN).putLong(length).array());
        FormatException e = assertThrows(FormatException.class, () -> SafetensorsFile.open(p));
        assertTrue(e.getMessage().contains("header length at byte 0"), e.getMessage());
    }

    @Test
    void truncatedFilesAreRejectedAtEveryCut() throws IOException {
        byte[] whole = Files.readAllBytes(tinySafetensors());
        long headerEnd = 8 + ByteBuffer.wrap(whole, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        TreeSet<Long> cuts = new TreeSet<>(List.of(0L, 1L, 7L, 8L, 9L, 100L, headerEnd - 1, headerEnd, headerEnd + 1,
                (long) whole.length / 2, whole.length - 2L, whole.length - 1L));
        Random random = new Random(42);
        while (cuts.size() < 40) {
            cuts.add((long) random.nextInt(whole.length));
        }
        Path p = dir.resolve("cut.safetensors");
        for (long cut : cuts) {
            Files.write(p, Arrays.copyOf(whole, (int) cut));
            assertThrows(FormatException.class, () -> SafetensorsFile.open(p).close(), "cut at " + cut);
        }
    }

    @Test
    void randomByteFlipsInTheHeaderOnlyEverGiveFormatExceptions() throws IOException {
        Random random = new Random(1234);
        Path original = dir.resolve("original.safetensors");
        writeSafetensors(original, randomTensors(random, 30));
        byte[] whole = Files.readAllBytes(original);
        int headerEnd = 8 + (int) ByteBuffer.wrap(whole, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        Path p = dir.resolve("fuzz.safetensors");
        int rejected = 0;
        for (int round = 0; round < 500; round++) {
            byte[] copy = whole.clone();
            for (int flips = 1 + random.nextInt(3); flips > 0; flips--) {
                copy[random.nextInt(headerEnd)] ^= (byte) (1 << random.nextInt(8));
            }
            Files.write(p, copy);
            try (SafetensorsFile f = SafetensorsFile.open(p)) {
                for (CheckpointTensor t : f.tensors()) {
                    assertEquals(t.elementCount() * t.dtype().typeSize(), t.data().byteSize());
                }
            } catch (FormatException expected) {
                rejected++;
            } catch (IOException | RuntimeException e) {
                fail("round " + round + ": only FormatException may come from corrupt bytes, got " + e, e);
            }
        }
        assertTrue(rejected > 250, "most flips break the header; rejected " + rejected);
    }
}
