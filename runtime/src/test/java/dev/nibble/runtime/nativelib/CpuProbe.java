package dev.nibble.runtime.nativelib;

import dev.nibble.formats.GgmlType;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.concurrent.locks.LockSupport;

/**
 * A child process for {@link CpuPlatformTest}: what a fresh process sees under a CPU mask or an environment variable.
 * {@code threads}: prints the thread count and path of a default context ({@code threads=N isa=NAME}).
 * {@code idle}: runs short matmuls with idle gaps between them on a two-thread context and prints the CPU time its
 * worker thread used and the wall time of the loop ({@code worker_ms=A wall_ms=B}).
 */
public final class CpuProbe {

    private CpuProbe() {}

    public static void main(String[] args) throws IOException {
        switch (args.length == 0 ? "threads" : args[0]) {
            case "threads" -> {
                try (NibbleCpu cpu = NibbleCpu.open(0)) {
                    System.out.println("threads=" + cpu.threads() + " isa=" + NibbleCpu.isaName(cpu.isa()));
                }
            }
            case "idle" -> idle(Integer.parseInt(args[1]), Long.parseLong(args[2]));
            default -> throw new IllegalArgumentException("unknown probe " + args[0]);
        }
    }

    private static void idle(int runs, long gapNanos) throws IOException {
        try (NibbleCpu cpu = NibbleCpu.open(2); Arena arena = Arena.ofConfined()) {
            Random rnd = new Random(5);
            int nOut = 64, nIn = 256;
            MemorySegment w = KernelData.randomWeights(arena, rnd, GgmlType.Q4_0, nOut, nIn);
            MemorySegment x = KernelData.floats(arena, KernelData.randomFloats(rnd, nIn, 1));
            MemorySegment y = arena.allocate(4L * nOut, 64);
            cpu.matmul(GgmlType.Q4_0, w, nOut, nIn, x, 1, y); // the worker has started and run once
            long before = workerTicks();
            long start = System.nanoTime();
            for (int i = 0; i < runs; i++) {
                cpu.matmul(GgmlType.Q4_0, w, nOut, nIn, x, 1, y);
                LockSupport.parkNanos(gapNanos); // the gap between two kernels, in which the worker may spin
            }
            long wallMs = (System.nanoTime() - start) / 1_000_000;
            long workerMs = (workerTicks() - before) * 10; // USER_HZ is 100 on Linux
            System.out.println("worker_ms=" + workerMs + " wall_ms=" + wallMs);
        }
    }

    /** utime + stime, in clock ticks, of this process's threads named nb-worker (the kernel pool's workers). */
    private static long workerTicks() throws IOException {
        long ticks = 0;
        int workers = 0;
        try (DirectoryStream<Path> tasks = Files.newDirectoryStream(Path.of("/proc/self/task"))) {
            for (Path task : tasks) {
                String stat;
                try {
                    stat = Files.readString(task.resolve("stat"));
                } catch (IOException gone) {
                    continue; // a thread that ended meanwhile
                }
                int open = stat.indexOf('('), close = stat.lastIndexOf(')');
                if (!stat.substring(open + 1, close).equals("nb-worker")) {
                    continue;
                }
                String[] f = stat.substring(close + 2).split(" ");
                ticks += Long.parseLong(f[11]) + Long.parseLong(f[12]); // fields 14 and 15 of proc(5): utime, stime
                workers++;
            }
        }
        if (workers == 0) {
            throw new IllegalStateException("no thread named nb-worker in /proc/self/task");
        }
        return ticks;
    }
}
