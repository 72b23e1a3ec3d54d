package dev.nibble.converter;

import dev.nibble.converter.quant.Quantizer;
import dev.nibble.formats.GgmlType;
import dev.nibble.formats.gguf.GgufWriter;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

/**
 * Converts tensors chunk by chunk on a pool of workers and writes the chunks, in order, to a {@link GgufWriter}.
 *
 * <p>A chunk is a run of whole rows of one tensor, about {@value #CHUNK_ELEMENTS} weights. There are {@code threads + 2}
 * chunk buffers, allocated once: a chunk is dispatched only when a buffer is free, and a buffer is freed when its chunk
 * has been written, so memory stays a few tens of MB whatever the model size, and no tensor is ever held whole.
 */
final class TensorStreamer {

    /** Weights per chunk: 4 MB of floats, enough to amortise a task and small enough to keep several in flight. */
    static final int CHUNK_ELEMENTS = 1 << 20;

    private final int threads;
    private final Map<GgmlType, Quantizer> quantizers = new EnumMap<>(GgmlType.class);

    TensorStreamer(int threads) {
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be at least 1, is " + threads);
        }
        this.threads = threads;
    }

    /** A chunk's buffers: the float rows in, the encoded bytes out. */
    private record Buffer(float[] rows, MemorySegment encoded) {
    }

    /** A dispatched chunk: its buffer and the number of encoded bytes it will hold. */
    private record Pending(Future<?> task, Buffer buffer, long bytes) {
    }

    /** Writes every tensor's data to {@code writer}, in list order, reporting each written chunk to {@code progress}. */
    void stream(List<PlannedTensor> tensors, GgufWriter writer, ConversionProgress progress) throws IOException {
        int maxRow = 1;
        for (PlannedTensor t : tensors) {
            maxRow = Math.max(maxRow, t.source().rowLength());
            quantizers.computeIfAbsent(t.info().type(), Quantizer::forType);
        }
        int capacity = Math.max(CHUNK_ELEMENTS, maxRow);
        ExecutorService pool = Executors.newFixedThreadPool(threads, r -> {
            Thread t = new Thread(r, "nibble-convert");
            t.setDaemon(true);
            return t;
        });
        try (Arena arena = Arena.ofShared()) {
            try {
                ArrayDeque<Buffer> free = new ArrayDeque<>();
                for (int i = 0; i < threads + 2; i++) {
                    free.add(new Buffer(new float[capacity], arena.allocate(4L * capacity, 64)));
                }
                ArrayDeque<Pending> inFlight = new ArrayDeque<>();
                for (int index = 0; index < tensors.size(); index++) {
                    PlannedTensor t = tensors.get(index);
                    progress.tensor(index, t.info());
                    RowSource source = t.source();
                    int rowLength = source.rowLength();
                    GgmlType type = t.info().type();
                    long rowBytes = type.byteSize(rowLength);
                    int rowsPerChunk = Math.max(1, capacity / rowLength);
                    for (long first = 0; first < source.rows(); first += rowsPerChunk) {
                        while (free.isEmpty()) {
                            free.add(writeOldest(inFlight, writer, progress));
                        }
                        Buffer buffer = free.poll();
                        int count = (int) Math.min(rowsPerChunk, source.rows() - first);
                        long start = first;
                        Quantizer quantizer = quantizers.get(type);
                        String name = t.info().name();
                        Future<?> task = pool.submit(() -> {
                            source.read(start, count, buffer.rows());
                            source.release(start, count);
                            for (int r = 0; r < count; r++) {
                                try {
                                    quantizer.quantizeRow(buffer.rows(), r * rowLength, rowLength, buffer.encoded(), r * rowBytes);
                                } catch (IllegalArgumentException e) {
                                    throw new UncheckedIOException(source.invalidRow(start + r, name, e));
                                }
                            }
                        });
                        inFlight.add(new Pending(task, buffer, count * rowBytes));
                    }
                }
                while (!inFlight.isEmpty()) {
                    writeOldest(inFlight, writer, progress);
                }
            } finally {
                // workers must be done with the buffers before the arena frees them
                pool.shutdownNow();
                awaitQuietly(pool);
            }
        }
    }

    private static Buffer writeOldest(ArrayDeque<Pending> inFlight, GgufWriter writer, ConversionProgress progress)
            throws IOException {
        Pending p = inFlight.poll();
        try {
            p.task().get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("conversion interrupted");
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof UncheckedIOException u) {
                throw u.getCause();
            }
            if (cause instanceof RuntimeException r) {
                throw r;
            }
            if (cause instanceof Error err) {
                throw err;
            }
            throw new IOException(cause);
        }
        writer.write(p.buffer().encoded().asSlice(0, p.bytes()));
        progress.advance(p.bytes());
        return p.buffer();
    }

    private static void awaitQuietly(ExecutorService pool) {
        boolean interrupted = false;
        while (true) {
            try {
                if (pool.awaitTermination(1, TimeUnit.MINUTES)) {
                    break;
                }
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }
}
