package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Bad arguments end in an exception naming the call, never in a crash or an out-of-bounds native access. */
class KernelArgumentTest {

    private static NibbleCpu cpu;

    @BeforeAll
    static void open() {
        cpu = NibbleCpu.open(2);
    }

    @AfterAll
    static void close() {
        cpu.close();
    }

    @Test
    void weightSegmentShorterThanTheMatrixIsRejected() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment w = arena.allocate(GgmlType.Q4_0.byteSize(64L * 3) - 1);
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.matmul(GgmlType.Q4_0, w, 3, 64,
                    arena.allocate(4 * 64), 1, arena.allocate(4 * 3)));
            assertTrue(e.getMessage().startsWith("nb_matmul: w holds"), e.getMessage());
        }
    }

    @Test
    void rowLengthOffTheBlockSizeIsRejected() {
        try (Arena arena = Arena.ofConfined()) {
            var e = assertThrows(IllegalArgumentException.class, () -> cpu.matmul(GgmlType.Q4_K, arena.allocate(4096),
                    1, 255, arena.allocate(4 * 255), 1, arena.allocate(4)));
            assertTrue(e.getMessage().contains("block size 256"), e.getMessage());
        }
    }

    @Test
    void outputAndInputBoundsAndSignsAreChecked() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment w = arena.allocate(4L * 4 * 8);
            assertThrows(IllegalArgumentException.class,
                    () -> cpu.matmul(GgmlType.F32, w, 4, 8, arena.allocate(4 * 8), 2, arena.allocate(4 * 8)));
            assertThrows(IllegalArgumentException.class,
                    () -> cpu.matmul(GgmlType.F32, w, 4, 8, arena.allocate(4 * 8), 1, arena.allocate(4 * 3)));
            assertThrows(IllegalArgumentException.class,
                    () -> cpu.matmul(GgmlType.F32, w, -1, 8, arena.allocate(4 * 8), 1, arena.allocate(4 * 4)));
            assertThrows(IllegalArgumentException.class,
                    () -> cpu.matmul(GgmlType.F32, w, Long.MAX_VALUE / 2, 8, arena.allocate(4 * 8), 1, arena.allocate(4)));
            assertThrows(IllegalArgumentException.class,
                    () -> cpu.matmul(null, w, 4, 8, arena.allocate(4 * 8), 1, arena.allocate(4 * 4)));
            assertThrows(IllegalArgumentException.class,
                    () -> cpu.matmul(GgmlType.F32, w, 4, 8, null, 1, arena.allocate(4 * 4)));
        }
    }

    @Test
    void heapReadOnlyAndMisalignedSegmentsAreRejected() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment heap = MemorySegment.ofArray(new float[16]);
            var e = assertThrows(IllegalArgumentException.class,
                    () -> cpu.add(heap, arena.allocate(64), 16, arena.allocate(64)));
            assertTrue(e.getMessage().contains("heap segment"), e.getMessage());
            MemorySegment ro = arena.allocate(64).asReadOnly();
            assertThrows(IllegalArgumentException.class, () -> cpu.add(arena.allocate(64), arena.allocate(64), 16, ro));
            MemorySegment odd = arena.allocate(80, 16).asSlice(2, 64);
            assertThrows(IllegalArgumentException.class, () -> cpu.add(odd, arena.allocate(64), 16, arena.allocate(64)));
        }
    }

    @Test
    void nativeStatusBecomesAnExceptionNamingTheCall() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment table = arena.allocate(4L * 4 * 8);
            MemorySegment ids = KernelData.ints(arena, new int[] {1, 4});
            var e = assertThrows(NativeKernelException.class,
                    () -> cpu.embed(GgmlType.F32, table, 4, 8, ids, 2, arena.allocate(4L * 2 * 8)));
            assertEquals("nb_embed", e.call());
            assertEquals(1, e.status());
            MemorySegment negative = KernelData.ints(arena, new int[] {-1});
            var a = assertThrows(IllegalArgumentException.class, () -> cpu.attention(arena.allocate(4 * 8), 1, negative,
                    MemorySegment.NULL, 1, 1, 8, GgmlType.F32, arena.allocate(4 * 8), arena.allocate(4 * 8), 1, 8, 1f,
                    arena.allocate(4 * 8)));
            assertTrue(a.getMessage().startsWith("nb_attention: token 0 has position -1"), a.getMessage());
        }
    }

    @Test
    void attentionChecksHeadsCacheTypeAndCacheSize() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment q = arena.allocate(4 * 6 * 8);
            MemorySegment pos = KernelData.ints(arena, new int[] {1});
            MemorySegment cache = arena.allocate(4 * 2 * 8);
            assertThrows(IllegalArgumentException.class, () -> cpu.attention(q, 1, pos, MemorySegment.NULL, 6, 4, 8, GgmlType.F32, cache, cache,
                    1, 32, 1f, q));
            assertThrows(IllegalArgumentException.class, () -> cpu.attention(q, 1, pos, MemorySegment.NULL, 6, 2, 8, GgmlType.Q8_0, cache, cache,
                    1, 16, 1f, q));
            assertThrows(IllegalArgumentException.class, () -> cpu.attention(q, 1, pos, MemorySegment.NULL, 6, 2, 8, GgmlType.F32, cache, cache,
                    2, 16, 1f, q));
            assertThrows(IllegalArgumentException.class, () -> cpu.attention(q, 1, pos, MemorySegment.NULL, 6, 2, 8, GgmlType.F32, cache, cache,
                    1, 15, 1f, q));
        }
    }

    @Test
    void unsupportedPathAndBadThreadCountAreRejected() {
        assertThrows(NativeKernelException.class, () -> cpu.setIsa(7));
        assertThrows(IllegalArgumentException.class, () -> NibbleCpu.open(-1));
        assertThrows(IllegalArgumentException.class, () -> cpu.rope(MemorySegment.NULL, 0, 0, 3, MemorySegment.NULL, 1e4f, 1f,
                MemorySegment.NULL));
    }

    @Test
    void aClosedContextRefusesCalls() {
        NibbleCpu c = NibbleCpu.open(2);
        c.close();
        c.close(); // closing twice is harmless
        try (Arena arena = Arena.ofConfined()) {
            var e = assertThrows(IllegalStateException.class,
                    () -> c.add(arena.allocate(64), arena.allocate(64), 16, arena.allocate(64)));
            assertTrue(e.getMessage().contains("closed"), e.getMessage());
            assertThrows(IllegalStateException.class, c::isa);
        }
    }
}
