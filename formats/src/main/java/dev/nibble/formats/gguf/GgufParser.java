package dev.nibble.formats.gguf;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.GgmlType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Reads and validates the header, metadata and tensor table of a mapped GGUF file. Every length and count is checked
 * against the bytes left in the file before anything is allocated for it, so no input can make it allocate more than
 * the file could describe, and totals over the whole file (array elements, string bytes, keys, tensors) bound what
 * any layout of it can make this reader allocate; any problem becomes a {@link FormatException} naming the item and
 * byte offset.
 */
final class GgufParser {

    /** Header, metadata and tensor table of a valid file. */
    record Header(int version, long alignment, long dataOffset, GgufMetadata metadata, List<GgufTensor> tensors) {
    }

    private static final byte[] MAGIC = {'G', 'G', 'U', 'F'};
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Smallest tensor info: empty name (8-byte length), n_dims, one dim, type, offset. */
    private static final long MIN_TENSOR_INFO = 8 + 4 + 8 + 4 + 8;
    /** Smallest key/value: empty key (8-byte length), value type, one byte of value. */
    private static final long MIN_KV = 8 + 4 + 1;
    /** Arrays of arrays nest at most this deep; deeper nesting is refused rather than risking the stack. */
    private static final int MAX_ARRAY_DEPTH = 64;
    /**
     * Longest array and string accepted: far beyond any real vocabulary (about 300k entries) or chat template, and small
     * enough that one value cannot exhaust the heap even when the file is big enough to hold it.
     */
    static final long MAX_ARRAY_LENGTH = 1 << 22;
    static final long MAX_STRING_BYTES = 1 << 26;
    /*
     * Totals over the whole file, which bound what the metadata and the tensor table can make this reader allocate
     * however the file is laid out (a small entry costs the file a dozen bytes and the heap a hundred): array elements
     * of every key together (a large vocabulary's tokens, scores, types and merges are about 10^6), string bytes of
     * every key and element together (such a vocabulary has about 10 MB), keys, and tensors.
     */
    static final long MAX_METADATA_VALUES = 1 << 22;
    static final long MAX_METADATA_STRING_BYTES = 1 << 27;
    static final long MAX_KEYS = 1 << 16;
    static final long MAX_TENSORS = 1 << 18;
    /** Lists grow from this size rather than trusting a count up front. */
    private static final int INITIAL_CAPACITY = 1 << 12;

    private final Path path;
    private final MemorySegment file;
    private final long size;
    private long pos;
    private String item = "header";
    private long alignmentKeyOffset = -1;
    /** Array elements and string bytes of the metadata read so far, for the totals above. */
    private long metadataValues;
    private long metadataStringBytes;

    GgufParser(Path path, MemorySegment file) {
        this.path = path;
        this.file = file;
        this.size = file.byteSize();
    }

    Header parse() throws FormatException {
        try {
            return parseChecked();
        } catch (IndexOutOfBoundsException | ArithmeticException | IllegalArgumentException | IllegalStateException e) {
            // Every bound is checked explicitly; this only turns an overlooked case into a clean error.
            throw error(pos, "malformed (" + e.getMessage() + ")");
        }
    }

    private Header parseChecked() throws FormatException {
        need(4);
        for (int i = 0; i < MAGIC.length; i++) {
            if (file.get(ValueLayout.JAVA_BYTE, i) != MAGIC[i]) {
                throw error(0, "not a GGUF file (magic is " + hex(0, 4) + ", expected 47 47 55 46 \"GGUF\")");
            }
        }
        pos = 4;
        int version = readU32();
        if (version != 3 && version != 2) {
            String why = Integer.reverseBytes(version) == 3 || Integer.reverseBytes(version) == 2
                    ? "looks big-endian; only little-endian GGUF is supported"
                    : version == 1 ? "is GGUF v1, an obsolete layout; re-convert the model with a current tool"
                    : Integer.compareUnsigned(version, 3) > 0 ? "is newer than this reader; nibble reads GGUF v3 (and v2)"
                    : "is not a GGUF version";
            throw error(4, "version " + Integer.toUnsignedString(version) + " " + why);
        }
        long tensorCount = readCount("tensor count", MIN_TENSOR_INFO);
        long kvCount = readCount("metadata key count", MIN_KV);
        if (tensorCount * MIN_TENSOR_INFO + kvCount * MIN_KV > size - pos) {
            throw error(8, tensorCount + " tensors and " + kvCount + " keys cannot fit in the " + (size - pos) + " bytes left");
        }
        if (tensorCount > MAX_TENSORS) {
            throw error(8, "tensor count " + tensorCount + " is more than this reader accepts (" + MAX_TENSORS
                    + "; the largest models have a few thousand)");
        }
        if (kvCount > MAX_KEYS) {
            throw error(16, "metadata key count " + kvCount + " is more than this reader accepts (" + MAX_KEYS
                    + "; models have a few dozen)");
        }

        GgufMetadata metadata = readMetadata(kvCount);
        long alignment = alignment(metadata);
        int capacity = (int) Math.min(tensorCount, INITIAL_CAPACITY);
        List<GgufTensorInfo> infos = new ArrayList<>(capacity);
        List<Long> offsets = new ArrayList<>(capacity);
        List<Long> infoStarts = new ArrayList<>(capacity);
        Set<String> names = new HashSet<>();
        for (long i = 0; i < tensorCount; i++) {
            item = "tensor #" + i;
            long start = pos;
            GgufTensorInfo info = readTensorInfo();
            if (!names.add(info.name())) {
                throw error(start, "duplicate tensor name");
            }
            infoStarts.add(start);
            infos.add(info);
            offsets.add(readOffset(alignment));
        }
        item = "header";
        long dataOffset = alignUp(pos, alignment);
        if (!infos.isEmpty() && dataOffset > size) {
            throw error(pos, "tensor data would start at byte " + dataOffset + ", past the end of the " + size + "-byte file");
        }
        return new Header(version, alignment, dataOffset, metadata, slices(infos, offsets, infoStarts, dataOffset));
    }

    private long readCount(String what, long minEach) throws FormatException {
        long at = pos;
        long n = readU64();
        if (n < 0 || n > (size - pos) / minEach) {
            throw error(at, what + " " + Long.toUnsignedString(n) + " is impossible: the " + (size - pos)
                    + " bytes left hold at most " + (size - pos) / minEach);
        }
        return n;
    }

    private GgufMetadata readMetadata(long kvCount) throws FormatException {
        GgufMetadata.Builder builder = GgufMetadata.builder();
        Set<String> keys = new HashSet<>();
        for (long i = 0; i < kvCount; i++) {
            item = "key #" + i;
            long start = pos;
            String key = readName();
            item = "key '" + key + "'";
            if (!keys.add(key)) {
                throw error(start, "duplicate key");
            }
            if (key.equals(GgufFile.ALIGNMENT_KEY)) {
                alignmentKeyOffset = start;
            }
            GgufValueType type = readValueType();
            builder.put(key, new GgufValue(type, readValue(type, 0)));
        }
        return builder.build();
    }

    private long alignment(GgufMetadata metadata) throws FormatException {
        item = "key '" + GgufFile.ALIGNMENT_KEY + "'";
        GgufValue v = metadata.get(GgufFile.ALIGNMENT_KEY).orElse(null);
        if (v == null) {
            return GgufFile.DEFAULT_ALIGNMENT;
        }
        if (v.type() != GgufValueType.UINT32) {
            throw error(alignmentKeyOffset, "must be a UINT32, is " + v.type());
        }
        long a = v.asLong();
        if (a == 0 || Long.bitCount(a) != 1) {
            throw error(alignmentKeyOffset, a + " is not a power of two");
        }
        return a;
    }

    private GgufValueType readValueType() throws FormatException {
        long at = pos;
        int id = readU32();
        GgufValueType type = GgufValueType.fromId(Integer.toUnsignedLong(id));
        if (type == null) {
            throw error(at, "unknown value type " + Integer.toUnsignedString(id));
        }
        return type;
    }

    private Object readValue(GgufValueType type, int depth) throws FormatException {
        return switch (type) {
            case UINT8 -> (long) Byte.toUnsignedInt(readBytes(1)[0]);
            case INT8 -> (long) readBytes(1)[0];
            case UINT16 -> (long) Short.toUnsignedInt(readU16());
            case INT16 -> (long) readU16();
            case UINT32 -> Integer.toUnsignedLong(readU32());
            case INT32 -> (long) readU32();
            case UINT64, INT64 -> readU64();
            case FLOAT32 -> readF32();
            case FLOAT64 -> readF64();
            case BOOL -> readBool();
            case STRING -> readString(false);
            case ARRAY -> readArray(depth);
        };
    }

    private boolean readBool() throws FormatException {
        long at = pos;
        byte b = readBytes(1)[0];
        if (b != 0 && b != 1) {
            throw error(at, "bool is " + b + ", must be 0 or 1");
        }
        return b == 1;
    }

    private GgufArray readArray(int depth) throws FormatException {
        if (depth >= MAX_ARRAY_DEPTH) {
            throw error(pos, "arrays nested deeper than " + MAX_ARRAY_DEPTH);
        }
        GgufValueType elementType = readValueType();
        long at = pos;
        long n = readU64();
        if (n < 0 || n > (size - pos) / elementType.minSize()) {
            throw error(at, "array of " + Long.toUnsignedString(n) + " " + elementType + " cannot fit in the "
                    + (size - pos) + " bytes left");
        }
        if (n > MAX_ARRAY_LENGTH) {
            throw error(at, "array of " + n + " elements is longer than this reader accepts (" + MAX_ARRAY_LENGTH + ")");
        }
        if (n > MAX_METADATA_VALUES - metadataValues) {
            throw error(at, "array of " + n + " elements would bring the metadata to " + (metadataValues + n)
                    + " array elements in all, more than this reader accepts (" + MAX_METADATA_VALUES + ")");
        }
        metadataValues += n;
        List<Object> elements = new ArrayList<>((int) Math.min(n, INITIAL_CAPACITY));
        for (long i = 0; i < n; i++) {
            elements.add(readValue(elementType, depth + 1));
        }
        return new GgufArray(elementType, elements);
    }

    private GgufTensorInfo readTensorInfo() throws FormatException {
        long start = pos;
        String name = readName();
        item = "tensor '" + name + "'";
        long at = pos;
        int nDims = readU32();
        if (nDims < 1 || nDims > GgufTensorInfo.MAX_DIMS) {
            throw error(at, "n_dims is " + Integer.toUnsignedString(nDims) + ", must be 1 to " + GgufTensorInfo.MAX_DIMS);
        }
        long[] dims = new long[nDims];
        for (int d = 0; d < nDims; d++) {
            dims[d] = readU64();
        }
        at = pos;
        int typeId = readU32();
        GgmlType type = GgmlType.fromId(Integer.toUnsignedLong(typeId));
        if (type == null) {
            throw error(at, "unknown type id " + Integer.toUnsignedString(typeId));
        }
        String problem = GgufTensorInfo.checkShape(type, dims);
        if (problem != null) {
            throw error(start, problem);
        }
        return new GgufTensorInfo(name, type, dims);
    }

    private long readOffset(long alignment) throws FormatException {
        long at = pos;
        long offset = readU64();
        if (offset < 0 || offset % alignment != 0) {
            throw error(at, "data offset " + Long.toUnsignedString(offset) + " is not a multiple of the alignment " + alignment);
        }
        return offset;
    }

    private List<GgufTensor> slices(List<GgufTensorInfo> infos, List<Long> offsets, List<Long> infoStarts, long dataOffset)
            throws FormatException {
        List<GgufTensor> out = new ArrayList<>(infos.size());
        long dataSize = size - dataOffset;
        long previousEnd = 0;
        for (int i = 0; i < infos.size(); i++) {
            GgufTensorInfo info = infos.get(i);
            item = "tensor '" + info.name() + "'";
            long offset = offsets.get(i);
            long bytes = info.byteSize();
            if (offset < previousEnd) {
                throw error(infoStarts.get(i), "data offset " + offset + " overlaps or precedes the previous tensor, which ends at "
                        + previousEnd + " (offsets must increase)");
            }
            if (offset > dataSize || bytes > dataSize - offset) {
                throw error(infoStarts.get(i), bytes + " bytes of data at file offset " + (dataOffset + offset)
                        + " run past the end of the " + size + "-byte file");
            }
            out.add(new GgufTensor(info, dataOffset + offset, file.asSlice(dataOffset + offset, bytes).asReadOnly()));
            previousEnd = offset + bytes;
        }
        return List.copyOf(out);
    }

    private String readName() throws FormatException {
        return readString(true);
    }

    /** Keys and tensor names must be valid UTF-8; string values are decoded leniently, as llama.cpp keeps raw bytes. */
    private String readString(boolean strict) throws FormatException {
        long at = pos;
        long n = readU64();
        if (n < 0 || n > size - pos) {
            throw error(at, "string length " + Long.toUnsignedString(n) + " exceeds the " + (size - pos) + " bytes left");
        }
        if (n > MAX_STRING_BYTES) {
            throw error(at, "string of " + n + " bytes is longer than this reader accepts (" + MAX_STRING_BYTES + ")");
        }
        if (n > MAX_METADATA_STRING_BYTES - metadataStringBytes) {
            throw error(at, "string of " + n + " bytes would bring the strings of the metadata and tensor names to "
                    + (metadataStringBytes + n) + " bytes in all, more than this reader accepts ("
                    + MAX_METADATA_STRING_BYTES + ")");
        }
        metadataStringBytes += n;
        byte[] bytes = readBytes((int) n);
        if (!strict) {
            return new String(bytes, StandardCharsets.UTF_8);
        }
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes)).toString();
        } catch (CharacterCodingException e) {
            throw error(at, "name is not valid UTF-8");
        }
    }

    private byte[] readBytes(int n) throws FormatException {
        need(n);
        byte[] out = new byte[n];
        MemorySegment.copy(file, ValueLayout.JAVA_BYTE, pos, out, 0, n);
        pos += n;
        return out;
    }

    private short readU16() throws FormatException {
        need(2);
        short v = file.get(U16, pos);
        pos += 2;
        return v;
    }

    private int readU32() throws FormatException {
        need(4);
        int v = file.get(U32, pos);
        pos += 4;
        return v;
    }

    private long readU64() throws FormatException {
        need(8);
        long v = file.get(U64, pos);
        pos += 8;
        return v;
    }

    private float readF32() throws FormatException {
        need(4);
        float v = file.get(F32, pos);
        pos += 4;
        return v;
    }

    private double readF64() throws FormatException {
        need(8);
        double v = file.get(F64, pos);
        pos += 8;
        return v;
    }

    private void need(long n) throws FormatException {
        if (n > size - pos) {
            throw error(pos, "file ends after " + size + " bytes, " + n + " more needed (truncated?)");
        }
    }

    private String hex(long from, int n) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < n; i++) {
            sb.append(i == 0 ? "" : " ").append(String.format("%02x", file.get(ValueLayout.JAVA_BYTE, from + i)));
        }
        return sb.toString();
    }

    static long alignUp(long x, long alignment) {
        return Math.addExact(x, alignment - 1) & -alignment;
    }

    private FormatException error(long offset, String problem) {
        return new FormatException(path, item, offset, problem);
    }
}
