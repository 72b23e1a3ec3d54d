package dev.nibble.converter.quant;

import dev.nibble.formats.Codebooks;
import dev.nibble.formats.GgmlType;

/**
 * IQ4_NL: blocks of 32 weights, each {@code d * level[q]} with the 16 non-linear IQ4_NL levels.
 *
 * <p>Scale search: the grids that map the largest-magnitude weight to level -127+t or to 113+t (t in -7..7, both
 * signs of d) each give an assignment of levels and its least-squares scale, both plain and weighted by x² (ggml's
 * weighting; the weighted fit on ggml's own grid, t = 0 towards -127, is ggml's reference scale). Every candidate
 * scale is rounded to fp16, the weights are re-assigned to their nearest levels under that rounded scale, and the
 * candidate of least true squared error wins.
 */
final class IQ4NLQuantizer extends BlockQuantizer {

    private static final float[] LEVELS = new float[16];

    private static final int MIN_LEVEL = Codebooks.iq4nl(0);
    /** For v with floor(v) = f: the count of level midpoints at or below f, and the midpoint in (f, f+1) if any. */
    private static final int[] BELOW = new int[Codebooks.iq4nl(15) - MIN_LEVEL + 1];
    private static final float[] NEXT_MID = new float[BELOW.length];

    static {
        for (int i = 0; i < 16; i++) {
            LEVELS[i] = Codebooks.iq4nl(i);
        }
        for (int f = 0; f < BELOW.length; f++) {
            NEXT_MID[f] = Float.POSITIVE_INFINITY;
            for (int k = 0; k < 15; k++) {
                float mid = (LEVELS[k] + LEVELS[k + 1]) / 2;
                if (mid <= f + MIN_LEVEL) {
                    BELOW[f]++;
                } else if (mid < f + MIN_LEVEL + 1) {
                    NEXT_MID[f] = mid;
                }
            }
        }
    }

    @Override
    public GgmlType type() {
        return GgmlType.IQ4_NL;
    }

    /** Each thread's scratch: the codes of one block, and the fp16 scales a block has tried. */
    private static final ThreadLocal<byte[]> LEVELS_SCRATCH = ThreadLocal.withInitial(() -> new byte[32]);
    private static final ThreadLocal<short[]> TRIED_SCRATCH = ThreadLocal.withInitial(() -> new short[60]);

    @Override
    void encode(float[] src, int srcOffset, int blocks, byte[] out) {
        byte[] levels = LEVELS_SCRATCH.get();
        short[] tried = TRIED_SCRATCH.get();
        for (int b = 0; b < blocks; b++) {
            encodeBlock(src, srcOffset + 32 * b, out, 18 * b, levels, tried);
        }
    }

    private static void encodeBlock(float[] x, int at, byte[] out, int o, byte[] levels, short[] tried) {
        float amax = 0;
        float max = 0;
        for (int j = 0; j < 32; j++) {
            float ax = Math.abs(x[at + j]);
            if (ax > amax) {
                amax = ax;
                max = x[at + j];
            }
        }
        if (amax < 1e-15f) {
            return; // d = 0 and code 0: dequantizes to zeros
        }
        float bestD = 0;
        double bestError = Double.POSITIVE_INFINITY;
        int triedCount = 0;
        for (int end = 0; end < 2; end++) {
            float edge = end == 0 ? LEVELS[0] : LEVELS[15];
            for (int t = -7; t <= 7; t++) {
                // t = 0 spells the grid step as ggml's reference does (1 / (max / edge)), so that candidate is ggml's.
                float id = t == 0 ? 1 / (max / edge) : (t + edge) / max;
                float sumQX = 0;
                float sumQ2 = 0;
                float sumWQX = 0;
                float sumWQ2 = 0;
                for (int j = 0; j < 32; j++) {
                    float v = x[at + j];
                    float q = LEVELS[nearestLevel(id * v)];
                    float w = v * v;
                    sumQX += q * v;
                    sumQ2 += q * q;
                    sumWQX += w * q * v;
                    sumWQ2 += w * q * q;
                }
                for (int weighted = 0; weighted < 2; weighted++) {
                    float num = weighted == 1 ? sumWQX : sumQX;
                    float den = weighted == 1 ? sumWQ2 : sumQ2;
                    if (den <= 0) {
                        continue;
                    }
                    short bits = Float.floatToFloat16(num / den);
                    if (seen(tried, triedCount, bits)) {
                        continue; // neighbouring grids often give the same rounded scale
                    }
                    tried[triedCount++] = bits;
                    float d = Float.float16ToFloat(bits);
                    double e = blockError(x, at, d, null);
                    if (e < bestError) {
                        bestError = e;
                        bestD = d;
                    }
                }
            }
        }
        if (bestError == Double.POSITIVE_INFINITY) {
            return; // every scale underflows (or overflows) fp16: the block stays zero
        }
        putShort(out, o, Float.floatToFloat16(bestD));
        blockError(x, at, bestD, levels);
        for (int j = 0; j < 16; j++) {
            out[o + 2 + j] = (byte) (levels[j] | levels[j + 16] << 4);
        }
    }

    private static boolean seen(short[] tried, int count, short bits) {
        for (int i = 0; i < count; i++) {
            if (tried[i] == bits) {
                return true;
            }
        }
        return false;
    }

    /** The squared error of 32 weights at their nearest levels {@code d * level}; stores the codes when asked. */
    private static double blockError(float[] x, int at, float d, byte[] levels) {
        if (d == 0 || !Float.isFinite(d)) {
            return Double.POSITIVE_INFINITY;
        }
        float id = 1 / d;
        double error = 0;
        for (int j = 0; j < 32; j++) {
            float v = x[at + j];
            int q = nearestLevel(id * v);
            double e = (double) (d * LEVELS[q]) - v;
            error += e * e;
            if (levels != null) {
                levels[j] = (byte) q;
            }
        }
        return error;
    }

    /**
     * The index of the level nearest to {@code v}, the upper one on a tie (as ggml). The levels are integers at least 9
     * apart, so each unit interval [f, f+1) holds at most one midpoint: a table per integer floor gives the answer.
     */
    private static int nearestLevel(float v) {
        if (!(v > LEVELS[0])) {
            return 0;
        }
        if (v >= LEVELS[15]) {
            return 15;
        }
        int f = (int) Math.floor(v) - MIN_LEVEL;
        return BELOW[f] + (v >= NEXT_MID[f] ? 1 : 0);
    }
}
