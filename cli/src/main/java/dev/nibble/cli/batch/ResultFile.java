package dev.nibble.cli.batch;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.HashSet;
import java.util.Set;

/**
 * The results file of a batch run, appended one whole line per finished request, so that a rerun of the same command
 * finds what is done and runs the rest. A last line without its newline (a run killed while writing it) is cut off
 * when the file is opened, and its request runs again: never a torn or a duplicated result.
 */
final class ResultFile implements AutoCloseable {

    private final Path path;
    private final FileChannel channel;
    private final Set<String> done;
    private final long repairedBytes;
    private boolean closed;

    private ResultFile(Path path, FileChannel channel, Set<String> done, long repairedBytes) {
        this.path = path;
        this.channel = channel;
        this.done = done;
        this.repairedBytes = repairedBytes;
    }

    /** Opens (or creates) {@code path} for appending, reading the keys of the results it holds. */
    static ResultFile open(Path path, ObjectMapper json) throws IOException {
        if (Files.exists(path, LinkOption.NOFOLLOW_LINKS) && !Files.isRegularFile(path)) {
            throw new IOException(path + ": is not a regular file; give -o a file path for the results");
        }
        FileChannel channel = FileChannel.open(path, StandardOpenOption.CREATE, StandardOpenOption.READ,
                StandardOpenOption.WRITE);
        try {
            long size = channel.size();
            long complete = lastNewline(channel, size) + 1;
            if (complete < size) {
                channel.truncate(complete);
            }
            Set<String> done = keys(path, channel, complete, json);
            channel.position(complete);
            return new ResultFile(path, channel, done, size - complete);
        } catch (IOException | RuntimeException e) {
            channel.close();
            throw e;
        }
    }

    /** Offset of the last '\n' in the first {@code size} bytes, or -1. */
    private static long lastNewline(FileChannel channel, long size) throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(64 * 1024);
        long end = size;
        while (end > 0) {
            long from = Math.max(0, end - buf.capacity());
            buf.clear().limit((int) (end - from));
            while (buf.hasRemaining()) {
                if (channel.read(buf, from + buf.position()) < 0) {
                    throw new IOException("the file shrank while being read");
                }
            }
            for (int i = (int) (end - from) - 1; i >= 0; i--) {
                if (buf.get(i) == '\n') {
                    return from + i;
                }
            }
            end = from;
        }
        return -1;
    }

    private static Set<String> keys(Path path, FileChannel channel, long length, ObjectMapper json) throws IOException {
        Set<String> keys = new HashSet<>();
        channel.position(0);
        BufferedReader in = new BufferedReader(new InputStreamReader(Channels.newInputStream(channel),
                StandardCharsets.UTF_8));
        long read = 0;
        int number = 0;
        String line;
        while (read < length && (line = in.readLine()) != null) {
            number++;
            read += line.getBytes(StandardCharsets.UTF_8).length + 1;
            if (line.isBlank()) {
                continue;
            }
            JsonNode node;
            try {
                node = json.readTree(line);
            } catch (IOException e) {
                node = null;
            }
            if (node == null || !node.isObject() || !(node.has("custom_id") || node.has("id"))) {
                throw new IOException(path + ": line " + number + " is not a batch result; refusing to add to a file "
                        + "that nibble did not write (give -o another path)");
            }
            keys.add(node.has("custom_id") ? BatchRequest.keyOf(node.get("custom_id"), 0)
                    : BatchRequest.keyOf(node.get("id"), node.path("line").asInt(0)));
        }
        return keys;
    }

    /** Keys of the requests whose results the file already holds. */
    Set<String> done() {
        return done;
    }

    /** Bytes of a partial last line cut off when opening (0 if none). */
    long repairedBytes() {
        return repairedBytes;
    }

    Path path() {
        return path;
    }

    /**
     * Appends one result line (no newline inside) and hands it to the operating system at once, so that a killed
     * process keeps it. Returns false once the file is closed (the run was interrupted).
     */
    synchronized boolean append(String line) throws IOException {
        if (closed) {
            return false;
        }
        ByteBuffer bytes = ByteBuffer.wrap((line + "\n").getBytes(StandardCharsets.UTF_8));
        while (bytes.hasRemaining()) {
            channel.write(bytes);
        }
        return true;
    }

    /** Forces what was written to disk and closes; later appends are refused. Waits for a line being written. */
    @Override
    public synchronized void close() throws IOException {
        if (closed) {
            return;
        }
        closed = true;
        try {
            channel.force(false);
        } finally {
            channel.close();
        }
    }
}
