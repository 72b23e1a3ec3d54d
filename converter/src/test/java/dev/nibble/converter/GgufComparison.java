package dev.nibble.converter;

import dev.nibble.formats.Dequantizer;
import dev.nibble.formats.GgmlType;
import dev.nibble.formats.checkpoint.Checkpoint;
import dev.nibble.formats.checkpoint.CheckpointTensor;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.formats.gguf.GgufTensor;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Test reference: compares each tensor of a converted GGUF file with the checkpoint it came from, undoing the Q/K
 * row permutation with an independent transcription of llama.cpp's reshape-swap-reshape.
 */
final class GgufComparison {

    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private GgufComparison() {
    }

    /** The Hugging Face name behind a GGUF name, spelled out independently of the converter's table. */
    static String hfName(String gguf) {
        if (gguf.equals("token_embd.weight")) {
            return "model.embed_tokens.weight";
        }
        if (gguf.equals("output_norm.weight")) {
            return "model.norm.weight";
        }
        if (gguf.equals("output.weight")) {
            return "lm_head.weight";
        }
        String[] p = gguf.split("\\.", 3);
        String layer = "model.layers." + p[1] + ".";
        return layer + switch (p[2]) {
            case "attn_norm.weight" -> "input_layernorm.weight";
            case "attn_q.weight" -> "self_attn.q_proj.weight";
            case "attn_k.weight" -> "self_attn.k_proj.weight";
            case "attn_v.weight" -> "self_attn.v_proj.weight";
            case "attn_output.weight" -> "self_attn.o_proj.weight";
            case "ffn_norm.weight" -> "post_attention_layernorm.weight";
            case "ffn_gate.weight" -> "mlp.gate_proj.weight";
            case "ffn_up.weight" -> "mlp.up_proj.weight";
            case "ffn_down.weight" -> "mlp.down_proj.weight";
            default -> throw new IllegalArgumentException(gguf);
        };
    }

    /** Source row index for each GGUF row: reshape (heads, 2, d/2) -> swap -> reshape, or identity. */
    static int[] sourceRows(int rows, int heads) {
        int[] map = new int[rows];
        if (heads == 0) {
            for (int r = 0; r < rows; r++) {
                map[r] = r;
            }
            return map;
        }
        int d = rows / heads;
        int o = 0;
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < d / 2; i++) {
                for (int j = 0; j < 2; j++) {
                    map[o++] = h * d + j * (d / 2) + i;
                }
            }
        }
        return map;
    }

    /** Source value as float, straight from the checkpoint bytes. */
    static float sourceValue(CheckpointTensor t, long index) {
        MemorySegment d = t.data();
        return switch (t.dtype()) {
            case F32 -> d.get(F32, 4 * index);
            case F16 -> Float.float16ToFloat(d.get(I16, 2 * index));
            case BF16 -> Float.intBitsToFloat((d.get(I16, 2 * index) & 0xffff) << 16);
            default -> throw new IllegalArgumentException(t.dtype().toString());
        };
    }

    /**
     * Relative RMS error ||gguf - source|| / ||source|| of every tensor taken from the checkpoint.
     *
     * @param maxAbsDiff receives, per tensor, the largest absolute difference
     */
    static Map<String, Double> relativeErrors(Path gguf, Path modelDir, HfModelConfig c, Map<String, Double> maxAbsDiff)
            throws IOException {
        Map<String, Double> errors = new LinkedHashMap<>();
        try (GgufFile file = GgufFile.open(gguf); Checkpoint ckpt = Checkpoint.open(modelDir)) {
            for (GgufTensor t : file.tensors()) {
                if (t.name().equals("rope_freqs.weight")) {
                    continue;
                }
                CheckpointTensor src = ckpt.tensor(hfName(t.name())).orElseThrow();
                long[] dims = t.dims();
                int cols = (int) dims[0];
                int rows = dims.length > 1 ? (int) dims[1] : 1;
                int heads = t.name().endsWith("attn_q.weight") ? c.headCount()
                        : t.name().endsWith("attn_k.weight") ? c.kvHeadCount() : 0;
                int[] map = sourceRows(rows, heads);
                float[] row = new float[cols];
                long rowBytes = t.type().byteSize(cols);
                double err = 0;
                double ref = 0;
                double maxAbs = 0;
                for (int r = 0; r < rows; r++) {
                    Dequantizer.dequantizeRow(t.type(), t.data(), r * rowBytes, row, 0, cols);
                    for (int k = 0; k < cols; k++) {
                        double s = sourceValue(src, (long) map[r] * cols + k);
                        double diff = row[k] - s;
                        err += diff * diff;
                        ref += s * s;
                        maxAbs = Math.max(maxAbs, Math.abs(diff));
                    }
                }
                errors.put(t.name(), Math.sqrt(err / ref));
                maxAbsDiff.put(t.name(), maxAbs);
            }
        }
        return errors;
    }

    /** The GGUF type of each tensor in file order. */
    static Map<String, GgmlType> types(Path gguf) throws IOException {
        Map<String, GgmlType> types = new LinkedHashMap<>();
        try (GgufFile file = GgufFile.open(gguf)) {
            for (GgufTensor t : file.tensors()) {
                types.put(t.name(), t.type());
            }
        }
        return types;
    }
}
