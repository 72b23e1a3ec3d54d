package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** nb_attention against a float64 softmax-attention reference: grouped heads, causal positions, f32 and f16 caches. */
class AttentionKernelTest {

    private static NibbleCpu cpu;

    @BeforeAll
    static void twoThreads() {
        cpu = NibbleCpu.open(2);
    }

    @AfterAll
    static void close() {
        cpu.close();
    }

    static Stream<Arguments> cases() {
        // nTok, firstPos, nHeads, nKvHeads, headDim, nKv, extra stride
        int[][] shapes = {
            {1, 36, 4, 1, 64, 37, 0},     // decode, 4 query heads on one kv head
            {5, 10, 8, 2, 80, 15, 16},    // prefill after 10 cached tokens, padded cache rows
            {1, 0, 3, 3, 6, 1, 0},        // first token, no grouping, odd head size
            {3, 200, 12, 1, 32, 203, 0},  // a group of 12 (more than processed at once), several key blocks
            {2, 50, 2, 1, 16, 20, 3},     // positions past the cache: attend to all nKv
            {7, 0, 64, 8, 128, 7, 0},     // Llama-2-70B head layout, prompt from position 0
        };
        List<Arguments> list = new ArrayList<>();
        for (int isa : KernelData.paths().toArray()) {
            for (GgmlType kv : new GgmlType[] {GgmlType.F32, GgmlType.F16}) {
                for (int[] s : shapes) {
                    list.add(Arguments.of(NibbleCpu.isaName(isa), kv, s));
                }
            }
        }
        return list.stream();
    }

    @ParameterizedTest(name = "{0} {1} {2}")
    @MethodSource("cases")
    void attentionMatchesFloat64Reference(String isa, GgmlType kvType, int[] s) {
        cpu.setIsa(MatmulKernelTest.isaId(isa));
        int nTok = s[0], firstPos = s[1], nHeads = s[2], nKvHeads = s[3], hd = s[4], nKv = s[5];
        long stride = (long) nKvHeads * hd + s[6];
        Random rnd = new Random(nTok * 1000L + nHeads * 10L + hd);
        try (Arena arena = Arena.ofConfined()) {
            float[] q = KernelData.randomFloats(rnd, nTok * nHeads * hd, 1);
            float[] kf = KernelData.randomFloats(rnd, (int) (nKv * stride), 1);
            float[] vf = KernelData.randomFloats(rnd, (int) (nKv * stride), 2);
            if (kvType == GgmlType.F16) { // the reference sees exactly the values the cache holds
                KernelData.roundToHalf(kf);
                KernelData.roundToHalf(vf);
            }
            int[] pos = new int[nTok];
            for (int t = 0; t < nTok; t++) {
                pos[t] = firstPos + t;
            }
            float scale = (float) (1 / Math.sqrt(hd));
            MemorySegment out = KernelData.poisoned(arena, (long) nTok * nHeads * hd);
            cpu.attention(KernelData.floats(arena, q), nTok, KernelData.ints(arena, pos), MemorySegment.NULL, nHeads,
                    nKvHeads, hd, kvType, KernelData.cache(arena, kf, kvType), KernelData.cache(arena, vf, kvType), nKv,
                    stride, scale, out);

            double[] ref = reference(q, kf, vf, pos, new int[nTok], nHeads, nKvHeads, hd, nKv, stride, scale);
            double err = KernelData.relativeError(KernelData.toArray(out, q.length), ref);
            assertTrue(err < 1e-5, "relative error " + err);
        }
    }

    /**
     * Tokens of several sequences in one cache (a KV pool): each token has its own start row and position, in no
     * particular order, several tokens of one sequence among them, and rows of other sequences in between.
     */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("pathsAndTypes")
    void tokensOfManySequencesEachSeeTheirOwnRows(String isa, GgmlType kvType) {
        cpu.setIsa(MatmulKernelTest.isaId(isa));
        int nHeads = 6, nKvHeads = 2, hd = 40, nKv = 70, rows = 301, nTok = 9;
        long stride = (long) nKvHeads * hd;
        Random rnd = new Random(77);
        int[] start = {0, 120, 120, 120, 33, 230, 7, 230, 200};
        int[] pos = {5, 0, 1, 2, 69, 70, 0, 12, 99}; // 70 and 99 are past nKv: those tokens see nKv positions
        try (Arena arena = Arena.ofConfined()) {
            float[] q = KernelData.randomFloats(rnd, nTok * nHeads * hd, 1);
            float[] kf = KernelData.randomFloats(rnd, (int) (rows * stride), 1);
            float[] vf = KernelData.randomFloats(rnd, (int) (rows * stride), 2);
            if (kvType == GgmlType.F16) {
                KernelData.roundToHalf(kf);
                KernelData.roundToHalf(vf);
            }
            float scale = (float) (1 / Math.sqrt(hd));
            MemorySegment out = KernelData.poisoned(arena, (long) nTok * nHeads * hd);
            cpu.attention(KernelData.floats(arena, q), nTok, KernelData.ints(arena, pos), KernelData.ints(arena, start),
                    nHeads, nKvHeads, hd, kvType, KernelData.cache(arena, kf, kvType), KernelData.cache(arena, vf, kvType),
                    nKv, stride, scale, out);
            double[] ref = reference(q, kf, vf, pos, start, nHeads, nKvHeads, hd, nKv, stride, scale);
            double err = KernelData.relativeError(KernelData.toArray(out, q.length), ref);
            assertTrue(err < 1e-5, "relative error " + err);
            // a token whose rows would end past the cache is refused before the call
            int[] late = start.clone();
            late[2] = rows - 1;
            assertThrows(IllegalArgumentException.class, () -> cpu.attention(KernelData.floats(arena, q), nTok,
                    KernelData.ints(arena, pos), KernelData.ints(arena, late), nHeads, nKvHeads, hd, kvType,
                    KernelData.cache(arena, kf, kvType), KernelData.cache(arena, vf, kvType), nKv, stride, scale, out));
        }
    }

    static Stream<Arguments> pathsAndTypes() {
        List<Arguments> list = new ArrayList<>();
        for (int isa : KernelData.paths().toArray()) {
            for (GgmlType kv : new GgmlType[] {GgmlType.F32, GgmlType.F16}) {
                list.add(Arguments.of(NibbleCpu.isaName(isa), kv));
            }
        }
        return list.stream();
    }

    /**
     * Softmax attention in float64: query t sees positions 0..min(pos[t], nKv - 1) of its sequence, which begins at
     * row start[t]; head h reads KV head h / group.
     */
    static double[] reference(float[] q, float[] kf, float[] vf, int[] pos, int[] start, int nHeads, int nKvHeads,
                              int hd, int nKv, long stride, float scale) {
        double[] ref = new double[q.length];
        int group = nHeads / nKvHeads;
        for (int t = 0; t < pos.length; t++) {
            int nCtx = Math.min(pos[t] + 1, nKv);
            for (int h = 0; h < nHeads; h++) {
                int kvh = h / group;
                double[] sc = new double[nCtx];
                double m = Double.NEGATIVE_INFINITY, sum = 0;
                for (int j = 0; j < nCtx; j++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++) {
                        d += (double) q[(t * nHeads + h) * hd + i] * kf[(int) ((start[t] + j) * stride) + kvh * hd + i];
                    }
                    sc[j] = d * scale;
                    m = Math.max(m, sc[j]);
                }
                for (int j = 0; j < nCtx; j++) {
                    sc[j] = Math.exp(sc[j] - m);
                    sum += sc[j];
                }
                for (int j = 0; j < nCtx; j++) {
                    for (int i = 0; i < hd; i++) {
                        ref[(t * nHeads + h) * hd + i] += sc[j] / sum * vf[(int) ((start[t] + j) * stride) + kvh * hd + i];
                    }
                }
            }
        }
        return ref;
    }
}
