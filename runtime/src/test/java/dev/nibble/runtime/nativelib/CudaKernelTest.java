package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every libnibble_cuda kernel against the plain-Java float64 references on fresh random inputs at odd sizes. Runs on a
 * machine with a CUDA GPU (bench/device/round.sh); elsewhere it is skipped with the reason.
 */
class CudaKernelTest {

    private static NibbleCuda cuda;

    @BeforeAll
    static void open() {
        GpuTests.assumeGpu(CudaKernelTest.class);
        cuda = NibbleCuda.open(0);
    }

    @AfterAll
    static void close() {
        if (cuda != null) {
            cuda.close();
        }
    }

    /** Host floats copied into a new device buffer, freed with the arena. */
    private static MemorySegment device(Arena arena, MemorySegment host) {
        MemorySegment d = cuda.alloc(Math.max(host.byteSize(), 4)).reinterpret(Math.max(host.byteSize(), 4), arena,
                cuda::free);
        cuda.upload(host, d);
        return d;
    }

    private static MemorySegment device(Arena arena, float[] values) {
        return device(arena, KernelData.floats(arena, values));
    }

    /** A device buffer of {@code count} floats poisoned with NaN (all bits set), so an unwritten element shows. */
    private static MemorySegment poisoned(Arena arena, long count) {
        long bytes = Math.max(4, 4 * count);
        MemorySegment d = cuda.alloc(bytes).reinterpret(bytes, arena, cuda::free);
        cuda.memset(d, 0xFF);
        return d;
    }

    private static float[] read(Arena arena, MemorySegment d, int count) {
        MemorySegment host = arena.allocate(4L * count, 64);
        cuda.read(d, host);
        return KernelData.toArray(host, count);
    }

    static Stream<Arguments> matmulCases() {
        int[][] shapes = { // rows, cols in blocks, tokens: GEMV / integer (<= 64 tokens) and tensor-core paths, odd edges
            {1, 1, 1}, {37, 3, 1}, {129, 2, 2}, {3, 5, 7}, {64, 4, 8}, {41, 3, 9}, {41, 3, 16}, {96, 2, 17},
            {67, 9, 33}, {300, 5, 64}, {130, 3, 77}, {257, 4, 130},
        };
        List<Arguments> list = new ArrayList<>();
        for (GgmlType type : GgmlType.values()) {
            for (int[] s : shapes) {
                list.add(Arguments.of(type, s[0], s[1] * Math.max(type.blockSize(), 32), s[2]));
            }
        }
        return list.stream();
    }

    @ParameterizedTest(name = "{0} {1}x{2} tokens {3}")
    @MethodSource("matmulCases")
    void matmulMatchesFloat64Reference(GgmlType type, int rows, int cols, int tokens) {
        Random rnd = new Random(rows * 31L + cols * 7L + tokens + type.id());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment w = KernelData.randomWeights(arena, rnd, type, rows, cols);
            float[] x = KernelData.randomFloats(rnd, tokens * cols, 1);
            long bytes = NibbleCuda.weightBytes(type, rows, cols);
            MemorySegment dw = cuda.alloc(bytes).reinterpret(bytes, arena, cuda::free);
            cuda.uploadWeight(type, w, rows, cols, dw);
            MemorySegment y = poisoned(arena, (long) tokens * rows);
            cuda.matmul(type, dw, rows, cols, device(arena, x), tokens, y);

            KernelData.MatmulReference ref = KernelData.matmul(KernelData.dequantize(type, w, rows, cols), x, rows, cols,
                    tokens);
            // Rounded operands (activations to 8 bits on the integer path of quantized types up to 64 tokens, both
            // operands to f16 on the tensor cores) are measured against the norm of the terms, as in MatmulKernelTest.
            boolean floatPath = tokens <= 8 && !type.isQuantized() || type == GgmlType.NF4 && tokens <= 8;
            boolean intPath = integerPath(type) && tokens <= 64;
            float[] got = read(arena, y, tokens * rows);
            double err = floatPath ? KernelData.relativeError(got, ref.out()) : ref.errorAgainstTerms(got);
            double tolerance = floatPath ? 1e-4 : intPath ? 1e-2 : 3e-3;
            assertTrue(err < tolerance, type + " relative error " + err + " exceeds " + tolerance);
        }
    }

    /** The types whose matmul takes the integer path up to 64 tokens (dp4a GEMV to 8, int8 tensor cores 9..64). */
    private static boolean integerPath(GgmlType type) {
        return type == GgmlType.Q4_0 || type == GgmlType.Q8_0 || type == GgmlType.Q4_K || type == GgmlType.Q6_K
                || type == GgmlType.IQ4_NL;
    }

    static Stream<GgmlType> invariantTypes() {
        return Stream.of(GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q8_0);
    }

    /**
     * Batch invariance, for nb_cuda_matmul and nb_cuda_matmul_swiglu (the greedy text of a sequence must not depend on
     * what it is batched with), within each of the two integer kernels: up to 8 tokens (the GEMV) every token of a call
     * of k tokens gives exactly the bits of a call with that token alone; from 9 to 64 tokens (the tensor-core kernel)
     * 64 tokens in one call give exactly the bits of the same tokens in calls of 9 or more. Across the two ranges the
     * bits differ (two summation orders).
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("invariantTypes")
    void matmulIsBatchInvariant(GgmlType type) {
        Random rnd = new Random(7 + type.id());
        int rows = 300, maxTokens = 64, gemvTokens = 8;
        for (int cols : new int[] {4096, 11008 / type.blockSize() * type.blockSize()}) {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment w = uploaded(arena, rnd, type, rows, cols, new MemorySegment[1]);
                MemorySegment up = uploaded(arena, rnd, type, rows, cols, new MemorySegment[1]);
                MemorySegment x = device(arena, KernelData.randomFloats(rnd, maxTokens * cols, 1));
                for (boolean swiglu : new boolean[] {false, true}) {
                    String what = type + (swiglu ? " swiglu " : " matmul ") + rows + "x" + cols + ", ";
                    // up to 8 tokens: each of the first 8 alone, then the first k in one call
                    MemorySegment alone = poisoned(arena, (long) gemvTokens * rows);
                    for (int t = 0; t < gemvTokens; t++) {
                        call(type, swiglu, w, up, rows, cols, x, t, 1, alone);
                    }
                    MemorySegment want = arena.allocate(4L * gemvTokens * rows, 64);
                    cuda.read(alone, want);
                    for (int k : new int[] {2, 3, 8}) {
                        MemorySegment y = poisoned(arena, (long) k * rows);
                        call(type, swiglu, w, up, rows, cols, x, 0, k, y);
                        assertSameRows(arena, y, want, k, rows, what + k + " tokens against each token alone");
                    }
                    // 9 to 64 tokens: all 64 in one call, then in consecutive calls of these sizes
                    MemorySegment whole = poisoned(arena, (long) maxTokens * rows);
                    call(type, swiglu, w, up, rows, cols, x, 0, maxTokens, whole);
                    MemorySegment wantWhole = arena.allocate(4L * maxTokens * rows, 64);
                    cuda.read(whole, wantWhole);
                    for (int[] sizes : new int[][] {{9, 16, 39}, {17, 47}}) {
                        MemorySegment y = poisoned(arena, (long) maxTokens * rows);
                        int t0 = 0;
                        for (int n : sizes) {
                            call(type, swiglu, w, up, rows, cols, x, t0, n, y);
                            t0 += n;
                        }
                        assertSameRows(arena, y, wantWhole, maxTokens, rows,
                                what + Arrays.toString(sizes) + " tokens against 64 in one call");
                    }
                }
            }
        }
    }

    /** Tokens [t0, t0 + n) of x through nb_cuda_matmul (w) or nb_cuda_matmul_swiglu (w, up) into the same rows of y. */
    private static void call(GgmlType type, boolean swiglu, MemorySegment w, MemorySegment up, int rows, int cols,
            MemorySegment x, int t0, int n, MemorySegment y) {
        MemorySegment xs = x.asSlice(4L * t0 * cols, 4L * n * cols);
        MemorySegment ys = y.asSlice(4L * t0 * rows, 4L * n * rows);
        if (swiglu) {
            cuda.matmulSwiglu(type, w, up, rows, cols, xs, n, ys);
        } else {
            cuda.matmul(type, w, rows, cols, xs, n, ys);
        }
    }

    /** The first {@code tokens} rows of device y bit for bit equal to those of host {@code want}. */
    private static void assertSameRows(Arena arena, MemorySegment y, MemorySegment want, int tokens, int rows,
            String what) {
        MemorySegment got = arena.allocate(4L * tokens * rows, 64);
        cuda.read(y.asSlice(0, 4L * tokens * rows), got);
        long at = got.mismatch(want.asSlice(0, 4L * tokens * rows));
        assertEquals(-1L, at, what + ": output " + (at / 4) + " (token " + (at / 4 / rows) + ") differs");
    }

    /** An uploaded weight of random values, freed with the arena; {@code host} receives the file bytes. */
    private static MemorySegment uploaded(Arena arena, Random rnd, GgmlType type, int rows, int cols, MemorySegment[] host) {
        host[0] = KernelData.randomWeights(arena, rnd, type, rows, cols);
        long bytes = NibbleCuda.weightBytes(type, rows, cols);
        MemorySegment d = cuda.alloc(bytes).reinterpret(bytes, arena, cuda::free);
        cuda.uploadWeight(type, host[0], rows, cols, d);
        return d;
    }

    @ParameterizedTest(name = "tokens {0}")
    @MethodSource("fusedTokenCounts")
    void sharedInputProjectionsEqualSeparateMatmuls(int tokens) {
        Random rnd = new Random(tokens);
        int cols = 512;
        GgmlType[][] typeSets = {{GgmlType.Q4_K, GgmlType.Q4_K, GgmlType.Q4_K}, {GgmlType.Q4_K, GgmlType.Q4_K, GgmlType.Q6_K},
            {GgmlType.Q4_0, GgmlType.F16, GgmlType.Q8_0, GgmlType.IQ4_NL}};
        for (GgmlType[] types : typeSets) {
            try (Arena arena = Arena.ofConfined()) {
                int n = types.length;
                long[] rows = new long[n];
                MemorySegment[] ws = new MemorySegment[n];
                MemorySegment[] ys = new MemorySegment[n];
                MemorySegment x = device(arena, KernelData.randomFloats(rnd, tokens * cols, 1));
                for (int j = 0; j < n; j++) {
                    rows[j] = j == 0 ? 96 : 33 + 32 * j;
                    ws[j] = uploaded(arena, rnd, types[j], (int) rows[j], cols, new MemorySegment[1]);
                    ys[j] = poisoned(arena, tokens * rows[j]);
                }
                cuda.matmulSharedInput(types, ws, rows, cols, x, tokens, ys);
                for (int j = 0; j < n; j++) {
                    MemorySegment alone = poisoned(arena, tokens * rows[j]);
                    cuda.matmul(types[j], ws[j], rows[j], cols, x, tokens, alone);
                    int count = (int) (tokens * rows[j]);
                    float[] want = read(arena, alone, count);
                    double[] ref = new double[count];
                    for (int i = 0; i < count; i++) {
                        ref[i] = want[i];
                    }
                    double err = KernelData.relativeError(read(arena, ys[j], count), ref);
                    assertTrue(err < 1e-5, java.util.Arrays.toString(types) + " weight " + j + ": " + err);
                }
            }
        }
    }

    static Stream<Integer> fusedTokenCounts() {
        return Stream.of(1, 2, 3, 8, 9, 40, 64);
    }

    @ParameterizedTest(name = "tokens {0}")
    @MethodSource("fusedTokenCounts")
    void matmulSwigluEqualsTwoMatmulsAndSwiglu(int tokens) {
        Random rnd = new Random(100 + tokens);
        for (GgmlType type : new GgmlType[] {GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.F16}) {
            try (Arena arena = Arena.ofConfined()) {
                int rows = 160, cols = 768;
                MemorySegment g = uploaded(arena, rnd, type, rows, cols, new MemorySegment[1]);
                MemorySegment u = uploaded(arena, rnd, type, rows, cols, new MemorySegment[1]);
                MemorySegment x = device(arena, KernelData.randomFloats(rnd, tokens * cols, 1));
                MemorySegment fused = poisoned(arena, (long) tokens * rows);
                cuda.matmulSwiglu(type, g, u, rows, cols, x, tokens, fused);
                MemorySegment gy = poisoned(arena, (long) tokens * rows);
                MemorySegment uy = poisoned(arena, (long) tokens * rows);
                cuda.matmul(type, g, rows, cols, x, tokens, gy);
                cuda.matmul(type, u, rows, cols, x, tokens, uy);
                cuda.swiglu(gy, uy, (long) tokens * rows, gy);
                float[] want = read(arena, gy, tokens * rows);
                double[] ref = new double[want.length];
                for (int i = 0; i < want.length; i++) {
                    ref[i] = want[i];
                }
                double err = KernelData.relativeError(read(arena, fused, tokens * rows), ref);
                assertTrue(err < 1e-5, type + ": " + err);
            }
        }
    }

    @Test
    void ropeStoreEqualsRopeAndKvStore() {
        Random rnd = new Random(21);
        int tokens = 7, heads = 8, kvHeads = 2, hd = 64, capacity = 40, rowLen = kvHeads * hd;
        try (Arena arena = Arena.ofConfined()) {
            float[] q = KernelData.randomFloats(rnd, tokens * heads * hd, 1);
            float[] k = KernelData.randomFloats(rnd, tokens * rowLen, 1);
            float[] v = KernelData.randomFloats(rnd, tokens * rowLen, 1);
            float[] factors = new float[hd / 2];
            for (int i = 0; i < factors.length; i++) {
                factors[i] = 1 + rnd.nextFloat();
            }
            MemorySegment pos = device(arena, KernelData.ints(arena, new int[] {3, 4, 5, 39, 40, -1, 0}));
            MemorySegment f = device(arena, factors);
            long cacheBytes = 2L * capacity * rowLen;
            MemorySegment[] caches = new MemorySegment[4];
            for (int i = 0; i < 4; i++) {
                caches[i] = cuda.alloc(cacheBytes).reinterpret(cacheBytes, arena, cuda::free);
                cuda.memset(caches[i], 0x11);
            }
            MemorySegment fusedQ = device(arena, q);
            cuda.ropeStore(fusedQ, device(arena, k), device(arena, v), tokens, heads, kvHeads, hd, pos,
                    MemorySegment.NULL, 10000f, 1f, f, caches[0], caches[1]);
            MemorySegment plainQ = device(arena, q);
            MemorySegment plainK = device(arena, k);
            cuda.rope(plainQ, tokens, heads, hd, pos, 10000f, 1f, f);
            cuda.rope(plainK, tokens, kvHeads, hd, pos, 10000f, 1f, f);
            cuda.kvStore(plainK, tokens, rowLen, pos, MemorySegment.NULL, caches[2]);
            cuda.kvStore(device(arena, v), tokens, rowLen, pos, MemorySegment.NULL, caches[3]);
            float[] want = read(arena, plainQ, q.length);
            double[] ref = new double[want.length];
            for (int i = 0; i < want.length; i++) {
                ref[i] = want[i];
            }
            assertTrue(KernelData.relativeError(read(arena, fusedQ, q.length), ref) < 1e-6, "rotated queries");
            for (int c = 0; c < 2; c++) {
                MemorySegment a = arena.allocate(cacheBytes, 64);
                MemorySegment b = arena.allocate(cacheBytes, 64);
                cuda.read(caches[c], a);
                cuda.read(caches[c + 2], b);
                assertEquals(-1L, a.mismatch(b), (c == 0 ? "key" : "value") + " cache differs");
            }
        }
    }

    @Test
    void ropeStoreWithStartsWritesRowsStartPlusPositionAndNothingElse() {
        Random rnd = new Random(23);
        int tokens = 6, heads = 8, kvHeads = 2, hd = 64, capacity = 50, rowLen = kvHeads * hd;
        int[] pos = {3, 0, 7, 2, 45, 1};
        int[] start = {10, 30, 10, 0, 20, 48}; // rows 13, 30, 17, 2, 65 (past the cache: not stored), 49
        try (Arena arena = Arena.ofConfined()) {
            float[] q = KernelData.randomFloats(rnd, tokens * heads * hd, 1);
            float[] k = KernelData.randomFloats(rnd, tokens * rowLen, 1);
            float[] v = KernelData.randomFloats(rnd, tokens * rowLen, 1);
            MemorySegment dPos = device(arena, KernelData.ints(arena, pos));
            MemorySegment dStart = device(arena, KernelData.ints(arena, start));
            long cacheBytes = 2L * capacity * rowLen;
            MemorySegment[] caches = new MemorySegment[4];
            for (int i = 0; i < 4; i++) {
                caches[i] = cuda.alloc(cacheBytes).reinterpret(cacheBytes, arena, cuda::free);
                cuda.memset(caches[i], 0x11);
            }
            MemorySegment fusedQ = device(arena, q);
            cuda.ropeStore(fusedQ, device(arena, k), device(arena, v), tokens, heads, kvHeads, hd, dPos, dStart,
                    10000f, 1f, MemorySegment.NULL, caches[0], caches[1]);
            // the same through rope and kvStore with starts: identical bits
            MemorySegment plainQ = device(arena, q);
            MemorySegment plainK = device(arena, k);
            cuda.rope(plainQ, tokens, heads, hd, dPos, 10000f, 1f, MemorySegment.NULL);
            cuda.rope(plainK, tokens, kvHeads, hd, dPos, 10000f, 1f, MemorySegment.NULL);
            cuda.kvStore(plainK, tokens, rowLen, dPos, dStart, caches[2]);
            cuda.kvStore(device(arena, v), tokens, rowLen, dPos, dStart, caches[3]);
            float[] rotatedQ = read(arena, plainQ, q.length);
            float[] fused = read(arena, fusedQ, q.length);
            for (int i = 0; i < q.length; i++) {
                assertEquals(rotatedQ[i], fused[i], 0, "query element " + i);
            }
            MemorySegment[] host = new MemorySegment[4];
            for (int c = 0; c < 4; c++) {
                host[c] = arena.allocate(cacheBytes, 64);
                cuda.read(caches[c], host[c]);
            }
            assertEquals(-1L, host[0].mismatch(host[2]), "key cache differs from rope + kvStore");
            assertEquals(-1L, host[1].mismatch(host[3]), "value cache differs from kvStore");
            // rows start + pos hold the token's key (rotated by its position's angle, float64 reference) and value;
            // every other row is untouched
            double[] keyRef = new double[rowLen];
            for (int row = 0; row < capacity; row++) {
                int t = -1;
                for (int i = 0; i < tokens; i++) {
                    if (start[i] + pos[i] == row) {
                        t = i;
                    }
                }
                float[] gotK = new float[rowLen];
                for (int i = 0; i < rowLen; i++) {
                    short hk = host[0].getAtIndex(ValueLayout.JAVA_SHORT, (long) row * rowLen + i);
                    short hv = host[1].getAtIndex(ValueLayout.JAVA_SHORT, (long) row * rowLen + i);
                    if (t < 0) {
                        assertEquals((short) 0x1111, hk, "key row " + row + " is not any token's: untouched");
                        assertEquals((short) 0x1111, hv, "value row " + row + " is not any token's: untouched");
                        continue;
                    }
                    gotK[i] = Float.float16ToFloat(hk);
                    assertEquals(Float.floatToFloat16(v[t * rowLen + i]), hv, "value row " + row + " element " + i);
                }
                if (t >= 0) {
                    for (int h = 0; h < kvHeads; h++) {
                        for (int i = 0; i < hd / 2; i++) {
                            int e = h * hd + 2 * i;
                            double a = pos[t] * Math.pow(10000, -2.0 * i / hd);
                            double x0 = k[t * rowLen + e], x1 = k[t * rowLen + e + 1];
                            keyRef[e] = x0 * Math.cos(a) - x1 * Math.sin(a);
                            keyRef[e + 1] = x0 * Math.sin(a) + x1 * Math.cos(a);
                        }
                    }
                    double err = KernelData.relativeError(gotK, keyRef);
                    assertTrue(err < 1e-3, "key row " + row + ": " + err);
                }
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("types")
    void embedCopiesDequantizedRowsAndZerosForOutOfRangeIds(GgmlType type) {
        int rows = 19, cols = 3 * Math.max(type.blockSize(), 32);
        Random rnd = new Random(type.id());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment w = KernelData.randomWeights(arena, rnd, type, rows, cols);
            long bytes = NibbleCuda.weightBytes(type, rows, cols);
            MemorySegment dw = cuda.alloc(bytes).reinterpret(bytes, arena, cuda::free);
            cuda.uploadWeight(type, w, rows, cols, dw);
            int[] ids = {18, 0, 7, 7, 19, -1};
            MemorySegment out = poisoned(arena, (long) ids.length * cols);
            cuda.embed(type, dw, rows, cols, device(arena, KernelData.ints(arena, ids)), ids.length, out);
            float[] got = read(arena, out, ids.length * cols);
            float[][] wf = KernelData.dequantize(type, w, rows, cols);
            double[] ref = new double[got.length];
            for (int i = 0; i < ids.length; i++) {
                for (int c = 0; c < cols; c++) {
                    boolean inside = ids[i] >= 0 && ids[i] < rows;
                    ref[i * cols + c] = inside ? wf[ids[i]][c] : 0;
                    if (!inside) {
                        assertEquals(0f, got[i * cols + c], 0f, type + " id " + ids[i] + " is outside: zeros");
                    }
                }
            }
            assertTrue(KernelData.relativeError(got, ref) < 1e-6, type + " rows differ from the dequantizer");
        }
    }

    static Stream<GgmlType> types() {
        return Stream.of(GgmlType.values());
    }

    @Test
    void rmsnormAndFusedAddRmsnormMatchReference() {
        Random rnd = new Random(5);
        for (int n : new int[] {37, 256, 4096, 5120}) {
            for (int rows : new int[] {1, 7}) {
                try (Arena arena = Arena.ofConfined()) {
                    float[] x = KernelData.randomFloats(rnd, rows * n, 3);
                    float[] b = KernelData.randomFloats(rnd, rows * n, 1);
                    float[] w = KernelData.randomFloats(rnd, n, 2);
                    MemorySegment y = poisoned(arena, (long) rows * n);
                    cuda.rmsnorm(device(arena, x), device(arena, w), rows, n, 1e-5f, y);
                    assertTrue(KernelData.relativeError(read(arena, y, rows * n), rmsnorm(x, w, rows, n)) < 1e-5);

                    MemorySegment dx = device(arena, x);
                    MemorySegment db = device(arena, b);
                    cuda.addRmsnorm(dx, db, device(arena, w), rows, n, 1e-5f, db); // out may be b, as Model uses it
                    float[] sum = new float[x.length];
                    double[] sumRef = new double[x.length];
                    for (int i = 0; i < x.length; i++) {
                        sum[i] = x[i] + b[i];
                        sumRef[i] = sum[i];
                    }
                    assertTrue(KernelData.relativeError(read(arena, dx, rows * n), sumRef) < 1e-6, "x += b");
                    assertTrue(KernelData.relativeError(read(arena, db, rows * n), rmsnorm(sum, w, rows, n)) < 1e-5);
                }
            }
        }
    }

    private static double[] rmsnorm(float[] x, float[] w, int rows, int n) {
        double[] ref = new double[rows * n];
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            for (int i = 0; i < n; i++) {
                ss += (double) x[r * n + i] * x[r * n + i];
            }
            double scale = 1 / Math.sqrt(ss / n + 1e-5);
            for (int i = 0; i < n; i++) {
                ref[r * n + i] = x[r * n + i] * scale * w[i];
            }
        }
        return ref;
    }

    @Test
    void ropeMatchesReferenceWithAndWithoutFactors() {
        Random rnd = new Random(9);
        for (int hd : new int[] {32, 64, 128}) {
            for (boolean factors : new boolean[] {false, true}) {
                try (Arena arena = Arena.ofConfined()) {
                    int tokens = 5, heads = 3;
                    float[] x = KernelData.randomFloats(rnd, tokens * heads * hd, 1);
                    int[] pos = {0, 1, 17, 4000, 30000};
                    float[] f = new float[hd / 2];
                    for (int i = 0; i < f.length; i++) {
                        f[i] = 1 + rnd.nextFloat() * 7;
                    }
                    MemorySegment dx = device(arena, x);
                    cuda.rope(dx, tokens, heads, hd, device(arena, KernelData.ints(arena, pos)), 10000f, 0.5f,
                            factors ? device(arena, f) : MemorySegment.NULL);
                    double[] ref = new double[x.length];
                    for (int t = 0; t < tokens; t++) {
                        for (int h = 0; h < heads; h++) {
                            int base = (t * heads + h) * hd;
                            for (int i = 0; i < hd / 2; i++) {
                                double freq = 0.5 * Math.pow(10000, -2.0 * i / hd) / (factors ? f[i] : 1);
                                double a = pos[t] * freq, c = Math.cos(a), s = Math.sin(a);
                                ref[base + 2 * i] = x[base + 2 * i] * c - x[base + 2 * i + 1] * s;
                                ref[base + 2 * i + 1] = x[base + 2 * i] * s + x[base + 2 * i + 1] * c;
                            }
                        }
                    }
                    // angles up to 30000 rad in float32: the argument itself carries ~1e-3 relative error
                    double err = KernelData.relativeError(read(arena, dx, x.length), ref);
                    assertTrue(err < 2e-3, "head dim " + hd + " factors " + factors + ": " + err);
                }
            }
        }
    }

    @Test
    void swigluAndAddMatchReference() {
        Random rnd = new Random(3);
        for (int n : new int[] {1, 33, 11008, 100_003}) {
            try (Arena arena = Arena.ofConfined()) {
                float[] a = KernelData.randomFloats(rnd, n, 6);
                float[] b = KernelData.randomFloats(rnd, n, 2);
                MemorySegment out = poisoned(arena, n);
                cuda.swiglu(device(arena, a), device(arena, b), n, out);
                double[] ref = new double[n];
                for (int i = 0; i < n; i++) {
                    ref[i] = a[i] / (1 + Math.exp(-a[i])) * b[i];
                }
                assertTrue(KernelData.relativeError(read(arena, out, n), ref) < 1e-5, "swiglu " + n);
                cuda.add(device(arena, a), device(arena, b), n, out);
                for (int i = 0; i < n; i++) {
                    ref[i] = a[i] + b[i];
                }
                assertTrue(KernelData.relativeError(read(arena, out, n), ref) < 1e-6, "add " + n);
            }
        }
    }

    @Test
    void kvStoreWritesHalfRowsAtTheirSlotsAndSkipsSlotsOutsideTheCache() {
        Random rnd = new Random(11);
        int rowLen = 96, capacity = 10;
        try (Arena arena = Arena.ofConfined()) {
            float[] rows = KernelData.randomFloats(rnd, 4 * rowLen, 4);
            int[] slots = {9, 2, 10, -3};
            long bytes = 2L * capacity * rowLen;
            MemorySegment cache = cuda.alloc(bytes).reinterpret(bytes, arena, cuda::free);
            cuda.memset(cache, 0);
            cuda.kvStore(device(arena, rows), 4, rowLen, device(arena, KernelData.ints(arena, slots)), MemorySegment.NULL,
                    cache);
            MemorySegment host = arena.allocate(bytes, 64);
            cuda.read(cache, host);
            for (int slot = 0; slot < capacity; slot++) {
                for (int i = 0; i < rowLen; i++) {
                    float want = slot == 9 ? rows[i] : slot == 2 ? rows[rowLen + i] : 0;
                    float got = Float.float16ToFloat(host.getAtIndex(ValueLayout.JAVA_SHORT, (long) slot * rowLen + i));
                    assertEquals(Float.float16ToFloat(Float.floatToFloat16(want)), got, 0, "slot " + slot + " i " + i);
                }
            }
        }
    }

    @Test
    void kvStoreWithStartsWritesRowStartPlusPositionAndSkipsRowsOutsideTheCache() {
        Random rnd = new Random(12);
        int rowLen = 96, capacity = 12;
        int[] pos = {2, 0, 5, 3, -1, 4};
        int[] start = {7, 11, 0, 9, 0, -2}; // rows 9, 11, 5, 12 (past the end), -1 (before it), 2
        try (Arena arena = Arena.ofConfined()) {
            float[] rows = KernelData.randomFloats(rnd, pos.length * rowLen, 4);
            long bytes = 2L * capacity * rowLen;
            MemorySegment cache = cuda.alloc(bytes).reinterpret(bytes, arena, cuda::free);
            cuda.memset(cache, 0x7F); // 0x7F7F: a NaN no row of the source rounds to
            cuda.kvStore(device(arena, rows), pos.length, rowLen, device(arena, KernelData.ints(arena, pos)),
                    device(arena, KernelData.ints(arena, start)), cache);
            MemorySegment host = arena.allocate(bytes, 64);
            cuda.read(cache, host);
            for (int row = 0; row < capacity; row++) {
                int t = -1;
                for (int i = 0; i < pos.length; i++) {
                    if (start[i] + pos[i] == row) {
                        t = i;
                    }
                }
                for (int i = 0; i < rowLen; i++) {
                    short got = host.getAtIndex(ValueLayout.JAVA_SHORT, (long) row * rowLen + i);
                    short want = t < 0 ? (short) 0x7F7F : Float.floatToFloat16(rows[t * rowLen + i]);
                    assertEquals(want, got, "row " + row + " element " + i + (t < 0 ? " (untouched)" : " (token " + t + ")"));
                }
            }
        }
    }

    static Stream<Arguments> attentionCases() {
        // tokens, first position, heads, kv heads, head dim, nKv bound, extra stride
        int[][] shapes = {
            {1, 36, 4, 1, 64, 37, 0}, {1, 999, 32, 32, 128, 4096, 0}, {1, 1500, 64, 8, 128, 2048, 0},
            {3, 13, 8, 2, 64, 16, 32}, {5, 0, 6, 1, 32, 5, 0}, {64, 0, 32, 32, 128, 64, 0},
            {77, 13, 64, 8, 128, 300, 0}, {300, 0, 8, 2, 64, 512, 0}, {2, 50, 2, 1, 32, 20, 0},
        };
        return Stream.of(shapes).map(s -> Arguments.of((Object) s));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("attentionCases")
    void attentionMatchesFloat64Reference(int[] s) {
        int nTok = s[0], first = s[1], heads = s[2], kvHeads = s[3], hd = s[4], nKv = s[5];
        long stride = (long) kvHeads * hd + s[6];
        Random rnd = new Random(nTok * 1000L + heads * 10L + hd);
        try (Arena arena = Arena.ofConfined()) {
            float[] q = KernelData.randomFloats(rnd, nTok * heads * hd, 1);
            float[] kf = KernelData.randomFloats(rnd, (int) (nKv * stride), 1);
            float[] vf = KernelData.randomFloats(rnd, (int) (nKv * stride), 2);
            KernelData.roundToHalf(kf); // the reference sees exactly the values the f16 cache holds
            KernelData.roundToHalf(vf);
            MemorySegment k = KernelData.cache(arena, kf, GgmlType.F16);
            MemorySegment v = KernelData.cache(arena, vf, GgmlType.F16);
            int[] pos = new int[nTok];
            for (int t = 0; t < nTok; t++) {
                pos[t] = first + t;
            }
            float scale = (float) (1 / Math.sqrt(hd));
            long workBytes = NibbleCuda.attentionWorkBytes(nTok, heads, hd, nKv);
            MemorySegment work = workBytes > 0
                    ? cuda.alloc(workBytes).reinterpret(workBytes, arena, cuda::free) : MemorySegment.NULL;
            MemorySegment out = poisoned(arena, (long) nTok * heads * hd);
            cuda.attention(device(arena, q), nTok, device(arena, KernelData.ints(arena, pos)), MemorySegment.NULL, heads,
                    kvHeads, hd, device(arena, k), device(arena, v), nKv, stride, scale, work, out);
            double[] ref = AttentionKernelTest.reference(q, kf, vf, pos, new int[nTok], heads, kvHeads, hd, nKv, stride,
                    scale);
            double err = KernelData.relativeError(read(arena, out, q.length), ref);
            assertTrue(err < 1e-3, "relative error " + err);
        }
    }

    static Stream<Arguments> attentionWithStartsCases() {
        // heads, kv heads, head dim: Llama-2-7B and 70B (tensor cores), head dims the fallback kernel takes
        int[][] layouts = {{32, 32, 128}, {64, 8, 128}, {8, 2, 96}, {6, 3, 32}};
        List<Arguments> list = new ArrayList<>();
        for (int[] l : layouts) {
            for (int tokens : new int[] {1, 3, 5, 9, 40, 64}) {
                list.add(Arguments.of(l[0], l[1], l[2], tokens));
            }
        }
        return list.stream();
    }

    /**
     * Tokens of several sequences in one pool: each sequence a range of rows, the ranges in shuffled order with rows
     * of no sequence between them, several tokens of one sequence among others, in no order, some past the span. Every
     * row no token may see is NaN, so that a key read from another sequence (or past a token's position) shows.
     */
    @ParameterizedTest(name = "heads {0}/{1} dim {2} tokens {3}")
    @MethodSource("attentionWithStartsCases")
    void attentionWithStartsMatchesFloat64Reference(int heads, int kvHeads, int hd, int nTok) {
        Random rnd = new Random(heads * 7919L + hd * 31L + nTok);
        int nKv = 150; // the span: three 64-key tiles, so the split paths have more than one tile to share
        long stride = (long) kvHeads * hd;
        int nSeq = nTok == 1 ? 1 : Math.min(12, Math.max(2, nTok * 2 / 3));
        int[] seqLen = new int[nSeq];
        int[] seqStart = new int[nSeq];
        List<Integer> order = new ArrayList<>();
        for (int s = 0; s < nSeq; s++) {
            seqLen[s] = s % 3 == 0 ? nKv : 1 + rnd.nextInt(nKv);
            order.add(s);
        }
        java.util.Collections.shuffle(order, rnd);
        int rows = rnd.nextInt(40);
        for (int s : order) {
            seqStart[s] = rows;
            rows += seqLen[s] + rnd.nextInt(40);
        }
        rows++;
        int[] pos = new int[nTok];
        int[] start = new int[nTok];
        for (int t = 0; t < nTok; t++) {
            int s = t < nSeq ? order.get(t) : rnd.nextInt(nSeq); // every sequence has a token, some several
            pos[t] = seqLen[s] == nKv && t % 4 == 1 ? nKv + rnd.nextInt(300) : rnd.nextInt(seqLen[s]);
            start[t] = seqStart[s];
        }
        boolean[] seen = new boolean[rows];
        for (int t = 0; t < nTok; t++) {
            for (int j = 0; j <= Math.min(pos[t], nKv - 1); j++) {
                seen[start[t] + j] = true;
            }
        }
        try (Arena arena = Arena.ofConfined()) {
            float[] q = KernelData.randomFloats(rnd, nTok * heads * hd, 1);
            float[] kf = KernelData.randomFloats(rnd, (int) (rows * stride), 1);
            float[] vf = KernelData.randomFloats(rnd, (int) (rows * stride), 2);
            KernelData.roundToHalf(kf); // the reference sees exactly the values the f16 cache holds
            KernelData.roundToHalf(vf);
            for (int r = 0; r < rows; r++) {
                if (!seen[r]) {
                    java.util.Arrays.fill(kf, (int) (r * stride), (int) ((r + 1) * stride), Float.NaN);
                    java.util.Arrays.fill(vf, (int) (r * stride), (int) ((r + 1) * stride), Float.NaN);
                }
            }
            MemorySegment k = KernelData.cache(arena, kf, GgmlType.F16);
            MemorySegment v = KernelData.cache(arena, vf, GgmlType.F16);
            float scale = (float) (1 / Math.sqrt(hd));
            long workBytes = NibbleCuda.attentionWorkBytes(nTok, heads, hd, nKv);
            for (int t = 1; t < nTok; t++) { // one workspace serves every smaller call
                assertTrue(NibbleCuda.attentionWorkBytes(t, heads, hd, nKv) <= workBytes, "work for " + t + " tokens");
            }
            MemorySegment work = workBytes > 0
                    ? cuda.alloc(workBytes).reinterpret(workBytes, arena, cuda::free) : MemorySegment.NULL;
            MemorySegment out = poisoned(arena, (long) nTok * heads * hd);
            cuda.attention(device(arena, q), nTok, device(arena, KernelData.ints(arena, pos)),
                    device(arena, KernelData.ints(arena, start)), heads, kvHeads, hd, device(arena, k), device(arena, v),
                    nKv, stride, scale, work, out);
            double[] ref = AttentionKernelTest.reference(q, kf, vf, pos, start, heads, kvHeads, hd, nKv, stride, scale);
            double err = KernelData.relativeError(read(arena, out, q.length), ref);
            assertTrue(err < 1e-3, "relative error " + err + " (starts " + java.util.Arrays.toString(start)
                    + ", positions " + java.util.Arrays.toString(pos) + ")");
        }
    }

    @Test
    void aRecordedGraphReplaysOnTheCurrentContentsOfItsBuffers() {
        try (Arena arena = Arena.ofConfined()) {
            int n = 1000;
            float[] a = KernelData.randomFloats(new Random(1), n, 1);
            MemorySegment da = device(arena, a);
            MemorySegment out = poisoned(arena, n);
            cuda.captureBegin();
            cuda.add(da, da, n, out);
            cuda.add(out, da, n, out);
            MemorySegment graph = cuda.captureEnd();
            try {
                for (int round = 1; round <= 2; round++) {
                    float[] now = KernelData.randomFloats(new Random(round + 10), n, 1);
                    cuda.write(KernelData.floats(arena, now), da);
                    cuda.graphLaunch(graph);
                    double[] ref = new double[n];
                    for (int i = 0; i < n; i++) {
                        ref[i] = 3.0 * now[i];
                    }
                    assertTrue(KernelData.relativeError(read(arena, out, n), ref) < 1e-6, "round " + round);
                }
            } finally {
                NibbleCuda.graphFree(graph);
            }
        }
    }

    @Test
    void anAllocationBeyondTheDeviceIsACleanError() {
        NativeKernelException e = assertThrows(NativeKernelException.class, () -> cuda.alloc(1L << 50));
        assertTrue(e.getMessage().contains("cannot allocate"), e.getMessage());
        cuda.sync(); // the context is still usable
    }

    @Test
    void boundsAreCheckedBeforeTheDownCall() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment small = poisoned(arena, 10);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> cuda.add(small, small, 11, small));
            assertTrue(e.getMessage().contains("nb_cuda_add"), e.getMessage());
        }
    }
}
