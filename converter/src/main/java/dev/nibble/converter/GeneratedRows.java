package dev.nibble.converter;

import java.io.IOException;

/** A small tensor computed by the converter (Llama 3.1's {@code rope_freqs}), as a single row. */
record GeneratedRows(float[] values) implements RowSource {

    @Override
    public long rows() {
        return 1;
    }

    @Override
    public int rowLength() {
        return values.length;
    }

    @Override
    public void read(long first, int count, float[] dst) {
        System.arraycopy(values, 0, dst, 0, values.length);
    }

    @Override
    public IOException invalidRow(long row, String ggufName, RuntimeException cause) {
        return new IOException(ggufName + ": " + cause.getMessage(), cause);
    }

    @Override
    public void release(long first, int count) {
        // nothing is mapped
    }
}
