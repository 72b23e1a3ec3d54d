package dev.nibble.kernels;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Native libraries are extracted once per user and build into a private cache, never left behind in the temp folder. */
class NativeLibraryCacheTest {

    @TempDir
    Path dir;

    /** Child process: loads the CPU library, prints "ok" or the one-line error, as a nibble command would. */
    static final class Child {
        public static void main(String[] args) {
            try {
                System.out.println(NativeLibrary.load("nibble_cpu").isPresent() ? "ok" : "absent");
            } catch (RuntimeException e) {
                System.out.println(e.getMessage());
                System.exit(3);
            }
        }
    }

    private record Run(int exit, String out) {
    }

    private Run child(Map<String, String> env, Path tmp) throws Exception {
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        ProcessBuilder pb = new ProcessBuilder(java.toString(), "--enable-native-access=ALL-UNNAMED",
                "-Djava.io.tmpdir=" + tmp, "-cp", System.getProperty("java.class.path"), Child.class.getName())
                .redirectErrorStream(true);
        pb.environment().remove(NativeLibrary.CACHE_VARIABLE);
        pb.environment().remove("XDG_CACHE_HOME");
        pb.environment().putAll(env);
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        return new Run(p.exitValue(), out);
    }

    @Test
    void theLibraryIsExtractedOnceToAPrivateCacheAndNothingIsLeftInTheTempFolder() throws Exception {
        Path tmp = Files.createDirectory(dir.resolve("tmp"));
        Path cache = dir.resolve("cache");
        Map<String, String> env = Map.of("XDG_CACHE_HOME", cache.toString());
        assertEquals(new Run(0, "ok"), child(env, tmp));
        assertEquals(List.of(), list(tmp), "no nibble-native-* folder is left in java.io.tmpdir");

        Path root = cache.resolve("nibble/native");
        List<Path> versions = list(root);
        assertEquals(1, versions.size(), versions.toString());
        Path lib = versions.getFirst().resolve(System.mapLibraryName("nibble_cpu"));
        assertEquals("rwx------", PosixFilePermissions.toString(Files.getPosixFilePermissions(versions.getFirst())));
        assertEquals(List.of(lib), list(versions.getFirst()), "only the library, no temporary file");
        Object inode = Files.readAttributes(lib, BasicFileAttributes.class).fileKey();

        assertEquals(new Run(0, "ok"), child(env, tmp));
        assertEquals(inode, Files.readAttributes(lib, BasicFileAttributes.class).fileKey(), "the second run reuses the file");
        assertEquals(List.of(), list(tmp));
    }

    @Test
    void aCacheFolderAnotherUserCouldChangeIsRefusedNamingTheSetting() throws Exception {
        Path real = Files.createDirectory(dir.resolve("real"));
        Path link = Files.createSymbolicLink(dir.resolve("link"), real);
        Run run = child(Map.of(NativeLibrary.CACHE_VARIABLE, link.toString()), dir);
        assertEquals(3, run.exit(), run.out());
        assertTrue(run.out().contains(link + " is a symbolic link") && run.out().contains("-Dnibble.native.cache=DIR")
                && run.out().contains("NIBBLE_NATIVE_CACHE=DIR"), run.out());
        assertEquals(1, run.out().lines().count(), run.out());

        Files.setPosixFilePermissions(real, PosixFilePermissions.fromString("rwxrwxrwx"));
        run = child(Map.of(NativeLibrary.CACHE_VARIABLE, real.toString()), dir);
        assertEquals(3, run.exit(), run.out());
        assertTrue(run.out().contains(real + " is writable by other users"), run.out());
    }

    @Test
    void aFolderThatMayNotRunCodeIsExplainedWithTheSettingThatMovesIt() {
        Path lib = Path.of("/tmp/x/libnibble_cpu.so");
        IllegalArgumentException cause = new IllegalArgumentException("Cannot open library: " + lib);
        RuntimeException e = NativeLibrary.loadFailure(lib,
                lib + ": " + lib + ": failed to map segment from shared object", cause);
        assertTrue(e.getMessage().startsWith("cannot load " + lib + ": the file system of /tmp/x does not allow running code"),
                e.getMessage());
        assertTrue(e.getMessage().contains("-Dnibble.native.cache=DIR or NIBBLE_NATIVE_CACHE=DIR"), e.getMessage());
        e = NativeLibrary.loadFailure(lib, "libcudart.so.12: cannot open shared object file", cause);
        assertEquals("cannot load " + lib + ": libcudart.so.12: cannot open shared object file", e.getMessage(),
                "other loader errors keep the loader's reason");
    }

    @Test
    void aRealNoexecMountGivesTheSameMessage() throws Exception {
        Path noexec = writableNoexecMount();
        assumeTrue(noexec != null, "no writable noexec mount on this machine");
        Path cache = Files.createTempDirectory(noexec, "nibble-test-");
        try {
            Run run = child(Map.of(NativeLibrary.CACHE_VARIABLE, cache.toString()), dir);
            assertEquals(3, run.exit(), run.out());
            assertTrue(run.out().contains("does not allow running code") && run.out().contains("NIBBLE_NATIVE_CACHE"), run.out());
        } finally {
            try (Stream<Path> files = Files.walk(cache)) {
                for (Path p : files.sorted((a, b) -> b.compareTo(a)).toList()) {
                    Files.delete(p);
                }
            }
        }
    }

    private static Path writableNoexecMount() throws IOException {
        Path mounts = Path.of("/proc/mounts");
        if (!Files.isReadable(mounts)) {
            return null;
        }
        for (String line : Files.readAllLines(mounts)) {
            String[] f = line.split(" ");
            if (f.length > 3 && List.of(f[3].split(",")).containsAll(List.of("rw", "noexec"))
                    && List.of("/tmp", "/var/tmp", "/dev/shm").contains(f[1]) && Files.isWritable(Path.of(f[1]))) {
                return Path.of(f[1]);
            }
        }
        return null;
    }

    private static List<Path> list(Path folder) throws IOException {
        try (Stream<Path> s = Files.list(folder)) {
            return s.sorted().toList();
        }
    }
}
