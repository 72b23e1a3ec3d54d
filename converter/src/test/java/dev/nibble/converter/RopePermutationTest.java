package dev.nibble.converter;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.BitSet;
import org.junit.jupiter.api.Test;

class RopePermutationTest {

    /** A literal transcription of the reshape (heads, 2, d/2) -> swap axes 1,2 -> reshape, on row indices. */
    private static long[] reshapeSwapReference(int heads, int headDim) {
        int half = headDim / 2;
        long[] out = new long[heads * headDim];
        int o = 0;
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < half; i++) {
                for (int j = 0; j < 2; j++) {
                    out[o++] = (long) h * headDim + (long) j * half + i;
                }
            }
        }
        return out;
    }

    @Test
    void matchesReshapeSwapReshapeForManyShapes() {
        int[][] shapes = {{1, 2}, {1, 6}, {2, 32}, {8, 32}, {3, 10}, {5, 128}};
        for (int[] s : shapes) {
            RopePermutation p = new RopePermutation(s[0], s[1]);
            long[] ref = reshapeSwapReference(s[0], s[1]);
            for (int r = 0; r < ref.length; r++) {
                assertEquals(ref[r], p.sourceRow(r), "heads " + s[0] + " dim " + s[1] + " row " + r);
            }
        }
    }

    @Test
    void knownRowsForOneHeadOfEight() {
        RopePermutation p = new RopePermutation(1, 8);
        long[] expected = {0, 4, 1, 5, 2, 6, 3, 7};
        for (int r = 0; r < 8; r++) {
            assertEquals(expected[r], p.sourceRow(r));
        }
    }

    @Test
    void inverseUndoesPermutationAndIsABijection() {
        RopePermutation p = new RopePermutation(4, 64);
        BitSet seen = new BitSet();
        for (long r = 0; r < p.rows(); r++) {
            long src = p.sourceRow(r);
            seen.set((int) src);
            assertEquals(r, p.ggufRow(src));
        }
        assertEquals(p.rows(), seen.cardinality());
    }
}
