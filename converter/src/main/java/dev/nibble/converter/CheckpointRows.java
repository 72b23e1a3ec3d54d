package dev.nibble.converter;

import dev.nibble.formats.Dequantizer;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import java.lang.foreign.MemorySegment;

/**
 * The rows of a mapped checkpoint tensor, converted to floats, optionally in RoPE-permuted order. A tensor of rank 1 is
 * one row; higher ranks are rows of the last dimension.
 */
final class CheckpointRows implements RowSource {

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

    /**
     * Drops the pages of the rows just read from this process (madvise DONTNEED through {@link MemorySegment#unload}):
     * the page cache keeps them, but the resident set stays small however large the checkpoint. A permuted range is
     * widened to whole heads, the span its source rows come from.
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
        data.asSlice(from * rowBytes, (to - from) * rowBytes).unload();
    }
}
