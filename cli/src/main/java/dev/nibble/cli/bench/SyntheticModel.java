package dev.nibble.cli.bench;

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
import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * A Llama-2-shaped model with random weights, written as a standard GGUF file (llama.cpp loads it too), so speed can
 * be measured without downloading weights. Blocks are random bytes with valid fp16 scales; norms are near 1.
 */
public final class SyntheticModel {

    /** The shape of a published Llama 2 model. */
    public record Shape(String name, int dim, int ffnDim, int layers, int heads, int kvHeads, int vocab, int context) {}

    public static final Map<String, Shape> SHAPES = Map.of(
            "7b", new Shape("7b", 4096, 11008, 32, 32, 32, 32000, 4096),
            "13b", new Shape("13b", 5120, 13824, 40, 40, 40, 32000, 4096),
            "70b", new Shape("70b", 8192, 28672, 80, 64, 8, 32000, 4096));

    private static final ValueLayout.OfShort F16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long NOISE_BYTES = 1 << 24;

    private SyntheticModel() {}

    /** A shape and the type of its matrices. */
    public record Spec(Shape shape, GgmlType type) {}

    /** Parses {@code 7b}, {@code 13b:q4_k} ... into a shape and a weight type (default Q4_0). */
    public static Spec parse(String spec) {
        String[] parts = spec.toLowerCase(Locale.ROOT).split(":", 2);
        Shape shape = SHAPES.get(parts[0]);
        if (shape == null) {
            throw new IllegalArgumentException("unknown synthetic model '" + parts[0] + "'; choose 7b, 13b or 70b");
        }
        GgmlType type = GgmlType.Q4_0;
        if (parts.length == 2) {
            try {
                type = GgmlType.valueOf(parts[1].toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("unknown weight type '" + parts[1]
                        + "'; choose f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, iq4_nl or nf4");
            }
        }
        return new Spec(shape, type);
    }

    /**
     * Writes the model. Matrices are {@code type}; as llama.cpp's 4-bit files do, the output matrix of a 4-bit model is
     * Q6_K.
     */
    public static void write(Path out, Shape s, GgmlType type, long seed) throws IOException {
        boolean fourBit = type == GgmlType.Q4_0 || type == GgmlType.Q4_K || type == GgmlType.IQ4_NL || type == GgmlType.NF4;
        GgmlType outputType = fourBit ? GgmlType.Q6_K : type;
        int kvDim = s.dim() / s.heads() * s.kvHeads();
        List<GgufTensorInfo> infos = new ArrayList<>();
        infos.add(new GgufTensorInfo("token_embd.weight", type, new long[] {s.dim(), s.vocab()}));
        for (int l = 0; l < s.layers(); l++) {
            String p = "blk." + l + ".";
            infos.add(new GgufTensorInfo(p + "attn_norm.weight", GgmlType.F32, new long[] {s.dim()}));
            infos.add(new GgufTensorInfo(p + "attn_q.weight", type, new long[] {s.dim(), s.dim()}));
            infos.add(new GgufTensorInfo(p + "attn_k.weight", type, new long[] {s.dim(), kvDim}));
            infos.add(new GgufTensorInfo(p + "attn_v.weight", type, new long[] {s.dim(), kvDim}));
            infos.add(new GgufTensorInfo(p + "attn_output.weight", type, new long[] {s.dim(), s.dim()}));
            infos.add(new GgufTensorInfo(p + "ffn_norm.weight", GgmlType.F32, new long[] {s.dim()}));
            infos.add(new GgufTensorInfo(p + "ffn_gate.weight", type, new long[] {s.dim(), s.ffnDim()}));
            infos.add(new GgufTensorInfo(p + "ffn_up.weight", type, new long[] {s.dim(), s.ffnDim()}));
            infos.add(new GgufTensorInfo(p + "ffn_down.weight", type, new long[] {s.ffnDim(), s.dim()}));
        }
        infos.add(new GgufTensorInfo("output_norm.weight", GgmlType.F32, new long[] {s.dim()}));
        infos.add(new GgufTensorInfo("output.weight", outputType, new long[] {s.dim(), s.vocab()}));

        SplittableRandom random = new SplittableRandom(seed);
        try (Arena arena = Arena.ofConfined();
             GgufWriter w = GgufWriter.create(out, metadata(s), infos, true)) {
            Map<GgmlType, MemorySegment> noise = new EnumMap<>(GgmlType.class);
            for (GgufTensorInfo info : infos) {
                MemorySegment source = noise.computeIfAbsent(info.type(), t -> validBlocks(arena, t, random));
                long size = info.byteSize();
                long blockBytes = info.type().typeSize();
                for (long done = 0; done < size; ) {
                    // A random block-aligned start, so tensors do not all repeat the same bytes.
                    long start = random.nextLong(source.byteSize() / blockBytes / 2) * blockBytes;
                    long n = Math.min(source.byteSize() - start, size - done);
                    w.write(source.asSlice(start, n));
                    done += n;
                }
            }
            w.finish();
        }
    }

    private static GgufMetadata metadata(Shape s) {
        // A SentencePiece-style vocabulary with the 256 byte tokens llama.cpp looks up when it loads a "llama" vocab.
        List<String> tokens = new ArrayList<>(s.vocab());
        float[] scores = new float[s.vocab()];
        int[] types = new int[s.vocab()];
        tokens.add("<unk>");
        tokens.add("<s>");
        tokens.add("</s>");
        types[0] = 2;
        types[1] = 3;
        types[2] = 3;
        for (int b = 0; b < 256; b++) {
            types[tokens.size()] = 6;
            tokens.add(String.format("<0x%02X>", b));
        }
        while (tokens.size() < s.vocab()) {
            scores[tokens.size()] = -tokens.size();
            types[tokens.size()] = 1;
            tokens.add("\u2581t" + tokens.size());
        }
        return GgufMetadata.builder()
                .putString("general.architecture", "llama")
                .putString("general.name", "synthetic-llama-2-" + s.name())
                .putU32("llama.context_length", s.context())
                .putU32("llama.embedding_length", s.dim())
                .putU32("llama.block_count", s.layers())
                .putU32("llama.feed_forward_length", s.ffnDim())
                .putU32("llama.attention.head_count", s.heads())
                .putU32("llama.attention.head_count_kv", s.kvHeads())
                .putU32("llama.rope.dimension_count", s.dim() / s.heads())
                .putF32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
                .putF32("llama.rope.freq_base", 10000f)
                .putString("tokenizer.ggml.model", "llama")
                .putStringArray("tokenizer.ggml.tokens", tokens)
                .putFloatArray("tokenizer.ggml.scores", scores)
                .putIntArray("tokenizer.ggml.token_type", types)
                .putU32("tokenizer.ggml.bos_token_id", 1)
                .putU32("tokenizer.ggml.eos_token_id", 2)
                .putU32("tokenizer.ggml.unknown_token_id", 0)
                .build();
    }

    /** About 16 MiB of random blocks of {@code type} whose fp16 scales and float values are finite and small. */
    static MemorySegment validBlocks(Arena arena, GgmlType type, SplittableRandom random) {
        long blocks = NOISE_BYTES / type.typeSize();
        MemorySegment s = arena.allocate(blocks * type.typeSize(), 64);
        for (long i = 0; i + 8 <= s.byteSize(); i += 8) {
            s.set(ValueLayout.JAVA_LONG_UNALIGNED, i, random.nextLong());
        }
        for (long b = 0; b < blocks; b++) {
            long base = b * type.typeSize();
            switch (type) {
                case F32 -> s.set(F32, base, (float) (0.5 + random.nextDouble()));
                case F16 -> s.set(F16, base, Float.floatToFloat16((float) (random.nextDouble() * 2 - 1) * 0.05f));
                case BF16 -> s.set(F16, base, (short) (Float.floatToIntBits((float) (random.nextDouble() * 2 - 1) * 0.05f) >>> 16));
                case Q4_0, Q8_0, IQ4_NL, NF4 -> s.set(F16, base, scale(random));
                case Q4_K -> {
                    s.set(F16, base, scale(random));
                    s.set(F16, base + 2, scale(random));
                }
                case Q6_K -> s.set(F16, base + type.typeSize() - 2, scale(random));
            }
        }
        return s;
    }

    private static short scale(SplittableRandom random) {
        return Float.floatToFloat16((float) (0.001 + random.nextDouble() * 0.003));
    }
}
