package dev.nibble.converter;

/**
 * The row order GGUF llama files expect for the Q and K projections.
 *
 * <p>Hugging Face checkpoints rotate each head's first half of dimensions against its second half (the "rotate_half"
 * RoPE); GGUF's llama graph rotates adjacent pairs. Within each head of {@code headDim} rows, GGUF row {@code 2i + j}
 * (i &lt; headDim/2, j in {0, 1}) is Hugging Face row {@code j * headDim/2 + i}: llama.cpp's converter does it as a
 * reshape to (heads, 2, headDim/2), a swap of the last two axes and a reshape back. Expressed as a row mapping here,
 * so that rows are read in the new order without copying the tensor.
 */
public record RopePermutation(int heads, int headDim) {

    public RopePermutation {
        if (heads <= 0 || headDim <= 0 || headDim % 2 != 0) {
            throw new IllegalArgumentException("heads " + heads + " and even head dim " + headDim + " expected");
        }
    }

    /** Number of rows the permutation covers. */
    public long rows() {
        return (long) heads * headDim;
    }

    /** The Hugging Face row that becomes GGUF row {@code ggufRow}. */
    public long sourceRow(long ggufRow) {
        long head = ggufRow / headDim;
        int r = (int) (ggufRow % headDim);
        int half = headDim / 2;
        return head * headDim + (long) (r % 2) * half + r / 2;
    }

    /** The GGUF row that Hugging Face row {@code sourceRow} becomes: the inverse of {@link #sourceRow}. */
    public long ggufRow(long sourceRow) {
        long head = sourceRow / headDim;
        int r = (int) (sourceRow % headDim);
        int half = headDim / 2;
        return head * headDim + 2L * (r % half) + r / half;
    }
}
