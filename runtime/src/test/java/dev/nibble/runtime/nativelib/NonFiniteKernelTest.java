package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Random;
import java.util.function.Function;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * NaN and infinity in activations and weights reach the outputs that depend on them on every instruction-set path:
 * such an output is NaN (or the IEEE result, an infinity) on each path exactly where the scalar path's is not finite,
 * and never a finite number; outputs that do not depend on them stay finite. A NaN input gives NaN.
 */
class NonFiniteKernelTest {

    private static final float[] SPECIALS = {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY};
    private static final GgmlType[] TYPES = {GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q8_0,
        GgmlType.IQ4_NL, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.NF4};

    private static NibbleCpu cpu;

    @BeforeAll
    static void open() {
        cpu = NibbleCpu.open(2);
    }

    @AfterAll
    static void close() {
        cpu.close();
    }

    /** The outputs of {@code run} on every path this machine has, scalar first. */
    private static float[][] onEveryPath(Function<Arena, float[]> run) {
        int[] paths = KernelData.paths().toArray();
        float[][] out = new float[paths.length][];
        try (Arena arena = Arena.ofConfined()) {
            for (int p = 0; p < paths.length; p++) {
                cpu.setIsa(paths[p]);
                out[p] = run.apply(arena);
            }
        }
        return out;
    }

    /** What each element must be: FINITE, NAN, or NON_FINITE (NaN or an infinity, as the scalar path says). */
    private enum Want { FINITE, NAN, NON_FINITE, AS_SCALAR }

    private static void check(String what, float[][] byPath, Want[] want) {
        float[] scalar = byPath[0];
        for (int p = 0; p < byPath.length; p++) {
            String path = what + " on " + NibbleCpu.isaName(p);
            for (int i = 0; i < want.length; i++) {
                float v = byPath[p][i];
                boolean ok = switch (want[i]) {
                    case FINITE -> Float.isFinite(v);
                    case NAN -> Float.isNaN(v);
                    case NON_FINITE -> !Float.isFinite(v) && !Float.isFinite(scalar[i]);
                    case AS_SCALAR -> Float.isFinite(v) == Float.isFinite(scalar[i]) && Float.isNaN(v) == Float.isNaN(scalar[i])
                            || !Float.isFinite(v) && !Float.isFinite(scalar[i]);
                };
                if (!ok) {
                    fail(path + ": element " + i + " is " + v + " (scalar " + scalar[i] + "), want " + want[i]);
                }
            }
        }
    }

    private static Want[] fill(int n, Want w) {
        Want[] a = new Want[n];
        Arrays.fill(a, w);
        return a;
    }

    @Test
    void matmulCarriesNonFiniteActivationsToEveryRowOfTheirToken() {
        Random rnd = new Random(41);
        int nOut = 40, nIn = 512; // 40 rows: two full 16-row groups and a partial one
        for (GgmlType type : TYPES) {
            for (int tokens : new int[] {1, 3, 9}) { // decode kernels, small tiles, packed prefill
                float[] base = KernelData.randomFloats(rnd, tokens * nIn, 1);
                for (float special : SPECIALS) {
                    for (int col : new int[] {0, 9, 18, 31, 300, 511}) {
                        int bad = tokens / 2;
                        float[] x = base.clone();
                        x[bad * nIn + col] = special;
                        long seed = rnd.nextLong();
                        float[][] y = onEveryPath(arena -> {
                            MemorySegment w = KernelData.randomWeights(arena, new Random(seed), type, nOut, nIn);
                            MemorySegment out = KernelData.poisoned(arena, (long) tokens * nOut);
                            cpu.matmul(type, w, nOut, nIn, KernelData.floats(arena, x), tokens, out);
                            return KernelData.toArray(out, tokens * nOut);
                        });
                        Want[] want = fill(tokens * nOut, Want.FINITE);
                        Arrays.fill(want, bad * nOut, (bad + 1) * nOut, Float.isNaN(special) ? Want.NAN : Want.NON_FINITE);
                        check(type + " x[" + bad + "][" + col + "] = " + special + ", " + tokens + " tokens", y, want);
                    }
                }
            }
        }
    }

    @Test
    void matmulCarriesNonFiniteWeightsToTheirRowOnly() {
        Random rnd = new Random(42);
        int nOut = 40, nIn = 512, badRow = 21;
        short[] halves = {(short) 0x7E00, (short) 0x7C00, (short) 0xFC00}; // NaN, +Inf, -Inf as f16
        for (GgmlType type : TYPES) {
            for (int tokens : new int[] {1, 3, 9}) {
                float[] x = KernelData.randomFloats(rnd, tokens * nIn, 1);
                int[] scaleOffsets = switch (type) {
                    case F32, F16, BF16 -> new int[] {-1}; // an element, not a scale
                    case Q4_K -> new int[] {0, 2}; // d and dmin
                    case Q6_K -> new int[] {208};
                    default -> new int[] {0};
                };
                for (int s = 0; s < SPECIALS.length; s++) {
                    for (int off : scaleOffsets) {
                        float special = SPECIALS[s];
                        short half = halves[s];
                        long seed = rnd.nextLong();
                        float[][] y = onEveryPath(arena -> {
                            MemorySegment w = KernelData.randomWeights(arena, new Random(seed), type, nOut, nIn);
                            long row = type.byteSize(nIn) * badRow;
                            switch (type) {
                                case F32 -> w.set(ValueLayout.JAVA_FLOAT, row + 4 * 37, special);
                                case F16 -> w.set(ValueLayout.JAVA_SHORT, row + 2 * 37, half);
                                case BF16 -> w.set(ValueLayout.JAVA_SHORT, row + 2 * 37,
                                        (short) (Float.floatToRawIntBits(special) >>> 16));
                                default -> w.set(ValueLayout.JAVA_SHORT_UNALIGNED, row + type.typeSize() + off, half); // block 1
                            }
                            MemorySegment out = KernelData.poisoned(arena, (long) tokens * nOut);
                            cpu.matmul(type, w, nOut, nIn, KernelData.floats(arena, x), tokens, out);
                            return KernelData.toArray(out, tokens * nOut);
                        });
                        Want[] want = fill(tokens * nOut, Want.FINITE);
                        for (int t = 0; t < tokens; t++) {
                            want[t * nOut + badRow] = Float.isNaN(special) ? Want.NAN : Want.NON_FINITE;
                        }
                        check(type + " weight " + special + " at offset " + off + ", " + tokens + " tokens", y, want);
                    }
                }
            }
        }
    }

    @Test
    void softmaxRowWithNanOrInfinityIsNanAndMinusInfinityIsZero() {
        int n = 37; // 32 in vectors and a scalar tail of 5
        for (int pos : new int[] {5, 35}) {
            for (float special : SPECIALS) {
                float[] x = KernelData.randomFloats(new Random(43), 2 * n, 3);
                x[pos] = special; // row 0 only
                float[][] y = onEveryPath(arena -> {
                    MemorySegment s = KernelData.floats(arena, x);
                    cpu.softmax(s, 2, n);
                    return KernelData.toArray(s, 2 * n);
                });
                Want[] want = fill(2 * n, Want.FINITE);
                if (special != Float.NEGATIVE_INFINITY) {
                    Arrays.fill(want, 0, n, Want.NAN); // NaN propagates; +Inf - Inf is NaN
                }
                check("softmax x[" + pos + "] = " + special, y, want);
                if (special == Float.NEGATIVE_INFINITY) {
                    for (float[] path : y) {
                        assertTrue(Math.abs(path[pos]) < 1e-30f, "e^-inf is (about) 0: " + path[pos]);
                    }
                }
            }
        }
    }

    @Test
    void attentionCarriesNonFiniteQueriesKeysAndValuesToTheHeadsThatReadThem() {
        int heads = 4, kvHeads = 2, headDim = 64, nKv = 70; // two blocks of keys
        int stride = kvHeads * headDim;
        for (GgmlType kvType : new GgmlType[] {GgmlType.F32, GgmlType.F16}) {
            for (String where : new String[] {"q", "k", "v"}) {
                for (float special : SPECIALS) {
                    for (int key : new int[] {3, 66}) {
                        Random rnd = new Random(44);
                        float[] q = KernelData.randomFloats(rnd, heads * headDim, 1);
                        float[] k = KernelData.randomFloats(rnd, nKv * stride, 1);
                        float[] v = KernelData.randomFloats(rnd, nKv * stride, 1);
                        // query head 3 (kv head 1); key or value `key` of kv head 1
                        switch (where) {
                            case "q" -> q[3 * headDim + key % headDim] = special;
                            case "k" -> k[key * stride + headDim + 5] = special;
                            default -> v[key * stride + headDim + 7] = special;
                        }
                        float[][] out = onEveryPath(arena -> {
                            MemorySegment o = KernelData.poisoned(arena, heads * headDim);
                            cpu.attention(KernelData.floats(arena, q), 1, KernelData.ints(arena, new int[] {nKv - 1}),
                                    MemorySegment.NULL, heads, kvHeads, headDim, kvType, KernelData.cache(arena, k, kvType),
                                    KernelData.cache(arena, v, kvType), nKv, stride, 0.125f, o);
                            return KernelData.toArray(o, heads * headDim);
                        });
                        Want[] want = fill(heads * headDim, Want.FINITE);
                        int from = where.equals("q") ? 3 * headDim : 2 * headDim; // heads 2 and 3 read kv head 1
                        // NaN reaches every output of the heads concerned; an infinite score or value gives what the
                        // scalar path's IEEE arithmetic gives (a score of -inf weighs 0 and leaves a finite output)
                        Want bad = Float.isNaN(special) ? Want.NAN : Want.AS_SCALAR;
                        if (where.equals("v")) { // a value element reaches only its own element of the output
                            want[2 * headDim + 7] = want[3 * headDim + 7] = bad;
                        } else { // a score reaches the whole head
                            Arrays.fill(want, from, 4 * headDim, bad);
                        }
                        check("attention " + kvType + " " + where + " at key " + key + " = " + special, out, want);
                    }
                }
            }
        }
    }

    @Test
    void swigluCarriesNonFiniteGatesAndUps() {
        int n = 37;
        for (boolean inGate : new boolean[] {true, false}) {
            for (float special : SPECIALS) {
                Random rnd = new Random(45);
                float[] gate = KernelData.randomFloats(rnd, n, 4), up = KernelData.randomFloats(rnd, n, 4);
                for (int pos : new int[] {3, 35}) {
                    (inGate ? gate : up)[pos] = special;
                }
                float[][] out = onEveryPath(arena -> {
                    MemorySegment o = KernelData.poisoned(arena, n);
                    cpu.swiglu(KernelData.floats(arena, gate), KernelData.floats(arena, up), n, o);
                    return KernelData.toArray(o, n);
                });
                Want[] want = fill(n, Want.FINITE);
                Want bad = Float.isNaN(special) ? Want.NAN : Want.NON_FINITE;
                want[3] = want[35] = bad;
                check("swiglu " + (inGate ? "gate" : "up") + " = " + special, out, want);
            }
        }
    }

    @Test
    void rmsnormRopeAddAndConversionsCarryNonFiniteValues() {
        int n = 37;
        for (float special : SPECIALS) {
            float[] x = KernelData.randomFloats(new Random(46), 2 * n, 2);
            x[33] = special; // row 0
            float[] w = KernelData.randomFloats(new Random(47), n, 1);
            float[][] norm = onEveryPath(arena -> {
                MemorySegment y = KernelData.poisoned(arena, 2 * n);
                cpu.rmsnorm(KernelData.floats(arena, x), KernelData.floats(arena, w), 2, n, 1e-5f, y);
                return KernelData.toArray(y, 2 * n);
            });
            Want[] want = fill(2 * n, Want.FINITE);
            // NaN poisons the row's norm; an infinite one makes the other elements 0 and its own element NaN
            Arrays.fill(want, 0, n, Float.isNaN(special) ? Want.NAN : Want.AS_SCALAR);
            want[33] = Want.NAN;
            check("rmsnorm x = " + special, norm, want);

            float[][] sum = onEveryPath(arena -> {
                MemorySegment y = KernelData.poisoned(arena, 2 * n);
                cpu.add(KernelData.floats(arena, x), KernelData.floats(arena, x), 2 * n, y);
                return KernelData.toArray(y, 2 * n);
            });
            Want[] one = fill(2 * n, Want.FINITE);
            one[33] = Float.isNaN(special) ? Want.NAN : Want.NON_FINITE;
            check("add x = " + special, sum, one);

            float[][] halves = onEveryPath(arena -> {
                MemorySegment h = arena.allocate(4L * n, 64);
                MemorySegment back = KernelData.poisoned(arena, 2 * n);
                cpu.f32ToF16(KernelData.floats(arena, x), 2 * n, h);
                cpu.f16ToF32(h, 2 * n, back);
                return KernelData.toArray(back, 2 * n);
            });
            check("f16 round trip x = " + special, halves, one);
            for (float[] path : halves) {
                assertEquals(Float.isNaN(special) ? Float.NaN : special, path[33]);
            }

            int headDim = 8, nHeads = 4;
            float[] r = KernelData.randomFloats(new Random(48), nHeads * headDim, 1);
            r[headDim + 3] = special; // head 1, pair 1
            float[][] rot = onEveryPath(arena -> {
                MemorySegment s = KernelData.floats(arena, r);
                cpu.rope(s, 1, nHeads, headDim, KernelData.ints(arena, new int[] {7}), 10000f, 1f, MemorySegment.NULL);
                return KernelData.toArray(s, nHeads * headDim);
            });
            Want[] pair = fill(nHeads * headDim, Want.FINITE);
            pair[headDim + 2] = pair[headDim + 3] = Float.isNaN(special) ? Want.NAN : Want.NON_FINITE;
            check("rope x = " + special, rot, pair);
        }
    }

    @Test
    void embedCarriesNonFiniteWeights() {
        int rows = 4, cols = 256;
        for (GgmlType type : TYPES) {
            float[][] out = onEveryPath(arena -> {
                MemorySegment t = KernelData.randomWeights(arena, new Random(49), type, rows, cols);
                long row = type.byteSize(cols);
                switch (type) {
                    case F32 -> t.set(ValueLayout.JAVA_FLOAT, row + 4 * 5, Float.NaN);
                    case F16, BF16 -> t.set(ValueLayout.JAVA_SHORT, row + 2 * 5, (short) 0x7FC0);
                    default -> t.set(ValueLayout.JAVA_SHORT_UNALIGNED, row + (type == GgmlType.Q6_K ? 208 : 0), (short) 0x7E00);
                }
                MemorySegment o = KernelData.poisoned(arena, 2L * cols);
                cpu.embed(type, t, rows, cols, KernelData.ints(arena, new int[] {0, 1}), 2, o);
                return KernelData.toArray(o, 2 * cols);
            });
            Want[] want = fill(2 * cols, Want.FINITE);
            if (type == GgmlType.F32 || type == GgmlType.F16 || type == GgmlType.BF16) {
                want[cols + 5] = Want.NAN;
            } else {
                Arrays.fill(want, cols, cols + (int) type.blockSize(), Want.NAN); // the block whose scale is NaN
            }
            check("embed " + type, out, want);
        }
    }
}
