package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/** The persistent worker pool: many short runs, resizing, and callers on several Java threads. */
class WorkerPoolTest {

    @AfterAll
    static void twoThreads() {
        NibbleCpu.poolInit(2);
    }

    @Test
    void poolSizeFollowsInitIncludingTheCaller() {
        NibbleCpu.poolInit(3);
        assertEquals(3, NibbleCpu.poolThreads());
        NibbleCpu.poolInit(1);
        assertEquals(1, NibbleCpu.poolThreads());
    }

    @Test
    void thousandsOfShortRunsAllMatchTheSingleThreadedResult() {
        Random rnd = new Random(21);
        try (Arena arena = Arena.ofConfined()) {
            int nOut = 48, nIn = 64;
            MemorySegment w = KernelData.randomWeights(arena, rnd, GgmlType.Q4_0, nOut, nIn);
            MemorySegment x = KernelData.floats(arena, KernelData.randomFloats(rnd, nIn, 1));
            NibbleCpu.poolInit(1);
            MemorySegment y = KernelData.poisoned(arena, nOut);
            NibbleCpu.matmul(GgmlType.Q4_0, w, nOut, nIn, x, 1, y);
            float[] want = KernelData.toArray(y, nOut);
            for (int threads : new int[] {2, 3}) {
                NibbleCpu.poolInit(threads);
                for (int i = 0; i < 3000; i++) {
                    MemorySegment out = KernelData.poisoned(arena, nOut);
                    NibbleCpu.matmul(GgmlType.Q4_0, w, nOut, nIn, x, 1, out);
                    assertArrayEquals(want, KernelData.toArray(out, nOut), "run " + i + " with " + threads + " threads");
                }
            }
        }
    }

    @Test
    void callersOnSeveralJavaThreadsGetTheirOwnResults() throws Exception {
        NibbleCpu.poolInit(2);
        int nOut = 40, nIn = 96;
        try (Arena arena = Arena.ofShared(); ExecutorService callers = Executors.newFixedThreadPool(3)) {
            Random rnd = new Random(22);
            MemorySegment w = KernelData.randomWeights(arena, rnd, GgmlType.Q8_0, nOut, nIn);
            MemorySegment[] xs = new MemorySegment[3];
            float[][] want = new float[3][];
            for (int c = 0; c < 3; c++) {
                xs[c] = KernelData.floats(arena, KernelData.randomFloats(rnd, 2 * nIn, 1));
                MemorySegment y = KernelData.poisoned(arena, 2L * nOut);
                NibbleCpu.matmul(GgmlType.Q8_0, w, nOut, nIn, xs[c], 2, y);
                want[c] = KernelData.toArray(y, 2 * nOut);
            }
            Future<?>[] done = new Future<?>[3];
            for (int c = 0; c < 3; c++) {
                int caller = c;
                done[c] = callers.submit(() -> {
                    MemorySegment y = arena.allocate(8L * nOut, 64);
                    for (int i = 0; i < 500; i++) {
                        NibbleCpu.matmul(GgmlType.Q8_0, w, nOut, nIn, xs[caller], 2, y);
                        assertArrayEquals(want[caller], KernelData.toArray(y, 2 * nOut), "caller " + caller + " run " + i);
                    }
                    return null;
                });
            }
            for (Future<?> f : done) {
                f.get();
            }
        }
    }
}
