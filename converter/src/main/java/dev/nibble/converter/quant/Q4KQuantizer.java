package dev.nibble.converter.quant;

import dev.nibble.formats.GgmlType;
import java.util.Arrays;

/**
 * Q4_K: super-blocks of 256 weights in 8 sub-blocks of 32, each weight {@code d*sc_j*q - dmin*m_j} with 4-bit q and
 * 6-bit sc_j, m_j.
 *
 * <p>Each sub-block first gets a continuous (scale, min) from the search ggml's reference uses (a least-squares fit
 * over 21 trial grids, errors weighted by {@code rms + |x|}), and separately from the same search with plain squared
 * error. For each of the two candidate sets the 6-bit codes are placed on the super-block scales, and then every
 * sub-block tries the neighbouring codes (±1 on scale and min), keeping whatever lowers the true squared error of the
 * dequantized weights. The first candidate set reproduces ggml's choice, so the error never exceeds ggml's. Finally,
 * with codes and levels fixed, the super-block scales d and dmin are refitted by least squares over all 256 weights and
 * the code search repeated, kept only when the error drops.
 */
final class Q4KQuantizer extends BlockQuantizer {

    private static final int TYPE_SIZE = 144;
    /** Rounds of super-scale refitting: the first gains about 0.25% RMSE, the second about 0.1%, later ones little. */
    private static final int REFITS = 2;

    @Override
    public GgmlType type() {
        return GgmlType.Q4_K;
    }

    /** Each thread's scratch, so that the quantizer itself stays stateless and rows allocate nothing. */
    private static final ThreadLocal<Work> WORK = ThreadLocal.withInitial(Work::new);

    /** Scratch for one row's blocks. */
    private static final class Work {
        final float[] weights = new float[32];
        final float[] ones = new float[32];
        final byte[] levels = new byte[32];
        final byte[] trial = new byte[32];
        final float[] scales = new float[8];
        final float[] mins = new float[8];
        final int[] codes = new int[8];
        final int[] bestCodes = new int[8];

        Work() {
            Arrays.fill(ones, 1f);
        }
    }

    @Override
    void encode(float[] src, int srcOffset, int blocks, byte[] out) {
        Work w = WORK.get();
        // A block whose every candidate errs NaN (weights near the float range) keeps the codes of the row's block before.
        Arrays.fill(w.bestCodes, 0);
        for (int b = 0; b < blocks; b++) {
            encodeBlock(src, srcOffset + 256 * b, out, TYPE_SIZE * b, w);
        }
    }

    private static void encodeBlock(float[] x, int at, byte[] out, int o, Work w) {
        double bestError = Double.POSITIVE_INFINITY;
        short bestD = 0;
        short bestDmin = 0;
        for (int pass = 0; pass < 2; pass++) {
            for (int j = 0; j < 8; j++) {
                float[] weights = w.ones;
                if (pass == 0) {
                    float sumX2 = 0;
                    for (int l = 0; l < 32; l++) {
                        sumX2 += x[at + 32 * j + l] * x[at + 32 * j + l];
                    }
                    float rms = (float) Math.sqrt(sumX2 / 32);
                    for (int l = 0; l < 32; l++) {
                        w.weights[l] = rms + Math.abs(x[at + 32 * j + l]);
                    }
                    weights = w.weights;
                }
                fitScaleMin(x, at + 32 * j, weights, w, j);
            }
            float maxScale = 0;
            float maxMin = 0;
            for (int j = 0; j < 8; j++) {
                maxScale = Math.max(maxScale, w.scales[j]);
                maxMin = Math.max(maxMin, w.mins[j]);
            }
            float invScale = maxScale > 0 ? 63f / maxScale : 0f;
            float invMin = maxMin > 0 ? 63f / maxMin : 0f;
            for (int j = 0; j < 8; j++) {
                w.codes[j] = Math.clamp(nearestInt(invScale * w.scales[j]), 0, 63)
                        | Math.clamp(nearestInt(invMin * w.mins[j]), 0, 63) << 8;
            }
            short dBits = Float.floatToFloat16(maxScale / 63f);
            short dminBits = Float.floatToFloat16(maxMin / 63f);
            double error = searchCodes(x, at, dBits, dminBits, w);
            if (error < bestError) {
                bestError = error;
                bestD = dBits;
                bestDmin = dminBits;
                System.arraycopy(w.codes, 0, w.bestCodes, 0, 8);
            }
        }
        for (int round = 0; round < REFITS; round++) {
            System.arraycopy(w.bestCodes, 0, w.codes, 0, 8);
            long fitted = refitSuperScales(x, at, bestD, bestDmin, w);
            if (fitted < 0) {
                break;
            }
            short dBits = (short) (fitted >> 16);
            short dminBits = (short) fitted;
            double error = searchCodes(x, at, dBits, dminBits, w);
            if (!(error < bestError)) {
                break;
            }
            bestError = error;
            bestD = dBits;
            bestDmin = dminBits;
            System.arraycopy(w.codes, 0, w.bestCodes, 0, 8);
        }
        write(x, at, out, o, bestD, bestDmin, w);
    }

    /**
     * Around each sub-block's codes in {@code w.codes}, tries scale and min codes ±1 under the given super-block scales,
     * keeps the best per sub-block in {@code w.codes}, and returns the total squared error.
     */
    private static double searchCodes(float[] x, int at, short dBits, short dminBits, Work w) {
        float d = Float.float16ToFloat(dBits);
        float dmin = Float.float16ToFloat(dminBits);
        double error = 0;
        for (int j = 0; j < 8; j++) {
            int ls0 = w.codes[j] & 0xFF;
            int lm0 = w.codes[j] >> 8;
            double best = Double.POSITIVE_INFINITY;
            for (int ls = Math.max(0, ls0 - 1); ls <= Math.min(63, ls0 + 1); ls++) {
                for (int lm = Math.max(0, lm0 - 1); lm <= Math.min(63, lm0 + 1); lm++) {
                    double e = subBlockError(x, at + 32 * j, d * ls, dmin * lm, null);
                    if (e < best) {
                        best = e;
                        w.codes[j] = ls | lm << 8;
                    }
                }
            }
            error += best;
        }
        return error;
    }

    /**
     * With the codes and the levels they give fixed, the super-block scales enter linearly: least squares over all 256
     * weights gives the best (d, dmin). Returns their fp16 bits as {@code d << 16 | dmin}, or -1 when the fit is unusable.
     */
    private static long refitSuperScales(float[] x, int at, short dBits, short dminBits, Work w) {
        float d = Float.float16ToFloat(dBits);
        float dmin = Float.float16ToFloat(dminBits);
        double saa = 0;
        double sab = 0;
        double sbb = 0;
        double sax = 0;
        double sbx = 0;
        for (int j = 0; j < 8; j++) {
            int ls = w.codes[j] & 0xFF;
            int lm = w.codes[j] >> 8;
            subBlockError(x, at + 32 * j, d * ls, dmin * lm, w.levels);
            for (int l = 0; l < 32; l++) {
                double a = ls * w.levels[l];
                double v = x[at + 32 * j + l];
                saa += a * a;
                sab += a * lm;
                sbb += (double) lm * lm;
                sax += a * v;
                sbx += lm * v;
            }
        }
        double det = saa * sbb - sab * sab;
        if (!(det > 0)) {
            return -1;
        }
        // minimise sum (d*a - m*b - x)^2: [saa -sab; -sab sbb] [d; m] = [sax; -sbx]
        double newD = (sax * sbb - sab * sbx) / det;
        double newM = (sax * sab - saa * sbx) / det;
        if (!(newD > 0) || newM < 0 || newD > 65504 || newM > 65504) {
            return -1;
        }
        return (long) (Float.floatToFloat16((float) newD) & 0xFFFF) << 16 | (Float.floatToFloat16((float) newM) & 0xFFFF);
    }

    private static void write(float[] x, int at, byte[] out, int o, short dBits, short dminBits, Work w) {
        putShort(out, o, dBits);
        putShort(out, o + 2, dminBits);
        float d = Float.float16ToFloat(dBits);
        float dmin = Float.float16ToFloat(dminBits);
        // 12 scale bytes: codes of sub-blocks 0-3 in the low 6 bits of bytes 0-3 (scale) and 4-7 (min); sub-blocks 4-7
        // put their low 4 bits in the nibbles of bytes 8-11 and their top 2 bits in the top bits of bytes 0-7.
        for (int j = 0; j < 8; j++) {
            int ls = w.bestCodes[j] & 0xFF;
            int lm = w.bestCodes[j] >> 8;
            if (j < 4) {
                out[o + 4 + j] = (byte) ls;
                out[o + 8 + j] = (byte) lm;
            } else {
                out[o + 8 + j] = (byte) ((ls & 0xF) | (lm & 0xF) << 4);
                out[o + j] |= (byte) ((ls >> 4) << 6);
                out[o + 4 + j] |= (byte) ((lm >> 4) << 6);
            }
        }
        // Nibbles: 32 bytes per 64 weights, low nibble from the first sub-block of the pair, high from the second.
        for (int pair = 0; pair < 4; pair++) {
            int lo = w.bestCodes[2 * pair];
            int hi = w.bestCodes[2 * pair + 1];
            subBlockError(x, at + 64 * pair, d * (lo & 0xFF), dmin * (lo >> 8), w.levels);
            subBlockError(x, at + 64 * pair + 32, d * (hi & 0xFF), dmin * (hi >> 8), w.trial);
            for (int l = 0; l < 32; l++) {
                out[o + 16 + 32 * pair + l] = (byte) (w.levels[l] | w.trial[l] << 4);
            }
        }
    }

    /**
     * The squared error of 32 weights at their nearest levels {@code scale*q - min}, q in 0..15, computed on the
     * same float expression the dequantizer evaluates; stores the levels when {@code levels} is not null.
     */
    private static double subBlockError(float[] x, int at, float scale, float min, byte[] levels) {
        float inv = scale != 0 ? 1f / scale : 0f;
        double error = 0;
        for (int l = 0; l < 32; l++) {
            float v = x[at + l];
            int q = Math.max(0, Math.min(15, nearestInt((v + min) * inv)));
            double e = (double) (scale * q - min) - v;
            error += e * e;
            if (levels != null) {
                levels[l] = (byte) q;
            }
        }
        return error;
    }

    /**
     * Fits {@code x ≈ scale*q + offset} (offset ≤ 0, q in 0..15) for one sub-block under the given error weights:
     * start from the min-max grid, then try 21 grid spacings, least-squares fit scale and offset to each rounding, and
     * keep the fit of least weighted error. Stores scale and -offset into {@code w.scales[j]}, {@code w.mins[j]}.
     */
    private static void fitScaleMin(float[] x, int at, float[] weights, Work w, int j) {
        float min = x[at];
        float max = x[at];
        float sumW = weights[0];
        float sumX = sumW * x[at];
        for (int i = 1; i < 32; i++) {
            if (x[at + i] < min) {
                min = x[at + i];
            }
            if (x[at + i] > max) {
                max = x[at + i];
            }
            sumW += weights[i];
            sumX += weights[i] * x[at + i];
        }
        if (min > 0) {
            min = 0;
        }
        if (max == min) {
            w.scales[j] = 0;
            w.mins[j] = -min;
            return;
        }
        float iscale = 15 / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < 32; i++) {
            int l = Math.max(0, Math.min(15, nearestInt(iscale * (x[at + i] - min))));
            float diff = scale * l + min - x[at + i];
            bestError += weights[i] * (diff * diff);
        }
        for (int step = 0; step <= 20; step++) {
            iscale = (-1f + 0.1f * step + 15) / (max - min);
            float sumL = 0;
            float sumL2 = 0;
            float sumXL = 0;
            for (int i = 0; i < 32; i++) {
                int l = Math.max(0, Math.min(15, nearestInt(iscale * (x[at + i] - min))));
                w.trial[i] = (byte) l;
                float wi = weights[i];
                sumL += wi * l;
                sumL2 += wi * l * l;
                sumXL += wi * l * x[at + i];
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (det > 0) {
                float thisScale = (sumW * sumXL - sumX * sumL) / det;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / det;
                if (thisMin > 0) {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }
                float error = 0;
                for (int i = 0; i < 32; i++) {
                    float diff = thisScale * w.trial[i] + thisMin - x[at + i];
                    error += weights[i] * (diff * diff);
                }
                if (error < bestError) {
                    bestError = error;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        w.scales[j] = scale;
        w.mins[j] = -min;
    }
}
