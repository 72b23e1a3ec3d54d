package dev.nibble.converter;

import dev.nibble.testing.TestData;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;

/**
 * Writes small random Llama models in Hugging Face layout for tests: config.json, safetensors weights (fp16 by default,
 * optionally sharded) and a copy of the tiny model's tokenizer files.
 */
final class SyntheticModel {

    /** Model shape; {@code vocab} must be at least the tiny tokenizer's 2048 tokens. */
    record Shape(int hidden, int layers, int heads, int kvHeads, int intermediate, int vocab, boolean tied) {
        int headDim() {
            return hidden / heads;
        }
    }

    /** A tensor to write: name, safetensors dtype, shape and raw little-endian bytes. */
    record Tensor(String name, String dtype, long[] shape, byte[] data) {
        Tensor withName(String newName) {
            return new Tensor(newName, dtype, shape, data);
        }

        Tensor withDtype(String newDtype) {
            return new Tensor(name, newDtype, shape, data);
        }
    }

    private SyntheticModel() {
    }

    /** The tensors of a Llama model of {@code shape} with seeded Gaussian fp16 weights (std 0.02, norms near 1). */
    static List<Tensor> llamaTensors(Shape s, long seed) {
        return llamaTensors(s, seed, "F16");
    }

    /** Like {@link #llamaTensors(Shape, long)} in safetensors dtype {@code dtype}: F16, BF16 or F32. */
    static List<Tensor> llamaTensors(Shape s, long seed, String dtype) {
        Random random = new Random(seed);
        int qRows = s.heads() * s.headDim();
        int kvRows = s.kvHeads() * s.headDim();
        List<Tensor> out = new ArrayList<>();
        out.add(tensor(dtype, "model.embed_tokens.weight", random, false, s.vocab(), s.hidden()));
        for (int i = 0; i < s.layers(); i++) {
            String p = "model.layers." + i + ".";
            out.add(tensor(dtype, p + "input_layernorm.weight", random, true, s.hidden()));
            out.add(tensor(dtype, p + "self_attn.q_proj.weight", random, false, qRows, s.hidden()));
            out.add(tensor(dtype, p + "self_attn.k_proj.weight", random, false, kvRows, s.hidden()));
            out.add(tensor(dtype, p + "self_attn.v_proj.weight", random, false, kvRows, s.hidden()));
            out.add(tensor(dtype, p + "self_attn.o_proj.weight", random, false, s.hidden(), qRows));
            out.add(tensor(dtype, p + "post_attention_layernorm.weight", random, true, s.hidden()));
            out.add(tensor(dtype, p + "mlp.gate_proj.weight", random, false, s.intermediate(), s.hidden()));
            out.add(tensor(dtype, p + "mlp.up_proj.weight", random, false, s.intermediate(), s.hidden()));
            out.add(tensor(dtype, p + "mlp.down_proj.weight", random, false, s.hidden(), s.intermediate()));
        }
        out.add(tensor(dtype, "model.norm.weight", random, true, s.hidden()));
        if (!s.tied()) {
            out.add(tensor(dtype, "lm_head.weight", random, false, s.vocab(), s.hidden()));
        }
        return out;
    }

    static Tensor tensor(String dtype, String name, Random random, boolean norm, long... shape) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        ByteBuffer b = ByteBuffer.allocate((int) ((dtype.equals("F32") ? 4 : 2) * n)).order(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < n; i++) {
            float v = (float) (norm ? 1 + 0.1 * random.nextGaussian() : 0.02 * random.nextGaussian());
            switch (dtype) {
                case "F16" -> b.putShort(Float.floatToFloat16(v));
                case "BF16" -> b.putShort((short) (Float.floatToRawIntBits(v) >>> 16));
                case "F32" -> b.putFloat(v);
                default -> throw new IllegalArgumentException(dtype);
            }
        }
        return new Tensor(name, dtype, shape, b.array());
    }

    /** config.json text for {@code shape}; {@code extra} is spliced in as further JSON members (may be empty). */
    static String configJson(Shape s, String architecture, String extra) {
        return String.format(Locale.ROOT, """
                {"architectures": ["%s"], "model_type": "llama", "hidden_size": %d, "num_hidden_layers": %d,
                 "num_attention_heads": %d, "num_key_value_heads": %d, "intermediate_size": %d, "vocab_size": %d,
                 "tie_word_embeddings": %b, "rms_norm_eps": 1e-05, "max_position_embeddings": 1024,
                 "rope_theta": 10000.0%s}""", architecture, s.hidden(), s.layers(), s.heads(), s.kvHeads(),
                s.intermediate(), s.vocab(), s.tied(), extra.isEmpty() ? "" : ", " + extra);
    }

    /** A complete model folder: config, tokenizer files copied from tiny-llama, one safetensors file. */
    static Path write(Path dir, Shape s, long seed) throws IOException {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), configJson(s, "LlamaForCausalLM", ""));
        copyTokenizer(dir);
        writeSafetensors(dir.resolve("model.safetensors"), llamaTensors(s, seed));
        return dir;
    }

    static void copyTokenizer(Path dir) throws IOException {
        for (String f : List.of("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "generation_config.json")) {
            Files.copy(TestData.tinySafetensors().resolve(f), dir.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        }
    }

    /** Writes a safetensors file: u64 header length, JSON header, data in list order. */
    static void writeSafetensors(Path file, List<Tensor> tensors) throws IOException {
        StringBuilder header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"}");
        long offset = 0;
        for (Tensor t : tensors) {
            StringBuilder shape = new StringBuilder();
            for (long d : t.shape()) {
                shape.append(shape.isEmpty() ? "" : ",").append(d);
            }
            header.append(String.format(Locale.ROOT, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%d,%d]}",
                    t.name(), t.dtype(), shape, offset, offset + t.data().length));
            offset += t.data().length;
        }
        header.append('}');
        while ((header.length() + 8) % 8 != 0) {
            header.append(' ');
        }
        byte[] json = header.toString().getBytes(StandardCharsets.UTF_8);
        try (OutputStream out = Files.newOutputStream(file)) {
            out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(json.length).array());
            out.write(json);
            for (Tensor t : tensors) {
                out.write(t.data());
            }
        }
    }

    /** Splits the tensors over {@code shards} safetensors files with a model.safetensors.index.json. */
    static void writeSharded(Path dir, List<Tensor> tensors, int shards) throws IOException {
        Map<String, String> weightMap = new LinkedHashMap<>();
        int per = (tensors.size() + shards - 1) / shards;
        for (int s = 0; s < shards; s++) {
            String name = String.format(Locale.ROOT, "model-%05d-of-%05d.safetensors", s + 1, shards);
            List<Tensor> part = tensors.subList(s * per, Math.min(tensors.size(), (s + 1) * per));
            writeSafetensors(dir.resolve(name), part);
            for (Tensor t : part) {
                weightMap.put(t.name(), name);
            }
        }
        StringBuilder json = new StringBuilder("{\"metadata\": {}, \"weight_map\": {");
        boolean first = true;
        for (Map.Entry<String, String> e : weightMap.entrySet()) {
            json.append(first ? "" : ", ").append('"').append(e.getKey()).append("\": \"").append(e.getValue()).append('"');
            first = false;
        }
        json.append("}}");
        Files.writeString(dir.resolve("model.safetensors.index.json"), json);
    }
}
