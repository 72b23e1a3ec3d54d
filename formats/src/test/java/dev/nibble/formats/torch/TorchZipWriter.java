package dev.nibble.formats.torch;

import dev.nibble.formats.GgmlType;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

/** Writes PyTorch zip checkpoints the way {@code torch.save} lays them out, for tests: a protocol-2 pickle plus storage records. */
public final class TorchZipWriter {

    /** A storage record: {@code storageClass} names the torch class, e.g. {@code HalfStorage}. */
    public record Storage(String key, String storageClass, int elementSize, byte[] bytes) {
        public long numel() {
            return bytes.length / elementSize;
        }
    }

    /** A {@code _rebuild_tensor_v2} view of a storage. */
    public record View(String name, Storage storage, long offset, long[] size, long[] stride) {}

    private TorchZipWriter() {}

    public static String storageClass(GgmlType dtype) {
        return switch (dtype) {
            case F32 -> "FloatStorage";
            case F16 -> "HalfStorage";
            case BF16 -> "BFloat16Storage";
            default -> throw new IllegalArgumentException(dtype.toString());
        };
    }

    /** Row-major strides for {@code size}. */
    public static long[] contiguousStride(long[] size) {
        long[] stride = new long[size.length];
        long s = 1;
        for (int d = size.length - 1; d >= 0; d--) {
            stride[d] = s;
            s *= size[d];
        }
        return stride;
    }

    /** One storage per tensor, each viewed whole, as {@code torch.save(model.state_dict())} writes untied weights. */
    public static List<View> views(List<CheckpointTensor> tensors) {
        List<View> views = new ArrayList<>();
        for (CheckpointTensor t : tensors) {
            Storage s = new Storage(Integer.toString(views.size()), storageClass(t.dtype()), t.dtype().typeSize(),
                    t.data().toArray(ValueLayout.JAVA_BYTE));
            views.add(new View(t.name(), s, 0, t.shape(), contiguousStride(t.shape())));
        }
        return views;
    }

    /** Writes {@code views} to {@code out} with stored records (or deflated ones when {@code compress}). */
    public static void write(Path out, List<View> views, boolean compress) throws IOException {
        Map<String, Storage> storages = new LinkedHashMap<>();
        for (View v : views) {
            storages.putIfAbsent(v.storage().key(), v.storage());
        }
        write(out, "archive/", pickle(views), storages.values(), compress, "little");
    }

    public static void write(Path out, String prefix, byte[] pickle, Iterable<Storage> storages, boolean compress, String byteorder)
            throws IOException {
        try (ZipOutputStream zip = new ZipOutputStream(Files.newOutputStream(out))) {
            put(zip, prefix + "data.pkl", pickle, false);
            if (byteorder != null) {
                put(zip, prefix + "byteorder", byteorder.getBytes(StandardCharsets.US_ASCII), false);
            }
            for (Storage s : storages) {
                put(zip, prefix + "data/" + s.key(), s.bytes(), compress);
            }
            put(zip, prefix + "version", "3\n".getBytes(StandardCharsets.US_ASCII), false);
        }
    }

    private static void put(ZipOutputStream zip, String name, byte[] bytes, boolean compress) throws IOException {
        ZipEntry entry = new ZipEntry(name);
        if (compress) {
            entry.setMethod(ZipEntry.DEFLATED);
        } else {
            CRC32 crc = new CRC32();
            crc.update(bytes);
            entry.setMethod(ZipEntry.STORED);
            entry.setSize(bytes.length);
            entry.setCompressedSize(bytes.length);
            entry.setCrc(crc.getValue());
        }
        zip.putNextEntry(entry);
        zip.write(bytes);
        zip.closeEntry();
    }

    /** A protocol-2 pickle of a state dict: {name: _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())}. */
    public static byte[] pickle(List<View> views) {
        Pickle p = new Pickle();
        p.op(0x80).op(2); // PROTO 2
        p.op('}'); // EMPTY_DICT
        for (View v : views) {
            p.unicode(v.name());
            p.global("torch._utils", "_rebuild_tensor_v2");
            p.op('(');
            p.op('(').unicode("storage").global("torch", v.storage().storageClass()).unicode(v.storage().key()).unicode("cpu")
                    .integer(v.storage().numel()).op('t');
            p.op('Q'); // BINPERSID
            p.integer(v.offset());
            p.op('(');
            for (long d : v.size()) {
                p.integer(d);
            }
            p.op('t').op('(');
            for (long d : v.stride()) {
                p.integer(d);
            }
            p.op('t');
            p.op(0x89); // NEWFALSE: requires_grad
            p.global("collections", "OrderedDict").op(')').op('R'); // backward_hooks
            p.op('t').op('R'); // the argument tuple, then call _rebuild_tensor_v2
            p.op('s'); // SETITEM
        }
        p.op('.');
        return p.bytes();
    }

    /** A minimal pickle assembler. */
    public static final class Pickle {
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();

        public Pickle op(int opcode) {
            out.write(opcode);
            return this;
        }

        public Pickle raw(byte[] bytes) {
            out.writeBytes(bytes);
            return this;
        }

        public Pickle unicode(String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            op('X').u32(b.length);
            out.writeBytes(b);
            return this;
        }

        public Pickle global(String module, String name) {
            op('c');
            out.writeBytes((module + "\n" + name + "\n").getBytes(StandardCharsets.US_ASCII));
            return this;
        }

        public Pickle integer(long v) {
            if (v >= Integer.MIN_VALUE && v <= Integer.MAX_VALUE) {
                return op('J').u32((int) v);
            }
            op(0x8a).op(8); // LONG1 with 8 little-endian bytes
            for (int i = 0; i < 8; i++) {
                out.write((int) (v >>> (8 * i)));
            }
            return this;
        }

        private Pickle u32(int v) {
            for (int i = 0; i < 4; i++) {
                out.write(v >>> (8 * i));
            }
            return this;
        }

        public int size() {
            return out.size();
        }

        public byte[] bytes() {
            return out.toByteArray();
        }
    }
}
