package dev.nibble.formats.safetensors;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.nibble.formats.FormatException;
import dev.nibble.formats.GgmlType;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/** One safetensors file, mapped read-only; its tensors are zero-copy views of the mapping. */
public final class SafetensorsFile implements AutoCloseable {

    /** Headers are JSON text of a few KB per thousand tensors; anything near this size is not a real header. */
    static final long MAX_HEADER_BYTES = 100L << 20;

    private static final JsonMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    private final Path path;
    private final Arena arena;
    private final Map<String, String> metadata;
    private final List<CheckpointTensor> tensors;
    private final Map<String, CheckpointTensor> byName;

    private SafetensorsFile(Path path, Arena arena, Map<String, String> metadata, List<CheckpointTensor> tensors) {
        this.path = path;
        this.arena = arena;
        this.metadata = metadata;
        this.tensors = tensors;
        this.byName = new LinkedHashMap<>();
        for (CheckpointTensor t : tensors) {
            byName.put(t.name(), t);
        }
    }

    /** Maps {@code path} and validates the header and every tensor's byte range against the file. */
    public static SafetensorsFile open(Path path) throws IOException {
        Arena arena = Arena.ofShared();
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = channel.size();
            if (size < 8) {
                throw new FormatException(path, "header length", 0, "file is " + size + " bytes, shorter than the 8-byte header length");
            }
            MemorySegment file = channel.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            return parse(path, file, arena);
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    private static SafetensorsFile parse(Path path, MemorySegment file, Arena arena) throws FormatException {
        long size = file.byteSize();
        long headerLength = file.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
        if (headerLength < 2 || headerLength > size - 8 || headerLength > MAX_HEADER_BYTES) {
            throw new FormatException(path, "header length", 0, "declares a " + Long.toUnsignedString(headerLength)
                    + "-byte JSON header, but the file has " + (size - 8) + " bytes after the length (and headers are capped at "
                    + MAX_HEADER_BYTES + " bytes); the file is truncated or not safetensors");
        }
        byte[] header = file.asSlice(8, headerLength).toArray(ValueLayout.JAVA_BYTE);
        checkUtf8(path, header);
        JsonNode root;
        try (JsonParser parser = JSON.createParser(header)) {
            root = JSON.readTree(parser);
        } catch (JsonProcessingException e) {
            long at = e.getLocation() == null ? -1 : 8 + Math.max(0, e.getLocation().getByteOffset());
            throw new FormatException(path, "JSON header", at, "is not valid JSON: " + e.getOriginalMessage(), e);
        } catch (IOException e) {
            throw new FormatException(path, "JSON header", 8, "cannot be parsed: " + e.getMessage(), e);
        }
        if (root == null || !root.isObject()) {
            throw new FormatException(path, "JSON header", 8, "must be a JSON object mapping tensor names to {dtype, shape, data_offsets}");
        }
        long dataStart = 8 + headerLength;
        long dataSize = size - dataStart;
        Map<String, String> metadata = new LinkedHashMap<>();
        List<Entry> entries = new ArrayList<>();
        for (Map.Entry<String, JsonNode> field : root.properties()) {
            if (field.getKey().equals("__metadata__")) {
                readMetadata(path, field.getValue(), metadata);
            } else {
                entries.add(readEntry(path, field.getKey(), field.getValue(), dataStart, dataSize));
            }
        }
        checkNoOverlap(path, entries, dataStart);
        List<CheckpointTensor> tensors = new ArrayList<>(entries.size());
        for (Entry e : entries) {
            MemorySegment data = file.asSlice(dataStart + e.begin, e.end - e.begin);
            tensors.add(new CheckpointTensor(e.name, e.dtype, e.shape, data, path));
        }
        return new SafetensorsFile(path, arena, Collections.unmodifiableMap(metadata), List.copyOf(tensors));
    }

    private static void checkUtf8(Path path, byte[] header) throws FormatException {
        CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder();
        ByteBuffer in = ByteBuffer.wrap(header);
        CharBuffer out = CharBuffer.allocate(header.length);
        CoderResult result = decoder.decode(in, out, true);
        if (result.isError()) {
            throw new FormatException(path, "JSON header", 8 + in.position(), "is not valid UTF-8");
        }
    }

    private static void readMetadata(Path path, JsonNode node, Map<String, String> metadata) throws FormatException {
        if (!node.isObject()) {
            throw new FormatException(path, "__metadata__", -1, "must be an object of string values");
        }
        for (Map.Entry<String, JsonNode> e : node.properties()) {
            if (!e.getValue().isTextual()) {
                throw new FormatException(path, "__metadata__ '" + e.getKey() + "'", -1, "must be a string, not " + e.getValue().getNodeType());
            }
            metadata.put(e.getKey(), e.getValue().textValue());
        }
    }

    private record Entry(String name, GgmlType dtype, long[] shape, long begin, long end) {}

    private static Entry readEntry(Path path, String name, JsonNode node, long dataStart, long dataSize) throws FormatException {
        String item = "tensor '" + name + "'";
        if (!node.isObject()) {
            throw new FormatException(path, item, -1, "must be an object with dtype, shape and data_offsets");
        }
        JsonNode dtypeNode = node.get("dtype");
        if (dtypeNode == null || !dtypeNode.isTextual()) {
            throw new FormatException(path, item, -1, "has no string 'dtype'");
        }
        GgmlType dtype = switch (dtypeNode.textValue()) {
            case "F32" -> GgmlType.F32;
            case "F16" -> GgmlType.F16;
            case "BF16" -> GgmlType.BF16;
            default -> throw new FormatException(path, "header", -1, "tensor '" + name + "' has dtype " + dtypeNode.textValue()
                    + "; nibble reads F32, F16 and BF16");
        };
        long[] shape = longArray(path, item, "shape", node.get("shape"), -1);
        long[] offsets = longArray(path, item, "data_offsets", node.get("data_offsets"), 2);
        long begin = offsets[0];
        long end = offsets[1];
        if (begin > end || end > dataSize) {
            throw new FormatException(path, item, dataStart + begin, "data_offsets [" + begin + ", " + end
                    + "] do not lie within the " + dataSize + "-byte data region");
        }
        long elements = 1;
        try {
            for (long d : shape) {
                elements = Math.multiplyExact(elements, d);
            }
            long expected = Math.multiplyExact(elements, (long) dtype.typeSize());
            if (expected != end - begin) {
                throw new FormatException(path, item, dataStart + begin, "shape " + Arrays.toString(shape) + " of " + dtype
                        + " needs " + expected + " bytes, but data_offsets [" + begin + ", " + end + "] span " + (end - begin));
            }
        } catch (ArithmeticException e) {
            throw new FormatException(path, item, -1, "shape " + Arrays.toString(shape) + " has more elements than a long can count");
        }
        return new Entry(name, dtype, shape, begin, end);
    }

    /** Reads an array of non-negative integers; {@code length} -1 accepts any length. */
    private static long[] longArray(Path path, String item, String key, JsonNode node, int length) throws FormatException {
        if (node == null || !node.isArray() || (length >= 0 && node.size() != length)) {
            throw new FormatException(path, item, -1, "'" + key + "' must be an array of "
                    + (length >= 0 ? length + " " : "") + "non-negative integers");
        }
        long[] values = new long[node.size()];
        for (int i = 0; i < values.length; i++) {
            JsonNode v = node.get(i);
            if (!v.isIntegralNumber() || !v.canConvertToLong() || v.longValue() < 0) {
                throw new FormatException(path, item, -1, "'" + key + "'[" + i + "] is " + v + ", not a non-negative integer");
            }
            values[i] = v.longValue();
        }
        return values;
    }

    private static void checkNoOverlap(Path path, List<Entry> entries, long dataStart) throws FormatException {
        List<Entry> sorted = new ArrayList<>(entries);
        sorted.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
        Entry previous = null;
        for (Entry e : sorted) {
            if (e.begin == e.end) {
                continue;
            }
            if (previous != null && e.begin < previous.end) {
                throw new FormatException(path, "tensor '" + e.name + "'", dataStart + e.begin, "data_offsets [" + e.begin + ", " + e.end
                        + "] overlap tensor '" + previous.name + "' [" + previous.begin + ", " + previous.end + "]");
            }
            previous = e;
        }
    }

    public Path path() {
        return path;
    }

    /** The {@code __metadata__} string map (empty when the header has none). */
    public Map<String, String> metadata() {
        return metadata;
    }

    /** Every tensor, in header order. */
    public List<CheckpointTensor> tensors() {
        return tensors;
    }

    public Optional<CheckpointTensor> tensor(String name) {
        return Optional.ofNullable(byName.get(name));
    }

    /** Unmaps the file; tensors from it must not be used afterwards. */
    @Override
    public void close() {
        arena.close();
    }
}
