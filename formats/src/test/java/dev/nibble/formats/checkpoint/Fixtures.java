package dev.nibble.formats.checkpoint;

import dev.nibble.testing.TestData;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.nibble.formats.GgmlType;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Random;

/** Test data paths, a plain safetensors writer and tensor comparisons shared by the checkpoint tests. */
public final class Fixtures {

    private Fixtures() {}

    /** The repository's {@code test-data}: from surefire's {@code nibble.testData}, else found above the working directory. */
    public static Path testData() {
        return TestData.root();
    }

    public static Path tinySafetensors() {
        return testData().resolve("tiny-llama/safetensors/model.safetensors");
    }

    public static Path tinyBin() {
        return testData().resolve("tiny-llama/bin/pytorch_model.bin");
    }

    /** Writes a safetensors file: 8-byte little-endian header length, the header text, then the data region. */
    public static void writeSafetensors(Path out, String headerJson, byte[] data) throws IOException {
        byte[] header = headerJson.getBytes(StandardCharsets.UTF_8);
        try (OutputStream os = Files.newOutputStream(out)) {
            os.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(header.length).array());
            os.write(header);
            os.write(data);
        }
    }

    /** Writes {@code tensors} as one safetensors file, packed in list order, with a little {@code __metadata__}. */
    public static void writeSafetensors(Path out, List<CheckpointTensor> tensors) throws IOException {
        ObjectMapper json = new ObjectMapper();
        ObjectNode header = json.createObjectNode();
        header.putObject("__metadata__").put("format", "pt");
        long offset = 0;
        for (CheckpointTensor t : tensors) {
            ObjectNode entry = header.putObject(t.name());
            entry.put("dtype", t.dtype().name());
            var shape = entry.putArray("shape");
            for (long d : t.shape()) {
                shape.add(d);
            }
            entry.putArray("data_offsets").add(offset).add(offset + t.data().byteSize());
            offset += t.data().byteSize();
        }
        byte[] data = new byte[Math.toIntExact(offset)];
        int at = 0;
        for (CheckpointTensor t : tensors) {
            byte[] bytes = t.data().toArray(ValueLayout.JAVA_BYTE);
            System.arraycopy(bytes, 0, data, at, bytes.length);
            at += bytes.length;
        }
        writeSafetensors(out, json.writeValueAsString(header), data);
    }

    /** Asserts same names in the same order, same dtypes, shapes and bytes. */
    public static void assertSameTensors(List<CheckpointTensor> expected, List<CheckpointTensor> actual) {
        assertEquals(expected.stream().map(CheckpointTensor::name).toList(), actual.stream().map(CheckpointTensor::name).toList());
        for (int i = 0; i < expected.size(); i++) {
            assertSameTensor(expected.get(i), actual.get(i));
        }
    }

    public static void assertSameTensor(CheckpointTensor expected, CheckpointTensor actual) {
        assertEquals(expected.name(), actual.name());
        assertEquals(expected.dtype(), actual.dtype(), expected.name());
        assertArrayEquals(expected.shape(), actual.shape(), expected.name());
        assertEquals(expected.data().byteSize(), actual.data().byteSize(), expected.name());
        assertEquals(-1, expected.data().mismatch(actual.data()), () -> expected.name() + ": bytes differ");
    }

    /** Tensors sorted by name, for comparing files that order their tensors differently. */
    public static List<CheckpointTensor> byName(List<CheckpointTensor> tensors) {
        return tensors.stream().sorted(Comparator.comparing(CheckpointTensor::name)).toList();
    }

    /** Bytes of a segment, for building test files from real tensors. */
    public static byte[] bytes(MemorySegment segment) {
        return segment.toArray(ValueLayout.JAVA_BYTE);
    }

    /** Mixed-dtype tensors with random small shapes and random bytes, held on the heap. */
    public static List<CheckpointTensor> randomTensors(Random random, int count) {
        GgmlType[] dtypes = {GgmlType.F32, GgmlType.F16, GgmlType.BF16};
        List<CheckpointTensor> tensors = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            long[] shape = new long[1 + random.nextInt(3)];
            long n = 1;
            for (int d = 0; d < shape.length; d++) {
                shape[d] = 1 + random.nextInt(9);
                n *= shape[d];
            }
            GgmlType dtype = dtypes[random.nextInt(3)];
            byte[] bytes = new byte[(int) (n * dtype.typeSize())];
            random.nextBytes(bytes);
            tensors.add(new CheckpointTensor("layers." + i + ".weight", dtype, shape, MemorySegment.ofArray(bytes), null));
        }
        return tensors;
    }
}
