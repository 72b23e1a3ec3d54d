package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The forward pass's plumbing (batching, KV cache, GQA, tied embeddings, RoPE scaling, file checks) on random models. */
class ModelTest {

    @TempDir
    Path dir;

    /** The backend under test; {@link ModelOnCpuTest} runs the same tests on the native kernels. */
    Backend backend() {
        return new ReferenceBackend();
    }

    private static float[] oneAtATime(Model m, int[] tokens) throws IOException {
        int vocab = m.config().vocabSize();
        float[] all = new float[tokens.length * vocab];
        try (KvCache cache = m.newCache(tokens.length)) {
            for (int i = 0; i < tokens.length; i++) {
                System.arraycopy(m.forward(new int[] {tokens[i]}, cache, false), 0, all, i * vocab, vocab);
            }
        }
        return all;
    }

    @Test
    void batchedPromptEqualsOneTokenAtATimeAcrossBatchBoundaries() throws IOException {
        for (int kvHeads : new int[] {4, 2, 1}) {
            Path file = RandomModel.write(dir.resolve("m" + kvHeads + ".gguf"), kvHeads, 11 + kvHeads, t -> t);
            try (Backend b = backend(); Model m = Model.load(file, b); KvCache cache = m.newCache(RandomModel.CONTEXT)) {
                int[] tokens = RandomModel.tokens(m.batch() + 9, 5);
                float[] batched = m.forward(tokens, cache, true);
                assertEquals(tokens.length, cache.size());
                float[] single = oneAtATime(m, tokens);
                double err = TinyLlamaRefs.relativeError(batched, single);
                assertTrue(err < 1e-5, kvHeads + " KV heads: batched vs one at a time differ by " + err);
                float[] last = Arrays.copyOfRange(batched, (tokens.length - 1) * RandomModel.VOCAB, batched.length);
                cache.clear();
                assertArrayEquals(last, m.forward(tokens, cache, false), 1e-4f, "last-token logits");
            }
        }
    }

    @Test
    void continuingACacheEqualsRunningEverythingAtOnce() throws IOException {
        Path file = RandomModel.write(dir.resolve("m.gguf"), 2, 3, t -> t);
        int[] tokens = RandomModel.tokens(30, 8);
        try (Backend b = backend(); Model m = Model.load(file, b); KvCache cache = m.newCache(64)) {
            float[] whole = m.forward(tokens, cache, false);
            cache.clear();
            m.forward(Arrays.copyOf(tokens, 17), cache, false);
            float[] split = m.forward(Arrays.copyOfRange(tokens, 17, 30), cache, false);
            assertArrayEquals(whole, split, 1e-4f);
        }
    }

    @Test
    void groupedHeadsEqualTheModelWithEachKvHeadRepeated() throws IOException {
        // Two KV heads shared by four query heads behave as four KV heads where heads 0,1 copy KV head 0 and 2,3 KV head 1.
        Map<String, Object[]> gqa = RandomModel.tensors(2, 21);
        Map<String, Object[]> full = new LinkedHashMap<>(gqa);
        int headDim = RandomModel.DIM / RandomModel.HEADS;
        for (String name : gqa.keySet()) {
            if (name.endsWith("attn_k.weight") || name.endsWith("attn_v.weight")) {
                float[] v = (float[]) gqa.get(name)[1];
                float[] repeated = new float[RandomModel.DIM * RandomModel.DIM];
                for (int row = 0; row < RandomModel.DIM; row++) {
                    int head = row / headDim, src = (head / 2) * headDim + row % headDim;
                    System.arraycopy(v, src * RandomModel.DIM, repeated, row * RandomModel.DIM, RandomModel.DIM);
                }
                full.put(name, new Object[] {new long[] {RandomModel.DIM, RandomModel.DIM}, repeated});
            }
        }
        Path a = RandomModel.write(dir.resolve("gqa.gguf"), RandomModel.metadata(2).build(), gqa);
        Path b = RandomModel.write(dir.resolve("full.gguf"), RandomModel.metadata(4).build(), full);
        int[] tokens = RandomModel.tokens(12, 4);
        try (Backend be = backend(); Model ma = Model.load(a, be); Model mb = Model.load(b, be);
             KvCache ca = ma.newCache(16); KvCache cb = mb.newCache(16)) {
            assertArrayEquals(mb.forward(tokens, cb, true), ma.forward(tokens, ca, true), 1e-4f);
        }
    }

    @Test
    void tiedEmbeddingsUseTheTokenTableAsOutput() throws IOException {
        Map<String, Object[]> tied = RandomModel.tensors(2, 9);
        tied.remove("output.weight");
        Map<String, Object[]> untied = new LinkedHashMap<>(tied);
        untied.put("output.weight", tied.get("token_embd.weight"));
        Path a = RandomModel.write(dir.resolve("tied.gguf"), RandomModel.metadata(2).build(), tied);
        Path b = RandomModel.write(dir.resolve("untied.gguf"), RandomModel.metadata(2).build(), untied);
        int[] tokens = RandomModel.tokens(7, 1);
        try (Backend be = backend(); Model ma = Model.load(a, be); Model mb = Model.load(b, be);
             KvCache ca = ma.newCache(8); KvCache cb = mb.newCache(8)) {
            assertEquals("token_embd.weight", ma.weights().output().name());
            assertArrayEquals(mb.forward(tokens, cb, true), ma.forward(tokens, ca, true), 1e-5f);
        }
    }

    @Test
    void ropeFrequencyFactorsActLikeLinearScalingWhenAllEqual() throws IOException {
        // Llama 3.1's rope_freqs divides every frequency; all equal to 4 is the same as linear scaling by 4.
        Map<String, Object[]> withFactors = RandomModel.tensors(2, 13);
        float[] fours = new float[RandomModel.DIM / RandomModel.HEADS / 2];
        Arrays.fill(fours, 4f);
        withFactors.put("rope_freqs.weight", new Object[] {new long[] {fours.length}, fours});
        Path a = RandomModel.write(dir.resolve("factors.gguf"), RandomModel.metadata(2).build(), withFactors);
        Path b = RandomModel.write(dir.resolve("linear.gguf"), RandomModel.metadata(2)
                .putString("llama.rope.scaling.type", "linear").putF32("llama.rope.scaling.factor", 4f).build(),
                RandomModel.tensors(2, 13));
        Path c = RandomModel.write(dir.resolve("plain.gguf"), 2, 13, t -> t);
        int[] tokens = RandomModel.tokens(20, 2);
        try (Backend be = backend(); Model ma = Model.load(a, be); Model mb = Model.load(b, be); Model mc = Model.load(c, be);
             KvCache ca = ma.newCache(20); KvCache cb = mb.newCache(20); KvCache cc = mc.newCache(20)) {
            float[] factors = ma.forward(tokens, ca, true);
            assertArrayEquals(mb.forward(tokens, cb, true), factors, 1e-4f);
            float[] plain = mc.forward(tokens, cc, true);
            assertTrue(TinyLlamaRefs.relativeError(plain, factors) > 1e-3, "scaling must change the result");
        }
    }

    @Test
    void aWrongShapeIsRefusedNamingTheTensor() throws IOException {
        Path file = RandomModel.write(dir.resolve("bad.gguf"), 2, 1, t -> {
            t.put("blk.1.attn_k.weight", new Object[] {new long[] {RandomModel.DIM, 8}, new float[RandomModel.DIM * 8]});
            return t;
        });
        try (Backend be = backend()) {
            FormatException e = assertThrows(FormatException.class, () -> Model.load(file, be));
            assertTrue(e.getMessage().contains("blk.1.attn_k.weight") && e.getMessage().contains("[64, 32]"), e.getMessage());
        }
    }

    @Test
    void aMissingTensorIsRefusedByName() throws IOException {
        Path file = RandomModel.write(dir.resolve("missing.gguf"), 2, 1, t -> {
            t.remove("blk.0.ffn_up.weight");
            return t;
        });
        try (Backend be = backend()) {
            FormatException e = assertThrows(FormatException.class, () -> Model.load(file, be));
            assertTrue(e.getMessage().contains("blk.0.ffn_up.weight") && e.getMessage().contains("missing"), e.getMessage());
        }
    }

    @Test
    void moreTokensThanTheCacheHoldsAreRefused() throws IOException {
        Path file = RandomModel.write(dir.resolve("m.gguf"), 2, 1, t -> t);
        try (Backend be = backend(); Model m = Model.load(file, be); KvCache cache = m.newCache(10)) {
            m.forward(RandomModel.tokens(6, 1), cache, false);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> m.forward(RandomModel.tokens(5, 2), cache, false));
            assertTrue(e.getMessage().contains("4 free positions"), e.getMessage());
            assertEquals(6, cache.size(), "a refused call leaves the cache as it was");
            assertThrows(IllegalArgumentException.class, () -> m.forward(new int[] {RandomModel.VOCAB}, cache, false));
        }
    }

    @Test
    void aFileTruncatedAfterLoadingIsReportedNotCrashed() throws IOException {
        Path file = RandomModel.write(dir.resolve("m.gguf"), 2, 1, t -> t);
        try (Backend be = backend(); Model m = Model.load(file, be); KvCache cache = m.newCache(8)) {
            m.forward(RandomModel.tokens(3, 1), cache, false);
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
                ch.truncate(Files.size(file) / 2);
            }
            IOException e = assertThrows(IOException.class, () -> m.forward(new int[] {1}, cache, false));
            assertTrue(e.getMessage().contains("changed while in use") && e.getMessage().contains(file.toString()),
                    e.getMessage());
        }
    }
}
