package dev.nibble.runtime.nativelib;

import dev.nibble.formats.GgmlType;
import dev.nibble.kernels.NativeLibrary;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Set;

import static dev.nibble.runtime.nativelib.ArgumentChecks.*;

/**
 * Downcall handles for libnibble_cpu, each named after the C symbol it binds (see the CPU section of
 * kernels-c/include/nibble.h), and one CPU context: a worker pool, a scratch buffer and an instruction-set path of its
 * own. The library is loaded and its handles bound once per process; {@link #open(int)} makes a context, and the
 * kernels are instance methods of it, so that several contexts (two models, a CPU beside a CUDA backend) run side by
 * side, each on its own threads. A context may be shared by threads: its pooled calls (matmul, attention) take turns on the
 * context's lock, the others run on the calling thread. {@link #close()} must follow every call on the context.
 *
 * <p>Every wrapper checks counts and segment bounds before the downcall, so native code never sees a pointer past
 * the end of its segment: a bad argument is an {@link IllegalArgumentException} naming the call, a native error
 * status a {@link NativeKernelException}. Segments must be native (arena allocations or file mappings); float and
 * int segments must be 4-byte aligned. A kernel reading a file mapping whose file shrank under it (SIGBUS) does not
 * kill the process: the library catches the fault inside its kernels and the call throws a NativeKernelException
 * whose {@link NativeKernelException#isFault()} is true; the context stays usable (see "Faults" in nibble.h).
 *
 * <p>Every kernel is a plain downcall, so that a garbage-collector safepoint never waits for one: a kernel's time grows
 * with its sizes (a prefill's rmsnorm or swiglu takes milliseconds), and some read the memory-mapped model (embed's
 * table, the norm weights, rope's factors), where a cold page is a disk read. Only the constant-time queries that
 * neither lock nor touch caller memory (version, features, best path, a context's threads and path) are bound
 * {@code critical(false)}; the thread-state switch they skip costs tens of nanoseconds, nothing beside a kernel.
 */
public final class NibbleCpu implements AutoCloseable {

    private static final SymbolLookup LIB = NativeLibrary.load("nibble_cpu")
            .orElseThrow(() -> new IllegalStateException(
                    "libnibble_cpu for " + NativeLibrary.platform() + " is not in this build; rebuild with ./nibble --rebuild"));
    private static final Linker LINKER = Linker.nativeLinker();

    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT;
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT;
    private static final ValueLayout PTR = ValueLayout.ADDRESS;

    /**
     * The calls bound {@code critical(false)}: constant-time queries that take no lock and read no caller memory, so
     * that a garbage-collector safepoint never waits on one. Every other call is a plain downcall (see the class
     * comment). Declared before the handles, which read it as they are bound.
     */
    static final Set<String> CRITICAL = Set.of("nb_version", "nb_cpu_features", "nb_isa_best", "nb_cpu_threads",
            "nb_cpu_isa");

    private static final MethodHandle nb_version = bind("nb_version", FunctionDescriptor.of(I32));
    private static final MethodHandle nb_cpu_features = bind("nb_cpu_features", FunctionDescriptor.of(I32));
    private static final MethodHandle nb_isa_best = bind("nb_isa_best", FunctionDescriptor.of(I32));
    private static final MethodHandle nb_cpu_open = bind("nb_cpu_open", FunctionDescriptor.of(I32, I32, PTR));
    private static final MethodHandle nb_cpu_close = bind("nb_cpu_close", FunctionDescriptor.ofVoid(PTR));
    private static final MethodHandle nb_cpu_threads = bind("nb_cpu_threads", FunctionDescriptor.of(I32, PTR));
    private static final MethodHandle nb_cpu_isa = bind("nb_cpu_isa", FunctionDescriptor.of(I32, PTR));
    private static final MethodHandle nb_cpu_set_isa = bind("nb_cpu_set_isa", FunctionDescriptor.of(I32, PTR, I32));
    private static final MethodHandle nb_matmul = bind("nb_matmul",
            FunctionDescriptor.of(I32, PTR, I32, PTR, I64, I64, PTR, I64, PTR));
    private static final MethodHandle nb_embed = bind("nb_embed",
            FunctionDescriptor.of(I32, PTR, I32, PTR, I64, I64, PTR, I64, PTR));
    private static final MethodHandle nb_rmsnorm = bind("nb_rmsnorm",
            FunctionDescriptor.of(I32, PTR, PTR, PTR, I64, I64, F32, PTR));
    private static final MethodHandle nb_rope = bind("nb_rope",
            FunctionDescriptor.of(I32, PTR, PTR, I64, I64, I64, PTR, F32, F32, PTR));
    private static final MethodHandle nb_softmax = bind("nb_softmax",
            FunctionDescriptor.of(I32, PTR, PTR, I64, I64));
    private static final MethodHandle nb_attention = bind("nb_attention",
            FunctionDescriptor.of(I32, PTR, PTR, I64, PTR, PTR, I64, I64, I64, I32, PTR, PTR, I64, I64, F32, PTR));
    private static final MethodHandle nb_swiglu = bind("nb_swiglu",
            FunctionDescriptor.of(I32, PTR, PTR, PTR, I64, PTR));
    private static final MethodHandle nb_add = bind("nb_add", FunctionDescriptor.of(I32, PTR, PTR, PTR, I64, PTR));
    private static final MethodHandle nb_f32_to_f16 = bind("nb_f32_to_f16",
            FunctionDescriptor.of(I32, PTR, PTR, I64, PTR));
    private static final MethodHandle nb_f16_to_f32 = bind("nb_f16_to_f32",
            FunctionDescriptor.of(I32, PTR, PTR, I64, PTR));

    static {
        warnAboutIsaVariable(System.getenv("NIBBLE_ISA"));
    }

    /**
     * The library reads NIBBLE_ISA itself (once per process) and ignores a value it does not know or a path the CPU
     * lacks; as that would go unnoticed, say it once, on one line of stderr, when this class loads.
     */
    private static void warnAboutIsaVariable(String value) {
        if (value == null || value.isEmpty()) {
            return;
        }
        int best = isaBest();
        int wanted = -1;
        for (int isa = ISA_SCALAR; isa <= ISA_AVX512; isa++) {
            if (isaName(isa).equals(value)) {
                wanted = isa;
            }
        }
        if (wanted < 0) {
            System.err.println("nibble: warning: NIBBLE_ISA=" + value + " is not one of scalar, avx2, avx512; ignored, using "
                    + isaName(best) + " (the best path this CPU has)");
        } else if (wanted > best) {
            System.err.println("nibble: warning: NIBBLE_ISA=" + value + " names a path this CPU lacks; using "
                    + isaName(best) + " (the best it has)");
        }
    }

    /** CPU feature bits, as defined in nibble.h. */
    public static final int AVX2 = 1, FMA = 1 << 1, F16C = 1 << 2, AVX512F = 1 << 3, AVX512BW = 1 << 4,
            AVX512VNNI = 1 << 5, AVXVNNI = 1 << 6, AVX512VL = 1 << 7;

    /** Instruction-set paths, as defined in nibble.h (NB_ISA_*). */
    public static final int ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2;

    private final MemorySegment ctx;
    private final int threads;
    private volatile boolean closed;

    private NibbleCpu(MemorySegment ctx, int threads) {
        this.ctx = ctx;
        this.threads = threads;
    }

    /**
     * Opens a context whose worker pool has {@code nThreads} threads in all, the calling thread included (0: one per
     * CPU this process may use, by its affinity mask and cgroup CPU quota), on the best instruction-set path the CPU
     * has (or the one NIBBLE_ISA names).
     */
    public static NibbleCpu open(int nThreads) {
        if (nThreads < 0) {
            throw new IllegalArgumentException("nb_cpu_open: thread count " + nThreads + " is negative");
        }
        MemorySegment ctx;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(PTR);
            int status = (int) nb_cpu_open.invokeExact(nThreads, out);
            check("nb_cpu_open", status);
            ctx = out.get(ValueLayout.ADDRESS, 0);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cpu_open", t);
        }
        int n;
        try {
            n = (int) nb_cpu_threads.invokeExact(ctx);
        } catch (Throwable t) {
            throw failure("nb_cpu_threads", t);
        }
        return new NibbleCpu(ctx, n);
    }

    /** Stops the context's workers and frees it; later calls on it are an {@link IllegalStateException}. */
    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            try {
                nb_cpu_close.invokeExact(ctx);
            } catch (Throwable t) {
                throw failure("nb_cpu_close", t);
            }
        }
    }

    private MemorySegment ctx() {
        if (closed) {
            throw new IllegalStateException("the CPU kernel context is closed");
        }
        return ctx;
    }

    private static MethodHandle bind(String symbol, FunctionDescriptor descriptor) {
        return CRITICAL.contains(symbol)
                ? LINKER.downcallHandle(find(symbol), descriptor, Linker.Option.critical(false))
                : LINKER.downcallHandle(find(symbol), descriptor);
    }

    private static MemorySegment find(String symbol) {
        return LIB.find(symbol).orElseThrow(() -> new IllegalStateException("libnibble_cpu lacks symbol " + symbol));
    }

    /** Version of the kernel library: major * 10000 + minor * 100 + patch. */
    public static int version() {
        try {
            return (int) nb_version.invokeExact();
        } catch (Throwable t) {
            throw failure("nb_version", t);
        }
    }

    /** CPU feature bits found by CPUID (see the constants below). */
    public static int cpuFeatures() {
        try {
            return (int) nb_cpu_features.invokeExact();
        } catch (Throwable t) {
            throw failure("nb_cpu_features", t);
        }
    }

    /** Human-readable list of the feature bits, e.g. {@code avx2 fma avx512f}. */
    public static String describeFeatures(int bits) {
        String[] names = {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vnni", "avxvnni", "avx512vl"};
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < names.length; i++) {
            if ((bits & (1 << i)) != 0) {
                sb.append(sb.isEmpty() ? "" : " ").append(names[i]);
            }
        }
        return sb.isEmpty() ? "scalar" : sb.toString();
    }

    /** The best instruction-set path this CPU supports ({@link #ISA_SCALAR} .. {@link #ISA_AVX512}). */
    public static int isaBest() {
        try {
            return (int) nb_isa_best.invokeExact();
        } catch (Throwable t) {
            throw failure("nb_isa_best", t);
        }
    }

    /** The path this context uses. */
    public int isa() {
        try {
            return (int) nb_cpu_isa.invokeExact(ctx());
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cpu_isa", t);
        }
    }

    /** Name of a path: scalar, avx2 or avx512 (the values NIBBLE_ISA accepts). */
    public static String isaName(int isa) {
        return switch (isa) {
            case ISA_SCALAR -> "scalar";
            case ISA_AVX2 -> "avx2";
            case ISA_AVX512 -> "avx512";
            default -> throw new IllegalArgumentException("unknown instruction-set path " + isa);
        };
    }

    /** Forces this context's path (other contexts keep theirs); the CPU must support it (see {@link #isaBest()}). */
    public void setIsa(int isa) {
        int status;
        try {
            status = (int) nb_cpu_set_isa.invokeExact(ctx(), isa);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cpu_set_isa", t);
        }
        check("nb_cpu_set_isa", status);
    }

    /** Threads of this context's worker pool, the caller included. */
    public int threads() {
        return threads;
    }

    /**
     * {@code y[t][o] = sum_i W[o][i] * x[t][i]}: W is {@code nOut} rows of {@code nIn} weights of {@code type} in GGUF
     * block layout (a GGUF tensor with dims {nIn, nOut}); x holds {@code nTok * nIn} floats, y {@code nTok * nOut}.
     */
    public void matmul(GgmlType type, MemorySegment w, long nOut, long nIn, MemorySegment x, long nTok, MemorySegment y) {
        String call = "nb_matmul";
        nonNegative(call, "nOut", nOut);
        nonNegative(call, "nIn", nIn);
        nonNegative(call, "nTok", nTok);
        long rowBytes = rowBytes(call, type, nIn);
        requireBytes(call, "w", w, product(call, rowBytes, nOut), type == GgmlType.F32 ? 4 : 1);
        requireFloats(call, "x", x, product(call, nTok, nIn));
        requireFloats(call, "y", y, product(call, nTok, nOut));
        requireWritable(call, "y", y);
        int status;
        try {
            status = (int) nb_matmul.invokeExact(ctx(), type.id(), w, nOut, nIn, x, nTok, y);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
        check(call, status);
    }

    /** Rows {@code ids[0..nIds)} (int32) of a typed {@code nRows x nCols} table, as floats into {@code out}. */
    public void embed(GgmlType type, MemorySegment table, long nRows, long nCols, MemorySegment ids, long nIds,
                             MemorySegment out) {
        String call = "nb_embed";
        nonNegative(call, "nRows", nRows);
        nonNegative(call, "nCols", nCols);
        nonNegative(call, "nIds", nIds);
        long rowBytes = rowBytes(call, type, nCols);
        requireBytes(call, "table", table, product(call, rowBytes, nRows), type == GgmlType.F32 ? 4 : 1);
        requireBytes(call, "ids", ids, product(call, nIds, 4), 4);
        requireFloats(call, "out", out, product(call, nIds, nCols));
        requireWritable(call, "out", out);
        int status;
        try {
            status = (int) nb_embed.invokeExact(ctx(), type.id(), table, nRows, nCols, ids, nIds, out);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
        check(call, status);
    }

    /** {@code y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w} for {@code nRows} rows of {@code n}; y may be x. */
    public void rmsnorm(MemorySegment x, MemorySegment w, long nRows, long n, float eps, MemorySegment y) {
        String call = "nb_rmsnorm";
        nonNegative(call, "nRows", nRows);
        nonNegative(call, "n", n);
        if (!(eps >= 0)) {
            throw new IllegalArgumentException(call + ": eps " + eps + " must be >= 0");
        }
        long total = product(call, nRows, n);
        requireFloats(call, "x", x, total);
        requireFloats(call, "w", w, n);
        requireFloats(call, "y", y, total);
        requireWritable(call, "y", y);
        int status;
        try {
            status = (int) nb_rmsnorm.invokeExact(ctx(), x, w, nRows, n, eps, y);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
        check(call, status);
    }

    /**
     * Rotary embedding in place on {@code x[nTok][nHeads][headDim]}, rotating adjacent pairs by
     * {@code pos[t] * freqScale * theta^(-2i/headDim) / freqFactors[i]}; {@code freqFactors} is
     * {@link MemorySegment#NULL} or {@code headDim/2} floats (Llama 3.1's rope_freqs).
     */
    public void rope(MemorySegment x, long nTok, long nHeads, long headDim, MemorySegment pos, float theta,
                            float freqScale, MemorySegment freqFactors) {
        String call = "nb_rope";
        nonNegative(call, "nTok", nTok);
        nonNegative(call, "nHeads", nHeads);
        nonNegative(call, "headDim", headDim);
        if (headDim % 2 != 0 || headDim > 512) {
            throw new IllegalArgumentException(call + ": headDim " + headDim + " must be even and at most 512");
        }
        if (!(theta > 0) || !Float.isFinite(freqScale)) {
            throw new IllegalArgumentException(call + ": theta " + theta + " must be > 0 and freqScale finite");
        }
        requireFloats(call, "x", x, product(call, product(call, nTok, nHeads), headDim));
        requireWritable(call, "x", x);
        requireBytes(call, "pos", pos, product(call, nTok, 4), 4);
        if (freqFactors == null) {
            throw new IllegalArgumentException(call + ": freqFactors is null (pass MemorySegment.NULL for none)");
        }
        if (!freqFactors.equals(MemorySegment.NULL)) {
            requireFloats(call, "freqFactors", freqFactors, headDim / 2);
        }
        int status;
        try {
            status = (int) nb_rope.invokeExact(ctx(), x, nTok, nHeads, headDim, pos, theta, freqScale, freqFactors);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
        check(call, status);
    }

    /** In-place softmax over each of {@code nRows} rows of {@code n} floats. */
    public void softmax(MemorySegment x, long nRows, long n) {
        String call = "nb_softmax";
        nonNegative(call, "nRows", nRows);
        nonNegative(call, "n", n);
        requireFloats(call, "x", x, product(call, nRows, n));
        requireWritable(call, "x", x);
        int status;
        try {
            status = (int) nb_softmax.invokeExact(ctx(), x, nRows, n);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
        check(call, status);
    }

    /**
     * Causal attention with grouped query heads over a KV cache; see nb_attention in nibble.h. {@code q} and
     * {@code out} are {@code [nTok][nHeads][headDim]} floats. Token t's sequence begins at cache row
     * {@code start[t]} ({@code start} NULL: row 0 for every token): the key of its position j, kv head h starts at
     * element {@code (start[t] + j) * kvStride + h * headDim} of {@code k} (likewise {@code v}), of type
     * {@code kvType} (F32 or F16). pos and start are read here to check that every row a token sees is inside k and v.
     */
    public void attention(MemorySegment q, long nTok, MemorySegment pos, MemorySegment start, long nHeads,
                          long nKvHeads, long headDim, GgmlType kvType, MemorySegment k, MemorySegment v, long nKv,
                          long kvStride, float scale, MemorySegment out) {
        String call = "nb_attention";
        nonNegative(call, "nTok", nTok);
        nonNegative(call, "nKv", nKv);
        if (nHeads <= 0 || nKvHeads <= 0 || nHeads % nKvHeads != 0) {
            throw new IllegalArgumentException(call + ": nHeads " + nHeads + " must be a positive multiple of nKvHeads " + nKvHeads);
        }
        if (headDim <= 0 || headDim > 512) {
            throw new IllegalArgumentException(call + ": headDim " + headDim + " must be in 1..512");
        }
        if (kvType != GgmlType.F32 && kvType != GgmlType.F16) {
            throw new IllegalArgumentException(call + ": kvType " + kvType + " is not F32 or F16");
        }
        long rowElems = product(call, nKvHeads, headDim);
        if (kvStride < rowElems) {
            throw new IllegalArgumentException(call + ": kvStride " + kvStride + " is less than nKvHeads * headDim = " + rowElems);
        }
        long qElems = product(call, product(call, nTok, nHeads), headDim);
        requireFloats(call, "q", q, qElems);
        requireFloats(call, "out", out, qElems);
        requireWritable(call, "out", out);
        requireBytes(call, "pos", pos, product(call, nTok, 4), 4);
        boolean starts = !MemorySegment.NULL.equals(start);
        if (starts) {
            requireBytes(call, "start", start, product(call, nTok, 4), 4);
        }
        // rows of the cache some token reads: its start + min(position, nKv - 1), +1
        long rows = 0;
        for (long t = 0; t < nTok && nKv > 0; t++) {
            int p = pos.getAtIndex(I32, t);
            int b = starts ? start.getAtIndex(I32, t) : 0;
            if (p < 0 || b < 0) {
                throw new IllegalArgumentException(call + ": token " + t + " has position " + p + " and start row " + b
                        + "; both must be >= 0");
            }
            rows = Math.max(rows, (long) b + Math.min(p, nKv - 1) + 1);
        }
        int esz = kvType == GgmlType.F16 ? 2 : 4;
        long cacheBytes = rows == 0 ? 0 : product(call, Math.addExact(product(call, rows - 1, kvStride), rowElems), esz);
        requireBytes(call, "k", k, cacheBytes, esz);
        requireBytes(call, "v", v, cacheBytes, esz);
        int status;
        try {
            status = (int) nb_attention.invokeExact(ctx(), q, nTok, pos, start, nHeads, nKvHeads, headDim, kvType.id(), k, v, nKv, kvStride,
                    scale, out);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
        check(call, status);
    }

    /** {@code out = silu(gate) * up} over {@code n} floats. */
    public void swiglu(MemorySegment gate, MemorySegment up, long n, MemorySegment out) {
        String call = "nb_swiglu";
        nonNegative(call, "n", n);
        requireFloats(call, "gate", gate, n);
        requireFloats(call, "up", up, n);
        requireFloats(call, "out", out, n);
        requireWritable(call, "out", out);
        int status;
        try {
            status = (int) nb_swiglu.invokeExact(ctx(), gate, up, n, out);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
        check(call, status);
    }

    /** {@code out = a + b} over {@code n} floats. */
    public void add(MemorySegment a, MemorySegment b, long n, MemorySegment out) {
        String call = "nb_add";
        nonNegative(call, "n", n);
        requireFloats(call, "a", a, n);
        requireFloats(call, "b", b, n);
        requireFloats(call, "out", out, n);
        requireWritable(call, "out", out);
        int status;
        try {
            status = (int) nb_add.invokeExact(ctx(), a, b, n, out);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
        check(call, status);
    }

    /** {@code n} floats to IEEE half precision (round to nearest even). */
    public void f32ToF16(MemorySegment src, long n, MemorySegment dst) {
        String call = "nb_f32_to_f16";
        nonNegative(call, "n", n);
        requireFloats(call, "src", src, n);
        requireBytes(call, "dst", dst, product(call, n, 2), 2);
        requireWritable(call, "dst", dst);
        int status;
        try {
            status = (int) nb_f32_to_f16.invokeExact(ctx(), src, n, dst);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
        check(call, status);
    }

    /** {@code n} halves to floats. */
    public void f16ToF32(MemorySegment src, long n, MemorySegment dst) {
        String call = "nb_f16_to_f32";
        nonNegative(call, "n", n);
        requireBytes(call, "src", src, product(call, n, 2), 2);
        requireFloats(call, "dst", dst, n);
        requireWritable(call, "dst", dst);
        int status;
        try {
            status = (int) nb_f16_to_f32.invokeExact(ctx(), src, n, dst);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
        check(call, status);
    }

    private static void check(String call, int status) {
        if (status != 0) {
            throw new NativeKernelException(call, status);
        }
    }

    private static IllegalStateException failure(String call, Throwable t) {
        return new IllegalStateException(call + " downcall failed", t);
    }
}
