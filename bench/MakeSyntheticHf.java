import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Writes a synthetic Hugging Face checkpoint shaped like meta-llama/Llama-2-7b-hf (real tensor names, shapes, fp16,
 * two safetensors shards with an index, the old rotary inv_freq buffers) with random weights, for timing
 * {@code nibble convert}. Run from the repository root: {@code java bench/MakeSyntheticHf.java OUT_DIR [layers]}.
 * The tokenizer is test-data/tokenizers/llama2 (Llama 2's own 32,000-piece vocabulary).
 */
public class MakeSyntheticHf {

    record Tensor(String name, String dtype, long[] shape) {
        long bytes() {
            long n = dtype.equals("F32") ? 4 : 2;
            for (long d : shape) {
                n *= d;
            }
            return n;
        }
    }

    public static void main(String[] args) throws IOException {
        Path out = Path.of(args[0]);
        int layers = args.length > 1 ? Integer.parseInt(args[1]) : 32;
        int hidden = 4096, ff = 11008, vocab = 32000;
        Files.createDirectories(out);
        List<Tensor> tensors = new ArrayList<>();
        tensors.add(new Tensor("model.embed_tokens.weight", "F16", new long[] {vocab, hidden}));
        for (int i = 0; i < layers; i++) {
            String p = "model.layers." + i + ".";
            tensors.add(new Tensor(p + "self_attn.q_proj.weight", "F16", new long[] {hidden, hidden}));
            tensors.add(new Tensor(p + "self_attn.k_proj.weight", "F16", new long[] {hidden, hidden}));
            tensors.add(new Tensor(p + "self_attn.v_proj.weight", "F16", new long[] {hidden, hidden}));
            tensors.add(new Tensor(p + "self_attn.o_proj.weight", "F16", new long[] {hidden, hidden}));
            tensors.add(new Tensor(p + "self_attn.rotary_emb.inv_freq", "F32", new long[] {64}));
            tensors.add(new Tensor(p + "mlp.gate_proj.weight", "F16", new long[] {ff, hidden}));
            tensors.add(new Tensor(p + "mlp.up_proj.weight", "F16", new long[] {ff, hidden}));
            tensors.add(new Tensor(p + "mlp.down_proj.weight", "F16", new long[] {hidden, ff}));
            tensors.add(new Tensor(p + "input_layernorm.weight", "F16", new long[] {hidden}));
            tensors.add(new Tensor(p + "post_attention_layernorm.weight", "F16", new long[] {hidden}));
        }
        tensors.add(new Tensor("model.norm.weight", "F16", new long[] {hidden}));
        tensors.add(new Tensor("lm_head.weight", "F16", new long[] {vocab, hidden}));

        // 64 MiB of Gaussian fp16 (std 0.02), reused from pseudo-random offsets: the bytes only need to look like weights
        SplittableRandom random = new SplittableRandom(42);
        ByteBuffer pool = ByteBuffer.allocateDirect(64 << 20).order(ByteOrder.LITTLE_ENDIAN);
        while (pool.hasRemaining()) {
            double u = random.nextDouble(), v = random.nextDouble();
            double g = Math.sqrt(-2 * Math.log(1 - u)) * Math.cos(2 * Math.PI * v);
            pool.putShort(Float.floatToFloat16((float) (0.02 * g)));
        }

        int split = tensors.size() * 3 / 4;
        List<List<Tensor>> shards = List.of(tensors.subList(0, split), tensors.subList(split, tensors.size()));
        Map<String, String> weightMap = new LinkedHashMap<>();
        for (int s = 0; s < shards.size(); s++) {
            String name = String.format(Locale.ROOT, "model-%05d-of-%05d.safetensors", s + 1, shards.size());
            writeShard(out.resolve(name), shards.get(s), pool, random);
            for (Tensor t : shards.get(s)) {
                weightMap.put(t.name(), name);
            }
        }
        StringBuilder index = new StringBuilder("{\"metadata\": {}, \"weight_map\": {");
        weightMap.forEach((k, v) -> index.append('"').append(k).append("\": \"").append(v).append("\", "));
        index.setLength(index.length() - 2);
        index.append("}}\n");
        Files.writeString(out.resolve("model.safetensors.index.json"), index);
        Files.writeString(out.resolve("config.json"), String.format(Locale.ROOT, """
                {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": %d,
                 "intermediate_size": %d, "num_attention_heads": 32, "num_key_value_heads": 32,
                 "num_hidden_layers": %d, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05,
                 "rope_theta": 10000.0, "rope_scaling": null, "tie_word_embeddings": false, "vocab_size": %d,
                 "torch_dtype": "float16", "bos_token_id": 1, "eos_token_id": 2}
                """, hidden, ff, layers, vocab));
        Path tokenizer = Path.of("test-data/tokenizers/llama2");
        for (String f : List.of("tokenizer.json", "tokenizer_config.json")) {
            Files.copy(tokenizer.resolve(f), out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        }
        long total = tensors.stream().mapToLong(Tensor::bytes).sum();
        System.out.printf(Locale.ROOT, "wrote %s: %d tensors, %.2f GB%n", out, tensors.size(), total / 1e9);
    }

    private static void writeShard(Path file, List<Tensor> tensors, ByteBuffer pool, SplittableRandom random)
            throws IOException {
        StringBuilder header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        long offset = 0;
        for (Tensor t : tensors) {
            StringBuilder shape = new StringBuilder();
            for (long d : t.shape()) {
                shape.append(shape.isEmpty() ? "" : ",").append(d);
            }
            header.append(String.format(Locale.ROOT, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%d,%d]}",
                    t.name(), t.dtype(), shape, offset, offset + t.bytes()));
            offset += t.bytes();
        }
        header.append('}');
        while (header.length() % 8 != 0) {
            header.append(' ');
        }
        byte[] json = header.toString().getBytes(StandardCharsets.UTF_8);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, json.length));
            ch.write(ByteBuffer.wrap(json));
            for (Tensor t : tensors) {
                if (t.dtype().equals("F32")) {
                    ByteBuffer inv = ByteBuffer.allocate((int) t.bytes()).order(ByteOrder.LITTLE_ENDIAN);
                    for (int i = 0; i < t.bytes() / 4; i++) {
                        inv.putFloat((float) (1 / Math.pow(10000, 2.0 * i / 128)));
                    }
                    ch.write(inv.flip());
                    continue;
                }
                long left = t.bytes();
                while (left > 0) {
                    int start = random.nextInt(pool.capacity() / 2) & ~1;
                    int n = (int) Math.min(left, pool.capacity() - start);
                    ByteBuffer slice = pool.duplicate().position(start).limit(start + n);
                    while (slice.hasRemaining()) {
                        ch.write(slice);
                    }
                    left -= n;
                }
            }
        }
    }
}
