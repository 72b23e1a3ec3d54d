package dev.nibble.formats.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** GgufWriter leaves either a complete file or nothing, and refuses misuse with a message naming what is wrong. */
class GgufWriterTest {

    @TempDir
    Path dir;

    private static final GgufMetadata META = GgufMetadata.builder().putString("general.name", "w").build();
    private static final List<GgufTensorInfo> TWO = List.of(
            new GgufTensorInfo("a", GgmlType.F32, new long[] {5}),
            new GgufTensorInfo("b", GgmlType.Q8_0, new long[] {32, 3}));

    @Test
    void closeWithoutFinishLeavesNeitherOutputNorTmp() throws IOException {
        Path out = dir.resolve("model.gguf");
        try (GgufWriter w = GgufWriter.create(out, META, TWO, false)) {
            w.write(MemorySegment.ofArray(new byte[20]));
            assertEquals(1, dir.toFile().list().length, "only the temporary file exists while writing");
        }
        assertEquals(0, dir.toFile().list().length, "neither the output nor the temporary file");
    }

    @Test
    void finishWithAnIncompleteTensorFailsAndLeavesNoOutput() throws IOException {
        Path out = dir.resolve("model.gguf");
        try (GgufWriter w = GgufWriter.create(out, META, TWO, false)) {
            w.write(MemorySegment.ofArray(new byte[20]));
            w.write(MemorySegment.ofArray(new byte[50]));
            IllegalStateException e = assertThrows(IllegalStateException.class, w::finish);
            assertTrue(e.getMessage().contains("tensor 'b' has 50 of its 102 bytes"), e.getMessage());
        }
        assertEquals(List.of(), List.of(dir.toFile().list()));
    }

    @Test
    void existingOutputIsKeptWithoutOverwriteAndTheErrorSuggestsForce() throws IOException {
        Path out = Files.writeString(dir.resolve("model.gguf"), "precious");
        IOException e = assertThrows(IOException.class, () -> GgufWriter.create(out, META, TWO, false));
        assertTrue(e.getMessage().contains(out.toString()) && e.getMessage().contains("--force"), e.getMessage());
        assertEquals("precious", Files.readString(out));
        assertEquals(List.of("model.gguf"), List.of(dir.toFile().list()), "no temporary file");
    }

    @Test
    void overwriteReplacesAnExistingOutput() throws IOException {
        Path out = Files.writeString(dir.resolve("model.gguf"), "old");
        byte[] a = new byte[20];
        byte[] b = new byte[102];
        new Random(7).nextBytes(a);
        new Random(8).nextBytes(b);
        try (GgufWriter w = GgufWriter.create(out, META, TWO, true)) {
            w.write(MemorySegment.ofArray(a));
            w.write(MemorySegment.ofArray(b));
            w.finish();
        }
        try (GgufFile f = GgufFile.open(out)) {
            assertArrayEquals(b, f.tensor("b").orElseThrow().data().toArray(ValueLayout.JAVA_BYTE));
        }
        assertEquals(List.of("model.gguf"), List.of(dir.toFile().list()), "no temporary file");
    }

    @Test
    void aChunkCrossingATensorEndIsRefused() throws IOException {
        try (GgufWriter w = GgufWriter.create(dir.resolve("m.gguf"), META, TWO, false)) {
            w.write(MemorySegment.ofArray(new byte[12]));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> w.write(MemorySegment.ofArray(new byte[9])));
            assertTrue(e.getMessage().contains("tensor 'a'") && e.getMessage().contains("cross its end"), e.getMessage());
        }
    }

    @Test
    void bytesBeyondTheLastTensorAreRefused() throws IOException {
        try (GgufWriter w = GgufWriter.create(dir.resolve("m.gguf"), META, TWO.subList(0, 1), false)) {
            w.write(MemorySegment.ofArray(new byte[20]));
            assertThrows(IllegalStateException.class, () -> w.write(MemorySegment.ofArray(new byte[1])));
        }
    }

    @Test
    void duplicateTensorNamesAreRefusedAtCreate() {
        List<GgufTensorInfo> twice = List.of(TWO.get(0), new GgufTensorInfo("a", GgmlType.F16, new long[] {2}));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> GgufWriter.create(dir.resolve("m.gguf"), META, twice, false));
        assertTrue(e.getMessage().contains("'a'"), e.getMessage());
        assertEquals(0, dir.toFile().list().length);
    }

    @Test
    void badShapesAreRefusedWhenDeclared() {
        assertThrows(IllegalArgumentException.class, () -> new GgufTensorInfo("q", GgmlType.Q4_K, new long[] {128}));
        assertThrows(IllegalArgumentException.class, () -> new GgufTensorInfo("five", GgmlType.F32, new long[] {1, 1, 1, 1, 1}));
        assertThrows(IllegalArgumentException.class, () -> new GgufTensorInfo("none", GgmlType.F32, new long[] {}));
        assertThrows(IllegalArgumentException.class, () -> new GgufTensorInfo("zero", GgmlType.F32, new long[] {4, 0}));
        assertThrows(IllegalArgumentException.class, () -> new GgufTensorInfo("big", GgmlType.F32, new long[] {1L << 32, 1L << 31}));
    }

    @Test
    void alignmentThatIsNotAUint32PowerOfTwoIsRefused() {
        for (GgufValue bad : List.of(GgufValue.u32(24), GgufValue.u64(32), GgufValue.u32(0))) {
            GgufMetadata m = GgufMetadata.builder().put("general.alignment", bad).build();
            assertThrows(IllegalArgumentException.class, () -> GgufWriter.create(dir.resolve("m.gguf"), m, TWO, false));
        }
    }
}
