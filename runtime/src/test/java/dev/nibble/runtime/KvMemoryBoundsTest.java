package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import java.io.IOException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 11 item 10: a KV cache is checked against memory before anything is allocated for it, and a model declaring an
 * absurd context does not make the default context take whatever memory is free. No test here allocates more than a
 * few MB: each refusal comes before the allocation, for sizes no machine has.
 */
class KvMemoryBoundsTest {

    @TempDir
    Path dir;

    private Path modelDeclaring(int contextLength) throws IOException {
        return RandomModel.write(dir.resolve("ctx.gguf"),
                RandomModel.metadata(RandomModel.HEADS).putU32("llama.context_length", contextLength).build(),
                RandomModel.tensors(RandomModel.HEADS, 1));
    }

    private static LlamaConfig config(int layers, int contextLength) {
        return new LlamaConfig(contextLength, 64, layers, 96, 4, 4, 16, 97, 1e-5f, 10000f, 1f, new int[] {2});
    }

    @Test
    void aDeclaredContextOfTwoToThe31IsCappedWhenTheUserGaveNone() throws IOException {
        // Before: the default was the declared 2^31 - 1 positions, capped only by half of the free memory.
        try (Model m = Model.load(modelDeclaring(Integer.MAX_VALUE), new ReferenceBackend(), 0, LoadProgress.NONE)) {
            long terabyte = 1L << 40;
            assertEquals(KvCache.MAX_DEFAULT_CONTEXT, m.defaultContext(terabyte));
            String note = KvCache.defaultCapacityNote(m.config(), m.cacheBytesPerPosition(), m.cacheBudget(terabyte, 1),
                    KvCache.MAX_DEFAULT_CONTEXT);
            assertTrue(note.contains("the model declares " + Integer.MAX_VALUE) && note.contains("--ctx"), note);
            assertTrue(!note.contains("\n"), note);
            // Memory still caps it below the sane maximum.
            long perPosition = KvCache.bytes(m.config(), 1, GgmlType.F32);
            assertEquals(1000, m.defaultContext(2 * 1000 * perPosition));
        }
    }

    @Test
    void aModelsOwnShortContextIsTheDefaultWithNoNote() {
        LlamaConfig c = config(2, 4096);
        assertEquals(4096, KvCache.defaultCapacity(c, KvCache.bytes(c, 1, GgmlType.F32), 1L << 40));
        assertNull(KvCache.defaultCapacityNote(c, KvCache.bytes(c, 1, GgmlType.F32), 1L << 40, 4096));
    }

    @Test
    void aContextBeyondTheMachinesMemoryIsRefusedAtLoadWithTheNumbers() throws IOException {
        // Before: --ctx 10000000 went on to allocate 30 GB; --ctx 2147483647 ended in a stack trace.
        Path file = modelDeclaring(160);
        InsufficientMemoryException e = assertThrows(InsufficientMemoryException.class,
                () -> Model.load(file, new ReferenceBackend(), Integer.MAX_VALUE, LoadProgress.NONE));
        String m = e.getMessage();
        assertTrue(m.contains("KV cache 2.0 TiB") || m.contains("KV cache 2048.0 GiB") || m.contains("for " + Integer.MAX_VALUE + " tokens"), m);
        assertTrue(m.contains("is available on this machine") && m.contains("--ctx") && !m.contains("\n"), m);
    }

    @Test
    void aPoolBeyondTheMachinesMemoryIsRefusedBeforeAllocating() {
        // 2 layers x 2 x 2^30 positions x 64 floats = 1 TiB: refused by the check, not by the allocator.
        LlamaConfig c = config(2, 160);
        InsufficientMemoryException e = assertThrows(InsufficientMemoryException.class,
                () -> new KvPool(c, new ReferenceBackend(), 1 << 30, 1 << 30).close());
        String m = e.getMessage();
        assertTrue(m.startsWith("not enough memory for a KV cache of " + (1 << 30) + " positions: it needs 1024.0 GiB"), m);
        assertTrue(m.contains("2 layers x 2 x " + (1 << 30) + " positions x 64 values of F32") && m.contains("--ctx"), m);
    }

    @Test
    void cacheSizesThatOverflowALongAreRefusedNotWrapped() {
        // A file may declare 2^31 - 1 layers: 2 x layers x positions x kvDim x 4 bytes overflows, and must not wrap
        // around to a small or negative size that passes the checks.
        LlamaConfig c = config(Integer.MAX_VALUE, 160);
        assertEquals(Long.MAX_VALUE, KvPool.bytes(c, Integer.MAX_VALUE, GgmlType.F32));
        InsufficientMemoryException e = assertThrows(InsufficientMemoryException.class,
                () -> new KvPool(c, new ReferenceBackend(), Integer.MAX_VALUE, 16).close());
        assertTrue(e.getMessage().contains("more than 8 EiB"), e.getMessage());
    }

    @Test
    void hostAvailableMemoryIsPositiveAndNoMoreThanTheMachineHas() {
        long available = KvPool.hostAvailableBytes();
        long total = ((com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory
                .getOperatingSystemMXBean()).getTotalMemorySize();
        assertTrue(available > 0 && available <= Math.max(total, available), available + " of " + total);
    }

    @Test
    void aSmallPoolStillFits() {
        try (KvPool pool = new KvPool(config(2, 160), new ReferenceBackend(), 160, 160)) {
            assertEquals(160, pool.rows());
        }
    }
}
