package dev.nibble.formats;

/** The fixed value tables of the non-linear 4-bit types: ggml's IQ4_NL levels and the bitsandbytes NF4 levels. */
public final class Codebooks {

    /** IQ4_NL levels (ggml), indexed by the 4-bit code; a weight is {@code d * level}. */
    private static final byte[] IQ4_NL = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

    /**
     * NF4 levels as published with QLoRA (Dettmers et al. 2023, appendix E) and shipped in bitsandbytes: the
     * quantiles of a standard normal, rescaled to [-1, 1], with an exact zero at code 7.
     */
    private static final float[] NF4 = {
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

    private Codebooks() {
    }

    /** The IQ4_NL level of a 4-bit code (0..15). */
    public static int iq4nl(int code) {
        return IQ4_NL[code];
    }

    /** The NF4 level of a 4-bit code (0..15), in [-1, 1]. */
    public static float nf4(int code) {
        return NF4[code];
    }
}
