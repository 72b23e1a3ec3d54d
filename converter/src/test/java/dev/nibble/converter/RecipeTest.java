package dev.nibble.converter;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.nibble.formats.GgmlType;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class RecipeTest {

    private static HfModelConfig config(int layers, int heads, int kvHeads, boolean tied) {
        return new HfModelConfig("LlamaForCausalLM", 4096, layers, heads, kvHeads, 128, 11008, 1e-5, 10000, null, 4096,
                tied, 32000);
    }

    private static final long[] SQUARE = {4096, 4096};

    @Test
    void q4KmGivesQ6KToTheLayersLlamaCppPicksFor32Layers() {
        HfModelConfig c = config(32, 32, 32, false);
        // llama.cpp's Llama-2-7B Q4_K_M: first and last four layers and every third from layer 6
        List<Integer> expected = List.of(0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31);
        List<Integer> v = new ArrayList<>();
        List<Integer> down = new ArrayList<>();
        for (int i = 0; i < 32; i++) {
            if (Recipe.Q4_K_M.tensorType("blk." + i + ".attn_v.weight", SQUARE, c) == GgmlType.Q6_K) {
                v.add(i);
            }
            if (Recipe.Q4_K_M.tensorType("blk." + i + ".ffn_down.weight", new long[] {11008, 4096}, c) == GgmlType.Q6_K) {
                down.add(i);
            }
            assertEquals(GgmlType.Q4_K, Recipe.Q4_K_M.tensorType("blk." + i + ".attn_q.weight", SQUARE, c));
            assertEquals(GgmlType.Q4_K, Recipe.Q4_K_M.tensorType("blk." + i + ".ffn_up.weight", new long[] {4096, 11008}, c));
            assertEquals(GgmlType.F32, Recipe.Q4_K_M.tensorType("blk." + i + ".attn_norm.weight", new long[] {4096}, c));
        }
        assertEquals(expected, v);
        assertEquals(expected, down);
        assertEquals(GgmlType.Q6_K, Recipe.Q4_K_M.tensorType("output.weight", new long[] {4096, 32000}, c));
        assertEquals(GgmlType.Q4_K, Recipe.Q4_K_M.tensorType("token_embd.weight", new long[] {4096, 32000}, c));
    }

    @Test
    void tiedEmbeddingsGetTheOutputType() {
        HfModelConfig c = config(32, 32, 32, true);
        assertEquals(GgmlType.Q6_K, Recipe.Q4_0.tensorType("token_embd.weight", new long[] {4096, 32000}, c));
        assertEquals(GgmlType.Q8_0, Recipe.Q8_0.tensorType("token_embd.weight", new long[] {4096, 32000}, c));
        assertEquals(GgmlType.Q4_0, Recipe.Q4_0.tensorType("token_embd.weight", new long[] {4096, 32000}, config(32, 32, 32, false)));
    }

    @Test
    void q4_0AndIq4NlAndNf4KeepQ6KOutput() {
        HfModelConfig c = config(32, 32, 32, false);
        for (Recipe r : List.of(Recipe.Q4_0, Recipe.IQ4_NL, Recipe.NF4)) {
            assertEquals(GgmlType.Q6_K, r.tensorType("output.weight", new long[] {4096, 32000}, c), r.name());
            assertEquals(r.defaultType(), r.tensorType("blk.5.ffn_gate.weight", new long[] {4096, 11008}, c), r.name());
        }
        assertEquals(GgmlType.Q8_0, Recipe.Q8_0.tensorType("output.weight", new long[] {4096, 32000}, c));
    }

    @Test
    void floatRecipesKeepEveryMatrixInTheirTypeAndNormsInF32() {
        HfModelConfig c = config(32, 32, 32, false);
        for (Recipe r : List.of(Recipe.F16, Recipe.BF16, Recipe.F32)) {
            assertEquals(r.defaultType(), r.tensorType("output.weight", new long[] {4096, 32000}, c));
            assertEquals(r.defaultType(), r.tensorType("blk.0.attn_v.weight", new long[] {33, 7}, c));
            assertEquals(GgmlType.F32, r.tensorType("output_norm.weight", new long[] {4096}, c));
        }
    }

    @Test
    void seventyBShapedModelsGiveEveryAttnVMoreBits() {
        HfModelConfig c = config(80, 64, 8, false);
        for (int i = 0; i < 80; i++) {
            assertEquals(GgmlType.Q6_K, Recipe.Q4_K_M.tensorType("blk." + i + ".attn_v.weight", new long[] {8192, 1024}, c));
        }
        assertEquals(GgmlType.Q4_0, Recipe.Q4_0.tensorType("blk.40.attn_v.weight", new long[] {8192, 1024}, c));
    }

    @Test
    void iq4NlBumpsGroupedAttnVAndFirstEighthFfnDown() {
        HfModelConfig grouped = config(32, 32, 8, false);
        assertEquals(GgmlType.Q6_K, Recipe.IQ4_NL.tensorType("blk.7.attn_v.weight", new long[] {4096, 1024}, grouped));
        assertEquals(GgmlType.IQ4_NL, Recipe.IQ4_NL.tensorType("blk.7.attn_v.weight", SQUARE, config(32, 32, 32, false)));
        assertEquals(GgmlType.Q6_K, Recipe.IQ4_NL.tensorType("blk.3.ffn_down.weight", new long[] {11008, 4096}, grouped));
        assertEquals(GgmlType.IQ4_NL, Recipe.IQ4_NL.tensorType("blk.4.ffn_down.weight", new long[] {11008, 4096}, grouped));
    }

    @Test
    void rowLengthsOffTheBlockFallBackWithoutFailing() {
        HfModelConfig c = config(32, 32, 32, false);
        long[] rows320 = {320, 64};
        long[] rows300 = {300, 64};
        assertEquals(GgmlType.Q8_0, Recipe.Q4_K_M.tensorType("blk.1.attn_q.weight", rows320, c));
        assertEquals(GgmlType.Q8_0, Recipe.Q4_K_M.tensorType("blk.0.attn_v.weight", rows320, c));
        assertEquals(GgmlType.Q8_0, Recipe.Q4_0.tensorType("output.weight", rows320, c));
        assertEquals(GgmlType.IQ4_NL, Recipe.NF4.tensorType("blk.1.attn_q.weight", rows320, c));
        assertEquals(GgmlType.Q4_0, Recipe.Q4_0.tensorType("blk.1.attn_q.weight", rows320, c));
        for (Recipe r : List.of(Recipe.Q4_K_M, Recipe.Q4_0, Recipe.Q8_0, Recipe.IQ4_NL, Recipe.NF4)) {
            assertEquals(GgmlType.F16, r.tensorType("blk.1.attn_q.weight", rows300, c), r.name());
            assertEquals(GgmlType.F16, r.tensorType("output.weight", rows300, c), r.name());
        }
    }

    @Test
    void fileTypesAreLlamaCppFtypeValues() {
        assertEquals(15, Recipe.Q4_K_M.fileType());
        assertEquals(2, Recipe.Q4_0.fileType());
        assertEquals(7, Recipe.Q8_0.fileType());
        assertEquals(1, Recipe.F16.fileType());
        assertEquals(32, Recipe.BF16.fileType());
        assertEquals(0, Recipe.F32.fileType());
        assertEquals(25, Recipe.IQ4_NL.fileType());
    }

    @Test
    void cliNamesParseCaseInsensitivelyAndUnknownOnesAreListed() {
        assertEquals(Recipe.Q4_K_M, Recipe.fromCliName("Q4_K_M"));
        assertEquals(Recipe.IQ4_NL, Recipe.fromCliName("iq4_nl"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Recipe.fromCliName("q5_k_m"));
        assertEquals(true, e.getMessage().contains("q4_k_m, q4_0"));
    }
}
