package dev.nibble.formats.gguf;

import dev.nibble.formats.AtomicOutputFile;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Streams a GGUF v3 file: {@link #create} writes the header, metadata and tensor table to a new temporary file beside
 * {@code OUT} (an {@link AtomicOutputFile}); then each tensor's bytes arrive through {@link #write} in declared order
 * (any number of chunks per tensor, zero-padded to the alignment between tensors); {@link #finish} forces the file to
 * disk and renames it to {@code OUT} atomically. Closing without finishing deletes the temporary file, so {@code OUT}
 * is either complete or untouched. Only the metadata is held in memory, never tensor data. The alignment is
 * {@code general.alignment} when the metadata has it (a {@code UINT32} power of two), else 32. Arrays of arrays are
 * written as given, but llama.cpp's C reader refuses them (gguf-py reads them), so files meant for llama.cpp should not
 * use them.
 */
public final class GgufWriter implements AutoCloseable {

    private static final int VERSION = 3;
    /** Chunks are handed to the channel in pieces a ByteBuffer can address. */
    private static final long MAX_WRITE = 1 << 30;

    private final Path out;
    private final AtomicOutputFile file;
    private final FileChannel channel;
    private final List<GgufTensorInfo> tensors;
    private final long alignment;
    private int current;
    private long writtenInCurrent;
    private long position;
    private boolean finished;
    private boolean closed;

    private GgufWriter(Path out, AtomicOutputFile file, List<GgufTensorInfo> tensors, long alignment) {
        this.out = out;
        this.file = file;
        this.channel = file.channel();
        this.tensors = tensors;
        this.alignment = alignment;
    }

    /** {@link #create(Path, GgufMetadata, List, boolean, Collection)} with no input files to protect. */
    public static GgufWriter create(Path out, GgufMetadata metadata, List<GgufTensorInfo> tensors, boolean overwrite)
            throws IOException {
        return create(out, metadata, tensors, overwrite, List.of());
    }

    /**
     * Checks the tensor infos (unique names), writes header, metadata and tensor table to the temporary file.
     *
     * @param inputs files the same run reads, which {@code out} must not be
     * @throws IOException when {@code out} exists and {@code overwrite} is false, is not a regular file or is an input,
     *                     or on a write failure
     */
    public static GgufWriter create(Path out, GgufMetadata metadata, List<GgufTensorInfo> tensors, boolean overwrite,
                                    Collection<Path> inputs) throws IOException {
        List<GgufTensorInfo> infos = List.copyOf(tensors);
        Set<String> names = new HashSet<>();
        for (GgufTensorInfo t : infos) {
            if (!names.add(t.name())) {
                throw new IllegalArgumentException("tensor '" + t.name() + "' is declared twice");
            }
        }
        long alignment = alignment(metadata);
        GgufWriter writer = new GgufWriter(out, AtomicOutputFile.create(out, overwrite, inputs), infos, alignment);
        try {
            writer.writeFully(ByteBuffer.wrap(header(metadata, infos, alignment)));
            writer.padToAlignment();
            writer.skipFinishedTensors();
            return writer;
        } catch (IOException | RuntimeException e) {
            writer.close();
            throw e;
        }
    }

    /** The alignment of tensor data in this file. */
    public long alignment() {
        return alignment;
    }

    /**
     * Appends {@code chunk} to the current tensor; when the tensor is complete, pads and moves to the next one.
     *
     * @throws IllegalArgumentException when the chunk would run past the end of the current tensor
     * @throws IllegalStateException    when every tensor is already complete, or the writer is finished or closed
     */
    public void write(MemorySegment chunk) throws IOException {
        if (finished || closed) {
            throw new IllegalStateException("GGUF writer for " + out + " is already " + (finished ? "finished" : "closed"));
        }
        if (current == tensors.size()) {
            throw new IllegalStateException(out + ": every declared tensor is already complete; " + chunk.byteSize() + " bytes too many");
        }
        GgufTensorInfo t = tensors.get(current);
        if (chunk.byteSize() > t.byteSize() - writtenInCurrent) {
            throw new IllegalArgumentException(out + ": tensor '" + t.name() + "' takes " + t.byteSize() + " bytes, "
                    + writtenInCurrent + " written, a chunk of " + chunk.byteSize() + " would cross its end");
        }
        for (long off = 0; off < chunk.byteSize(); off += MAX_WRITE) {
            writeFully(chunk.asSlice(off, Math.min(MAX_WRITE, chunk.byteSize() - off)).asByteBuffer());
        }
        writtenInCurrent += chunk.byteSize();
        skipFinishedTensors();
    }

    /**
     * Checks that every tensor is complete, forces the file to disk and renames it to the output path.
     *
     * @throws IllegalStateException when a tensor is incomplete
     */
    public void finish() throws IOException {
        if (finished || closed) {
            throw new IllegalStateException("GGUF writer for " + out + " is already " + (finished ? "finished" : "closed"));
        }
        if (current < tensors.size()) {
            GgufTensorInfo t = tensors.get(current);
            throw new IllegalStateException(out + ": tensor '" + t.name() + "' has " + writtenInCurrent + " of its "
                    + t.byteSize() + " bytes (" + (tensors.size() - current) + " tensors incomplete)");
        }
        file.commit();
        finished = true;
    }

    /** Without {@link #finish()}: discards the temporary file. After it: does nothing. */
    @Override
    public void close() {
        if (finished || closed) {
            return;
        }
        closed = true;
        file.close();
    }

    private static long alignment(GgufMetadata metadata) {
        GgufValue v = metadata.get(GgufFile.ALIGNMENT_KEY).orElse(null);
        if (v == null) {
            return GgufFile.DEFAULT_ALIGNMENT;
        }
        if (v.type() != GgufValueType.UINT32 || Long.bitCount(v.asLong()) != 1) {
            throw new IllegalArgumentException(GgufFile.ALIGNMENT_KEY + " must be a UINT32 power of two, is " + v);
        }
        return v.asLong();
    }

    private void skipFinishedTensors() throws IOException {
        while (current < tensors.size() && writtenInCurrent == tensors.get(current).byteSize()) {
            current++;
            writtenInCurrent = 0;
            padToAlignment();
        }
    }

    private void padToAlignment() throws IOException {
        long padded = GgufParser.alignUp(position, alignment);
        writeFully(ByteBuffer.allocate((int) (padded - position)));
    }

    private void writeFully(ByteBuffer buffer) throws IOException {
        while (buffer.hasRemaining()) {
            position += channel.write(buffer);
        }
    }

    private static byte[] header(GgufMetadata metadata, List<GgufTensorInfo> tensors, long alignment) {
        LittleEndianBytes b = new LittleEndianBytes();
        b.bytes(new byte[] {'G', 'G', 'U', 'F'});
        b.u32(VERSION);
        b.u64(tensors.size());
        b.u64(metadata.size());
        for (String key : metadata.keys()) {
            GgufValue v = metadata.get(key).orElseThrow();
            b.string(key);
            b.u32(v.type().id());
            value(b, v.type(), v.value());
        }
        long offset = 0;
        for (GgufTensorInfo t : tensors) {
            b.string(t.name());
            long[] dims = t.dims();
            b.u32(dims.length);
            for (long d : dims) {
                b.u64(d);
            }
            b.u32(t.type().id());
            b.u64(offset);
            offset = GgufParser.alignUp(offset + t.byteSize(), alignment);
        }
        return b.toByteArray();
    }

    private static void value(LittleEndianBytes b, GgufValueType type, Object v) {
        switch (type) {
            case UINT8, INT8 -> b.u8((Long) v);
            case UINT16, INT16 -> b.u16((Long) v);
            case UINT32, INT32 -> b.u32((Long) v);
            case UINT64, INT64 -> b.u64((Long) v);
            case FLOAT32 -> b.u32(Float.floatToRawIntBits((Float) v));
            case FLOAT64 -> b.u64(Double.doubleToRawLongBits((Double) v));
            case BOOL -> b.u8((Boolean) v ? 1 : 0);
            case STRING -> b.string((String) v);
            case ARRAY -> {
                GgufArray a = (GgufArray) v;
                b.u32(a.elementType().id());
                b.u64(a.size());
                for (Object e : a.elements()) {
                    value(b, a.elementType(), e);
                }
            }
        }
    }

    /** A growing little-endian byte buffer for the header. */
    private static final class LittleEndianBytes extends ByteArrayOutputStream {

        void u8(long v) {
            write((int) v);
        }

        void u16(long v) {
            u8(v);
            u8(v >>> 8);
        }

        void u32(long v) {
            u16(v);
            u16(v >>> 16);
        }

        void u64(long v) {
            u32(v);
            u32(v >>> 32);
        }

        void bytes(byte[] bytes) {
            write(bytes, 0, bytes.length);
        }

        void string(String s) {
            byte[] utf8 = s.getBytes(StandardCharsets.UTF_8);
            u64(utf8.length);
            bytes(utf8);
        }
    }
}
