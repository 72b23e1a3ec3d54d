import dev.nibble.formats.GgmlType;
import dev.nibble.formats.gguf.GgufMetadata;
import dev.nibble.formats.gguf.GgufTensorInfo;
import dev.nibble.formats.gguf.GgufWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Writes a Llama-2-7B-shaped Q4_0 GGUF (3.6 GiB of real, non-sparse tensor data with random bytes) for timing
 * {@code nibble inspect}. Usage: java -cp formats/target/classes bench/MakeLargeGguf.java OUT.gguf
 */
public class MakeLargeGguf {
    public static void main(String[] args) throws Exception {
        int dim = 4096, ffn = 11008, layers = 32, vocab = 32000;
        List<GgufTensorInfo> infos = new ArrayList<>();
        infos.add(new GgufTensorInfo("token_embd.weight", GgmlType.Q4_0, new long[] {dim, vocab}));
        for (int l = 0; l < layers; l++) {
            String p = "blk." + l + ".";
            infos.add(new GgufTensorInfo(p + "attn_norm.weight", GgmlType.F32, new long[] {dim}));
            for (String n : List.of("attn_q", "attn_k", "attn_v", "attn_output")) {
                infos.add(new GgufTensorInfo(p + n + ".weight", GgmlType.Q4_0, new long[] {dim, dim}));
            }
            infos.add(new GgufTensorInfo(p + "ffn_norm.weight", GgmlType.F32, new long[] {dim}));
            infos.add(new GgufTensorInfo(p + "ffn_gate.weight", GgmlType.Q4_0, new long[] {dim, ffn}));
            infos.add(new GgufTensorInfo(p + "ffn_up.weight", GgmlType.Q4_0, new long[] {dim, ffn}));
            infos.add(new GgufTensorInfo(p + "ffn_down.weight", GgmlType.Q4_0, new long[] {ffn, dim}));
        }
        infos.add(new GgufTensorInfo("output_norm.weight", GgmlType.F32, new long[] {dim}));
        infos.add(new GgufTensorInfo("output.weight", GgmlType.Q6_K, new long[] {dim, vocab}));
        List<String> tokens = new ArrayList<>();
        for (int i = 0; i < vocab; i++) {
            tokens.add("tok" + i);
        }
        GgufMetadata metadata = GgufMetadata.builder()
                .putString("general.architecture", "llama").putString("general.name", "synthetic-7b")
                .putU32("llama.block_count", layers).putU32("llama.embedding_length", dim)
                .putStringArray("tokenizer.ggml.tokens", tokens).build();
        Random random = new Random(1);
        try (Arena arena = Arena.ofConfined(); GgufWriter w = GgufWriter.create(Path.of(args[0]), metadata, infos, true)) {
            MemorySegment noise = arena.allocate(1 << 24);
            for (long i = 0; i < noise.byteSize(); i += 8) {
                noise.set(ValueLayout.JAVA_LONG_UNALIGNED, i, random.nextLong());
            }
            for (GgufTensorInfo info : infos) {
                for (long done = 0; done < info.byteSize(); ) {
                    long n = Math.min(noise.byteSize(), info.byteSize() - done);
                    w.write(noise.asSlice(0, n));
                    done += n;
                }
            }
            w.finish();
        }
    }
}
