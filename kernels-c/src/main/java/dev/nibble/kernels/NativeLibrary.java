package dev.nibble.kernels;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.SymbolLookup;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Finds a native kernel library shipped inside the jar, copies it to a private temp folder and loads it, once per
 * process: every caller of {@link #load} gets the same loaded copy, so the library's state is never duplicated.
 */
public final class NativeLibrary {

    private static final Map<String, Optional<SymbolLookup>> LOADED = new ConcurrentHashMap<>();

    private NativeLibrary() {}

    /** The folder name the kernels build uses for this machine, e.g. {@code linux-x86_64}. */
    public static String platform() {
        String os = System.getProperty("os.name").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch").toLowerCase(Locale.ROOT);
        if (arch.equals("amd64")) {
            arch = "x86_64";
        }
        if (os.startsWith("linux")) {
            os = "linux";
        } else if (os.startsWith("mac")) {
            os = "darwin";
        }
        return os + "-" + arch;
    }

    /**
     * Loads {@code lib<name>.so} for this platform, or returns empty when the jar does not carry it
     * (for example the CUDA library on a machine built without nvcc).
     * The override {@code -Dnibble.native.dir=DIR} loads from a folder instead, for development.
     */
    public static Optional<SymbolLookup> load(String name) {
        return LOADED.computeIfAbsent(name, NativeLibrary::loadOnce);
    }

    private static Optional<SymbolLookup> loadOnce(String name) {
        String fileName = System.mapLibraryName(name);
        String overrideDir = System.getProperty("nibble.native.dir");
        Path path;
        if (overrideDir != null) {
            path = Path.of(overrideDir, fileName);
            if (!Files.isRegularFile(path)) {
                return Optional.empty();
            }
        } else {
            String resource = "/native/" + platform() + "/" + fileName;
            try (InputStream in = NativeLibrary.class.getResourceAsStream(resource)) {
                if (in == null) {
                    return Optional.empty();
                }
                Path dir = Files.createTempDirectory("nibble-native-");
                path = dir.resolve(fileName);
                Files.copy(in, path, StandardCopyOption.REPLACE_EXISTING);
                path.toFile().deleteOnExit();
                dir.toFile().deleteOnExit();
            } catch (IOException e) {
                throw new UncheckedIOException("cannot extract native library " + resource, e);
            }
        }
        try {
            return Optional.of(SymbolLookup.libraryLookup(path, Arena.global()));
        } catch (IllegalCallerException e) {
            throw new IllegalStateException("native access is disabled: run java with --enable-native-access=ALL-UNNAMED", e);
        }
    }
}
