package dev.nibble.runtime.nativelib;

import static dev.nibble.runtime.nativelib.ArgumentChecks.nonNegative;
import static dev.nibble.runtime.nativelib.ArgumentChecks.product;
import static dev.nibble.runtime.nativelib.ArgumentChecks.requireBytes;
import static dev.nibble.runtime.nativelib.ArgumentChecks.requireFloats;
import static dev.nibble.runtime.nativelib.ArgumentChecks.requireWritable;
import static dev.nibble.runtime.nativelib.ArgumentChecks.rowBytes;

import dev.nibble.formats.GgmlType;
import dev.nibble.kernels.NativeLibrary;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Optional;

/**
 * Downcall handles for libnibble_cuda (see the CUDA section of kernels-c/include/nibble.h), and one CUDA context: a
 * device and a stream. The library is loaded once per process, on first use; {@link #unavailable()} says why it cannot
 * be used on this machine, if it cannot.
 *
 * <p>Device memory is handed out as {@link MemorySegment}s whose address is a device pointer: Java must never read or
 * write them, but their sizes let every wrapper check counts and bounds before the downcall, exactly as
 * {@link NibbleCpu} does, so the kernels never see a pointer past the end of its allocation. Kernel calls queue work on
 * the context's stream; a failure is a {@link NativeKernelException} with the library's own message.
 */
public final class NibbleCuda implements AutoCloseable {

    private static final Linker LINKER = Linker.nativeLinker();
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT;
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT;
    private static final java.lang.foreign.AddressLayout PTR = ValueLayout.ADDRESS;

    private static final String NO_LIBRARY =
            "this build of nibble has no CUDA library (nvcc was not found when it was built)";
    private static String loadProblem = NO_LIBRARY;
    /** The handles, bound when the class loads; null when the library is absent or does not load here. */
    private static final Handles H = Handles.bind();

    /** What a device reports about itself. */
    public record DeviceInfo(int index, String name, long totalBytes, long freeBytes, int computeCapability,
                             int multiprocessors) {}

    private final MemorySegment ctx;
    private final int device;
    private boolean closed;

    private NibbleCuda(MemorySegment ctx, int device) {
        this.ctx = ctx;
        this.device = device;
    }

    /** Why CUDA cannot be used here (no library in this build, no driver, no device), or empty when it can. */
    public static Optional<String> unavailable() {
        if (H == null) {
            return Optional.of(loadProblem);
        }
        try {
            int n = deviceCount();
            return n > 0 ? Optional.empty() : Optional.of("the NVIDIA driver sees no GPU");
        } catch (NativeKernelException e) {
            String m = e.getMessage();
            if (m.contains("cudaErrorInsufficientDriver")) {
                int cuda = runtimeVersion();
                return Optional.of("no NVIDIA driver for CUDA " + cuda / 1000 + "." + cuda % 1000 / 10
                        + " (none is installed, or an older one)");
            }
            if (m.contains("cudaErrorNoDevice")) {
                return Optional.of("the NVIDIA driver sees no GPU");
            }
            return Optional.of("CUDA does not start here: " + m);
        }
    }

    private static Handles handles() {
        if (H == null) {
            throw new IllegalStateException(loadProblem);
        }
        return H;
    }

    /** Version of the CUDA library (major * 10000 + minor * 100 + patch). */
    public static int version() {
        try {
            return (int) handles().nb_version.invokeExact();
        } catch (Throwable t) {
            throw failure("nb_version", t);
        }
    }

    /** CUDART_VERSION the library was built with, e.g. 13000. */
    public static int runtimeVersion() {
        try {
            return (int) handles().nb_cuda_version.invokeExact();
        } catch (Throwable t) {
            throw failure("nb_cuda_version", t);
        }
    }

    /** Visible CUDA devices; a missing or too old driver is a {@link NativeKernelException} saying so. */
    public static int deviceCount() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment count = arena.allocate(I32);
            int status = (int) handles().nb_cuda_device_count.invokeExact(count);
            checkOpen("nb_cuda_device_count", status);
            return count.get(I32, 0);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cuda_device_count", t);
        }
    }

    /** Name, memory and compute capability of device {@code index}. */
    public static DeviceInfo deviceInfo(int index) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment name = arena.allocate(256);
            MemorySegment total = arena.allocate(I64);
            MemorySegment free = arena.allocate(I64);
            MemorySegment cc = arena.allocate(I32);
            MemorySegment sms = arena.allocate(I32);
            int status = (int) handles().nb_cuda_device_info.invokeExact(index, name, 256, total, free, cc, sms);
            checkOpen("nb_cuda_device_info", status);
            return new DeviceInfo(index, name.getString(0), total.get(I64, 0), free.get(I64, 0), cc.get(I32, 0),
                    sms.get(I32, 0));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cuda_device_info", t);
        }
    }

    /** Opens a context (a stream and pinned staging buffers) on device {@code index}. */
    public static NibbleCuda open(int index) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(PTR);
            int status = (int) handles().nb_cuda_open.invokeExact(index, out);
            checkOpen("nb_cuda_open", status);
            return new NibbleCuda(out.get(PTR, 0), index);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cuda_open", t);
        }
    }

    public int device() {
        return device;
    }

    /** Free and total bytes of this context's device now. */
    public long[] memInfo() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment free = arena.allocate(I64);
            MemorySegment total = arena.allocate(I64);
            check("nb_cuda_mem_info", (int) H.nb_cuda_mem_info.invokeExact(ctx(), free, total));
            return new long[] {free.get(I64, 0), total.get(I64, 0)};
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cuda_mem_info", t);
        }
    }

    /** {@code bytes} of device memory, as a segment Java must not dereference; free it with {@link #free}. */
    public MemorySegment alloc(long bytes) {
        if (bytes <= 0) {
            throw new IllegalArgumentException("nb_cuda_alloc: " + bytes + " bytes");
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(PTR);
            check("nb_cuda_alloc", (int) H.nb_cuda_alloc.invokeExact(ctx(), bytes, out));
            return out.get(PTR, 0).reinterpret(bytes);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cuda_alloc", t);
        }
    }

    public void free(MemorySegment d) {
        try {
            check("nb_cuda_free", (int) H.nb_cuda_free.invokeExact(ctx(), d));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cuda_free", t);
        }
    }

    /** Queues setting every byte of {@code d} to {@code value}. */
    public void memset(MemorySegment d, int value) {
        requireBytes("nb_cuda_memset", "d", d, 1, 1);
        try {
            check("nb_cuda_memset", (int) H.nb_cuda_memset.invokeExact(ctx(), d, value, d.byteSize()));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cuda_memset", t);
        }
    }

    /** Copies all of {@code host} (any native memory, a file mapping too) into {@code d}; returns when done. */
    public void upload(MemorySegment host, MemorySegment d) {
        copyIn("nb_cuda_upload", H.nb_cuda_upload, host, d);
    }

    /** Queues a copy of the small host segment {@code host} into {@code d}; host may be reused at once. */
    public void write(MemorySegment host, MemorySegment d) {
        copyIn("nb_cuda_write", H.nb_cuda_write, host, d);
    }

    private void copyIn(String call, MethodHandle h, MemorySegment host, MemorySegment d) {
        requireBytes(call, "host", host, host.byteSize(), 1);
        requireBytes(call, "d", d, host.byteSize(), 1);
        if (host.byteSize() == 0) {
            return;
        }
        try {
            check(call, (int) h.invokeExact(ctx(), d, host, host.byteSize()));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /** Waits for all queued work, then copies {@code host.byteSize()} bytes of {@code d} into host memory. */
    public void read(MemorySegment d, MemorySegment host) {
        String call = "nb_cuda_read";
        requireBytes(call, "host", host, host.byteSize(), 1);
        requireWritable(call, "host", host);
        requireBytes(call, "d", d, host.byteSize(), 1);
        if (host.byteSize() == 0) {
            return;
        }
        try {
            check(call, (int) H.nb_cuda_read.invokeExact(ctx(), host, d, host.byteSize()));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /** Waits for all queued work; a fault in a kernel queued earlier is reported here. */
    public void sync() {
        try {
            check("nb_cuda_sync", (int) H.nb_cuda_sync.invokeExact(ctx()));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cuda_sync", t);
        }
    }

    /** Starts recording this context's kernel calls instead of running them. */
    public void captureBegin() {
        try {
            check("nb_cuda_capture_begin", (int) H.nb_cuda_capture_begin.invokeExact(ctx()));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cuda_capture_begin", t);
        }
    }

    /** Ends the recording and returns it as an executable graph (free it with {@link #graphFree}). */
    public MemorySegment captureEnd() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(PTR);
            check("nb_cuda_capture_end", (int) H.nb_cuda_capture_end.invokeExact(ctx(), out));
            return out.get(PTR, 0);
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cuda_capture_end", t);
        }
    }

    /** Queues a recorded graph. */
    public void graphLaunch(MemorySegment graph) {
        try {
            check("nb_cuda_graph_launch", (int) H.nb_cuda_graph_launch.invokeExact(ctx(), graph));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure("nb_cuda_graph_launch", t);
        }
    }

    public static void graphFree(MemorySegment graph) {
        try {
            handles().nb_cuda_graph_free.invokeExact(graph);
        } catch (Throwable t) {
            throw failure("nb_cuda_graph_free", t);
        }
    }

    /** Bytes a weight of {@code nOut} rows of {@code nIn} in {@code type} takes on the device (it may be repacked). */
    public static long weightBytes(GgmlType type, long nOut, long nIn) {
        long bytes;
        try {
            bytes = (long) handles().nb_cuda_weight_bytes.invokeExact(type.id(), nOut, nIn);
        } catch (Throwable t) {
            throw failure("nb_cuda_weight_bytes", t);
        }
        if (bytes < 0) {
            throw new IllegalArgumentException("the CUDA backend cannot hold a " + type + " weight of " + nOut + " × "
                    + nIn);
        }
        return bytes;
    }

    /** Uploads a weight in GGUF block layout from host memory (the file mapping) into {@code d} in the device layout. */
    public void uploadWeight(GgmlType type, MemorySegment host, long nOut, long nIn, MemorySegment d) {
        String call = "nb_cuda_upload_weight";
        nonNegative(call, "nOut", nOut);
        requireBytes(call, "host", host, product(call, rowBytes(call, type, nIn), nOut), 1);
        requireBytes(call, "d", d, weightBytes(type, nOut, nIn), 1);
        try {
            check(call, (int) H.nb_cuda_upload_weight.invokeExact(ctx(), type.id(), host, nOut, nIn, d));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /** {@code y[t][o] = sum_i W[o][i] * x[t][i]} with W as uploaded by {@link #uploadWeight}. */
    public void matmul(GgmlType type, MemorySegment w, long nOut, long nIn, MemorySegment x, long nTok, MemorySegment y) {
        String call = "nb_cuda_matmul";
        nonNegative(call, "nOut", nOut);
        nonNegative(call, "nTok", nTok);
        requireBytes(call, "w", w, weightBytes(type, nOut, nIn), 1);
        requireFloats(call, "x", x, product(call, nTok, nIn));
        requireFloats(call, "y", y, product(call, nTok, nOut));
        try {
            check(call, (int) H.nb_cuda_matmul.invokeExact(ctx(), type.id(), w, nOut, nIn, x, nTok, y));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /** {@code ys[j] = W_j x} for up to four uploaded weights of {@code nIn} columns sharing the input x. */
    public void matmulSharedInput(GgmlType[] types, MemorySegment[] ws, long[] nOuts, long nIn, MemorySegment x,
                                  long nTok, MemorySegment[] ys) {
        String call = "nb_cuda_matmul_shared_input";
        int n = types.length;
        if (n < 1 || n > 4 || ws.length != n || nOuts.length != n || ys.length != n) {
            throw new IllegalArgumentException(call + ": 1 to 4 weights, each with its rows and output");
        }
        nonNegative(call, "nTok", nTok);
        requireFloats(call, "x", x, product(call, nTok, nIn));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment typeArray = arena.allocate(I32, n);
            MemorySegment wArray = arena.allocate(PTR, n);
            MemorySegment outArray = arena.allocate(I64, n);
            MemorySegment yArray = arena.allocate(PTR, n);
            for (int j = 0; j < n; j++) {
                nonNegative(call, "nOut", nOuts[j]);
                requireBytes(call, "w" + j, ws[j], weightBytes(types[j], nOuts[j], nIn), 1);
                requireFloats(call, "y" + j, ys[j], product(call, nTok, nOuts[j]));
                typeArray.setAtIndex(I32, j, types[j].id());
                wArray.setAtIndex(PTR, j, ws[j]);
                outArray.setAtIndex(I64, j, nOuts[j]);
                yArray.setAtIndex(PTR, j, ys[j]);
            }
            check(call, (int) H.nb_cuda_matmul_shared_input.invokeExact(ctx(), n, typeArray, wArray, outArray, nIn, x,
                    nTok, yArray));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /** {@code y = silu(G x) * (U x)} for uploaded G and U of one type, {@code nOut} rows of {@code nIn}. */
    public void matmulSwiglu(GgmlType type, MemorySegment gate, MemorySegment up, long nOut, long nIn, MemorySegment x,
                             long nTok, MemorySegment y) {
        String call = "nb_cuda_matmul_swiglu";
        nonNegative(call, "nOut", nOut);
        nonNegative(call, "nTok", nTok);
        long bytes = weightBytes(type, nOut, nIn);
        requireBytes(call, "gate", gate, bytes, 1);
        requireBytes(call, "up", up, bytes, 1);
        requireFloats(call, "x", x, product(call, nTok, nIn));
        requireFloats(call, "y", y, product(call, nTok, nOut));
        try {
            check(call, (int) H.nb_cuda_matmul_swiglu.invokeExact(ctx(), type.id(), gate, up, nOut, nIn, x, nTok, y));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /** Rows {@code ids[0..nIds)} (int32, on the device) of an uploaded table, as floats into {@code out}. */
    public void embed(GgmlType type, MemorySegment table, long nRows, long nCols, MemorySegment ids, long nIds,
                      MemorySegment out) {
        String call = "nb_cuda_embed";
        nonNegative(call, "nRows", nRows);
        nonNegative(call, "nIds", nIds);
        requireBytes(call, "table", table, weightBytes(type, nRows, nCols), 1);
        requireBytes(call, "ids", ids, product(call, nIds, 4), 4);
        requireFloats(call, "out", out, product(call, nIds, nCols));
        try {
            check(call, (int) H.nb_cuda_embed.invokeExact(ctx(), type.id(), table, nRows, nCols, ids, nIds, out));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /** {@code y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w}; y may be x. */
    public void rmsnorm(MemorySegment x, MemorySegment w, long nRows, long n, float eps, MemorySegment y) {
        String call = "nb_cuda_rmsnorm";
        long total = rows(call, nRows, n, eps);
        requireFloats(call, "x", x, total);
        requireFloats(call, "w", w, n);
        requireFloats(call, "y", y, total);
        try {
            check(call, (int) H.nb_cuda_rmsnorm.invokeExact(ctx(), x, w, nRows, n, eps, y));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /** {@code x += b; y = rmsnorm(x) * w}; y may be b. */
    public void addRmsnorm(MemorySegment x, MemorySegment b, MemorySegment w, long nRows, long n, float eps,
                           MemorySegment y) {
        String call = "nb_cuda_add_rmsnorm";
        long total = rows(call, nRows, n, eps);
        requireFloats(call, "x", x, total);
        requireFloats(call, "b", b, total);
        requireFloats(call, "w", w, n);
        requireFloats(call, "y", y, total);
        try {
            check(call, (int) H.nb_cuda_add_rmsnorm.invokeExact(ctx(), x, b, w, nRows, n, eps, y));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    private static long rows(String call, long nRows, long n, float eps) {
        nonNegative(call, "nRows", nRows);
        nonNegative(call, "n", n);
        if (!(eps >= 0)) {
            throw new IllegalArgumentException(call + ": eps " + eps + " must be >= 0");
        }
        return product(call, nRows, n);
    }

    /** Rotary embedding in place, as {@link NibbleCpu#rope}; positions are on the device. */
    public void rope(MemorySegment x, long nTok, long nHeads, long headDim, MemorySegment pos, float theta,
                     float freqScale, MemorySegment freqFactors) {
        String call = "nb_cuda_rope";
        nonNegative(call, "nTok", nTok);
        nonNegative(call, "nHeads", nHeads);
        if (headDim <= 0 || headDim % 2 != 0 || headDim > 512) {
            throw new IllegalArgumentException(call + ": headDim " + headDim + " must be even, positive and at most 512");
        }
        if (!(theta > 0) || !Float.isFinite(freqScale)) {
            throw new IllegalArgumentException(call + ": theta " + theta + " must be > 0 and freqScale finite");
        }
        requireFloats(call, "x", x, product(call, product(call, nTok, nHeads), headDim));
        requireBytes(call, "pos", pos, product(call, nTok, 4), 4);
        if (!freqFactors.equals(MemorySegment.NULL)) {
            requireFloats(call, "freqFactors", freqFactors, headDim / 2);
        }
        try {
            check(call, (int) H.nb_cuda_rope.invokeExact(ctx(), x, nTok, nHeads, headDim, pos, theta, freqScale,
                    freqFactors));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /** {@code out = silu(gate) * up}, n floats. */
    public void swiglu(MemorySegment gate, MemorySegment up, long n, MemorySegment out) {
        elementwise("nb_cuda_swiglu", H.nb_cuda_swiglu, gate, up, n, out);
    }

    /** {@code out = a + b}, n floats. */
    public void add(MemorySegment a, MemorySegment b, long n, MemorySegment out) {
        elementwise("nb_cuda_add", H.nb_cuda_add, a, b, n, out);
    }

    private void elementwise(String call, MethodHandle h, MemorySegment a, MemorySegment b, long n, MemorySegment out) {
        nonNegative(call, "n", n);
        requireFloats(call, "a", a, n);
        requireFloats(call, "b", b, n);
        requireFloats(call, "out", out, n);
        try {
            check(call, (int) h.invokeExact(ctx(), a, b, n, out));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /**
     * Stores {@code nTok} f32 rows of {@code rowLen} into the f16 cache: row t at cache row {@code start[t] + pos[t]}
     * (device int32; {@code start} {@link MemorySegment#NULL}: {@code pos[t]}). The cache holds
     * {@code cache.byteSize() / (2 rowLen)} rows; a row outside them is skipped on the device (pos and start cannot be
     * read here).
     */
    public void kvStore(MemorySegment src, long nTok, long rowLen, MemorySegment pos, MemorySegment start,
                        MemorySegment cache) {
        String call = "nb_cuda_kv_store";
        nonNegative(call, "nTok", nTok);
        if (rowLen <= 0) {
            throw new IllegalArgumentException(call + ": row length " + rowLen + " must be positive");
        }
        requireFloats(call, "src", src, product(call, nTok, rowLen));
        requireBytes(call, "pos", pos, product(call, nTok, 4), 4);
        requireStarts(call, start, nTok);
        long capacity = cache.byteSize() / product(call, rowLen, 2);
        requireBytes(call, "cache", cache, product(call, capacity, rowLen * 2), 2);
        try {
            check(call, (int) H.nb_cuda_kv_store.invokeExact(ctx(), src, nTok, rowLen, pos, start, cache, capacity));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /**
     * RoPE on q (in place) and k by the angles of {@code pos[t]}, then k and v stored as f16 at rows
     * {@code start[t] + pos[t]} of the caches ({@code start} {@link MemorySegment#NULL}: rows {@code pos[t]}; rows of
     * {@code nKvHeads * headDim}); a row outside the caches is skipped on the device. See nb_cuda_rope_store.
     */
    public void ropeStore(MemorySegment q, MemorySegment k, MemorySegment v, long nTok, long nHeads, long nKvHeads,
                          long headDim, MemorySegment pos, MemorySegment start, float theta, float freqScale,
                          MemorySegment freqFactors, MemorySegment kCache, MemorySegment vCache) {
        String call = "nb_cuda_rope_store";
        nonNegative(call, "nTok", nTok);
        if (nHeads <= 0 || nKvHeads <= 0 || headDim <= 0 || headDim % 2 != 0 || headDim > 512) {
            throw new IllegalArgumentException(call + ": " + nHeads + " heads, " + nKvHeads + " KV heads of " + headDim);
        }
        if (!(theta > 0) || !Float.isFinite(freqScale)) {
            throw new IllegalArgumentException(call + ": theta " + theta + " must be > 0 and freqScale finite");
        }
        long rowLen = product(call, nKvHeads, headDim);
        requireFloats(call, "q", q, product(call, product(call, nTok, nHeads), headDim));
        requireFloats(call, "k", k, product(call, nTok, rowLen));
        requireFloats(call, "v", v, product(call, nTok, rowLen));
        requireBytes(call, "pos", pos, product(call, nTok, 4), 4);
        requireStarts(call, start, nTok);
        if (!freqFactors.equals(MemorySegment.NULL)) {
            requireFloats(call, "freqFactors", freqFactors, headDim / 2);
        }
        long capacity = kCache.byteSize() / product(call, rowLen, 2);
        requireBytes(call, "kCache", kCache, product(call, capacity, rowLen * 2), 2);
        requireBytes(call, "vCache", vCache, product(call, capacity, rowLen * 2), 2);
        try {
            check(call, (int) H.nb_cuda_rope_store.invokeExact(ctx(), q, k, v, nTok, nHeads, nKvHeads, headDim, pos,
                    start, theta, freqScale, freqFactors, kCache, vCache, capacity));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /**
     * Workspace bytes enough for any {@link #attention} call of at most {@code nTok} tokens, with or without starts,
     * over sequences of at most {@code nKv} positions (0: none needed).
     */
    public static long attentionWorkBytes(long nTok, long nHeads, long headDim, long nKv) {
        try {
            return (long) handles().nb_cuda_attention_work_bytes.invokeExact(nTok, nHeads, headDim, nKv);
        } catch (Throwable t) {
            throw failure("nb_cuda_attention_work_bytes", t);
        }
    }

    /**
     * Causal attention with grouped query heads over the f16 cache {@code k}/{@code v}; see nb_cuda_attention in
     * nibble.h. Token t's sequence begins at cache row {@code start[t]} (device int32; {@code start}
     * {@link MemorySegment#NULL}: row 0 for every token) and query t sees its positions
     * {@code 0 .. min(pos[t], nKv - 1)}: {@code nKv} is an upper bound, the most positions one sequence holds, and k
     * and v must hold at least that many rows. pos and start live on the device, so unlike {@link NibbleCpu#attention}
     * this cannot check the rows they reach: the caller (the runtime's Model) guarantees that
     * {@code start[t] + min(pos[t], nKv - 1)} is a row of k and v for every token. {@code work} holds at least
     * {@link #attentionWorkBytes} for {@code nTok} tokens when that is not 0.
     */
    public void attention(MemorySegment q, long nTok, MemorySegment pos, MemorySegment start, long nHeads,
                          long nKvHeads, long headDim, MemorySegment k, MemorySegment v, long nKv, long kvStride,
                          float scale, MemorySegment work, MemorySegment out) {
        String call = "nb_cuda_attention";
        nonNegative(call, "nTok", nTok);
        if (nHeads <= 0 || nKvHeads <= 0 || nHeads % nKvHeads != 0) {
            throw new IllegalArgumentException(call + ": " + nHeads + " heads cannot share " + nKvHeads + " KV heads");
        }
        if (headDim <= 0 || headDim % 32 != 0 || headDim > 256) {
            throw new IllegalArgumentException(call + ": headDim " + headDim + " must be a multiple of 32 up to 256");
        }
        if (nKv <= 0 || kvStride < nKvHeads * headDim) {
            throw new IllegalArgumentException(call + ": nKv " + nKv + " or kvStride " + kvStride + " is too small");
        }
        long qFloats = product(call, product(call, nTok, nHeads), headDim);
        requireFloats(call, "q", q, qFloats);
        requireFloats(call, "out", out, qFloats);
        requireBytes(call, "pos", pos, product(call, nTok, 4), 4);
        requireStarts(call, start, nTok);
        long kvBytes = product(call, product(call, nKv - 1, kvStride) + nKvHeads * headDim, 2);
        requireBytes(call, "k", k, kvBytes, 2);
        requireBytes(call, "v", v, kvBytes, 2);
        long workBytes = attentionWorkBytes(nTok, nHeads, headDim, nKv);
        if (workBytes > 0) {
            requireBytes(call, "work", work, workBytes, 16);
        }
        try {
            check(call, (int) H.nb_cuda_attention.invokeExact(ctx(), q, nTok, pos, start, nHeads, nKvHeads, headDim, k,
                    v, nKv, kvStride, scale, work, work.byteSize(), out));
        } catch (RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw failure(call, t);
        }
    }

    /** A device array of {@code nTok} int32 start rows, or {@link MemorySegment#NULL} for none. */
    private static void requireStarts(String call, MemorySegment start, long nTok) {
        if (!MemorySegment.NULL.equals(start)) {
            requireBytes(call, "start", start, product(call, nTok, 4), 4);
        }
    }

    /** Waits for queued work and frees the context (not the memory allocated through it). */
    @Override
    public void close() {
        if (!closed) {
            closed = true;
            try {
                H.nb_cuda_close.invokeExact(ctx);
            } catch (Throwable t) {
                throw failure("nb_cuda_close", t);
            }
        }
    }

    private MemorySegment ctx() {
        if (closed) {
            throw new IllegalStateException("the CUDA context is closed");
        }
        return ctx;
    }

    private void check(String call, int status) {
        if (status != 0) {
            String detail;
            try {
                detail = ((MemorySegment) H.nb_cuda_error.invokeExact(ctx)).reinterpret(1024).getString(0);
            } catch (Throwable t) {
                detail = "";
            }
            throw detail.isEmpty() ? new NativeKernelException(call, status)
                    : new NativeKernelException(call, status, detail);
        }
    }

    private static void checkOpen(String call, int status) throws Throwable {
        if (status != 0) {
            String detail = ((MemorySegment) H.nb_cuda_last_open_error.invokeExact()).reinterpret(1024).getString(0);
            throw detail.isEmpty() ? new NativeKernelException(call, status)
                    : new NativeKernelException(call, status, detail);
        }
    }

    private static IllegalStateException failure(String call, Throwable t) {
        return new IllegalStateException(call + " downcall failed", t);
    }

    /** Every symbol of the library, bound once. */
    private static final class Handles {
        final MethodHandle nb_version, nb_cuda_version, nb_cuda_device_count, nb_cuda_device_info,
                nb_cuda_last_open_error, nb_cuda_open, nb_cuda_close, nb_cuda_error, nb_cuda_mem_info, nb_cuda_alloc,
                nb_cuda_free, nb_cuda_memset, nb_cuda_upload, nb_cuda_write, nb_cuda_read, nb_cuda_sync,
                nb_cuda_capture_begin, nb_cuda_capture_end, nb_cuda_graph_launch, nb_cuda_graph_free,
                nb_cuda_weight_bytes, nb_cuda_upload_weight, nb_cuda_matmul, nb_cuda_embed, nb_cuda_rmsnorm,
                nb_cuda_add_rmsnorm, nb_cuda_rope, nb_cuda_swiglu, nb_cuda_add, nb_cuda_kv_store,
                nb_cuda_attention_work_bytes, nb_cuda_attention, nb_cuda_matmul_shared_input, nb_cuda_matmul_swiglu,
                nb_cuda_rope_store;

        private final SymbolLookup lib;

        private Handles(SymbolLookup lib) {
            this.lib = lib;
            nb_version = fast("nb_version", FunctionDescriptor.of(I32));
            nb_cuda_version = fast("nb_cuda_version", FunctionDescriptor.of(I32));
            nb_cuda_device_count = slow("nb_cuda_device_count", FunctionDescriptor.of(I32, PTR));
            nb_cuda_device_info = slow("nb_cuda_device_info",
                    FunctionDescriptor.of(I32, I32, PTR, I32, PTR, PTR, PTR, PTR));
            nb_cuda_last_open_error = fast("nb_cuda_last_open_error", FunctionDescriptor.of(PTR));
            nb_cuda_open = slow("nb_cuda_open", FunctionDescriptor.of(I32, I32, PTR));
            nb_cuda_close = slow("nb_cuda_close", FunctionDescriptor.ofVoid(PTR));
            nb_cuda_error = fast("nb_cuda_error", FunctionDescriptor.of(PTR, PTR));
            nb_cuda_mem_info = slow("nb_cuda_mem_info", FunctionDescriptor.of(I32, PTR, PTR, PTR));
            nb_cuda_alloc = slow("nb_cuda_alloc", FunctionDescriptor.of(I32, PTR, I64, PTR));
            nb_cuda_free = slow("nb_cuda_free", FunctionDescriptor.of(I32, PTR, PTR));
            nb_cuda_memset = slow("nb_cuda_memset", FunctionDescriptor.of(I32, PTR, PTR, I32, I64));
            nb_cuda_upload = slow("nb_cuda_upload", FunctionDescriptor.of(I32, PTR, PTR, PTR, I64));
            nb_cuda_write = slow("nb_cuda_write", FunctionDescriptor.of(I32, PTR, PTR, PTR, I64));
            nb_cuda_read = slow("nb_cuda_read", FunctionDescriptor.of(I32, PTR, PTR, PTR, I64));
            nb_cuda_sync = slow("nb_cuda_sync", FunctionDescriptor.of(I32, PTR));
            nb_cuda_capture_begin = slow("nb_cuda_capture_begin", FunctionDescriptor.of(I32, PTR));
            nb_cuda_capture_end = slow("nb_cuda_capture_end", FunctionDescriptor.of(I32, PTR, PTR));
            nb_cuda_graph_launch = slow("nb_cuda_graph_launch", FunctionDescriptor.of(I32, PTR, PTR));
            nb_cuda_graph_free = slow("nb_cuda_graph_free", FunctionDescriptor.ofVoid(PTR));
            nb_cuda_weight_bytes = fast("nb_cuda_weight_bytes", FunctionDescriptor.of(I64, I32, I64, I64));
            nb_cuda_upload_weight = slow("nb_cuda_upload_weight",
                    FunctionDescriptor.of(I32, PTR, I32, PTR, I64, I64, PTR));
            // Kernel launches only queue work and return in microseconds.
            nb_cuda_matmul = fast("nb_cuda_matmul", FunctionDescriptor.of(I32, PTR, I32, PTR, I64, I64, PTR, I64, PTR));
            nb_cuda_matmul_shared_input = fast("nb_cuda_matmul_shared_input",
                    FunctionDescriptor.of(I32, PTR, I32, PTR, PTR, PTR, I64, PTR, I64, PTR));
            nb_cuda_matmul_swiglu = fast("nb_cuda_matmul_swiglu",
                    FunctionDescriptor.of(I32, PTR, I32, PTR, PTR, I64, I64, PTR, I64, PTR));
            nb_cuda_rope_store = fast("nb_cuda_rope_store", FunctionDescriptor.of(I32, PTR, PTR, PTR, PTR, I64, I64, I64,
                    I64, PTR, PTR, F32, F32, PTR, PTR, PTR, I64));
            nb_cuda_embed = fast("nb_cuda_embed", FunctionDescriptor.of(I32, PTR, I32, PTR, I64, I64, PTR, I64, PTR));
            nb_cuda_rmsnorm = fast("nb_cuda_rmsnorm", FunctionDescriptor.of(I32, PTR, PTR, PTR, I64, I64, F32, PTR));
            nb_cuda_add_rmsnorm = fast("nb_cuda_add_rmsnorm",
                    FunctionDescriptor.of(I32, PTR, PTR, PTR, PTR, I64, I64, F32, PTR));
            nb_cuda_rope = fast("nb_cuda_rope", FunctionDescriptor.of(I32, PTR, PTR, I64, I64, I64, PTR, F32, F32, PTR));
            nb_cuda_swiglu = fast("nb_cuda_swiglu", FunctionDescriptor.of(I32, PTR, PTR, PTR, I64, PTR));
            nb_cuda_add = fast("nb_cuda_add", FunctionDescriptor.of(I32, PTR, PTR, PTR, I64, PTR));
            nb_cuda_kv_store = fast("nb_cuda_kv_store",
                    FunctionDescriptor.of(I32, PTR, PTR, I64, I64, PTR, PTR, PTR, I64));
            nb_cuda_attention_work_bytes = fast("nb_cuda_attention_work_bytes",
                    FunctionDescriptor.of(I64, I64, I64, I64, I64));
            nb_cuda_attention = fast("nb_cuda_attention", FunctionDescriptor.of(I32, PTR, PTR, I64, PTR, PTR, I64, I64,
                    I64, PTR, PTR, I64, I64, F32, PTR, I64, PTR));
        }

        static Handles bind() {
            try {
                return NativeLibrary.load("nibble_cuda").map(Handles::new).orElse(null);
            } catch (IllegalArgumentException | IllegalStateException e) { // dlopen refused it, or a stale build
                loadProblem = "libnibble_cuda does not load on this machine: " + e.getMessage();
                return null;
            }
        }

        private MethodHandle fast(String symbol, FunctionDescriptor d) {
            return LINKER.downcallHandle(find(symbol), d, Linker.Option.critical(false));
        }

        private MethodHandle slow(String symbol, FunctionDescriptor d) {
            return LINKER.downcallHandle(find(symbol), d);
        }

        private MemorySegment find(String symbol) {
            return lib.find(symbol).orElseThrow(() -> new IllegalStateException("libnibble_cuda lacks symbol " + symbol));
        }
    }
}
