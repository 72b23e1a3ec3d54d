package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** A plain-Java backend for tests only: F32 and F16 weights, double accumulation, written for clarity, not speed. */
class ReferenceBackend extends HostBackend {

    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort F16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat ACT = ValueLayout.JAVA_FLOAT;

    @Override
    public String description() {
        return "java reference";
    }

    static float weight(Matrix w, int row, int col) {
        long i = (long) row * w.cols() + col;
        return switch (w.type()) {
            case F32 -> w.data().getAtIndex(F32, i);
            case F16 -> Float.float16ToFloat(w.data().getAtIndex(F16, i));
            default -> throw new UnsupportedOperationException("reference backend has no " + w.type());
        };
    }

    @Override
    public void matmul(Matrix w, MemorySegment x, int tokens, MemorySegment out) {
        float[] row = new float[w.cols()];
        for (int r = 0; r < w.rows(); r++) {
            for (int c = 0; c < w.cols(); c++) {
                row[c] = weight(w, r, c);
            }
            for (int t = 0; t < tokens; t++) {
                double sum = 0;
                long base = (long) t * w.cols();
                for (int c = 0; c < w.cols(); c++) {
                    sum += (double) row[c] * x.getAtIndex(ACT, base + c);
                }
                out.setAtIndex(ACT, (long) t * w.rows() + r, (float) sum);
            }
        }
    }

    @Override
    public void embed(Matrix table, MemorySegment ids, int count, MemorySegment out) {
        for (int i = 0; i < count; i++) {
            int id = ids.getAtIndex(ValueLayout.JAVA_INT, i);
            for (int c = 0; c < table.cols(); c++) {
                out.setAtIndex(ACT, (long) i * table.cols() + c, weight(table, id, c));
            }
        }
    }

    @Override
    public void rmsNorm(MemorySegment x, MemorySegment weight, int tokens, int dim, float eps, MemorySegment out) {
        for (int t = 0; t < tokens; t++) {
            long base = (long) t * dim;
            double ss = 0;
            for (int i = 0; i < dim; i++) {
                double v = x.getAtIndex(ACT, base + i);
                ss += v * v;
            }
            double scale = 1 / Math.sqrt(ss / dim + eps);
            for (int i = 0; i < dim; i++) {
                out.setAtIndex(ACT, base + i, (float) (x.getAtIndex(ACT, base + i) * scale * weight.getAtIndex(F32, i)));
            }
        }
    }

    @Override
    public void rope(MemorySegment x, int tokens, int heads, int headDim, MemorySegment positions, float theta,
                     float freqScale, MemorySegment freqFactors) {
        for (int t = 0; t < tokens; t++) {
            int pos = positions.getAtIndex(ValueLayout.JAVA_INT, t);
            for (int h = 0; h < heads; h++) {
                long base = ((long) t * heads + h) * headDim;
                for (int i = 0; i < headDim / 2; i++) {
                    double freq = freqScale * Math.pow(theta, -2.0 * i / headDim);
                    if (freqFactors != null) {
                        freq /= freqFactors.getAtIndex(F32, i);
                    }
                    double angle = pos * freq;
                    double cos = Math.cos(angle), sin = Math.sin(angle);
                    float a = x.getAtIndex(ACT, base + 2 * i), b = x.getAtIndex(ACT, base + 2 * i + 1);
                    x.setAtIndex(ACT, base + 2 * i, (float) (a * cos - b * sin));
                    x.setAtIndex(ACT, base + 2 * i + 1, (float) (a * sin + b * cos));
                }
            }
        }
    }

    @Override
    public void attention(MemorySegment q, int tokens, MemorySegment positions, MemorySegment starts, int heads,
                          int kvHeads, int headDim, MemorySegment keys, MemorySegment values, int span,
                          MemorySegment work, MemorySegment out) {
        int kvDim = kvHeads * headDim;
        for (int t = 0; t < tokens; t++) {
            int len = Math.min(positions.getAtIndex(ValueLayout.JAVA_INT, t) + 1, span);
            long first = starts == null ? 0 : starts.getAtIndex(ValueLayout.JAVA_INT, t); // the sequence's row 0
            for (int h = 0; h < heads; h++) {
                int kvh = h / (heads / kvHeads);
                long qBase = ((long) t * heads + h) * headDim;
                double[] scores = new double[len];
                double max = Double.NEGATIVE_INFINITY;
                for (int p = 0; p < len; p++) {
                    double dot = 0;
                    for (int i = 0; i < headDim; i++) {
                        dot += (double) q.getAtIndex(ACT, qBase + i) * keys.getAtIndex(ACT, (first + p) * kvDim + kvh * headDim + i);
                    }
                    scores[p] = dot / Math.sqrt(headDim);
                    max = Math.max(max, scores[p]);
                }
                double sum = 0;
                for (int p = 0; p < len; p++) {
                    scores[p] = Math.exp(scores[p] - max);
                    sum += scores[p];
                }
                for (int i = 0; i < headDim; i++) {
                    double acc = 0;
                    for (int p = 0; p < len; p++) {
                        acc += scores[p] * values.getAtIndex(ACT, (first + p) * kvDim + kvh * headDim + i);
                    }
                    out.setAtIndex(ACT, qBase + i, (float) (acc / sum));
                }
            }
        }
    }

    @Override
    public void swiglu(MemorySegment gate, MemorySegment up, long n, MemorySegment out) {
        for (long i = 0; i < n; i++) {
            double g = gate.getAtIndex(ACT, i);
            out.setAtIndex(ACT, i, (float) (g / (1 + Math.exp(-g)) * up.getAtIndex(ACT, i)));
        }
    }

    @Override
    public void add(MemorySegment a, MemorySegment b, long n, MemorySegment out) {
        for (long i = 0; i < n; i++) {
            out.setAtIndex(ACT, i, a.getAtIndex(ACT, i) + b.getAtIndex(ACT, i));
        }
    }

    @Override
    public void close() {}
}
