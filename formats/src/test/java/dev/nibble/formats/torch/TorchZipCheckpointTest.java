package dev.nibble.formats.torch;

import static dev.nibble.formats.checkpoint.Fixtures.assertSameTensor;
import static dev.nibble.formats.checkpoint.Fixtures.assertSameTensors;
import static dev.nibble.formats.checkpoint.Fixtures.byName;
import static dev.nibble.formats.checkpoint.Fixtures.randomTensors;
import static dev.nibble.formats.checkpoint.Fixtures.tinyBin;
import static dev.nibble.formats.checkpoint.Fixtures.tinySafetensors;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.GgmlType;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import dev.nibble.formats.safetensors.SafetensorsFile;
import dev.nibble.formats.torch.TorchZipWriter.Storage;
import dev.nibble.formats.torch.TorchZipWriter.View;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TorchZipCheckpointTest {

    @TempDir
    Path dir;

    private static Storage randomStorage(Random random, String key, GgmlType dtype, int elements) {
        byte[] bytes = new byte[elements * dtype.typeSize()];
        random.nextBytes(bytes);
        return new Storage(key, TorchZipWriter.storageClass(dtype), dtype.typeSize(), bytes);
    }

    private static View whole(String name, Storage s, long... size) {
        return new View(name, s, 0, size, TorchZipWriter.contiguousStride(size));
    }

    @Test
    void realBinEqualsTheSafetensorsCopyByteForByte() throws IOException {
        try (TorchZipCheckpoint bin = TorchZipCheckpoint.open(tinyBin()); SafetensorsFile st = SafetensorsFile.open(tinySafetensors())) {
            assertEquals(57, bin.tensors().size());
            assertSameTensors(byName(st.tensors()), byName(bin.tensors()));
            CheckpointTensor lmHead = bin.tensors().getFirst();
            assertEquals("lm_head.weight", lmHead.name());
            assertTrue(lmHead.data().isMapped() && lmHead.data().isReadOnly(), "stored records are mapped in place");
            assertEquals(tinyBin(), lmHead.file());
        }
    }

    @Test
    void testWriterMatchesTheRealFileWhenReadBack() throws IOException {
        Path written = dir.resolve("pytorch_model.bin");
        try (TorchZipCheckpoint real = TorchZipCheckpoint.open(tinyBin())) {
            TorchZipWriter.write(written, TorchZipWriter.views(real.tensors()), false);
            try (TorchZipCheckpoint back = TorchZipCheckpoint.open(written)) {
                assertSameTensors(real.tensors(), back.tensors());
            }
        }
    }

    @Test
    void compressedRecordsAreInflated() throws IOException {
        Random random = new Random(3);
        Storage a = randomStorage(random, "0", GgmlType.F32, 37);
        Storage b = randomStorage(random, "1", GgmlType.BF16, 6 * 13);
        Path p = dir.resolve("deflated.bin");
        TorchZipWriter.write(p, List.of(whole("a", a, 37), whole("b", b, 6, 13)), true);
        try (TorchZipCheckpoint ckpt = TorchZipCheckpoint.open(p)) {
            assertArrayEquals(a.bytes(), ckpt.tensor("a").orElseThrow().data().toArray(ValueLayout.JAVA_BYTE));
            CheckpointTensor tb = ckpt.tensor("b").orElseThrow();
            assertEquals(GgmlType.BF16, tb.dtype());
            assertArrayEquals(new long[] {6, 13}, tb.shape());
            assertArrayEquals(b.bytes(), tb.data().toArray(ValueLayout.JAVA_BYTE));
            assertFalse(tb.data().isMapped());
        }
    }

    @Test
    void tensorsSharingAStorageAreViewsAtTheirOffsets() throws IOException {
        Random random = new Random(11);
        Storage shared = randomStorage(random, "7", GgmlType.F16, 5 * 3 + 4);
        View first = whole("embed.weight", shared, 5, 3);
        View tied = whole("lm_head.weight", shared, 5, 3);
        View tail = new View("tail", shared, 15, new long[] {2, 1, 2}, new long[] {2, 99, 1});
        Path p = dir.resolve("tied.bin");
        TorchZipWriter.write(p, List.of(first, tied, tail), false);
        try (TorchZipCheckpoint ckpt = TorchZipCheckpoint.open(p)) {
            assertEquals(List.of("embed.weight", "lm_head.weight", "tail"), ckpt.tensors().stream().map(CheckpointTensor::name).toList());
            byte[] head = Arrays.copyOf(shared.bytes(), 30);
            assertArrayEquals(head, ckpt.tensor("embed.weight").orElseThrow().data().toArray(ValueLayout.JAVA_BYTE));
            assertArrayEquals(head, ckpt.tensor("lm_head.weight").orElseThrow().data().toArray(ValueLayout.JAVA_BYTE));
            assertArrayEquals(Arrays.copyOfRange(shared.bytes(), 30, 38), ckpt.tensor("tail").orElseThrow().data().toArray(ValueLayout.JAVA_BYTE));
        }
    }

    private FormatException rejected(List<View> views) throws IOException {
        Path p = dir.resolve("bad.bin");
        TorchZipWriter.write(p, views, false);
        return assertThrows(FormatException.class, () -> TorchZipCheckpoint.open(p).close());
    }

    @Test
    void nonContiguousTensorIsRejectedNamingIt() throws IOException {
        Storage s = randomStorage(new Random(5), "0", GgmlType.F32, 12);
        FormatException e = rejected(List.of(new View("transposed", s, 0, new long[] {3, 4}, new long[] {1, 3})));
        assertTrue(e.getMessage().contains("tensor 'transposed'") && e.getMessage().contains("is not contiguous"), e.getMessage());
    }

    @Test
    void nonFloatStorageIsRejectedAsUnsupportedDtype() throws IOException {
        Storage s = new Storage("0", "LongStorage", 8, new byte[8 * 4]);
        FormatException e = rejected(List.of(whole("position_ids", s, 4)));
        assertTrue(e.getMessage().contains("tensor 'position_ids' has dtype Long (torch.LongStorage); nibble reads F32, F16 and BF16"),
                e.getMessage());
    }

    @Test
    void viewPastTheEndOfItsStorageIsRejected() throws IOException {
        Storage s = randomStorage(new Random(6), "0", GgmlType.F16, 10);
        FormatException e = rejected(List.of(new View("w", s, 4, new long[] {7}, new long[] {1})));
        assertTrue(e.getMessage().contains("tensor 'w'") && e.getMessage().contains("only 20 bytes"), e.getMessage());
    }

    @Test
    void storageThatLiesAboutItsSizeIsRejected() throws IOException {
        Storage honest = randomStorage(new Random(8), "0", GgmlType.F32, 6);
        Storage liar = new Storage("0", "FloatStorage", 4, Arrays.copyOf(honest.bytes(), 20));
        Path p = dir.resolve("liar.bin");
        byte[] pickle = TorchZipWriter.pickle(List.of(whole("w", honest, 6)));
        TorchZipWriter.write(p, "archive/", pickle, List.of(liar), false, "little");
        FormatException e = assertThrows(FormatException.class, () -> TorchZipCheckpoint.open(p));
        assertTrue(e.getMessage().contains("declares 6 F32 elements (24 bytes) but the record holds 20 bytes"), e.getMessage());
    }

    @Test
    void missingStorageRecordIsRejected() throws IOException {
        Storage s = randomStorage(new Random(9), "42", GgmlType.F32, 2);
        Path p = dir.resolve("missing.bin");
        TorchZipWriter.write(p, "archive/", TorchZipWriter.pickle(List.of(whole("w", s, 2))), List.of(), false, "little");
        FormatException e = assertThrows(FormatException.class, () -> TorchZipCheckpoint.open(p));
        assertTrue(e.getMessage().contains("'archive/data/42' is missing"), e.getMessage());
    }

    @Test
    void bigEndianCheckpointIsRejected() throws IOException {
        Storage s = randomStorage(new Random(10), "0", GgmlType.F32, 2);
        Path p = dir.resolve("big.bin");
        TorchZipWriter.write(p, "archive/", TorchZipWriter.pickle(List.of(whole("w", s, 2))), List.of(s), false, "big");
        FormatException e = assertThrows(FormatException.class, () -> TorchZipCheckpoint.open(p));
        assertTrue(e.getMessage().contains("archive/byteorder: is 'big'"), e.getMessage());
    }

    @Test
    void checkpointWithoutByteorderRecordIsLittleEndian() throws IOException {
        Storage s = randomStorage(new Random(12), "0", GgmlType.F16, 3);
        Path p = dir.resolve("old.bin");
        TorchZipWriter.write(p, "old/", TorchZipWriter.pickle(List.of(whole("w", s, 3))), List.of(s), false, null);
        try (TorchZipCheckpoint ckpt = TorchZipCheckpoint.open(p)) {
            assertArrayEquals(s.bytes(), ckpt.tensor("w").orElseThrow().data().toArray(ValueLayout.JAVA_BYTE));
        }
    }

    @Test
    void notAZipIsRejected() throws IOException {
        Path p = dir.resolve("pytorch_model.bin");
        Files.writeString(p, "this is not a checkpoint");
        FormatException e = assertThrows(FormatException.class, () -> TorchZipCheckpoint.open(p));
        assertTrue(e.getMessage().contains("not a readable zip"), e.getMessage());
    }

    @Test
    void truncatedFilesAreRejectedAtEveryCut() throws IOException {
        byte[] whole = Files.readAllBytes(tinyBin());
        TreeSet<Integer> cuts = new TreeSet<>(List.of(0, 1, 4, 30, 100, 6500, 7000, whole.length / 2, whole.length - 100, whole.length - 22,
                whole.length - 1));
        Random random = new Random(99);
        while (cuts.size() < 20) {
            cuts.add(random.nextInt(whole.length));
        }
        Path p = dir.resolve("cut.bin");
        for (int cut : cuts) {
            Files.write(p, Arrays.copyOf(whole, cut));
            assertThrows(FormatException.class, () -> TorchZipCheckpoint.open(p).close(), "cut at " + cut);
        }
    }

    @Test
    void randomByteFlipsInDataPklOnlyEverGiveFormatExceptions() throws IOException {
        Random random = new Random(2024);
        List<View> views = TorchZipWriter.views(randomTensors(random, 12));
        byte[] pickle = TorchZipWriter.pickle(views);
        List<Storage> storages = views.stream().map(View::storage).toList();
        Path p = dir.resolve("fuzz.bin");
        int rejected = 0;
        for (int round = 0; round < 400; round++) {
            byte[] copy = pickle.clone();
            for (int flips = 1 + random.nextInt(3); flips > 0; flips--) {
                copy[random.nextInt(copy.length)] ^= (byte) (1 << random.nextInt(8));
            }
            TorchZipWriter.write(p, "archive/", copy, storages, false, "little");
            try (TorchZipCheckpoint ckpt = TorchZipCheckpoint.open(p)) {
                for (CheckpointTensor t : ckpt.tensors()) {
                    assertEquals(t.elementCount() * t.dtype().typeSize(), t.data().byteSize());
                }
            } catch (FormatException expected) {
                rejected++;
            } catch (IOException | RuntimeException e) {
                fail("round " + round + ": only FormatException may come from a corrupt pickle, got " + e, e);
            }
        }
        assertTrue(rejected > 200, "most flips break the pickle; rejected " + rejected);
    }

    @Test
    void randomByteFlipsAnywhereInTheArchiveOnlyEverGiveFormatExceptions() throws IOException {
        Random random = new Random(4711);
        for (boolean compress : new boolean[] {false, true}) {
            Path original = dir.resolve("original.bin");
            TorchZipWriter.write(original, TorchZipWriter.views(randomTensors(random, 5)), compress);
            byte[] whole = Files.readAllBytes(original);
            Path p = dir.resolve("fuzz.bin");
            for (int round = 0; round < 300; round++) {
                byte[] copy = whole.clone();
                for (int flips = 1 + random.nextInt(3); flips > 0; flips--) {
                    copy[random.nextInt(copy.length)] ^= (byte) (1 << random.nextInt(8));
                }
                Files.write(p, copy);
                try (TorchZipCheckpoint ckpt = TorchZipCheckpoint.open(p)) {
                    for (CheckpointTensor t : ckpt.tensors()) {
                        assertEquals(t.elementCount() * t.dtype().typeSize(), t.data().byteSize());
                    }
                } catch (FormatException expected) {
                    // the only acceptable failure
                } catch (IOException | RuntimeException e) {
                    fail("round " + round + (compress ? " (deflated)" : "") + ": only FormatException may come from a corrupt archive, got " + e, e);
                }
            }
        }
    }

    @Test
    void stateDictIsReadInPickleOrder() throws IOException {
        Random random = new Random(13);
        Storage a = randomStorage(random, "0", GgmlType.F32, 1);
        Storage b = randomStorage(random, "1", GgmlType.F32, 1);
        Path p = dir.resolve("order.bin");
        TorchZipWriter.write(p, List.of(whole("z", a, 1), whole("a", b, 1)), false);
        try (TorchZipCheckpoint ckpt = TorchZipCheckpoint.open(p)) {
            assertEquals(List.of("z", "a"), ckpt.tensors().stream().map(CheckpointTensor::name).toList());
            assertSameTensor(new CheckpointTensor("z", GgmlType.F32, new long[] {1}, MemorySegment.ofArray(a.bytes()), p),
                    ckpt.tensors().getFirst());
        }
    }

    @Test
    void compressedRecordsAreBoundedInTotalBeforeAnyIsInflated() throws IOException {
        // Issue 11: an 11 MB zip of many records, each deflated near deflate's 1032:1 limit, made inspect use 2 GB. Each
        // record passes the per-record ratio; together they inflate far beyond the file, and are refused up front.
        byte[] zeros = new byte[1 << 20];
        List<View> views = new java.util.ArrayList<>();
        int records = (int) (TorchZipCheckpoint.INFLATE_SLACK >> 20) + 16;
        for (int i = 0; i < records; i++) {
            Storage s = new Storage("s" + i, "FloatStorage", 4, zeros);
            views.add(whole("t" + i, s, zeros.length / 4));
        }
        Path p = dir.resolve("bomb.bin");
        TorchZipWriter.write(p, views, true);
        long size = Files.size(p);
        assertTrue(size < 4L << 20, "the archive is small: " + size);
        FormatException e = assertThrows(FormatException.class, () -> TorchZipCheckpoint.open(p).close());
        long bound = TorchZipCheckpoint.INFLATE_SLACK + TorchZipCheckpoint.INFLATE_FILE_RATIO * size;
        assertTrue(e.getMessage().contains("more than " + bound + " bytes in all")
                && e.getMessage().contains("the " + size + "-byte file"), e.getMessage());
    }
}
