package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

/**
 * The persistent worker pools of kernel contexts: many short runs, sizes, callers on several Java threads, and several
 * contexts side by side in one process.
 */
class WorkerPoolTest {

    @Test
    void poolSizeFollowsOpenIncludingTheCaller() {
        try (NibbleCpu three = NibbleCpu.open(3); NibbleCpu one = NibbleCpu.open(1); NibbleCpu all = NibbleCpu.open(0)) {
            assertEquals(3, three.threads());
            assertEquals(1, one.threads());
            assertTrue(all.threads() >= 1 && all.threads() <= 256, "0 threads: one per usable CPU, " + all.threads());
        }
    }

    @Test
    void thousandsOfShortRunsAllMatchTheSingleThreadedResult() {
        Random rnd = new Random(21);
        try (Arena arena = Arena.ofConfined()) {
            int nOut = 48, nIn = 64;
            MemorySegment w = KernelData.randomWeights(arena, rnd, GgmlType.Q4_0, nOut, nIn);
            MemorySegment x = KernelData.floats(arena, KernelData.randomFloats(rnd, nIn, 1));
            float[] want;
            try (NibbleCpu one = NibbleCpu.open(1)) {
                MemorySegment y = KernelData.poisoned(arena, nOut);
                one.matmul(GgmlType.Q4_0, w, nOut, nIn, x, 1, y);
                want = KernelData.toArray(y, nOut);
            }
            for (int threads : new int[] {2, 3}) {
                try (NibbleCpu cpu = NibbleCpu.open(threads)) {
                    for (int i = 0; i < 3000; i++) {
                        MemorySegment out = KernelData.poisoned(arena, nOut);
                        cpu.matmul(GgmlType.Q4_0, w, nOut, nIn, x, 1, out);
                        assertArrayEquals(want, KernelData.toArray(out, nOut), "run " + i + " with " + threads + " threads");
                    }
                }
            }
        }
    }

    @Test
    void callersOnSeveralJavaThreadsGetTheirOwnResults() throws Exception {
        int nOut = 40, nIn = 96;
        try (NibbleCpu cpu = NibbleCpu.open(2); Arena arena = Arena.ofShared();
             ExecutorService callers = Executors.newFixedThreadPool(3)) {
            Random rnd = new Random(22);
            MemorySegment w = KernelData.randomWeights(arena, rnd, GgmlType.Q8_0, nOut, nIn);
            MemorySegment[] xs = new MemorySegment[3];
            float[][] want = new float[3][];
            for (int c = 0; c < 3; c++) {
                xs[c] = KernelData.floats(arena, KernelData.randomFloats(rnd, 2 * nIn, 1));
                MemorySegment y = KernelData.poisoned(arena, 2L * nOut);
                cpu.matmul(GgmlType.Q8_0, w, nOut, nIn, xs[c], 2, y);
                want[c] = KernelData.toArray(y, 2 * nOut);
            }
            Future<?>[] done = new Future<?>[3];
            for (int c = 0; c < 3; c++) {
                int caller = c;
                done[c] = callers.submit(() -> {
                    MemorySegment y = arena.allocate(8L * nOut, 64);
                    for (int i = 0; i < 500; i++) {
                        cpu.matmul(GgmlType.Q8_0, w, nOut, nIn, xs[caller], 2, y);
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

    /**
     * Two contexts (two models, say) with 2 and 1 threads, each driven by its own Java thread at the same time: each
     * keeps its own pool, scratch and path, and both give exactly what one context alone gives. The prefill shape uses
     * the scratch (quantized activations) and the pooled quantize step; the decode shape the spin/wake path; attention
     * the other pooled kernel. Results are compared as native memory, so that the callers spend most of their time in
     * the kernels and overlap often (a scratch shared between contexts fails here in about one run in ten).
     */
    @Test
    void twoContextsSideBySideOnTwoJavaThreadsMatchOneContext() throws Exception {
        int nOut = 300, nIn = 512, heads = 8, kvHeads = 2, headDim = 64, nKv = 40, runs = 3000;
        int[] tokens = {1, 9};
        try (Arena arena = Arena.ofShared(); ExecutorService callers = Executors.newFixedThreadPool(2)) {
            Random rnd = new Random(23);
            MemorySegment w = KernelData.randomWeights(arena, rnd, GgmlType.Q4_K, nOut, nIn);
            MemorySegment[] xs = new MemorySegment[2];
            for (int i = 0; i < 2; i++) {
                xs[i] = KernelData.floats(arena, KernelData.randomFloats(rnd, tokens[i] * nIn, 1));
            }
            MemorySegment q = KernelData.floats(arena, KernelData.randomFloats(rnd, heads * headDim, 1));
            MemorySegment kc = KernelData.floats(arena, KernelData.randomFloats(rnd, nKv * kvHeads * headDim, 1));
            MemorySegment vc = KernelData.floats(arena, KernelData.randomFloats(rnd, nKv * kvHeads * headDim, 1));
            MemorySegment pos = KernelData.ints(arena, new int[] {nKv - 1});
            float scale = (float) (1 / Math.sqrt(headDim));

            // the reference: one context, one caller
            MemorySegment[] want = new MemorySegment[2];
            MemorySegment wantAtt = KernelData.poisoned(arena, heads * headDim);
            try (NibbleCpu one = NibbleCpu.open(2)) {
                for (int i = 0; i < 2; i++) {
                    want[i] = KernelData.poisoned(arena, (long) tokens[i] * nOut);
                    one.matmul(GgmlType.Q4_K, w, nOut, nIn, xs[i], tokens[i], want[i]);
                }
                one.attention(q, 1, pos, MemorySegment.NULL, heads, kvHeads, headDim, GgmlType.F32, kc, vc, nKv, kvHeads * headDim, scale,
                        wantAtt);
            }

            try (NibbleCpu a = NibbleCpu.open(2); NibbleCpu b = NibbleCpu.open(1)) {
                assertEquals(2, a.threads());
                assertEquals(1, b.threads());
                NibbleCpu[] contexts = {a, b};
                CountDownLatch start = new CountDownLatch(2);
                List<Future<String>> done = new ArrayList<>();
                for (int c = 0; c < 2; c++) {
                    NibbleCpu cpu = contexts[c];
                    int first = c;
                    done.add(callers.submit(() -> {
                        MemorySegment[] y = {arena.allocate(4L * tokens[0] * nOut, 64),
                            arena.allocate(4L * tokens[1] * nOut, 64)};
                        MemorySegment att = arena.allocate(4L * heads * headDim, 64);
                        int wrong = 0, wrongAtt = 0;
                        start.countDown();
                        start.await(); // both callers run at once
                        for (int r = 0; r < runs; r++) {
                            int i = (first + r) % 2; // the two contexts alternate shapes out of step with each other
                            cpu.matmul(GgmlType.Q4_K, w, nOut, nIn, xs[i], tokens[i], y[i]);
                            wrong += y[i].mismatch(want[i]) == -1 ? 0 : 1;
                            if (r % 4 == 0) {
                                cpu.attention(q, 1, pos, MemorySegment.NULL, heads, kvHeads, headDim, GgmlType.F32, kc, vc, nKv,
                                        kvHeads * headDim, scale, att);
                                wrongAtt += att.mismatch(wantAtt) == -1 ? 0 : 1;
                            }
                        }
                        return cpu.threads() + "-thread context: " + wrong + " wrong matmuls, " + wrongAtt
                                + " wrong attentions";
                    }));
                }
                for (Future<String> f : done) {
                    String result = f.get();
                    assertTrue(result.endsWith(": 0 wrong matmuls, 0 wrong attentions"), result);
                }
            }
        }
    }

    /** The instruction-set path belongs to a context: forcing one context to scalar leaves the other on its own. */
    @Test
    void eachContextKeepsItsOwnPath() {
        try (NibbleCpu a = NibbleCpu.open(1); NibbleCpu b = NibbleCpu.open(1)) {
            int best = NibbleCpu.isaBest();
            assertEquals(a.isa(), b.isa(), "both start on the same default path");
            assertTrue(a.isa() <= best);
            a.setIsa(NibbleCpu.ISA_SCALAR);
            b.setIsa(best);
            assertEquals(NibbleCpu.ISA_SCALAR, a.isa());
            assertEquals(best, b.isa());
            if (best != NibbleCpu.ISA_SCALAR) {
                // the paths differ in rounding (int8 activations on SIMD), so the results show which one ran
                Random rnd = new Random(24);
                try (Arena arena = Arena.ofConfined()) {
                    int nOut = 16, nIn = 256;
                    MemorySegment w = KernelData.randomWeights(arena, rnd, GgmlType.Q4_0, nOut, nIn);
                    MemorySegment x = KernelData.floats(arena, KernelData.randomFloats(rnd, nIn, 1));
                    MemorySegment ya = KernelData.poisoned(arena, nOut), yb = KernelData.poisoned(arena, nOut);
                    a.matmul(GgmlType.Q4_0, w, nOut, nIn, x, 1, ya);
                    b.matmul(GgmlType.Q4_0, w, nOut, nIn, x, 1, yb);
                    MemorySegment yb2 = KernelData.poisoned(arena, nOut);
                    try (NibbleCpu c = NibbleCpu.open(1)) {
                        c.setIsa(best);
                        c.matmul(GgmlType.Q4_0, w, nOut, nIn, x, 1, yb2);
                    }
                    assertArrayEquals(KernelData.toArray(yb2, nOut), KernelData.toArray(yb, nOut));
                    assertTrue(!Arrays.equals(KernelData.toArray(ya, nOut), KernelData.toArray(yb, nOut)),
                            "the scalar context computed in f32, the other with int8 activations");
                }
            }
        }
    }
}
