package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A NaN or an infinity in the weights stops the pass with the layer it appeared in, instead of being sampled. */
class NonFiniteModelTest {

    @TempDir
    Path dir;

    private String failure(String tensor, float value) throws IOException {
        Path file = RandomModel.write(dir.resolve(tensor + ".gguf"), 2, 3, t -> {
            ((float[]) t.get(tensor)[1])[5] = value;
            return t;
        });
        try (CpuBackend backend = new CpuBackend(1); Model model = Model.load(file, backend);
             KvCache cache = model.newCache(32)) {
            NonFiniteException e = assertThrows(NonFiniteException.class,
                    () -> model.forward(RandomModel.tokens(6, 1), cache, false));
            assertEquals(0, cache.size(), "nothing was added to the cache");
            return e.getMessage();
        }
    }

    @Test
    void aNanInTheSecondLayerIsNamed() throws IOException {
        String m = failure("blk.1.ffn_up.weight", Float.NaN);
        assertTrue(m.contains("the model produced NaN/Inf at layer 1 of 2"), m);
        assertTrue(m.contains("blk.1.ffn_up.weight.gguf"), "names the file: " + m);
    }

    @Test
    void anInfinityInTheFirstLayerIsNamed() throws IOException {
        String m = failure("blk.0.attn_q.weight", Float.POSITIVE_INFINITY);
        assertTrue(m.contains("at layer 0 of 2"), m);
    }

    @Test
    void aNanInTheOutputMatrixIsNamedAsTheOutput() throws IOException {
        String m = failure("output.weight", Float.NaN);
        assertTrue(m.contains("in its output"), m);
    }

    /** A vocabulary of another size than the model's rows is refused by every path that tokenizes (perplexity too). */
    @Test
    void aTokenizerOfAnotherSizeIsRefused() throws IOException {
        Path file = RandomModel.write(dir.resolve("v.gguf"), 2, 3, t -> t);
        try (CpuBackend backend = new CpuBackend(1); Model model = Model.load(file, backend)) {
            model.checkVocabulary(RandomModel.VOCAB);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> model.checkVocabulary(RandomModel.VOCAB - 1));
            assertTrue(e.getMessage().contains("the tokenizer has 96 tokens but the model 97"), e.getMessage());
        }
    }
}
