package dev.nibble.converter;

/** Where the float rows of one output tensor come from; safe to read from several threads at once. */
interface RowSource {

    /** Number of rows. */
    long rows();

    /** Elements per row. */
    int rowLength();


    /** Fills {@code dst[0 .. count * rowLength())} with rows {@code first .. first + count - 1}. */
    void read(long first, int count, float[] dst);

    /** Tells the source that rows {@code first .. first + count - 1} will not be read again, so their pages may go. */
    void release(long first, int count);
}
