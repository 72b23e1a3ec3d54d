package dev.nibble.formats.gguf;

import static dev.nibble.formats.gguf.RawGguf.ARRAY;
import static dev.nibble.formats.gguf.RawGguf.BOOL;
import static dev.nibble.formats.gguf.RawGguf.INT32;
import static dev.nibble.formats.gguf.RawGguf.STRING;
import static dev.nibble.formats.gguf.RawGguf.TYPE_F32;
import static dev.nibble.formats.gguf.RawGguf.TYPE_Q4_0;
import static dev.nibble.formats.gguf.RawGguf.UINT64;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.GgmlType;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every way a GGUF file can break the format is refused with a FormatException naming file, item and offset. */
class GgufBadInputTest {

    private static final long HUGE = 1L << 62;

    @TempDir
    Path dir;

    /** A valid file: two tensors (F32 8x2 at 0, Q4_0 32 at 64), three keys. Data bytes are 1, 2, 3, ... */
    private static RawGguf validFile() {
        RawGguf raw = RawGguf.header(3, 2, 3)
                .kvU32("general.alignment", 32)
                .kvString("general.name", "tiny")
                .str("list").u32(ARRAY).u32(INT32).u64(3).u32(7).u32(-1).u32(9)
                .tensor("a", TYPE_F32, 0, 8, 2)
                .tensor("b", TYPE_Q4_0, 64, 32)
                .pad(32);
        for (int i = 1; i <= 64 + 18; i++) {
            raw.u8(i);
        }
        return raw.pad(32);
    }

    @Test
    void handBuiltFileIsReadWithItsValuesAndSlices() throws IOException {
        byte[] bytes = validFile().toBytes();
        try (GgufFile f = GgufFile.open(RawGguf.write(dir.resolve("ok.gguf"), bytes, bytes.length))) {
            assertEquals(3, f.version());
            assertEquals(32, f.alignment());
            assertEquals(List.of("general.alignment", "general.name", "list"), List.copyOf(f.metadata().keys()));
            assertEquals("tiny", f.metadata().getString("general.name"));
            assertArrayEquals(new int[] {7, -1, 9}, f.metadata().getIntArray("list"));
            GgufTensor a = f.tensor("a").orElseThrow();
            GgufTensor b = f.tensor("b").orElseThrow();
            assertArrayEquals(new long[] {8, 2}, a.dims());
            assertEquals(f.dataOffset(), a.fileOffset());
            assertEquals(f.dataOffset() + 64, b.fileOffset());
            assertEquals(64, a.data().byteSize());
            assertEquals(18, b.data().byteSize());
            assertEquals(1, a.data().get(ValueLayout.JAVA_BYTE, 0));
            assertEquals(65, b.data().get(ValueLayout.JAVA_BYTE, 0));
            assertEquals(82, b.data().get(ValueLayout.JAVA_BYTE, 17));
        }
    }

    @Test
    void wrongMagicIsRejectedAtByteZero() throws IOException {
        byte[] bytes = validFile().toBytes();
        bytes[3] = 'L';
        FormatException e = rejects(bytes);
        assertEquals(0, e.offset());
        assertTrue(e.getMessage().contains("header") && e.getMessage().contains("not a GGUF file"), e.getMessage());
    }

    @Test
    void versionsOneAndFourAreRejectedAndTwoIsRead() throws IOException {
        for (int version : new int[] {1, 4, 0x03000000}) {
            byte[] bytes = validFile().toBytes();
            bytes[4] = (byte) version;
            bytes[7] = (byte) (version >>> 24);
            FormatException e = rejects(bytes);
            assertEquals(4, e.offset());
            assertTrue(e.getMessage().contains("version"), e.getMessage());
        }
        byte[] v2 = validFile().toBytes();
        v2[4] = 2;
        try (GgufFile f = GgufFile.open(RawGguf.write(dir.resolve("v2.gguf"), v2, v2.length))) {
            assertEquals(2, f.version());
        }
    }

    @Test
    void absurdTensorCountIsRejectedWithoutAllocating() throws IOException {
        FormatException e = rejects(RawGguf.header(3, HUGE, 0).zeros(64).toBytes());
        assertEquals(8, e.offset());
        assertTrue(e.getMessage().contains("tensor count " + HUGE), e.getMessage());
        assertEquals(8, rejects(RawGguf.header(3, -1, 0).zeros(64).toBytes()).offset());
    }

    @Test
    void absurdKeyCountIsRejectedWithoutAllocating() throws IOException {
        FormatException e = rejects(RawGguf.header(3, 0, HUGE).zeros(64).toBytes());
        assertEquals(16, e.offset());
        assertTrue(e.getMessage().contains("key count " + HUGE), e.getMessage());
    }

    @Test
    void countsThatTogetherExceedTheFileAreRejected() throws IOException {
        // Each count alone fits the 200 bytes left, both together do not.
        FormatException e = rejects(RawGguf.header(3, 5, 12).zeros(200).toBytes());
        assertEquals(8, e.offset());
    }

    @Test
    void absurdKeyLengthIsRejectedAtTheLength() throws IOException {
        FormatException e = rejects(RawGguf.header(3, 0, 1).u64(HUGE).zeros(64).toBytes());
        assertEquals(24, e.offset());
        assertTrue(e.getMessage().contains("key #0") && e.getMessage().contains("string length " + HUGE), e.getMessage());
    }

    @Test
    void absurdStringValueLengthIsRejectedNamingTheKey() throws IOException {
        RawGguf raw = RawGguf.header(3, 0, 1).str("name").u32(STRING);
        int at = raw.size();
        FormatException e = rejects(raw.u64(HUGE).zeros(64).toBytes());
        assertEquals(at, e.offset());
        assertTrue(e.getMessage().contains("key 'name'"), e.getMessage());
    }

    @Test
    void absurdArrayLengthIsRejectedNamingTheKey() throws IOException {
        for (int elementType : new int[] {RawGguf.UINT8, STRING, ARRAY}) {
            RawGguf raw = RawGguf.header(3, 0, 1).str("arr").u32(ARRAY).u32(elementType);
            int at = raw.size();
            FormatException e = rejects(raw.u64(HUGE).zeros(64).toBytes());
            assertEquals(at, e.offset());
            assertTrue(e.getMessage().contains("key 'arr'"), e.getMessage());
        }
    }

    @Test
    void arrayOfStringsLongerThanTheirLengthPrefixesAllowIsRejected() throws IOException {
        // 40 bytes follow: room for 40 one-byte elements but only 5 string length prefixes.
        FormatException e = rejects(RawGguf.header(3, 0, 1).str("s").u32(ARRAY).u32(STRING).u64(6).zeros(40).toBytes());
        assertTrue(e.getMessage().contains("cannot fit"), e.getMessage());
    }

    @Test
    void arraysAndStringsBeyondTheReadersLimitsAreRejectedBeforeReading() throws IOException {
        RawGguf array = RawGguf.header(3, 0, 1).str("big").u32(ARRAY).u32(RawGguf.UINT8);
        int arrayAt = array.size();
        Path arrayFile = array.u64(GgufParser.MAX_ARRAY_LENGTH + 1).writeTo(dir.resolve("array.gguf"));
        sparselyExtend(arrayFile, GgufParser.MAX_ARRAY_LENGTH + 1);
        FormatException e = assertThrows(FormatException.class, () -> GgufFile.open(arrayFile).close());
        assertEquals(arrayAt, e.offset());
        assertTrue(e.getMessage().contains("longer than this reader accepts"), e.getMessage());

        RawGguf string = RawGguf.header(3, 0, 1).str("big").u32(STRING);
        int stringAt = string.size();
        Path stringFile = string.u64(GgufParser.MAX_STRING_BYTES + 1).writeTo(dir.resolve("string.gguf"));
        sparselyExtend(stringFile, GgufParser.MAX_STRING_BYTES + 1);
        e = assertThrows(FormatException.class, () -> GgufFile.open(stringFile).close());
        assertEquals(stringAt, e.offset());
        assertTrue(e.getMessage().contains("longer than this reader accepts"), e.getMessage());
    }

    @Test
    void manyKeysAreRefusedAtTheCountWithTheNumbers() throws IOException {
        // Issue 11: 2^24 keys of empty arrays (a 201 MB file) made the reader build 2.4 GB of objects.
        long keys = GgufParser.MAX_KEYS + 1;
        Path file = RawGguf.header(3, 0, keys).writeTo(dir.resolve("keys.gguf"));
        sparselyExtend(file, keys * 32);
        FormatException e = assertThrows(FormatException.class, () -> GgufFile.open(file).close());
        assertEquals(16, e.offset());
        assertTrue(e.getMessage().contains("key count " + keys) && e.getMessage().contains("(" + GgufParser.MAX_KEYS),
                e.getMessage());
    }

    @Test
    void manyTensorsAreRefusedAtTheCountWithTheNumbers() throws IOException {
        long tensors = GgufParser.MAX_TENSORS + 1;
        Path file = RawGguf.header(3, tensors, 0).writeTo(dir.resolve("tensors.gguf"));
        sparselyExtend(file, tensors * 40);
        FormatException e = assertThrows(FormatException.class, () -> GgufFile.open(file).close());
        assertEquals(8, e.offset());
        assertTrue(e.getMessage().contains("tensor count " + tensors) && e.getMessage().contains("(" + GgufParser.MAX_TENSORS),
                e.getMessage());
    }

    @Test
    void arrayElementsAreBoundedInTotalNotJustPerArray() throws IOException {
        // Two arrays, each within the per-array limit, that together exceed the total: refused at the second's count.
        long half = GgufParser.MAX_METADATA_VALUES / 2;
        RawGguf raw = RawGguf.header(3, 0, 2).str("a").u32(ARRAY).u32(RawGguf.UINT8).u64(half).zeros((int) half)
                .str("b").u32(ARRAY).u32(RawGguf.UINT8);
        int at = raw.size();
        raw.u64(half + 1).zeros((int) half + 1);
        FormatException e = rejects(raw.toBytes());
        assertEquals(at, e.offset());
        assertTrue(e.getMessage().contains("key 'b'") && e.getMessage().contains((2 * half + 1) + " array elements in all")
                && e.getMessage().contains("(" + GgufParser.MAX_METADATA_VALUES + ")"), e.getMessage());
    }

    @Test
    void nestedArraysCountEveryElementTowardsTheTotal() throws IOException {
        // An array of arrays: the inner arrays' elements count too, so nesting cannot multiply what the total allows.
        long half = GgufParser.MAX_METADATA_VALUES / 2;
        RawGguf raw = RawGguf.header(3, 0, 1).str("n").u32(ARRAY).u32(ARRAY).u64(2)
                .u32(RawGguf.UINT8).u64(half).zeros((int) half).u32(RawGguf.UINT8);
        int at = raw.size();
        raw.u64(half).zeros((int) half);
        FormatException e = rejects(raw.toBytes());
        assertEquals(at, e.offset());
        assertTrue(e.getMessage().contains("array elements in all"), e.getMessage());
    }

    private static void sparselyExtend(Path file, long bytes) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(f.length() + bytes);
        }
    }

    @Test
    void unknownValueTypeIsRejectedNamingTheKey() throws IOException {
        RawGguf raw = RawGguf.header(3, 0, 1).str("k");
        int at = raw.size();
        FormatException e = rejects(raw.u32(13).zeros(16).toBytes());
        assertEquals(at, e.offset());
        assertTrue(e.getMessage().contains("key 'k'") && e.getMessage().contains("unknown value type 13"), e.getMessage());
        assertTrue(rejects(RawGguf.header(3, 0, 1).str("k").u32(ARRAY).u32(99).u64(1).zeros(16).toBytes())
                .getMessage().contains("unknown value type 99"));
    }

    @Test
    void boolOtherThanZeroOrOneIsRejected() throws IOException {
        assertTrue(rejects(RawGguf.header(3, 0, 1).str("b").u32(BOOL).u8(2).toBytes()).getMessage().contains("bool"));
    }

    @Test
    void arraysNestedTooDeepAreRejected() throws IOException {
        RawGguf raw = RawGguf.header(3, 0, 1).str("deep").u32(ARRAY);
        for (int i = 0; i < 100; i++) {
            raw.u32(ARRAY).u64(1);
        }
        assertTrue(rejects(raw.u32(INT32).u64(0).toBytes()).getMessage().contains("nested"));
    }

    @Test
    void badDimensionCountsAreRejected() throws IOException {
        for (long nDims : new long[] {0, 5, 0xFFFF_FFFFL}) {
            RawGguf raw = RawGguf.header(3, 1, 0).str("t");
            int at = raw.size();
            FormatException e = rejects(raw.u32(nDims).zeros(80).toBytes());
            assertEquals(at, e.offset());
            assertTrue(e.getMessage().contains("tensor 't'") && e.getMessage().contains("n_dims"), e.getMessage());
        }
    }

    @Test
    void dimsThatOverflowOrAreZeroOrNegativeAreRejected() throws IOException {
        long[][] bad = {{1L << 32, 1L << 32}, {1L << 62, 4}, {0, 3}, {4, -1}, {Long.MAX_VALUE}};
        for (long[] dims : bad) {
            FormatException e = rejects(RawGguf.header(3, 1, 0).tensor("t", TYPE_F32, 0, dims).pad(32).zeros(64).toBytes());
            assertEquals(24, e.offset(), Arrays.toString(dims));
            assertTrue(e.getMessage().contains("tensor 't'"), e.getMessage());
        }
    }

    @Test
    void unknownTensorTypeIsRejectedWithItsId() throws IOException {
        RawGguf raw = RawGguf.header(3, 1, 0).str("x").u32(1).u64(32);
        int at = raw.size();
        FormatException e = rejects(raw.u32(77).u64(0).pad(32).zeros(128).toBytes());
        assertEquals(at, e.offset());
        assertTrue(e.getMessage().contains("tensor 'x' at byte " + at + ": unknown type id 77"), e.getMessage());
    }

    @Test
    void rowNotAMultipleOfTheBlockSizeIsRejected() throws IOException {
        FormatException e = rejects(RawGguf.header(3, 1, 0).tensor("q", TYPE_Q4_0, 0, 33).pad(32).zeros(64).toBytes());
        assertTrue(e.getMessage().contains("tensor 'q'") && e.getMessage().contains("block size 32"), e.getMessage());
    }

    @Test
    void alignmentMustBeAUint32PowerOfTwo() throws IOException {
        for (long alignment : new long[] {0, 48, 0x8000_0001L}) {
            FormatException e = rejects(RawGguf.header(3, 0, 1).kvU32("general.alignment", alignment).toBytes());
            assertEquals(24, e.offset());
            assertTrue(e.getMessage().contains("general.alignment") && e.getMessage().contains("power of two"), e.getMessage());
        }
        FormatException e = rejects(RawGguf.header(3, 0, 1).str("general.alignment").u32(UINT64).u64(32).toBytes());
        assertTrue(e.getMessage().contains("must be a UINT32"), e.getMessage());
    }

    @Test
    void unalignedTensorOffsetIsRejected() throws IOException {
        RawGguf raw = RawGguf.header(3, 1, 0).str("t").u32(1).u64(4).u32(TYPE_F32);
        int at = raw.size();
        FormatException e = rejects(raw.u64(4).pad(32).zeros(64).toBytes());
        assertEquals(at, e.offset());
        assertTrue(e.getMessage().contains("not a multiple of the alignment 32"), e.getMessage());
    }

    @Test
    void overlappingTensorsAreRejected() throws IOException {
        FormatException e = rejects(twoTensors(0, 32));
        assertTrue(e.getMessage().contains("tensor 'b'") && e.getMessage().contains("overlaps"), e.getMessage());
    }

    @Test
    void outOfOrderTensorsAreRejected() throws IOException {
        FormatException e = rejects(twoTensors(64, 0));
        assertTrue(e.getMessage().contains("tensor 'b'") && e.getMessage().contains("offsets must increase"), e.getMessage());
    }

    @Test
    void tensorDataPastTheEndOfTheFileIsRejected() throws IOException {
        FormatException e = rejects(twoTensors(0, 96));
        assertTrue(e.getMessage().contains("tensor 'b'") && e.getMessage().contains("past the end"), e.getMessage());
        assertTrue(rejects(twoTensors(0, 1L << 40)).getMessage().contains("past the end"));
        assertTrue(rejects(twoTensors(0, Long.MIN_VALUE)).getMessage().contains("tensor 'b'"));
    }

    /** Tensors a and b of 64 bytes each at the given offsets, with 128 bytes of data. */
    private static byte[] twoTensors(long offsetA, long offsetB) {
        return RawGguf.header(3, 2, 0).tensor("a", TYPE_F32, offsetA, 16).tensor("b", TYPE_F32, offsetB, 16)
                .pad(32).zeros(128).toBytes();
    }

    @Test
    void duplicateKeysAreRejected() throws IOException {
        RawGguf raw = RawGguf.header(3, 0, 2).kvU32("k", 1);
        int at = raw.size();
        FormatException e = rejects(raw.kvU32("k", 2).toBytes());
        assertEquals(at, e.offset());
        assertTrue(e.getMessage().contains("key 'k'") && e.getMessage().contains("duplicate"), e.getMessage());
    }

    @Test
    void duplicateTensorNamesAreRejected() throws IOException {
        RawGguf raw = RawGguf.header(3, 2, 0).tensor("w", TYPE_F32, 0, 16);
        int at = raw.size();
        FormatException e = rejects(raw.tensor("w", TYPE_F32, 64, 16).pad(32).zeros(128).toBytes());
        assertEquals(at, e.offset());
        assertTrue(e.getMessage().contains("tensor 'w'") && e.getMessage().contains("duplicate"), e.getMessage());
    }

    @Test
    void keyThatIsNotUtf8IsRejected() throws IOException {
        FormatException e = rejects(RawGguf.header(3, 0, 1).u64(2).bytes(0xC3, 0x28).u32(RawGguf.UINT8).u8(1).toBytes());
        assertEquals(24, e.offset());
        assertTrue(e.getMessage().contains("UTF-8"), e.getMessage());
    }

    @Test
    void everyTruncationOfTheHeaderTableAndDataIsRejected() throws IOException {
        byte[] bytes = validFile().toBytes();
        int dataEnd = bytes.length - 14; // the last tensor ends 14 bytes before the final padding does
        Path file = dir.resolve("cut.gguf");
        for (int length = 0; length < dataEnd; length++) {
            RawGguf.write(file, bytes, length);
            FormatException e = assertThrows(FormatException.class, () -> GgufFile.open(file).close(), "length " + length);
            assertTrue(e.offset() <= length, "offset " + e.offset() + " for length " + length);
            assertTrue(e.getMessage().startsWith(file.toString()), e.getMessage());
        }
        RawGguf.write(file, bytes, dataEnd);
        GgufFile.open(file).close();
    }

    @Test
    void randomCorruptionsGiveOnlyFormatExceptions() throws IOException {
        GgufMetadata metadata = GgufMetadata.builder()
                .putU32("general.alignment", 16).putString("s", "ab").putBool("b", true).putF64("d", 0.5)
                .putArray("nested", GgufValueType.ARRAY, List.of(new GgufArray(GgufValueType.UINT16, List.of(1, 2)),
                        new GgufArray(GgufValueType.STRING, List.of("x", ""))))
                .putArray("i8", GgufValueType.INT8, List.of(-1, 1)).putI64("n", -5).build();
        List<GgufTensorInfo> infos = List.of(new GgufTensorInfo("t0", GgmlType.F16, new long[] {3, 2}),
                new GgufTensorInfo("t1", GgmlType.Q4_0, new long[] {32}), new GgufTensorInfo("t2", GgmlType.BF16, new long[] {1, 1, 1, 5}));
        Path written = dir.resolve("fuzz-source.gguf");
        Random random = new Random(20261127);
        try (GgufWriter w = GgufWriter.create(written, metadata, infos, false)) {
            for (GgufTensorInfo t : infos) {
                byte[] data = new byte[(int) t.byteSize()];
                random.nextBytes(data);
                w.write(MemorySegment.ofArray(data));
            }
            w.finish();
        }
        for (byte[] valid : List.of(validFile().toBytes(), Files.readAllBytes(written))) {
            int rejected = 0;
            for (int iteration = 0; iteration < 20_000; iteration++) {
                byte[] bytes = valid.clone();
                int flips = 1 + random.nextInt(4);
                for (int i = 0; i < flips; i++) {
                    int at = random.nextInt(bytes.length);
                    bytes[at] = random.nextInt(3) == 0 ? (byte) 0xFF : (byte) (bytes[at] ^ (1 << random.nextInt(8)));
                }
                int length = random.nextInt(4) == 0 ? random.nextInt(bytes.length + 1) : bytes.length;
                // The parser on a heap copy is what GgufFile.open runs on the mapping; no file needed per iteration.
                MemorySegment corrupt = MemorySegment.ofArray(Arrays.copyOf(bytes, length));
                try {
                    for (GgufTensor t : new GgufParser(written, corrupt).parse().tensors()) {
                        t.data().get(ValueLayout.JAVA_BYTE, t.data().byteSize() - 1);
                    }
                } catch (FormatException e) {
                    rejected++;
                } catch (Throwable t) {
                    throw new AssertionError("iteration " + iteration + " threw " + t, t);
                }
            }
            assertTrue(rejected > 5_000, "only " + rejected + " corruptions rejected");
        }
    }

    private FormatException rejects(byte[] bytes) throws IOException {
        Path file = Files.write(dir.resolve("bad.gguf"), bytes);
        FormatException e = assertThrows(FormatException.class, () -> GgufFile.open(file).close());
        assertTrue(e.getMessage().startsWith(file.toString()), e.getMessage());
        assertEquals(file, e.file());
        return e;
    }
}
