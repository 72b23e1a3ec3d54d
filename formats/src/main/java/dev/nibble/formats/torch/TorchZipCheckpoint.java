package dev.nibble.formats.torch;

import dev.nibble.formats.FormatException;
import dev.nibble.formats.GgmlType;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.zip.ZipEntry;
import org.apache.commons.compress.archivers.zip.ZipArchiveEntry;
import org.apache.commons.compress.archivers.zip.ZipFile;

/**
 * A PyTorch zip checkpoint ({@code torch.save} since 1.6, e.g. {@code pytorch_model.bin}) holding a flat state dict.
 *
 * <p>The file is mapped once; stored (uncompressed) storage records, which is how PyTorch writes them, are
 * zero-copy slices of that mapping at their data offset. Compressed records are inflated into memory owned by
 * this object. {@code data.pkl} is read by {@link RestrictedUnpickler}, which never executes anything.
 */
public final class TorchZipCheckpoint implements AutoCloseable {

    /** A state dict's pickle takes about 200 bytes per tensor; 256 MiB is over a million tensors. */
    static final long MAX_PICKLE_BYTES = 1L << 28;
    /** Deflate cannot expand data by more than about 1032:1; a larger claim is a lie or a zip bomb. */
    private static final long MAX_DEFLATE_RATIO = 1032;
    /**
     * What all compressed records read from one archive may inflate to together: {@value #INFLATE_FILE_RATIO} times the
     * file plus {@value #INFLATE_SLACK} bytes. PyTorch stores records uncompressed (they are then slices of the
     * mapping and cost nothing); weights that someone deflated shrink by a few percent to a third, so only a zip bomb
     * (many records each near deflate's 1032:1) comes near this, and it is refused before anything is inflated.
     */
    static final long INFLATE_FILE_RATIO = 16;
    static final long INFLATE_SLACK = 64L << 20;

    private final Path path;
    private final Arena arena;
    private final List<CheckpointTensor> tensors;
    private final Map<String, CheckpointTensor> byName;

    private TorchZipCheckpoint(Path path, Arena arena, List<CheckpointTensor> tensors) {
        this.path = path;
        this.arena = arena;
        this.tensors = tensors;
        this.byName = new LinkedHashMap<>();
        for (CheckpointTensor t : tensors) {
            byName.put(t.name(), t);
        }
    }

    /** Maps {@code path}, checks the archive layout, reads the state dict and validates every tensor against its storage. */
    public static TorchZipCheckpoint open(Path path) throws IOException {
        Arena arena = Arena.ofShared();
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
            MemorySegment file = channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size(), arena);
            ZipFile zip;
            try {
                zip = ZipFile.builder().setPath(path).get();
            } catch (IOException | RuntimeException e) {
                throw new FormatException(path, "zip archive", -1, "is not a readable zip archive (" + e.getMessage()
                        + "); PyTorch checkpoints since 1.6 are zip files", e);
            }
            try (zip) {
                return new TorchZipCheckpoint(path, arena, new Reader(path, zip, file, arena).read());
            } catch (RuntimeException e) {
                throw new FormatException(path, "zip archive", -1, "is malformed (" + e + ")", e);
            }
        } catch (IOException | RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    /** Reads the archive's records into tensors; lives only while the zip is open. */
    private static final class Reader {
        private final Path path;
        private final ZipFile zip;
        private final MemorySegment file;
        private final Arena arena;
        /** Bytes the compressed records read so far inflated to (or, once checked, will), and their bound. */
        private long inflated;
        private final long maxInflated;

        Reader(Path path, ZipFile zip, MemorySegment file, Arena arena) {
            this.path = path;
            this.zip = zip;
            this.file = file;
            this.arena = arena;
            this.maxInflated = INFLATE_SLACK + Math.min(file.byteSize(), Long.MAX_VALUE / 32) * INFLATE_FILE_RATIO;
        }

        List<CheckpointTensor> read() throws IOException {
            String prefix = prefix();
            ZipArchiveEntry byteorder = zip.getEntry(prefix + "byteorder");
            if (byteorder != null) {
                String order = text(byteorder);
                if (!order.equals("little")) {
                    throw new FormatException(path, byteorder.getName(), -1, "is '" + order + "'; nibble reads little-endian checkpoints only");
                }
            }
            ZipArchiveEntry version = zip.getEntry(prefix + "version");
            if (version == null || !text(version).matches("[0-9]{1,9}")) {
                throw new FormatException(path, prefix + "version", -1, "is missing or not a number; not a PyTorch zip checkpoint");
            }
            ZipArchiveEntry pickle = zip.getEntry(prefix + "data.pkl");
            if (pickle.getSize() > MAX_PICKLE_BYTES) {
                throw new FormatException(path, pickle.getName(), -1, "is " + pickle.getSize() + " bytes, more than a state dict"
                        + " needs (at most " + MAX_PICKLE_BYTES + " are read)");
            }
            reserveInflation(List.of(pickle));
            byte[] code = data(pickle).toArray(ValueLayout.JAVA_BYTE);
            Map<String, PickledTensor> pickled = RestrictedUnpickler.readStateDict(path, pickle.getName(), code);
            code = null;
            // Every compressed storage record the tensors name, counted against the bound before any is inflated.
            Map<String, ZipArchiveEntry> records = new LinkedHashMap<>();
            for (PickledTensor t : pickled.values()) {
                ZipArchiveEntry entry = zip.getEntry(prefix + "data/" + t.storage().key());
                if (entry != null) {
                    records.putIfAbsent(entry.getName(), entry);
                }
            }
            reserveInflation(records.values());
            Map<String, MemorySegment> storages = new HashMap<>();
            List<CheckpointTensor> tensors = new ArrayList<>(pickled.size());
            for (Map.Entry<String, PickledTensor> e : pickled.entrySet()) {
                tensors.add(tensor(prefix, e.getKey(), e.getValue(), storages));
            }
            return Collections.unmodifiableList(tensors);
        }

        /** The archive's one top-level folder, found by its {@code data.pkl}. */
        private String prefix() throws FormatException {
            List<String> pickles = new ArrayList<>();
            for (ZipArchiveEntry e : Collections.list(zip.getEntries())) {
                String name = e.getName();
                if (name.equals("data.pkl") || (name.endsWith("/data.pkl") && name.indexOf('/') == name.length() - "/data.pkl".length())) {
                    pickles.add(name);
                }
            }
            if (pickles.size() != 1) {
                throw new FormatException(path, "data.pkl", -1, "the archive has " + pickles.size()
                        + " top-level data.pkl records " + pickles + "; a PyTorch checkpoint has exactly one");
            }
            String name = pickles.getFirst();
            return name.substring(0, name.length() - "data.pkl".length());
        }

        private CheckpointTensor tensor(String prefix, String name, PickledTensor t, Map<String, MemorySegment> storages) throws IOException {
            String item = "tensor '" + name + "'";
            StorageRef ref = t.storage();
            GgmlType dtype = switch (ref.storageType()) {
                case "FloatStorage" -> GgmlType.F32;
                case "HalfStorage" -> GgmlType.F16;
                case "BFloat16Storage" -> GgmlType.BF16;
                default -> throw new FormatException(path, "data.pkl", -1, "tensor '" + name + "' has dtype "
                        + ref.storageType().replace("Storage", "") + " (torch." + ref.storageType() + "); nibble reads F32, F16 and BF16");
            };
            long elementSize = dtype.typeSize();
            MemorySegment storage = storages.get(ref.key());
            if (storage == null) {
                ZipArchiveEntry entry = zip.getEntry(prefix + "data/" + ref.key());
                if (entry == null) {
                    throw new FormatException(path, item, -1, "its storage record '" + prefix + "data/" + ref.key() + "' is missing from the archive");
                }
                storage = data(entry);
                storages.put(ref.key(), storage);
            }
            try {
                long storageBytes = Math.multiplyExact(ref.numel(), elementSize);
                if (storageBytes != storage.byteSize()) {
                    throw new FormatException(path, item, -1, "its storage '" + ref.key() + "' declares " + ref.numel() + " " + dtype
                            + " elements (" + storageBytes + " bytes) but the record holds " + storage.byteSize() + " bytes");
                }
                long elements = 1;
                long expectedStride = 1;
                for (int d = t.size().length - 1; d >= 0; d--) {
                    long size = t.size()[d];
                    if (size < 0) {
                        throw new FormatException(path, item, -1, "has negative size " + Arrays.toString(t.size()));
                    }
                    // PyTorch calls a tensor contiguous when strides are row-major, ignoring dimensions of size 1.
                    if (size != 1 && t.stride()[d] != expectedStride) {
                        throw new FormatException(path, item, -1, "is not contiguous (size " + Arrays.toString(t.size()) + ", stride "
                                + Arrays.toString(t.stride()) + "); save the state dict with tensor.contiguous()");
                    }
                    expectedStride = Math.multiplyExact(expectedStride, size);
                    elements = Math.multiplyExact(elements, size);
                }
                long begin = Math.multiplyExact(t.storageOffset(), elementSize);
                long length = Math.multiplyExact(elements, elementSize);
                if (begin > storageBytes || length > storageBytes - begin) {
                    throw new FormatException(path, item, -1, "views bytes [" + begin + ", " + (begin + length) + ") of storage '"
                            + ref.key() + "', which has only " + storageBytes + " bytes");
                }
                return new CheckpointTensor(name, dtype, t.size().clone(), storage.asSlice(begin, length), path);
            } catch (ArithmeticException e) {
                throw new FormatException(path, item, -1, "size " + Arrays.toString(t.size()) + " at storage offset "
                        + t.storageOffset() + " overflows a 64-bit byte count");
            }
        }

        /**
         * Counts what the compressed ones of {@code entries} declare they inflate to against the bound for the whole
         * archive, refusing before any of them is inflated; {@link #data} then holds each to its declared size.
         */
        private void reserveInflation(Iterable<ZipArchiveEntry> entries) throws FormatException {
            long total = inflated;
            int records = 0;
            for (ZipArchiveEntry e : entries) {
                if (e.getMethod() != ZipEntry.STORED && e.getSize() > 0) {
                    total += Math.min(e.getSize(), Long.MAX_VALUE / 4);
                    records++;
                    if (total > maxInflated) {
                        throw new FormatException(path, "zip archive", -1, "its compressed records inflate to more than "
                                + maxInflated + " bytes in all (" + records + " records, " + total + " bytes counted so far),"
                                + " more than " + INFLATE_FILE_RATIO + " times the " + file.byteSize() + "-byte file plus "
                                + INFLATE_SLACK + "; weights do not compress that well, so this is refused as a zip bomb");
                    }
                }
            }
            inflated = total;
        }

        /** The record's bytes: a slice of the mapping when stored, else inflated into the arena. */
        private MemorySegment data(ZipArchiveEntry entry) throws IOException {
            long size = entry.getSize();
            long compressed = entry.getCompressedSize();
            long at = entry.getDataOffset();
            long fileSize = file.byteSize();
            if (size < 0 || compressed < 0 || at < 0 || at > fileSize || compressed > fileSize - at) {
                throw new FormatException(path, entry.getName(), at, "record of " + compressed + " bytes at offset " + at
                        + " does not lie within the " + fileSize + "-byte file");
            }
            if (entry.getMethod() == ZipEntry.STORED) {
                if (size != compressed) {
                    throw new FormatException(path, entry.getName(), at, "stored record claims " + size + " bytes but occupies " + compressed);
                }
                return file.asSlice(at, size);
            }
            // Deflate only: what a re-zipped checkpoint uses, and what the JDK reads (other methods need libraries
            // that are not there, or are not worth trusting with hostile input).
            if (entry.getMethod() != ZipEntry.DEFLATED || !zip.canReadEntryData(entry)
                    || size > compressed * MAX_DEFLATE_RATIO + 1024) {
                throw new FormatException(path, entry.getName(), at, "record compressed with method " + entry.getMethod()
                        + " to " + compressed + " bytes from a claimed " + size + " cannot be read");
            }
            MemorySegment out = arena.allocate(Math.max(size, 1), 64).asSlice(0, size);
            byte[] buffer = new byte[1 << 16];
            long filled = 0;
            try (InputStream in = zip.getInputStream(entry)) {
                int n;
                while ((n = in.read(buffer)) > 0) {
                    if (n > size - filled) {
                        throw new FormatException(path, entry.getName(), at, "inflates to more than its declared " + size + " bytes");
                    }
                    MemorySegment.copy(buffer, 0, out, ValueLayout.JAVA_BYTE, filled, n);
                    filled += n;
                }
            } catch (FormatException e) {
                throw e;
            } catch (IOException e) {
                throw new FormatException(path, entry.getName(), at, "cannot be inflated: " + e.getMessage(), e);
            }
            if (filled != size) {
                throw new FormatException(path, entry.getName(), at, "inflates to " + filled + " bytes, not its declared " + size);
            }
            return out.asReadOnly();
        }

        private String text(ZipArchiveEntry entry) throws IOException {
            if (entry.getSize() > 64) {
                throw new FormatException(path, entry.getName(), -1, "is " + entry.getSize() + " bytes; expected a short text record");
            }
            return new String(data(entry).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8).strip();
        }
    }

    public Path path() {
        return path;
    }

    /** Every tensor, in state-dict order. */
    public List<CheckpointTensor> tensors() {
        return tensors;
    }

    public Optional<CheckpointTensor> tensor(String name) {
        return Optional.ofNullable(byName.get(name));
    }

    /** Unmaps the file and frees inflated records; tensors from it must not be used afterwards. */
    @Override
    public void close() {
        arena.close();
    }
}
