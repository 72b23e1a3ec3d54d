package dev.nibble.formats.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.nibble.formats.GgmlType;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What GgufWriter writes, GgufFile reads back identically: every value type, every tensor type, any alignment. */
class GgufRoundTripTest {

    @TempDir
    Path dir;

    private final Random random = new Random(0x6775_6666);

    /** Metadata with every value type, including edge values, empty and nested arrays, empty and unicode strings. */
    private static GgufMetadata everyValueType() {
        return GgufMetadata.builder()
                .putU8("u8", 255).putI8("i8", -128).putU16("u16", 65535).putI16("i16", -32768)
                .putU32("u32", 0xFFFF_FFFFL).putI32("i32", Integer.MIN_VALUE)
                .putU64("u64", -1L).putI64("i64", Long.MIN_VALUE)
                .putF32("f32", -1.5e-7f).putF64("f64", Math.PI).putF32("nan", Float.NaN).putF64("negzero", -0.0)
                .putBool("yes", true).putBool("no", false)
                .putString("empty", "").putString("unicode", "größe ✓ 𝄞 日本語")
                .putString("ключ 🔑", "value with\nnewline and \0 nul")
                .putStringArray("tokens", List.of("<s>", "", "▁the", "😀"))
                .putFloatArray("scores", new float[] {0f, -1.25f, Float.MAX_VALUE, Float.MIN_VALUE})
                .putIntArray("types", new int[] {1, 2, 3, -4})
                .putArray("u8s", GgufValueType.UINT8, List.of(0, 128, 255))
                .putArray("i8s", GgufValueType.INT8, List.of(-128, 127))
                .putArray("u16s", GgufValueType.UINT16, List.of(65535))
                .putArray("i16s", GgufValueType.INT16, List.of(-2, 2))
                .putArray("u32s", GgufValueType.UINT32, List.of(0xFFFF_FFFFL, 0L))
                .putArray("u64s", GgufValueType.UINT64, List.of(-1L, 1L << 63))
                .putArray("i64s", GgufValueType.INT64, List.of(Long.MAX_VALUE))
                .putArray("f64s", GgufValueType.FLOAT64, List.of(1e300, -0.5))
                .putArray("bools", GgufValueType.BOOL, List.of(true, false, true))
                .putArray("empty array", GgufValueType.FLOAT32, List.of())
                .putArray("nested", GgufValueType.ARRAY, List.of(
                        new GgufArray(GgufValueType.INT32, List.of(1, 2)),
                        new GgufArray(GgufValueType.STRING, List.of()),
                        new GgufArray(GgufValueType.ARRAY, List.of(new GgufArray(GgufValueType.STRING, List.of("deep", ""))))))
                .build();
    }

    @Test
    void everyValueTypeRoundTrips() throws IOException {
        GgufMetadata metadata = everyValueType();
        Path out = dir.resolve("meta.gguf");
        try (GgufWriter w = GgufWriter.create(out, metadata, List.of(), false)) {
            w.finish();
        }
        try (GgufFile f = GgufFile.open(out)) {
            assertEquals(metadata, f.metadata());
            assertEquals(List.copyOf(metadata.keys()), List.copyOf(f.metadata().keys()));
            assertEquals(-1L, f.metadata().getLong("u64"));
            assertEquals(0xFFFF_FFFFL, f.metadata().getLong("u32"));
            assertEquals("größe ✓ 𝄞 日本語", f.metadata().getString("unicode"));
            assertEquals("value with\nnewline and \0 nul", f.metadata().getString("ключ 🔑"));
            assertEquals(List.of("<s>", "", "▁the", "😀"), f.metadata().getStringArray("tokens"));
            assertArrayEquals(new float[] {0f, -1.25f, Float.MAX_VALUE, Float.MIN_VALUE}, f.metadata().getFloatArray("scores"));
            assertArrayEquals(new int[] {1, 2, 3, -4}, f.metadata().getIntArray("types"));
            assertEquals(0, f.metadata().getFloatArray("empty array").length);
            GgufArray nested = f.metadata().get("nested").orElseThrow().asArray();
            GgufArray inner = (GgufArray) ((GgufArray) nested.elements().get(2)).elements().get(0);
            assertEquals(List.of("deep", ""), inner.elements());
            assertEquals(0, f.tensors().size());
        }
    }

    @Test
    void everyTensorTypeRoundTripsWithOddShapes() throws IOException {
        roundTripTensors(32, 3);
    }

    @Test
    void alignment64IsHonoured() throws IOException {
        roundTripTensors(64, 1);
    }

    @Test
    void alignment1PacksTensorsBackToBack() throws IOException {
        roundTripTensors(1, 1);
    }

    private void roundTripTensors(int alignment, int tensorsPerType) throws IOException {
        GgufMetadata metadata = GgufMetadata.builder().putString("general.architecture", "test")
                .putU32("general.alignment", alignment).build();
        List<GgufTensorInfo> infos = new ArrayList<>();
        List<byte[]> data = new ArrayList<>();
        for (GgmlType type : GgmlType.values()) {
            for (int i = 0; i < tensorsPerType; i++) {
                int nDims = 1 + (infos.size() % 4);
                long[] dims = new long[nDims];
                dims[0] = (long) type.blockSize() * (1 + random.nextInt(3)) * (type.blockSize() == 1 ? 1 + random.nextInt(7) : 1);
                for (int d = 1; d < nDims; d++) {
                    dims[d] = 1 + random.nextInt(3);
                }
                GgufTensorInfo info = new GgufTensorInfo("blk." + infos.size() + "." + type.name().toLowerCase(), type, dims);
                byte[] bytes = new byte[(int) info.byteSize()];
                random.nextBytes(bytes);
                infos.add(info);
                data.add(bytes);
            }
        }
        Path out = dir.resolve("tensors.gguf");
        try (GgufWriter w = GgufWriter.create(out, metadata, infos, false)) {
            for (byte[] bytes : data) {
                writeInRandomChunks(w, bytes);
            }
            w.finish();
        }
        try (GgufFile f = GgufFile.open(out)) {
            assertEquals(metadata, f.metadata());
            assertEquals(alignment, f.alignment());
            assertEquals(0, f.dataOffset() % alignment);
            assertEquals(infos.size(), f.tensors().size());
            long expectedOffset = f.dataOffset();
            for (int i = 0; i < infos.size(); i++) {
                GgufTensor t = f.tensors().get(i);
                assertEquals(infos.get(i), t.info());
                assertEquals(expectedOffset, t.fileOffset(), t.name());
                assertArrayEquals(data.get(i), t.data().toArray(ValueLayout.JAVA_BYTE), t.name());
                assertEquals(t, f.tensor(t.name()).orElseThrow());
                expectedOffset = (t.fileOffset() + t.info().byteSize() + alignment - 1) / alignment * alignment;
            }
            assertEquals(expectedOffset, Files.size(out));
        }
    }

    private void writeInRandomChunks(GgufWriter w, byte[] bytes) throws IOException {
        MemorySegment all = MemorySegment.ofArray(bytes);
        long done = 0;
        while (done < bytes.length) {
            long n = Math.min(bytes.length - done, 1 + random.nextInt(100));
            w.write(all.asSlice(done, n));
            done += n;
        }
    }

    @Test
    void writerProducesTheSpecifiedBytes() throws IOException {
        GgufMetadata metadata = GgufMetadata.builder().putString("general.name", "x").putIntArray("ids", new int[] {5, -6}).build();
        List<GgufTensorInfo> infos = List.of(new GgufTensorInfo("a", GgmlType.F16, new long[] {3}),
                new GgufTensorInfo("b", GgmlType.F32, new long[] {1, 2}));
        byte[] a = {1, 2, 3, 4, 5, 6};
        byte[] b = {9, 8, 7, 6, 5, 4, 3, 2};
        Path out = dir.resolve("exact.gguf");
        try (GgufWriter w = GgufWriter.create(out, metadata, infos, false)) {
            w.write(MemorySegment.ofArray(a));
            w.write(MemorySegment.ofArray(b));
            w.finish();
        }
        RawGguf expected = RawGguf.header(3, 2, 2)
                .kvString("general.name", "x")
                .str("ids").u32(RawGguf.ARRAY).u32(RawGguf.INT32).u64(2).u32(5).u32(-6)
                .tensor("a", RawGguf.TYPE_F16, 0, 3)
                .tensor("b", RawGguf.TYPE_F32, 32, 1, 2)
                .pad(32).bytes(1, 2, 3, 4, 5, 6).pad(32).bytes(9, 8, 7, 6, 5, 4, 3, 2).pad(32);
        assertArrayEquals(expected.toBytes(), Files.readAllBytes(out));
    }
}
