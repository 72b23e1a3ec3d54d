package dev.nibble.spark;

import java.io.IOException;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.zip.CRC32C;
import org.apache.spark.SparkEnv;
import org.apache.spark.SparkFiles;

/**
 * A model file as the driver saw it: the path it was given, its size and a cheap checksum (CRC32C of its first and
 * last MiB: the GGUF header and metadata, and the last weights). Each executor finds the file the same way and
 * compares it with this before mapping it, so a missing or different model is a task error that names the host.
 *
 * @param path      the path given: one every executor can read (a shared file system), or a file shipped with
 *                  {@code spark-submit --files}, found by its name through {@link SparkFiles#get}
 * @param size      bytes of the file
 * @param checksum  CRC32C of its first and last {@link #SAMPLE} bytes
 */
public record ModelFile(String path, long size, long checksum) implements Serializable {

    /** Bytes read at each end of the file for the checksum. */
    static final int SAMPLE = 1 << 20;

    /** The model {@code path} names on this host (the driver), with its size and checksum. */
    public static ModelFile of(String path) {
        Path file = locate(path);
        try {
            long size = Files.size(file);
            return new ModelFile(path, size, checksum(file, size));
        } catch (IOException e) {
            throw new UncheckedIOException("model " + path + " on " + host() + ": cannot read it: " + e.getMessage(), e);
        }
    }

    /**
     * The local file for this model on this host: the path itself when it is a file here, else the copy that
     * {@code --files} shipped (by its file name); checked to be the file the driver saw.
     *
     * @throws IllegalStateException naming the host, when it is missing or differs
     */
    Path resolve() {
        Path file = locate(path);
        long size;
        long sum;
        try {
            size = Files.size(file);
            sum = size == this.size ? checksum(file, size) : 0;
        } catch (IOException e) {
            throw new IllegalStateException("model " + path + " on " + host() + ": cannot read " + file + ": "
                    + e.getMessage(), e);
        }
        if (size != this.size || sum != checksum) {
            throw new IllegalStateException("model " + path + " on " + host() + " is not the driver's: " + file
                    + " has " + size + " bytes" + (size == this.size ? " and checksum " + Long.toHexString(sum) : "")
                    + ", the driver's has " + this.size + " bytes" + (size == this.size ? " and checksum "
                    + Long.toHexString(checksum) : "") + "; give every executor the same file (or ship it with --files)");
        }
        return file;
    }

    /** Where {@code path} is on this host: the path, else the copy {@code --files} shipped; fails naming the host. */
    static Path locate(String path) {
        Path given = Path.of(path);
        if (Files.isRegularFile(given)) {
            return given;
        }
        if (SparkEnv.get() != null && given.getFileName() != null) {
            try {
                Path shipped = Path.of(SparkFiles.get(given.getFileName().toString()));
                if (Files.isRegularFile(shipped)) {
                    return shipped;
                }
            } catch (RuntimeException e) {
                // no files were shipped: reported below
            }
        }
        throw new IllegalStateException("model " + path + " not found on " + host() + ": give a path every executor "
                + "can read (a shared file system), or ship the file with spark-submit --files " + path);
    }

    /** CRC32C of the first and last {@link #SAMPLE} bytes of {@code file} (all of it when smaller). */
    static long checksum(Path file, long size) throws IOException {
        CRC32C crc = new CRC32C();
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            update(crc, channel, 0, Math.min(size, SAMPLE));
            if (size > SAMPLE) {
                long start = Math.max(SAMPLE, size - SAMPLE);
                update(crc, channel, start, size - start);
            }
        }
        crc.update(Long.hashCode(size));
        return crc.getValue();
    }

    private static void update(CRC32C crc, FileChannel channel, long position, long length) throws IOException {
        ByteBuffer buffer = ByteBuffer.allocate((int) length);
        while (buffer.hasRemaining()) {
            if (channel.read(buffer, position + buffer.position()) < 0) {
                throw new IOException("the file ended early");
            }
        }
        crc.update(buffer.flip());
    }

    /** This host for error messages: its name and, on a Spark executor, the executor's id. */
    static String host() {
        String name;
        try {
            name = "host " + InetAddress.getLocalHost().getHostName();
        } catch (UnknownHostException e) {
            name = "host " + e.getMessage();
        }
        SparkEnv env = SparkEnv.get();
        return env == null ? name : name + " (executor " + env.executorId() + ")";
    }
}
