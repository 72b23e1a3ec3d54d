package dev.nibble.formats;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The one way nibble writes a file a user names (a converted model, a saved chat). The content goes to a new temporary
 * file beside the target, {@code .NAME.<random>.tmp}, created exclusively and never through a symbolic link, so a link
 * planted in a shared folder cannot redirect the write and two runs never share a temporary file. {@link #commit}
 * forces it to disk and renames it over the target in one step: the target holds its old content or the complete new
 * one, nothing in between. The temporary file is deleted on any failure, on close without commit, and when the JVM
 * exits early (Ctrl-C).
 *
 * <p>Even when overwriting is allowed, only a regular file is replaced: never a link, folder, device or FIFO, and never
 * a file that the same run reads (its inputs, compared as files, so hard links and links to them count).
 */
public final class AtomicOutputFile implements AutoCloseable {

    /** Temporary files not yet committed or discarded: the shutdown hook deletes them when the JVM exits early. */
    private static final Set<Path> PENDING = ConcurrentHashMap.newKeySet();
    /** Leaves room for the prefix and the random suffix within the usual 255-byte limit on a file name. */
    private static final int MAX_NAME_PART = 200;

    static {
        // Ctrl-C runs shutdown hooks but not the finally blocks of a working thread.
        try {
            Runtime.getRuntime().addShutdownHook(new Thread(AtomicOutputFile::deletePending, "nibble-output-cleanup"));
        } catch (IllegalStateException shuttingDown) {
            // First used while the JVM exits: close() still deletes what it must.
        }
    }

    private final Path target;
    private final Path temporary;
    private final boolean overwrite;
    private final List<Path> inputs;
    private final FileChannel channel;
    private boolean committed;
    private boolean closed;

    private AtomicOutputFile(Path target, Path temporary, boolean overwrite, List<Path> inputs, FileChannel channel) {
        this.target = target;
        this.temporary = temporary;
        this.overwrite = overwrite;
        this.inputs = inputs;
        this.channel = channel;
    }

    /**
     * Checks the target (see {@link #checkTarget}) and creates the temporary file beside it.
     *
     * @param overwrite whether an existing regular file may be replaced
     * @param inputs    files this run reads, which the output must never replace
     */
    public static AtomicOutputFile create(Path target, boolean overwrite, Collection<Path> inputs) throws IOException {
        Path absolute = target.toAbsolutePath().normalize();
        List<Path> in = List.copyOf(inputs);
        checkTarget(absolute, overwrite, in);
        Path dir = absolute.getParent();
        String name = absolute.getFileName().toString();
        String stem = "." + (name.length() > MAX_NAME_PART ? name.substring(0, MAX_NAME_PART) : name) + ".";
        for (int attempt = 0; ; attempt++) {
            Path tmp = dir.resolve(stem + Long.toUnsignedString(ThreadLocalRandom.current().nextLong(), 36) + ".tmp");
            try {
                // CREATE_NEW fails on any existing name, a dangling symbolic link included: nothing planted is followed.
                FileChannel channel = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE,
                        LinkOption.NOFOLLOW_LINKS);
                PENDING.add(tmp);
                return new AtomicOutputFile(absolute, tmp, overwrite, in, channel);
            } catch (FileAlreadyExistsException e) {
                if (attempt == 100) {
                    throw new IOException("cannot write " + absolute + ": 100 temporary names in " + dir
                            + " were all taken; remove the .*.tmp files there", e);
                }
            } catch (FileSystemException e) {
                throw new IOException("cannot write " + absolute + ": " + reason(e) + " in the folder " + dir
                        + "; choose a folder you can write to", e);
            }
        }
    }

    /** Writes {@code content} to {@code target} atomically (see {@link #create}). */
    public static void write(Path target, byte[] content, boolean overwrite, Collection<Path> inputs) throws IOException {
        try (AtomicOutputFile out = create(target, overwrite, inputs)) {
            out.write(ByteBuffer.wrap(content));
            out.commit();
        }
    }

    /**
     * Refuses a target whose folder does not exist, an existing target that is not a regular file (whatever
     * {@code overwrite} says), one that is the same file as an input, and an existing one when {@code overwrite} is
     * false; each with a message naming the file, the problem and the way out.
     */
    public static void checkTarget(Path target, boolean overwrite, Collection<Path> inputs) throws IOException {
        BasicFileAttributes attributes;
        try {
            attributes = Files.readAttributes(target, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        } catch (NoSuchFileException e) {
            Path dir = target.toAbsolutePath().getParent();
            if (dir == null || !Files.isDirectory(dir)) {
                throw new IOException(target + ": the folder " + dir + " does not exist; create it or choose another path");
            }
            return;
        }
        if (!attributes.isRegularFile()) {
            throw new IOException(target + " is " + kind(attributes) + ", not a regular file; nibble replaces only regular"
                    + " files, even with --force: choose another path");
        }
        for (Path input : inputs) {
            if (isSameFile(target, input)) {
                throw new IOException(target + " is " + (input.equals(target) ? "" : "the same file as " + input + ", ")
                        + "an input of this run; write the output to another path");
            }
        }
        if (!overwrite) {
            throw new IOException(target + " already exists; use --force to overwrite it");
        }
    }

    /** The file being written; write through it, then {@link #commit}. */
    public FileChannel channel() {
        return channel;
    }

    /** Writes all of {@code buffer}. */
    public void write(ByteBuffer buffer) throws IOException {
        while (buffer.hasRemaining()) {
            channel.write(buffer);
        }
    }

    /** The path being written to (a temporary name beside the target). */
    public Path temporary() {
        return temporary;
    }

    public Path target() {
        return target;
    }

    /**
     * Forces the content to disk and renames it to the target, checking the target again first: it may have changed
     * while this file was written. Without overwrite, a target that appeared meanwhile is kept and this fails.
     */
    public void commit() throws IOException {
        if (committed || closed) {
            throw new IllegalStateException(target + " is already " + (committed ? "committed" : "discarded"));
        }
        try {
            channel.force(true);
            channel.close();
            checkTarget(target, overwrite, inputs);
            if (overwrite) {
                replace();
            } else {
                publishWithoutReplacing();
            }
            committed = true;
            PENDING.remove(temporary);
            syncFolder();
        } finally {
            close();
        }
    }

    /** Without {@link #commit}: deletes the temporary file. After it: does nothing. */
    @Override
    public void close() {
        if (committed || closed) {
            return;
        }
        closed = true;
        try {
            channel.close();
        } catch (IOException ignored) {
            // The file is being discarded; a failed close changes nothing for the caller.
        }
        try {
            Files.deleteIfExists(temporary);
        } catch (IOException ignored) {
            // Best effort: the name is unique, so a leftover never disturbs a later run.
        }
        PENDING.remove(temporary);
    }

    private void replace() throws IOException {
        try {
            Files.move(temporary, target, StandardCopyOption.ATOMIC_MOVE);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(temporary, target, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    private void publishWithoutReplacing() throws IOException {
        try {
            // Creating a hard link is atomic and fails when the name exists: unlike a rename, it never replaces a file
            // that appeared while this one was written (another run writing the same output).
            Files.createLink(target, temporary);
        } catch (FileAlreadyExistsException e) {
            throw new IOException(target + " already exists (written meanwhile by another run?); use --force to overwrite it");
        } catch (UnsupportedOperationException | FileSystemException e) {
            // A file system without hard links: the check just made is the best there is.
            Files.move(temporary, target, StandardCopyOption.ATOMIC_MOVE);
            return;
        }
        Files.delete(temporary);
    }

    /** Makes the rename itself durable where the platform allows it; a crash could otherwise lose it. */
    private void syncFolder() {
        try (FileChannel dir = FileChannel.open(target.getParent(), StandardOpenOption.READ)) {
            dir.force(true);
        } catch (IOException | RuntimeException ignored) {
            // Not every platform opens folders; the file's own content is already on disk.
        }
    }

    private static boolean isSameFile(Path a, Path b) {
        try {
            return Files.isSameFile(a, b);
        } catch (IOException e) {
            return false; // an input that no longer exists is not the target
        }
    }

    private static String kind(BasicFileAttributes a) {
        if (a.isSymbolicLink()) {
            return "a symbolic link";
        }
        return a.isDirectory() ? "a folder" : "a device, FIFO or socket";
    }

    private static String reason(FileSystemException e) {
        return e.getReason() != null ? e.getReason().toLowerCase(Locale.ROOT)
                : e instanceof AccessDeniedException ? "permission denied" : e.getClass().getSimpleName();
    }

    private static void deletePending() {
        for (Path p : PENDING) {
            try {
                Files.deleteIfExists(p);
            } catch (IOException ignored) {
                // The JVM is exiting; nothing more can be done.
            }
        }
    }
}
