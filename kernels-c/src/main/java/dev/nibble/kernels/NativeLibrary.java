package dev.nibble.kernels;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.SymbolLookup;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.nio.file.attribute.UserPrincipal;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.stream.Stream;

/**
 * Finds a native kernel library shipped inside the jar, extracts it to a per-user cache folder and loads it, once per
 * process: every caller of {@link #load} gets the same loaded copy, so the library's state is never duplicated.
 *
 * <p>The cache folder is {@code $XDG_CACHE_HOME/nibble/native}, else {@code ~/.cache/nibble/native}, else
 * {@code java.io.tmpdir/nibble-native-USER}; {@code -Dnibble.native.cache=DIR} or {@code NIBBLE_NATIVE_CACHE=DIR}
 * chooses another (needed where that file system is mounted {@code noexec}). Each library goes to a subfolder named by
 * the hash of its content, so it is extracted once per user and build, not once per run, and two builds never mix.
 * Code loaded from there runs in this process, so the folders must be this user's own: they are created owner-only and
 * refused when they are symbolic links, owned by someone else or writable by others. Files are written under a unique
 * temporary name and renamed into place, so JVMs starting together never load a half-written library.
 */
public final class NativeLibrary {

    /** The system property that chooses the cache folder. */
    public static final String CACHE_PROPERTY = "nibble.native.cache";
    /** The environment variable that chooses the cache folder when the property is not set. */
    public static final String CACHE_VARIABLE = "NIBBLE_NATIVE_CACHE";
    /** Versions of a library not written for this long are removed when a new version is extracted. */
    private static final Duration KEEP_OLD_VERSIONS = Duration.ofDays(1);

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
     *
     * @throws IllegalStateException when the library cannot be extracted or loaded, with the reason and the fix
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
            byte[] bytes;
            try (InputStream in = NativeLibrary.class.getResourceAsStream(resource)) {
                if (in == null) {
                    return Optional.empty();
                }
                bytes = in.readAllBytes();
            } catch (IOException e) {
                throw new IllegalStateException("cannot read " + resource + " from the nibble jar: " + e.getMessage(), e);
            }
            path = extract(fileName, bytes);
        }
        try {
            return Optional.of(SymbolLookup.libraryLookup(path, Arena.global()));
        } catch (IllegalCallerException e) {
            throw new IllegalStateException("native access is disabled: run java with --enable-native-access=ALL-UNNAMED", e);
        } catch (IllegalArgumentException e) {
            throw loadFailure(path, loaderReason(path, e), e);
        }
    }

    /**
     * Why the dynamic loader refused the library. SymbolLookup reports only "Cannot open library"; System.load, which
     * fails the same way, carries the loader's own reason (a missing dependency, a noexec mount).
     */
    private static String loaderReason(Path path, IllegalArgumentException e) {
        try {
            System.load(path.toString());
        } catch (UnsatisfiedLinkError | RuntimeException diagnostic) {
            if (diagnostic.getMessage() != null) {
                return diagnostic.getMessage();
            }
        }
        return String.valueOf(e.getMessage());
    }

    /**
     * The error for a library the dynamic loader refused. On a file system mounted {@code noexec} (often /tmp), Linux
     * says "failed to map segment from shared object": say instead where the library can go.
     */
    static RuntimeException loadFailure(Path path, String reason, IllegalArgumentException e) {
        if (reason.contains("failed to map")) {
            return new IllegalStateException("cannot load " + path + ": the file system of " + path.getParent()
                    + " does not allow running code (mounted noexec?); set -D" + CACHE_PROPERTY + "=DIR or "
                    + CACHE_VARIABLE + "=DIR to a folder of yours on another file system", e);
        }
        return new IllegalArgumentException(reason.contains(path.toString()) ? reason : "cannot load " + path + ": " + reason, e);
    }

    /** The library's path in the cache, extracted now unless an earlier run did. */
    private static Path extract(String fileName, byte[] bytes) {
        String hash = sha256(bytes).substring(0, 24);
        List<Path> roots = cacheRoots();
        IOException failure = null;
        for (Path root : roots) {
            try {
                return extractTo(root, root.resolve(hash), fileName, bytes);
            } catch (IOException e) {
                failure = failure == null ? e : failure; // the first choice's problem is the one worth telling
            }
        }
        throw new IllegalStateException("cannot extract " + fileName + " to " + roots.getFirst().resolve(hash) + ": "
                + failure.getMessage() + "; set -D" + CACHE_PROPERTY + "=DIR or " + CACHE_VARIABLE
                + "=DIR to a folder of yours", failure);
    }

    /** Where libraries are cached: the folder chosen, else the user's cache folder, then a per-user temp folder. */
    static List<Path> cacheRoots() {
        String chosen = System.getProperty(CACHE_PROPERTY, System.getenv(CACHE_VARIABLE));
        if (chosen != null && !chosen.isBlank()) {
            return List.of(Path.of(chosen).toAbsolutePath());
        }
        List<Path> roots = new ArrayList<>();
        String xdg = System.getenv("XDG_CACHE_HOME");
        String home = System.getProperty("user.home");
        if (xdg != null && Path.of(xdg).isAbsolute()) {
            roots.add(Path.of(xdg, "nibble", "native"));
        } else if (home != null && !home.isBlank() && Path.of(home).isAbsolute()) {
            roots.add(Path.of(home, ".cache", "nibble", "native"));
        }
        String user = System.getProperty("user.name", "").replaceAll("[^A-Za-z0-9._-]", "");
        roots.add(Path.of(System.getProperty("java.io.tmpdir"), "nibble-native-" + (user.isEmpty() ? "user" : user)));
        return roots;
    }

    private static Path extractTo(Path root, Path dir, String fileName, byte[] bytes) throws IOException {
        boolean posix = FileSystems.getDefault().supportedFileAttributeViews().contains("posix");
        if (posix) {
            Files.createDirectories(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        } else {
            Files.createDirectories(dir);
        }
        UserPrincipal me = posix ? currentUser() : null;
        if (posix) {
            checkPrivate(root, me);
            checkPrivate(dir, me);
        }
        Path path = dir.resolve(fileName);
        if (isExtracted(path, bytes.length, me)) {
            markUsed(path);
            return path;
        }
        Path tmp = dir.resolve("." + fileName + "." + Long.toUnsignedString(ThreadLocalRandom.current().nextLong(), 36) + ".tmp");
        try {
            try (FileChannel out = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE,
                    LinkOption.NOFOLLOW_LINKS)) {
                ByteBuffer buffer = ByteBuffer.wrap(bytes);
                while (buffer.hasRemaining()) {
                    out.write(buffer);
                }
                out.force(true);
            }
            // Another JVM may have put the same bytes there meanwhile; replacing them is harmless.
            try {
                Files.move(tmp, path, StandardCopyOption.ATOMIC_MOVE);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING);
            }
        } finally {
            Files.deleteIfExists(tmp);
        }
        removeOldVersions(root, dir, fileName);
        return path;
    }

    /** Whether an earlier run extracted the library: a regular file of this user, of the right size. */
    private static boolean isExtracted(Path path, long size, UserPrincipal me) throws IOException {
        if (!Files.isRegularFile(path, LinkOption.NOFOLLOW_LINKS) || Files.size(path) != size) {
            return false;
        }
        return me == null || me.equals(Files.getOwner(path, LinkOption.NOFOLLOW_LINKS));
    }

    /** Tells {@link #removeOldVersions} of other builds that this version is in use. */
    private static void markUsed(Path path) {
        try {
            Files.setLastModifiedTime(path, FileTime.from(Instant.now()));
        } catch (IOException ignored) {
            // Only tidying depends on it.
        }
    }

    /** Refuses a folder another user could put code into: a link, someone else's, or writable by others. */
    private static void checkPrivate(Path dir, UserPrincipal me) throws IOException {
        PosixFileAttributes a = Files.readAttributes(dir, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        if (a.isSymbolicLink() || !a.isDirectory()) {
            throw new IOException(dir + " is " + (a.isSymbolicLink() ? "a symbolic link" : "not a folder"));
        }
        if (!a.owner().equals(me)) {
            throw new IOException(dir + " belongs to " + a.owner().getName() + ", not to " + me.getName());
        }
        if (a.permissions().contains(PosixFilePermission.GROUP_WRITE) || a.permissions().contains(PosixFilePermission.OTHERS_WRITE)) {
            throw new IOException(dir + " is writable by other users (" + PosixFilePermissions.toString(a.permissions()) + ")");
        }
    }

    /** The user this process runs as: on Linux the owner of /proc/self, whatever name it has; else by name. */
    private static UserPrincipal currentUser() throws IOException {
        Path self = Path.of("/proc/self");
        if (Files.isDirectory(self)) {
            return Files.getOwner(self);
        }
        return FileSystems.getDefault().getUserPrincipalLookupService().lookupPrincipalByName(System.getProperty("user.name"));
    }

    /**
     * Removes other builds of the same library, so that rebuilding does not fill the cache. Only versions no process
     * has used for a day go (each use marks the file): a process may run an older build.
     */
    private static void removeOldVersions(Path root, Path keep, String fileName) {
        FileTime before = FileTime.from(Instant.now().minus(KEEP_OLD_VERSIONS));
        try (Stream<Path> versions = Files.list(root)) {
            for (Path version : versions.toList()) {
                Path old = version.resolve(fileName);
                if (!version.equals(keep) && Files.isRegularFile(old, LinkOption.NOFOLLOW_LINKS)
                        && Files.getLastModifiedTime(old, LinkOption.NOFOLLOW_LINKS).compareTo(before) < 0) {
                    Files.delete(old);
                    try {
                        Files.delete(version);
                    } catch (IOException stillUsed) {
                        // another library of that build is still there
                    }
                }
            }
        } catch (IOException | RuntimeException ignored) {
            // Tidying is optional; the library needed is in place.
        }
    }

    private static String sha256(byte[] bytes) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is missing from this Java runtime", e);
        }
    }
}
