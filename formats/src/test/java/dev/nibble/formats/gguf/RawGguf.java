package dev.nibble.formats.gguf;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/** Assembles GGUF bytes field by field, straight from the format description, so tests can build any file, bad ones too. */
final class RawGguf {

    /** Value type ids from the GGUF specification. */
    static final int UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8,
            ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12;
    /** Tensor type ids from ggml. */
    static final int TYPE_F32 = 0, TYPE_F16 = 1, TYPE_Q4_0 = 2;

    private final ByteArrayOutputStream out = new ByteArrayOutputStream();

    /** Magic, version and the two counts. */
    static RawGguf header(long version, long tensorCount, long kvCount) {
        return new RawGguf().bytes('G', 'G', 'U', 'F').u32(version).u64(tensorCount).u64(kvCount);
    }

    RawGguf bytes(int... values) {
        for (int v : values) {
            out.write(v);
        }
        return this;
    }

    RawGguf u8(long v) {
        out.write((int) v);
        return this;
    }

    RawGguf u16(long v) {
        return u8(v).u8(v >>> 8);
    }

    RawGguf u32(long v) {
        return u16(v).u16(v >>> 16);
    }

    RawGguf u64(long v) {
        return u32(v).u32(v >>> 32);
    }

    RawGguf str(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        u64(b.length);
        out.write(b, 0, b.length);
        return this;
    }

    /** A key with a UINT32 value. */
    RawGguf kvU32(String key, long value) {
        return str(key).u32(UINT32).u32(value);
    }

    /** A key with a STRING value. */
    RawGguf kvString(String key, String value) {
        return str(key).u32(STRING).str(value);
    }

    /** A tensor info: name, dims (fastest first), type id, data offset. */
    RawGguf tensor(String name, int typeId, long offset, long... dims) {
        str(name).u32(dims.length);
        for (long d : dims) {
            u64(d);
        }
        return u32(typeId).u64(offset);
    }

    /** Zero bytes up to the next multiple of {@code alignment}. */
    RawGguf pad(int alignment) {
        while (out.size() % alignment != 0) {
            out.write(0);
        }
        return this;
    }

    RawGguf zeros(int n) {
        out.write(new byte[n], 0, n);
        return this;
    }

    /** Bytes so far: the offset of the next field. */
    int size() {
        return out.size();
    }

    byte[] toBytes() {
        return out.toByteArray();
    }

    Path writeTo(Path file) throws IOException {
        return Files.write(file, out.toByteArray());
    }

    static Path write(Path file, byte[] bytes, int length) throws IOException {
        return Files.write(file, Arrays.copyOf(bytes, length));
    }
}
