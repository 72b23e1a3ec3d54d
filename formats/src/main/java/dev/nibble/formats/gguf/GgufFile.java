package dev.nibble.formats.gguf;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileTime;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * An open GGUF file: the whole file mapped read-only off-heap (no copy, any size), with its metadata and its tensors as
 * zero-copy slices of the mapping. Everything is validated at {@link #open}; a file that breaks the format is refused
 * with a {@link dev.nibble.formats.FormatException} naming the item and byte offset. Versions 3 and 2 are read (they
 * share one layout); version 1 and later versions are refused. Metadata strings up to 64 MiB and arrays up to 2^22
 * elements are accepted, and in all at most 2^22 array elements, 128 MiB of strings, 65,536 keys and 262,144 tensors:
 * far beyond any real model's, and small enough that no file can make the reader use more than a few hundred MB of
 * heap. The slices stay valid until {@link #close()}.
 */
public final class GgufFile implements AutoCloseable {

    /** The alignment of tensor data when the file has no {@code general.alignment}. */
    public static final int DEFAULT_ALIGNMENT = 32;

    /** The metadata key that sets the alignment of tensor data (a {@code UINT32} power of two). */
    public static final String ALIGNMENT_KEY = "general.alignment";

    private final Path path;
    private final Arena arena;
    private final MemorySegment mapping;
    private final int version;
    private final long alignment;
    private final long dataOffset;
    private final GgufMetadata metadata;
    private final List<GgufTensor> tensors;
    private final Map<String, GgufTensor> byName;
    private final Identity identity;

    /**
     * Which file was mapped, as the file system saw it at {@link #open}: its key (device and inode on Unix; null where
     * the platform has none), size and last-modified time. A file replaced by a rename has another key (the mapping
     * keeps the old one, intact); a file rewritten in place keeps its key and gets a new time.
     */
    public record Identity(Object key, long size, FileTime lastModified) {
    }

    private GgufFile(Path path, Arena arena, MemorySegment mapping, GgufParser.Header header, Identity identity) {
        this.path = path;
        this.identity = identity;
        this.arena = arena;
        this.mapping = mapping;
        this.version = header.version();
        this.alignment = header.alignment();
        this.dataOffset = header.dataOffset();
        this.metadata = header.metadata();
        this.tensors = header.tensors();
        this.byName = new LinkedHashMap<>();
        for (GgufTensor t : tensors) {
            byName.put(t.name(), t);
        }
    }

    /** Maps and validates {@code path}. */
    public static GgufFile open(Path path) throws IOException {
        Arena arena = Arena.ofShared();
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
            BasicFileAttributes attributes = Files.readAttributes(path, BasicFileAttributes.class);
            Identity identity = new Identity(attributes.fileKey(), attributes.size(), attributes.lastModifiedTime());
            MemorySegment mapping = channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size(), arena);
            GgufParser.Header header = new GgufParser(path, mapping).parse();
            return new GgufFile(path, arena, mapping, header, identity);
        } catch (IOException | RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    public Path path() {
        return path;
    }

    /** The format version in the header (3, or 2). */
    public int version() {
        return version;
    }

    public long fileSize() {
        return mapping.byteSize();
    }

    /** The mapped file's key, size and last-modified time when it was opened (see {@link Identity}). */
    public Identity identity() {
        return identity;
    }

    /** The alignment of tensor data in bytes. */
    public long alignment() {
        return alignment;
    }

    /** Where the data section starts: the end of the tensor table, padded to the alignment. */
    public long dataOffset() {
        return dataOffset;
    }

    public GgufMetadata metadata() {
        return metadata;
    }

    /** The tensors in table order. */
    public List<GgufTensor> tensors() {
        return tensors;
    }

    public Optional<GgufTensor> tensor(String name) {
        return Optional.ofNullable(byName.get(name));
    }

    /** The whole file, read-only. */
    public MemorySegment mapping() {
        return mapping;
    }

    /** Unmaps the file; tensor slices must not be used afterwards. Closing twice does nothing. */
    @Override
    public void close() {
        if (arena.scope().isAlive()) {
            arena.close();
        }
    }
}
