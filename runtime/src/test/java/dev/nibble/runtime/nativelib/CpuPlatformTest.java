package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/**
 * What the kernel library takes from the machine: the default thread count (CPU affinity), the instruction-set path
 * (CPUID, NIBBLE_ISA) and how much CPU its idle workers burn. Each runs {@link CpuProbe} in a child JVM, as a CPU mask
 * and an environment variable apply to a whole process.
 */
class CpuPlatformTest {

    private record Result(int exit, String stdout, List<String> stderr) {}

    private static Result probe(List<String> prefix, Map<String, String> env, String... args) throws Exception {
        List<String> command = new ArrayList<>(prefix);
        command.addAll(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), CpuProbe.class.getName()));
        command.addAll(Arrays.asList(args));
        ProcessBuilder pb = new ProcessBuilder(command);
        pb.environment().remove("NIBBLE_ISA");
        pb.environment().putAll(env);
        Process child = pb.start();
        child.getOutputStream().close();
        CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> read(child.getErrorStream()));
        String out = read(child.getInputStream());
        assertTrue(child.waitFor(60, TimeUnit.SECONDS), "the probe finishes");
        Result r = new Result(child.exitValue(), out.strip(), err.get().lines().toList());
        assertEquals(0, r.exit(), "probe " + command + " failed: " + r);
        return r;
    }

    private static String read(java.io.InputStream in) {
        try (in) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static String which(String program) {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            Path p = Path.of(dir, program);
            if (Files.isExecutable(p)) {
                return p.toString();
            }
        }
        return null;
    }

    /** Under {@code taskset -c 0} the process may run on one CPU, so a default context has one thread, not one per CPU. */
    @Test
    void defaultThreadCountFollowsTheCpuMask() throws Exception {
        String taskset = which("taskset");
        assumeTrue(taskset != null, "taskset (util-linux) is not installed");
        Result r = probe(List.of(taskset, "-c", "0"), Map.of(), "threads");
        assertTrue(r.stdout().startsWith("threads=1 "), "one usable CPU, one thread: " + r.stdout());
    }

    @Test
    void unknownNibbleIsaIsReportedInOneLine() throws Exception {
        String best = NibbleCpu.isaName(NibbleCpu.isaBest());
        Result r = probe(List.of(), Map.of("NIBBLE_ISA", "avx9000"), "threads");
        List<String> lines = r.stderr().stream().filter(l -> l.contains("NIBBLE_ISA")).toList();
        assertEquals(1, lines.size(), "one line on stderr: " + r.stderr());
        String line = lines.get(0);
        assertTrue(line.contains("avx9000") && line.contains("scalar, avx2, avx512") && line.contains(best),
                "names the value, the accepted ones and the path used: " + line);
        assertTrue(r.stdout().endsWith("isa=" + best), r.stdout());

        Result ok = probe(List.of(), Map.of("NIBBLE_ISA", "scalar"), "threads");
        assertTrue(ok.stderr().stream().noneMatch(l -> l.contains("NIBBLE_ISA")), "a valid value is quiet: " + ok.stderr());
        assertTrue(ok.stdout().endsWith("isa=scalar"), ok.stdout());
    }

    /**
     * The feature bits agree with the kernel's view in /proc/cpuinfo (which also reflects what the OS enabled), and
     * the AVX-512 path is only chosen with every extension it is compiled with (kernels-c/CMakeLists.txt), VL included.
     */
    @Test
    void featureBitsMatchProcCpuinfoAndAvx512NeedsVl() throws Exception {
        Path cpuinfo = Path.of("/proc/cpuinfo");
        assumeTrue(Files.isReadable(cpuinfo) && System.getProperty("os.arch").matches("amd64|x86_64"),
                "needs /proc/cpuinfo on x86-64");
        Set<String> flags = Files.readAllLines(cpuinfo).stream().filter(l -> l.startsWith("flags"))
                .findFirst().map(l -> Set.of(l.substring(l.indexOf(':') + 1).trim().split("\\s+"))).orElse(Set.of());
        int bits = NibbleCpu.cpuFeatures();
        Map<Integer, String> names = Map.of(NibbleCpu.AVX2, "avx2", NibbleCpu.FMA, "fma", NibbleCpu.F16C, "f16c",
                NibbleCpu.AVX512F, "avx512f", NibbleCpu.AVX512BW, "avx512bw", NibbleCpu.AVX512VL, "avx512vl",
                NibbleCpu.AVX512VNNI, "avx512_vnni", NibbleCpu.AVXVNNI, "avx_vnni");
        String mismatches = names.entrySet().stream()
                .filter(e -> ((bits & e.getKey()) != 0) != flags.contains(e.getValue()))
                .map(Map.Entry::getValue).collect(Collectors.joining(" "));
        assertEquals("", mismatches, "feature bits that disagree with /proc/cpuinfo");
        int avx512 = NibbleCpu.AVX512F | NibbleCpu.AVX512BW | NibbleCpu.AVX512VL | NibbleCpu.AVX512VNNI;
        assertEquals((bits & avx512) == avx512 && (bits & NibbleCpu.AVX2) != 0,
                NibbleCpu.isaBest() == NibbleCpu.ISA_AVX512, "AVX-512 path iff F, BW, VL and VNNI (and AVX2)");
    }

    /**
     * A critical downcall holds off every garbage-collector safepoint until it returns, so only calls that take no
     * lock and read no caller memory may be critical: by their declarations in nibble.h, functions of no argument or
     * of the context alone. Kernels (embed reads the mapped model; rmsnorm and swiglu run for milliseconds in a
     * prefill) and calls that lock (nb_cpu_set_isa) are plain downcalls.
     */
    @Test
    void onlyConstantTimeQueriesAreCriticalDowncalls() throws Exception {
        Path header = Path.of("..", "kernels-c", "include", "nibble.h");
        assumeTrue(Files.isReadable(header), "needs the source tree's nibble.h");
        String text = Files.readString(header).replaceAll("\\s+", " ");
        for (String symbol : NibbleCpu.CRITICAL) {
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("NB_API \\w+ " + symbol + "\\(([^)]*)\\)").matcher(text);
            assertTrue(m.find(), symbol + " is declared in nibble.h");
            String params = m.group(1).trim();
            assertTrue(params.equals("void") || params.equals("const nb_cpu *ctx"),
                    symbol + "(" + params + ") may read caller memory, so it must not be critical");
        }
        for (String kernel : List.of("nb_embed", "nb_rmsnorm", "nb_rope", "nb_softmax", "nb_swiglu", "nb_add",
                "nb_f32_to_f16", "nb_f16_to_f32", "nb_matmul", "nb_attention", "nb_cpu_set_isa", "nb_cpu_open")) {
            assertTrue(!NibbleCpu.CRITICAL.contains(kernel), kernel + " is a plain downcall");
        }
    }

    /**
     * Idle workers spin for a bounded time (about 100 µs) after a kernel, then sleep: with a 0.5 ms gap between
     * kernels a worker must stay well below one busy core: at most about 120 µs of each gap of 500 µs or more (under a
     * third), where a spin of 20,000 pauses (0.5-1 ms) filled most of it. This bounds CPU time, not speed: a loaded
     * machine only lowers the worker's share.
     */
    @Test
    void idleWorkersStopSpinningSoon() throws Exception {
        assumeTrue(Files.isDirectory(Path.of("/proc/self/task")), "needs Linux /proc");
        Result r = probe(List.of(), Map.of(), "idle", "400", "500000");
        String[] f = r.stdout().split("[ =]");
        long workerMs = Long.parseLong(f[1]), wallMs = Long.parseLong(f[3]);
        assertTrue(workerMs * 3 < wallMs, "the worker used " + workerMs + " ms of CPU in " + wallMs + " ms of mostly idle time");
    }
}
