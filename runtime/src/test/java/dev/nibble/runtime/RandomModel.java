package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import dev.nibble.formats.gguf.GgufMetadata;
import dev.nibble.formats.gguf.GgufTensorInfo;
import dev.nibble.formats.gguf.GgufWriter;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.UnaryOperator;

/** Writes small Llama GGUF files with seeded random F32 weights, for tests of the model plumbing. */
final class RandomModel {

    static final int DIM = 64, FFN = 96, LAYERS = 2, HEADS = 4, VOCAB = 97, CONTEXT = 160;

    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private RandomModel() {}

    /** The tensors of a model with {@code kvHeads} KV heads: name → (dims, values). */
    static Map<String, Object[]> tensors(int kvHeads, long seed) {
        Random r = new Random(seed);
        int kvDim = DIM / HEADS * kvHeads;
        Map<String, Object[]> t = new LinkedHashMap<>();
        t.put("token_embd.weight", matrix(r, DIM, VOCAB, 1.0));
        for (int l = 0; l < LAYERS; l++) {
            String p = "blk." + l + ".";
            t.put(p + "attn_norm.weight", norm(r, DIM));
            t.put(p + "attn_q.weight", matrix(r, DIM, DIM, 0.3));
            t.put(p + "attn_k.weight", matrix(r, DIM, kvDim, 0.3));
            t.put(p + "attn_v.weight", matrix(r, DIM, kvDim, 0.3));
            t.put(p + "attn_output.weight", matrix(r, DIM, DIM, 0.15));
            t.put(p + "ffn_norm.weight", norm(r, DIM));
            t.put(p + "ffn_gate.weight", matrix(r, DIM, FFN, 0.2));
            t.put(p + "ffn_up.weight", matrix(r, DIM, FFN, 0.2));
            t.put(p + "ffn_down.weight", matrix(r, FFN, DIM, 0.15));
        }
        t.put("output_norm.weight", norm(r, DIM));
        t.put("output.weight", matrix(r, DIM, VOCAB, 0.3));
        return t;
    }

    static GgufMetadata.Builder metadata(int kvHeads) {
        return GgufMetadata.builder()
                .putString("general.architecture", "llama")
                .putU32("llama.context_length", CONTEXT)
                .putU32("llama.embedding_length", DIM)
                .putU32("llama.block_count", LAYERS)
                .putU32("llama.feed_forward_length", FFN)
                .putU32("llama.attention.head_count", HEADS)
                .putU32("llama.attention.head_count_kv", kvHeads)
                .putF32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
                .putF32("llama.rope.freq_base", 10000f)
                .putU32("llama.vocab_size", VOCAB)
                .putU32("tokenizer.ggml.eos_token_id", 2);
    }

    /** Writes {@code tensors} (edited by {@code edit}) with {@code metadata} to {@code out}. */
    static Path write(Path out, GgufMetadata metadata, Map<String, Object[]> tensors) throws IOException {
        List<GgufTensorInfo> infos = new ArrayList<>();
        for (Map.Entry<String, Object[]> e : tensors.entrySet()) {
            infos.add(new GgufTensorInfo(e.getKey(), GgmlType.F32, (long[]) e.getValue()[0]));
        }
        try (Arena arena = Arena.ofConfined(); GgufWriter w = GgufWriter.create(out, metadata, infos, true)) {
            for (Object[] t : tensors.values()) {
                float[] v = (float[]) t[1];
                MemorySegment s = arena.allocate((long) v.length * 4);
                for (int i = 0; i < v.length; i++) {
                    s.setAtIndex(F32, i, v[i]);
                }
                w.write(s);
            }
            w.finish();
        }
        return out;
    }

    static Path write(Path out, int kvHeads, long seed, UnaryOperator<Map<String, Object[]>> edit) throws IOException {
        return write(out, metadata(kvHeads).build(), edit.apply(tensors(kvHeads, seed)));
    }

    private static Object[] matrix(Random r, int cols, int rows, double scale) {
        float[] v = new float[cols * rows];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (r.nextGaussian() * scale / Math.sqrt(cols) * 4);
        }
        return new Object[] {new long[] {cols, rows}, v};
    }

    private static Object[] norm(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (0.8 + 0.4 * r.nextDouble());
        }
        return new Object[] {new long[] {n}, v};
    }

    /** {@code n} seeded random token ids. */
    static int[] tokens(int n, long seed) {
        return new Random(seed).ints(n, 0, VOCAB).toArray();
    }
}
