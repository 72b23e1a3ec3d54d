package dev.nibble.converter;

import java.io.IOException;

/** Where the float rows of one output tensor come from; safe to read from several threads at once. */
interface RowSource {

    /** Number of rows. */
    long rows();

    /** Elements per row. */
    int rowLength();


    /** Fills {@code dst[0 .. count * rowLength())} with rows {@code first .. first + count - 1}. */
    void read(long first, int count, float[] dst);

    /**
     * The error for a row the quantizer refused (a NaN or infinite weight), naming where the row comes from.
     *
     * @param row      the row in output order
     * @param ggufName the output tensor's name
     */
    IOException invalidRow(long row, String ggufName, RuntimeException cause);

    /** Tells the source that rows {@code first .. first + count - 1} will not be read again, so their pages may go. */
    void release(long first, int count);
}
