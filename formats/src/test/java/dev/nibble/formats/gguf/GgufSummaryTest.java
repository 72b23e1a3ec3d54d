package dev.nibble.formats.gguf;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.nibble.formats.GgmlType;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** GgufSummary adds up tensors per type; a closed GgufFile no longer hands out its bytes. */
class GgufSummaryTest {

    @TempDir
    Path dir;

    @Test
    void totalsPerTypeAddUp() throws IOException {
        List<GgufTensorInfo> infos = List.of(
                new GgufTensorInfo("q1", GgmlType.Q4_0, new long[] {64, 3}),   // 6 blocks of 18 bytes
                new GgufTensorInfo("n", GgmlType.F32, new long[] {7}),          // 28 bytes
                new GgufTensorInfo("q2", GgmlType.Q4_0, new long[] {32}));      // 1 block
        Path out = dir.resolve("s.gguf");
        try (GgufWriter w = GgufWriter.create(out, GgufMetadata.builder().build(), infos, false)) {
            for (long bytes : new long[] {108, 28, 18}) {
                w.write(MemorySegment.ofArray(new byte[(int) bytes]));
            }
            w.finish();
        }
        try (GgufFile f = GgufFile.open(out)) {
            GgufSummary s = GgufSummary.of(f);
            assertEquals(3, s.tensorCount());
            assertEquals(192 + 7 + 32, s.elementCount());
            assertEquals(108 + 28 + 18, s.byteSize());
            assertEquals(Map.of(GgmlType.Q4_0, new GgufSummary.Totals(2, 224, 126), GgmlType.F32, new GgufSummary.Totals(1, 7, 28)),
                    s.byType());
            assertEquals(8.0 * 154 / 231, s.bitsPerWeight(), 1e-12);
        }
    }

    @Test
    void tensorDataIsUnusableAfterClose() throws IOException {
        Path out = dir.resolve("c.gguf");
        try (GgufWriter w = GgufWriter.create(out, GgufMetadata.builder().build(),
                List.of(new GgufTensorInfo("t", GgmlType.F32, new long[] {1})), false)) {
            w.write(MemorySegment.ofArray(new byte[4]));
            w.finish();
        }
        GgufFile f = GgufFile.open(out);
        MemorySegment data = f.tensors().get(0).data();
        f.close();
        f.close();
        assertThrows(IllegalStateException.class, () -> data.get(ValueLayout.JAVA_BYTE, 0));
    }
}
