package dev.nibble.converter;

import dev.nibble.formats.Dequantizer;
import dev.nibble.formats.FormatException;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * The rows of a mapped checkpoint tensor, converted to floats, optionally in RoPE-permuted order. A tensor of rank 1 is
 * one row; higher ranks are rows of the last dimension.
 */
final class CheckpointRows implements RowSource {

    /** Twice Linux's default fault-around window (fault_around_bytes = 64 KiB). */
    private static final long FAULT_AROUND_MARGIN = 128L << 10;

    private final CheckpointTensor tensor;
    private final RopePermutation permutation;
    private final long rows;
    private final int rowLength;
    private final long rowBytes;

    /** @param permutation the row order to read in, or null for the file's order */
    CheckpointRows(CheckpointTensor tensor, RopePermutation permutation) {
        long[] shape = tensor.shape();
        this.tensor = tensor;
        this.permutation = permutation;
        this.rowLength = Math.toIntExact(shape.length == 0 ? 1 : shape[shape.length - 1]);
        this.rows = tensor.elementCount() / rowLength;
        this.rowBytes = tensor.dtype().byteSize(rowLength);
        if (permutation != null && permutation.rows() != rows) {
            throw new IllegalArgumentException(tensor.name() + ": " + rows + " rows, permutation for " + permutation.rows());
        }
    }

    @Override
    public long rows() {
        return rows;
    }

    @Override
    public int rowLength() {
        return rowLength;
    }

    @Override
    public void read(long first, int count, float[] dst) {
        MemorySegment data = tensor.data();
        for (int i = 0; i < count; i++) {
            long row = permutation == null ? first + i : permutation.sourceRow(first + i);
            Dequantizer.dequantizeRow(tensor.dtype(), data, row * rowBytes, dst, i * rowLength, rowLength);
        }
    }

    @Override
    public IOException invalidRow(long row, String ggufName, RuntimeException cause) {
        long sourceRow = permutation == null ? row : permutation.sourceRow(row);
        return new FormatException(tensor.file(), "tensor " + tensor.name() + " row " + sourceRow, -1,
                cause.getMessage() + " (while writing " + ggufName + ")", cause);
    }

    /**
     * Drops the pages of the rows just read from this process (madvise DONTNEED through {@link MemorySegment#unload}):
     * the page cache keeps them, but the resident set stays small however large the checkpoint. A permuted range is
     * widened to whole heads, the span its source rows come from. The range is also widened by
     * {@link #FAULT_AROUND_MARGIN} on each side, because a page fault maps up to 64 KiB of neighbouring cached pages
     * ("fault-around"), which may belong to a chunk another worker has already released; without the margin those
     * pages would stay mapped, about 2% of the input over a whole model.
     */
    @Override
    public void release(long first, int count) {
        MemorySegment data = tensor.data();
        if (!data.isMapped()) {
            return;
        }
        long from = first;
        long to = first + count;
        if (permutation != null) {
            from = from / permutation.headDim() * permutation.headDim();
            to = Math.min(rows, (to + permutation.headDim() - 1) / permutation.headDim() * permutation.headDim());
        }
        long start = Math.max(0, from * rowBytes - FAULT_AROUND_MARGIN);
        long end = Math.min(data.byteSize(), to * rowBytes + FAULT_AROUND_MARGIN);
        data.asSlice(start, end - start).unload();
    }
}
