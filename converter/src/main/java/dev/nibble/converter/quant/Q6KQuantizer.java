package dev.nibble.converter.quant;

import dev.nibble.formats.GgmlType;
import java.util.Arrays;

/**
 * Q6_K: super-blocks of 256 weights in 16 sub-blocks of 16, each weight {@code d*sc_j*(q-32)} with 6-bit q and int8
 * sc_j.
 *
 * <p>Each sub-block first gets a scale from the search ggml's reference uses (19 trial grids, least-squares scale,
 * errors weighted by x²), and separately from the same search with plain squared error. For each of the two candidate
 * sets the int8 codes are placed on the super-block scale d (the largest scale maps to -128, as in ggml), then every
 * sub-block tries the codes within ±2 and keeps whatever lowers the true squared error of the dequantized weights. The
 * first candidate set reproduces ggml's choice, so the error never exceeds ggml's. Finally d is refitted by least
 * squares with codes and levels fixed and the code search repeated, kept only when the error drops.
 */
final class Q6KQuantizer extends BlockQuantizer {

    private static final int TYPE_SIZE = 210;
    /** Rounds of super-scale refitting (see Q4KQuantizer). */
    private static final int REFITS = 2;

    @Override
    public GgmlType type() {
        return GgmlType.Q6_K;
    }

    /** Each thread's scratch, so that the quantizer itself stays stateless and rows allocate nothing. */
    private static final ThreadLocal<Work> WORK = ThreadLocal.withInitial(Work::new);

    /** Scratch for one row's blocks. */
    private static final class Work {
        final float[] scales = new float[16];
        final int[] codes = new int[16];
        final int[] bestCodes = new int[16];
        final byte[] levels = new byte[256];
    }

    @Override
    void encode(float[] src, int srcOffset, int blocks, byte[] out) {
        Work w = WORK.get();
        // A block whose every candidate errs NaN (weights near the float range) keeps the codes of the row's block before.
        Arrays.fill(w.bestCodes, 0);
        for (int b = 0; b < blocks; b++) {
            encodeBlock(src, srcOffset + 256 * b, out, TYPE_SIZE * b, w.scales, w.codes, w.bestCodes, w.levels);
        }
    }

    private static void encodeBlock(float[] x, int at, byte[] out, int o, float[] scales, int[] codes, int[] bestCodes,
                                    byte[] levels) {
        double bestError = Double.POSITIVE_INFINITY;
        short bestD = 0;
        for (int pass = 0; pass < 2; pass++) {
            float maxScale = 0;
            float maxAbsScale = 0;
            for (int j = 0; j < 16; j++) {
                scales[j] = fitScale(x, at + 16 * j, pass == 0);
                if (Math.abs(scales[j]) > maxAbsScale) {
                    maxAbsScale = Math.abs(scales[j]);
                    maxScale = scales[j];
                }
            }
            if (maxAbsScale < 1e-15f) {
                return; // all (near) zero: an all-zero block, d = 0, dequantizes to zeros
            }
            float iscale = -128f / maxScale;
            short dBits = Float.floatToFloat16(1 / iscale);
            for (int j = 0; j < 16; j++) {
                codes[j] = Math.min(127, nearestInt(iscale * scales[j]));
            }
            double error = searchCodes(x, at, dBits, codes);
            if (error < bestError) {
                bestError = error;
                bestD = dBits;
                System.arraycopy(codes, 0, bestCodes, 0, 16);
            }
        }
        for (int round = 0; round < REFITS; round++) {
            System.arraycopy(bestCodes, 0, codes, 0, 16);
            short dBits = refitSuperScale(x, at, bestD, codes, levels);
            if (dBits == 0) {
                break;
            }
            double error = searchCodes(x, at, dBits, codes);
            if (!(error < bestError)) {
                break;
            }
            bestError = error;
            bestD = dBits;
            System.arraycopy(codes, 0, bestCodes, 0, 16);
        }
        float d = Float.float16ToFloat(bestD);
        for (int j = 0; j < 16; j++) {
            subBlockError(x, at + 16 * j, d * bestCodes[j], levels, 16 * j);
            out[o + 192 + j] = (byte) bestCodes[j];
        }
        putShort(out, o + 208, bestD);
        // Each half of 128 weights: ql bytes 0-31 hold the low 4 bits of weights 0-31 (low nibble) and 64-95 (high),
        // ql bytes 32-63 those of 32-63 and 96-127; qh byte l holds the top 2 bits of weights l, l+32, l+64, l+96.
        for (int half = 0; half < 2; half++) {
            int ql = o + 64 * half;
            int qh = o + 128 + 32 * half;
            int w = 128 * half;
            for (int l = 0; l < 32; l++) {
                int q1 = levels[w + l];
                int q2 = levels[w + l + 32];
                int q3 = levels[w + l + 64];
                int q4 = levels[w + l + 96];
                out[ql + l] = (byte) ((q1 & 0xF) | (q3 & 0xF) << 4);
                out[ql + l + 32] = (byte) ((q2 & 0xF) | (q4 & 0xF) << 4);
                out[qh + l] = (byte) ((q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
            }
        }
    }

    /**
     * Around each sub-block's code in {@code codes}, tries the codes within ±2 under super-block scale d, keeps the best
     * per sub-block in {@code codes}, and returns the total squared error.
     */
    private static double searchCodes(float[] x, int at, short dBits, int[] codes) {
        float d = Float.float16ToFloat(dBits);
        double error = 0;
        for (int j = 0; j < 16; j++) {
            int sc0 = codes[j];
            double best = Double.POSITIVE_INFINITY;
            for (int sc = Math.max(-128, sc0 - 2); sc <= Math.min(127, sc0 + 2); sc++) {
                double e = subBlockError(x, at + 16 * j, d * sc, null, 0);
                if (e < best) {
                    best = e;
                    codes[j] = sc;
                }
            }
            error += best;
        }
        return error;
    }

    /**
     * With the codes and the levels they give fixed, d enters linearly: the least-squares d over all 256 weights, as
     * fp16 bits, or 0 when there is nothing to fit.
     */
    private static short refitSuperScale(float[] x, int at, short dBits, int[] codes, byte[] levels) {
        float d = Float.float16ToFloat(dBits);
        double saa = 0;
        double sax = 0;
        for (int j = 0; j < 16; j++) {
            subBlockError(x, at + 16 * j, d * codes[j], levels, 16 * j);
            for (int l = 0; l < 16; l++) {
                double a = (double) codes[j] * (levels[16 * j + l] - 32);
                saa += a * a;
                sax += a * x[at + 16 * j + l];
            }
        }
        double fitted = sax / saa;
        if (!(Math.abs(fitted) > 0) || Math.abs(fitted) > 65504) {
            return 0;
        }
        return Float.floatToFloat16((float) fitted);
    }

    /**
     * The squared error of 16 weights at their nearest levels {@code scale*(q-32)}, q in 0..63, on the dequantizer's
     * float expression; stores the q when {@code levels} is not null.
     */
    private static double subBlockError(float[] x, int at, float scale, byte[] levels, int levelsAt) {
        float inv = scale != 0 ? 1f / scale : 0f;
        double error = 0;
        for (int l = 0; l < 16; l++) {
            float v = x[at + l];
            int q = Math.clamp(nearestInt(v * inv), -32, 31);
            double e = (double) (scale * q) - v;
            error += e * e;
            if (levels != null) {
                levels[levelsAt + l] = (byte) (q + 32);
            }
        }
        return error;
    }

    /**
     * A least-squares scale for 16 weights on levels -32..31: round on the grid that maps the largest magnitude to -32,
     * then on 18 nearby grids, and keep the fit of least error (weighted by x² when {@code weighted}, as ggml does).
     */
    private static float fitScale(float[] x, int at, boolean weighted) {
        float max = 0;
        float amax = 0;
        for (int i = 0; i < 16; i++) {
            float ax = Math.abs(x[at + i]);
            if (ax > amax) {
                amax = ax;
                max = x[at + i];
            }
        }
        if (amax < 1e-15f) {
            return 0f;
        }
        float iscale = -32 / max;
        float sumLX = 0;
        float sumL2 = 0;
        for (int i = 0; i < 16; i++) {
            float v = x[at + i];
            int l = Math.clamp(nearestInt(iscale * v), -32, 31);
            float w = weighted ? v * v : 1f;
            sumLX += w * v * l;
            sumL2 += w * l * l;
        }
        float scale = sumL2 != 0 ? sumLX / sumL2 : 0f;
        float best = scale * sumLX;
        for (int step = -9; step <= 9; step++) {
            if (step == 0) {
                continue;
            }
            iscale = -(32 + 0.1f * step) / max;
            sumLX = 0;
            sumL2 = 0;
            for (int i = 0; i < 16; i++) {
                float v = x[at + i];
                int l = Math.clamp(nearestInt(iscale * v), -32, 31);
                float w = weighted ? v * v : 1f;
                sumLX += w * v * l;
                sumL2 += w * l * l;
            }
            if (sumL2 > 0 && sumLX * sumLX > best * sumL2) {
                scale = sumLX / sumL2;
                best = scale * sumLX;
            }
        }
        return scale;
    }
}
