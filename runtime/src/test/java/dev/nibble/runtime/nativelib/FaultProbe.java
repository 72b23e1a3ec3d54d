package dev.nibble.runtime.nativelib;

import dev.nibble.formats.GgmlType;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Random;

/**
 * A child process for {@link KernelFaultTest}, where a SIGBUS the library failed to catch kills only this process.
 * {@code kernels DIR}: on every path and on one- and three-thread contexts, kernels reading a file mapping whose file
 * was truncated under it throw a fault, and the same context then computes exactly what it computed before on intact
 * memory; prints one {@code ok} line per path and context, then {@code done}. {@code hotspot DIR}: with the library
 * loaded (its handler installed), Java reads of a truncated mapping (MemorySegment, MappedByteBuffer, interpreted and
 * compiled) throw InternalError as the JVM makes them; prints {@code internal_errors=N}, then {@code done}.
 * {@code outside DIR}: libc's memcpy, called directly (outside any kernel), reads a truncated mapping: the library must
 * not take that SIGBUS for its own, so the JVM dies of it as it would without the library. Any failed expectation
 * exits with status 3 and a line on stderr.
 */
public final class FaultProbe {

    private FaultProbe() {}

    public static void main(String[] args) throws Throwable {
        Path dir = Path.of(args[1]);
        switch (args[0]) {
            case "kernels" -> kernels(dir);
            case "hotspot" -> hotspot(dir);
            case "outside" -> outside(dir);
            default -> throw new IllegalArgumentException("unknown probe " + args[0]);
        }
        System.out.println("done");
    }

    private static void expect(boolean condition, String what) {
        if (!condition) {
            System.err.println("FAULT PROBE FAILED: " + what);
            System.exit(3);
        }
    }

    /** Runs {@code call}, which must fail with NB_ERR_FAULT. */
    private static void expectFault(String what, Runnable call) {
        try {
            call.run();
        } catch (NativeKernelException e) {
            expect(e.isFault() && e.status() == NativeKernelException.FAULT, what + ": " + e.getMessage());
            expect(e.getMessage().contains("SIGBUS"), what + " names the fault: " + e.getMessage());
            return;
        }
        expect(false, what + " returned normally over unbacked pages");
    }

    private static void kernels(Path dir) throws IOException {
        int nOut = 512, nIn = 1024;
        Random rnd = new Random(11);
        for (int isa : KernelData.paths().toArray()) {
            for (int threads : new int[] {1, 3}) {
                try (NibbleCpu cpu = NibbleCpu.open(threads); Arena arena = Arena.ofShared()) {
                    cpu.setIsa(isa);
                    // Q8_0 weights (the integer paths), an F32 table (embed copies its rows with libc's memcpy)
                    MemorySegment q8 = KernelData.randomWeights(arena, rnd, GgmlType.Q8_0, nOut, nIn);
                    MemorySegment f32 = KernelData.randomWeights(arena, rnd, GgmlType.F32, nOut, nIn);
                    Path file = dir.resolve("w-" + isa + "-" + threads + ".bin");
                    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                            StandardOpenOption.READ, StandardOpenOption.TRUNCATE_EXISTING)) {
                        ch.write(q8.asByteBuffer(), 0);
                        ch.write(f32.asByteBuffer(), q8.byteSize());
                        long size = q8.byteSize() + f32.byteSize();
                        MemorySegment map = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
                        MemorySegment wq = map.asSlice(0, q8.byteSize());
                        MemorySegment wf = map.asSlice(q8.byteSize(), f32.byteSize());
                        int[] toks = {1, 2, 16};
                        MemorySegment x = KernelData.floats(arena, KernelData.randomFloats(rnd, 16 * nIn, 1));
                        MemorySegment y = arena.allocate(4L * 16 * nOut, 64);
                        MemorySegment ids = KernelData.ints(arena, new int[] {0, nOut - 1});
                        MemorySegment rows = arena.allocate(4L * 2 * nIn, 64);
                        MemorySegment norm = arena.allocate(4L * nIn, 64);
                        // what the context computes from the mapping while it is intact
                        float[][] before = new float[toks.length][];
                        for (int i = 0; i < toks.length; i++) {
                            cpu.matmul(GgmlType.Q8_0, wq, nOut, nIn, x, toks[i], y);
                            before[i] = KernelData.toArray(y, toks[i] * nOut);
                        }
                        cpu.embed(GgmlType.F32, wf, nOut, nIn, ids, 2, rows);
                        float[] embedBefore = KernelData.toArray(rows, 2 * nIn);

                        // a third of the weights stay: rows past them fault, on whichever thread has them
                        ch.truncate(q8.byteSize() / 3);
                        for (int round = 0; round < 20; round++) { // the mask is restored: a fault after a fault is caught
                            for (int t : toks) {
                                expectFault("matmul of " + t + " tokens", () -> cpu.matmul(GgmlType.Q8_0, wq, nOut, nIn, x, t, y));
                            }
                            expectFault("embed of an F32 row", () -> cpu.embed(GgmlType.F32, wf, nOut, nIn, ids, 2, rows));
                            expectFault("embed of a Q8_0 row", () -> cpu.embed(GgmlType.Q8_0, wq, nOut, nIn, ids, 2, rows));
                            expectFault("rmsnorm with a mapped weight", () -> cpu.rmsnorm(x, wf.asSlice(0, 4L * nIn), 1, nIn, 1e-5f, norm));
                            expectFault("rope with mapped factors", () -> cpu.rope(norm, 1, 1, 64, ids, 10000f, 1f,
                                    wf.asSlice(wf.byteSize() - 128, 128)));
                            expectFault("add of a mapped vector", () -> cpu.add(x, wf, nIn, norm));
                        }

                        // the same context on intact memory: the same results, bit for bit
                        MemorySegment copy = arena.allocate(q8.byteSize(), 64).copyFrom(q8);
                        for (int i = 0; i < toks.length; i++) {
                            cpu.matmul(GgmlType.Q8_0, copy, nOut, nIn, x, toks[i], y);
                            expect(Arrays.equals(before[i], KernelData.toArray(y, toks[i] * nOut)),
                                    "matmul of " + toks[i] + " tokens after faults gives what it gave before");
                        }
                        cpu.embed(GgmlType.F32, f32, nOut, nIn, ids, 2, rows);
                        expect(Arrays.equals(embedBefore, KernelData.toArray(rows, 2 * nIn)), "embed after faults");
                    }
                    System.out.println("ok path=" + NibbleCpu.isaName(isa) + " threads=" + threads);
                }
            }
        }
    }

    private static void outside(Path dir) throws Throwable {
        try (NibbleCpu cpu = NibbleCpu.open(2)) {
            expect(cpu.threads() == 2, "a two-thread context");
        }
        java.lang.foreign.Linker linker = java.lang.foreign.Linker.nativeLinker();
        java.lang.invoke.MethodHandle memcpy = linker.downcallHandle(linker.defaultLookup().find("memcpy").orElseThrow(),
                java.lang.foreign.FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.ADDRESS,
                        ValueLayout.JAVA_LONG));
        Path file = dir.resolve("libc.bin");
        int size = 1 << 20;
        Files.write(file, new byte[size]);
        try (Arena arena = Arena.ofShared(); FileChannel ch = FileChannel.open(file, StandardOpenOption.READ,
                StandardOpenOption.WRITE)) {
            MemorySegment map = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            MemorySegment dst = arena.allocate(size);
            ch.truncate(4096);
            System.out.println("copying");
            System.out.flush();
            MemorySegment unused = (MemorySegment) memcpy.invokeExact(dst, map, (long) size);
            expect(false, "memcpy over unbacked pages returned " + unused);
        }
    }

    private static void hotspot(Path dir) throws IOException {
        try (NibbleCpu cpu = NibbleCpu.open(2)) { // loads the library: its handler is installed now
            expect(cpu.threads() == 2, "a two-thread context");
        }
        Path file = dir.resolve("java.bin");
        int size = 1 << 20;
        Files.write(file, new byte[size]);
        int errors = 0;
        try (Arena arena = Arena.ofShared(); FileChannel ch = FileChannel.open(file, StandardOpenOption.READ,
                StandardOpenOption.WRITE)) {
            MemorySegment map = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            MappedByteBuffer buffer = ch.map(FileChannel.MapMode.READ_ONLY, 0, size);
            long sum = map.get(ValueLayout.JAVA_BYTE, size - 1) + buffer.get(size - 1);
            ch.truncate(4096);
            // enough iterations for the JIT to compile the loop: the faults then come from compiled code
            for (int i = 0; i < 20_000; i++) {
                try {
                    sum += map.get(ValueLayout.JAVA_BYTE, size - 1 - (i % 4096));
                    expect(false, "a read of an unbacked page returned");
                } catch (InternalError e) {
                    errors++;
                }
                try {
                    sum += buffer.get(size - 1 - (i % 4096));
                    expect(false, "a buffer read of an unbacked page returned");
                } catch (InternalError e) {
                    errors++;
                }
            }
            try {
                MemorySegment.copy(map, size / 2, MemorySegment.ofArray(new byte[64]), 0, 64); // Unsafe.copyMemory
                expect(false, "a copy from unbacked pages returned");
            } catch (InternalError e) {
                errors++;
            }
            expect(sum == 0, "the intact page read as zeros");
            // and the library still catches its own
            try (NibbleCpu cpu = NibbleCpu.open(2)) {
                MemorySegment x = arena.allocate(4L * 32, 64);
                MemorySegment y = arena.allocate(4L * 16, 64);
                expectFault("matmul after the JVM's own faults", () -> cpu.matmul(GgmlType.Q8_0, map.asSlice(size / 2, 34L * 16),
                        16, 32, x, 1, y));
            }
        }
        System.out.println("internal_errors=" + errors);
    }
}
