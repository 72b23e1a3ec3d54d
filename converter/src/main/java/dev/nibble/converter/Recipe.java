package dev.nibble.converter;

import dev.nibble.formats.GgmlType;
import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * A {@code --type} choice: which tensor type each GGUF tensor gets, following llama.cpp's {@code llama_tensor_get_type}
 * (src/llama-quant.cpp, mid-2025) for the types nibble has.
 *
 * <p>Rules shared by every quantized recipe: 1-D tensors (norms, {@code rope_freqs}) stay F32; the output projection
 * ({@code output.weight}, or {@code token_embd.weight} when embeddings are tied) gets Q6_K, except in {@code q8_0}
 * which keeps Q8_0. {@code q4_k_m} also gives Q6_K to {@code attn_v} and {@code ffn_down} of the layers llama.cpp's
 * {@code use_more_bits} picks (the first and last eighth and every third in between). Where llama.cpp would pick Q5_K
 * (70B-style models' {@code attn_v}; {@code iq4_nl}'s first-eighth {@code ffn_down} and grouped {@code attn_v}) nibble,
 * having no Q5_K, picks Q6_K, so no tensor gets fewer bits than in llama.cpp.
 *
 * <p>Row lengths that do not fit the chosen type's block fall back as llama.cpp does: Q6_K to Q8_0; Q4_K to Q8_0
 * (llama.cpp uses Q5_0, which nibble lacks, and Q8_0 keeps at least its accuracy where Q4_0 would lose some); NF4 to
 * IQ4_NL, the other 4-bit codebook type; and to F16 when even 32-weight blocks do not fit.
 */
public enum Recipe {
    Q4_K_M(GgmlType.Q4_K, 15),
    Q4_0(GgmlType.Q4_0, 2),
    Q8_0(GgmlType.Q8_0, 7),
    F16(GgmlType.F16, 1),
    BF16(GgmlType.BF16, 32),
    F32(GgmlType.F32, 0),
    IQ4_NL(GgmlType.IQ4_NL, 25),
    /** nibble's own; its file type is the NF4 type id, which llama.cpp reads as "guessed" (it cannot load NF4). */
    NF4(GgmlType.NF4, 1024);

    private final GgmlType defaultType;
    private final int fileType;

    Recipe(GgmlType defaultType, int fileType) {
        this.defaultType = defaultType;
        this.fileType = fileType;
    }

    /** The type most 2-D tensors get. */
    public GgmlType defaultType() {
        return defaultType;
    }

    /** The {@code general.file_type} value: llama.cpp's {@code llama_ftype} for this choice. */
    public int fileType() {
        return fileType;
    }

    /** The command-line spelling, e.g. {@code q4_k_m}. */
    public String cliName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** Parses a command-line spelling (case-insensitive). */
    public static Recipe fromCliName(String name) {
        for (Recipe r : values()) {
            if (r.cliName().equalsIgnoreCase(name)) {
                return r;
            }
        }
        throw new IllegalArgumentException("unknown type " + name + "; expected one of "
                + Arrays.stream(values()).map(Recipe::cliName).collect(Collectors.joining(", ")));
    }

    /**
     * The type of one GGUF tensor.
     *
     * @param ggufName  e.g. {@code blk.3.ffn_down.weight}
     * @param ggufDims  fastest-varying first, so {@code ggufDims[0]} is the row length
     * @param config    the model, for its layer count and head grouping
     */
    public GgmlType tensorType(String ggufName, long[] ggufDims, HfModelConfig config) {
        if (ggufDims.length < 2) {
            return GgmlType.F32;
        }
        if (!defaultType.isQuantized()) {
            return defaultType;
        }
        boolean output = ggufName.equals(TensorNames.OUTPUT)
                || (config.tiedEmbeddings() && ggufName.equals(TensorNames.TOKEN_EMBEDDING));
        int layer = TensorNames.layerOf(ggufName);
        int layers = config.layerCount();
        GgmlType type = defaultType;
        if (output) {
            type = defaultType == GgmlType.Q8_0 ? GgmlType.Q8_0 : GgmlType.Q6_K;
        } else if (ggufName.endsWith(".attn_v.weight")) {
            if (this == Q4_K_M && useMoreBits(layer, layers)) {
                type = GgmlType.Q6_K;
            } else if (this == IQ4_NL && config.groupSize() >= 4) {
                type = GgmlType.Q6_K;
            }
            // llama.cpp's LLM_TYPE_70B: 80 layers with grouped KV heads share each small attn_v across 8 heads
            if (layers == 80 && config.groupSize() > 1 && type == GgmlType.Q4_K) {
                type = GgmlType.Q6_K;
            }
        } else if (ggufName.endsWith(".ffn_down.weight")) {
            if (this == Q4_K_M && useMoreBits(layer, layers)) {
                type = GgmlType.Q6_K;
            } else if (this == IQ4_NL && layer < layers / 8) {
                type = GgmlType.Q6_K;
            }
        }
        return fitRowLength(type, ggufDims[0]);
    }

    /** llama.cpp's choice of layers that deserve more bits in Q4_K_M. */
    static boolean useMoreBits(int layer, int layers) {
        return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
    }

    private static GgmlType fitRowLength(GgmlType type, long rowLength) {
        if (rowLength % type.blockSize() == 0) {
            return type;
        }
        GgmlType fallback = switch (type) {
            case Q4_K, Q6_K -> GgmlType.Q8_0;
            case NF4 -> GgmlType.IQ4_NL;
            default -> GgmlType.F16;
        };
        return rowLength % fallback.blockSize() == 0 ? fallback : GgmlType.F16;
    }
}
