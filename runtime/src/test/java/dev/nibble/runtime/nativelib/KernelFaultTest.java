package dev.nibble.runtime.nativelib;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A SIGBUS inside a kernel (its weights' file truncated under the mapping) is an error of that call, not a dead
 * process; the JVM's own SIGBUS handling (InternalError for a Java read of such a mapping) still works beside ours.
 * Each case runs {@link FaultProbe} in a child JVM, so that a fault the library misses kills the child, not the tests:
 * the child must exit 0, print its results, and leave no hs_err file.
 */
class KernelFaultTest {

    @TempDir
    Path dir;

    private record Result(int exit, List<String> stdout, String stderr) {}

    private Result probe(List<String> jvmOptions, Map<String, String> env, String... args) throws Exception {
        Result r = run(jvmOptions, env, args);
        try (Stream<Path> files = Files.list(dir)) {
            List<String> crashes = files.map(p -> p.getFileName().toString()).filter(n -> n.startsWith("hs_err")).toList();
            assertEquals(List.of(), crashes, "the JVM crashed: " + r);
        }
        assertEquals(0, r.exit(), "probe " + String.join(" ", args) + " failed: " + r);
        assertEquals("done", r.stdout().getLast(), r.toString());
        return r;
    }

    private Result run(List<String> jvmOptions, Map<String, String> env, String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED"));
        command.addAll(jvmOptions);
        command.addAll(List.of("-cp", System.getProperty("java.class.path"), FaultProbe.class.getName()));
        command.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(command).directory(dir.toFile());
        pb.environment().putAll(env);
        Process child = pb.start();
        child.getOutputStream().close();
        CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> read(child.getErrorStream()));
        String out = read(child.getInputStream());
        assertTrue(child.waitFor(120, TimeUnit.SECONDS), "the probe finishes");
        return new Result(child.exitValue(), out.lines().toList(), err.get());
    }

    private static String read(InputStream in) {
        try (in) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private List<String> expectedOkLines() {
        List<String> lines = new ArrayList<>();
        KernelData.paths().forEach(isa -> {
            for (int threads : new int[] {1, 3}) {
                lines.add("ok path=" + NibbleCpu.isaName(isa) + " threads=" + threads);
            }
        });
        lines.add("done");
        return lines;
    }

    /**
     * On every path, on the calling thread and on pool workers: matmul (decode, a few tokens, prefill), embed (Q8_0,
     * and F32 whose rows libc's memcpy copies), rmsnorm, rope and add over unbacked pages return NB_ERR_FAULT twenty
     * times over, and the context then computes bit for bit what it computed before the truncation.
     */
    @Test
    void kernelsOverATruncatedMappingFailTheCallAndTheContextGoesOn() throws Exception {
        Result r = probe(List.of(), Map.of(), "kernels", dir.toString());
        assertEquals(expectedOkLines(), r.stdout());
    }

    /**
     * With libjsig preloaded (the JVM's signal-chaining library), HotSpot's handler stays installed and ours is its
     * chained one: a fault in a kernel reaches ours through HotSpot's handler, and is still an error of the call.
     */
    @Test
    void kernelFaultsAreCaughtUnderLibjsigToo() throws Exception {
        Path jsig = Path.of(System.getProperty("java.home"), "lib", "libjsig.so");
        assumeTrue(Files.isReadable(jsig), "this JDK has no lib/libjsig.so");
        Result r = probe(List.of(), Map.of("LD_PRELOAD", jsig.toString()), "kernels", dir.toString());
        assertEquals(expectedOkLines(), r.stdout());
    }

    /**
     * The JVM's own use of SIGBUS: a Java read of a truncated mapping (MemorySegment, MappedByteBuffer, a bulk copy;
     * interpreted, then compiled) throws InternalError after the library installed its handler, which chains to the
     * JVM's for every SIGBUS outside a kernel. Also under -Xrs, and under -Xcheck:jni, which notices the replaced
     * handler and says so once on stdout ("Warning: SIGBUS handler modified!", its list of handlers, "Consider using
     * jsig library."), and carries on.
     */
    @Test
    void javaReadsOfATruncatedMappingStillThrowInternalError() throws Exception {
        for (List<String> options : List.of(List.<String>of(), List.of("-Xcheck:jni"), List.of("-Xrs"))) {
            Result r = probe(options, Map.of(), "hotspot", dir.toString());
            List<String> results = r.stdout().stream().filter(l -> l.startsWith("internal_errors=") || l.equals("done"))
                    .toList();
            assertEquals(List.of("internal_errors=40001", "done"), results, options + ": " + r);
        }
    }

    /**
     * A SIGBUS outside every kernel is not the library's: libc's memcpy called straight from Java over a truncated
     * mapping still kills the JVM (its crash report names SIGBUS), as it would without the library loaded.
     */
    @Test
    void aFaultOutsideTheKernelsIsLeftToTheJvm() throws Exception {
        Result r = run(List.of("-XX:-CreateCoredumpOnCrash"), Map.of(), "outside", dir.toString());
        assertEquals("copying", r.stdout().getFirst(), r.toString());
        assertTrue(r.stdout().stream().anyMatch(l -> l.contains("SIGBUS")), "the JVM's fatal error names SIGBUS: " + r);
        assertTrue(r.exit() != 0 && !r.stdout().contains("done"), "the JVM died: " + r);
        try (Stream<Path> files = Files.list(dir)) {
            Path report = files.filter(p -> p.getFileName().toString().startsWith("hs_err")).findFirst().orElseThrow();
            assertTrue(Files.readString(report).contains("SIGBUS"), "the crash report names SIGBUS");
        }
    }
}
