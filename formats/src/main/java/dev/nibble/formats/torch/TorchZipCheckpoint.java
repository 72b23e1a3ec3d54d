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

    static final long MAX_PICKLE_BYTES = 1L << 30;
    /** Deflate cannot expand data by more than about 1032:1; a larger claim is a lie or a zip bomb. */
    private static final long MAX_DEFLATE_RATIO = 1032;

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
    private record Reader(Path path, ZipFile zip, MemorySegment file, Arena arena) {

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
                throw new FormatException(path, pickle.getName(), -1, "is " + pickle.getSize() + " bytes, more than a state dict needs");
            }
            byte[] code = data(pickle).toArray(ValueLayout.JAVA_BYTE);
            Map<String, PickledTensor> pickled = RestrictedUnpickler.readStateDict(path, pickle.getName(), code);
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
            if (!zip.canReadEntryData(entry) || size > compressed * MAX_DEFLATE_RATIO + 1024) {
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
