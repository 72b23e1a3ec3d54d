package dev.nibble.converter;

import com.fasterxml.jackson.databind.JsonNode;
import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;

/**
 * The hyper-parameters of a Llama-family model, read from a Hugging Face {@code config.json}.
 *
 * <p>Optional fields take transformers' {@code LlamaConfig} defaults; RoPE settings are read from the transformers 5
 * {@code rope_parameters} object when present, otherwise from the transformers 4 {@code rope_theta} and
 * {@code rope_scaling} fields.
 *
 * @param ropeScaling null when the model uses plain RoPE
 */
public record HfModelConfig(String architecture, int hiddenSize, int layerCount, int headCount, int kvHeadCount,
                            int headDim, int intermediateSize, double rmsNormEps, double ropeTheta,
                            RopeScaling ropeScaling, int maxPositions, boolean tiedEmbeddings, int vocabSize) {

    /** The most layers a config may declare: far more than any Llama-family model has (Llama 3.1 405B: 126). */
    public static final int MAX_LAYERS = 4096;
    /** The widest attention head the CPU kernels take (nb_attention's limit in nibble.h). */
    static final int MAX_HEAD_DIM = 512;

    /** The architectures whose tensors and maths are Llama's. */
    public static final List<String> SUPPORTED_ARCHITECTURES = List.of("LlamaForCausalLM", "MistralForCausalLM");

    /** Reads {@code modelDir/config.json}. */
    public static HfModelConfig load(Path modelDir) throws IOException {
        Path file = modelDir.resolve("config.json");
        if (!Files.isRegularFile(file)) {
            throw new FormatException(file, "config.json", -1,
                    "not found; a Hugging Face model folder must contain config.json");
        }
        return parse(JsonFiles.readObject(file), file);
    }

    /** Interprets an already parsed config; {@code file} is named in errors. */
    public static HfModelConfig parse(JsonNode json, Path file) throws FormatException {
        String architecture = architecture(json, file);
        JsonNode quantization = json.get("quantization_config");
        if (quantization != null && !quantization.isNull()) {
            throw new FormatException(file, "quantization_config", -1, "the checkpoint is already quantized ("
                    + quantization.path("quant_method").asText("unknown method")
                    + "); nibble converts F32, F16 and BF16 checkpoints: use the original model");
        }
        int hidden = positive(json, "hidden_size", file);
        int layers = positive(json, "num_hidden_layers", file);
        if (layers > MAX_LAYERS) { // refused at once: the tensor list it implies would take minutes and the memory
            throw new FormatException(file, "num_hidden_layers", -1, layers + " is more than the " + MAX_LAYERS
                    + " layers nibble converts (the largest Llama models have about 128); fix config.json");
        }
        int heads = positive(json, "num_attention_heads", file);
        int kvHeads = JsonFiles.optionalInt(json, "num_key_value_heads", file).orElse(heads);
        if (kvHeads <= 0 || heads % kvHeads != 0) {
            throw new FormatException(file, "num_key_value_heads", -1,
                    kvHeads + " does not divide num_attention_heads " + heads);
        }
        int headDim;
        var declaredHeadDim = JsonFiles.optionalInt(json, "head_dim", file);
        if (declaredHeadDim.isPresent()) {
            headDim = declaredHeadDim.getAsInt();
        } else if (hidden % heads == 0) {
            headDim = hidden / heads;
        } else {
            throw new FormatException(file, "hidden_size", -1,
                    hidden + " is not a multiple of num_attention_heads " + heads + " and head_dim is absent");
        }
        if (headDim <= 0 || headDim % 2 != 0) {
            throw new FormatException(file, "head_dim", -1, headDim + " must be a positive even number for RoPE");
        }
        // What the runtime refuses is refused here, before hours of conversion: it derives the head size from
        // hidden_size / num_attention_heads, and its attention kernels take heads of up to 512.
        if (headDim * heads != hidden) {
            throw new FormatException(file, "head_dim", -1, headDim + " × num_attention_heads " + heads + " is not"
                    + " hidden_size " + hidden + "; nibble runs only models whose heads split hidden_size evenly");
        }
        if (headDim > MAX_HEAD_DIM) {
            throw new FormatException(file, "head_dim", -1, headDim + " is more than the " + MAX_HEAD_DIM
                    + " nibble's attention kernels take");
        }
        String activation = JsonFiles.optionalString(json, "hidden_act", file).orElse("silu");
        if (!activation.equals("silu") && !activation.equals("swish")) {
            throw new FormatException(file, "hidden_act", -1, "\"" + activation + "\" is not implemented: nibble runs"
                    + " Llama's SwiGLU feed-forward (hidden_act \"silu\") only");
        }
        int intermediate = positive(json, "intermediate_size", file);
        double eps = JsonFiles.optionalDouble(json, "rms_norm_eps", file).orElse(1e-6);
        if (!(eps > 0) || Double.isInfinite(eps)) {
            throw new FormatException(file, "rms_norm_eps", -1, eps + " must be a small positive number, e.g. 1e-5");
        }
        int maxPositions = JsonFiles.optionalInt(json, "max_position_embeddings", file).orElse(2048);
        if (maxPositions <= 0) {
            throw new FormatException(file, "max_position_embeddings", -1, maxPositions + " must be positive: it is"
                    + " the model's context length");
        }
        boolean tied = JsonFiles.optionalBoolean(json, "tie_word_embeddings", file).orElse(false);
        int vocab = positive(json, "vocab_size", file);

        JsonNode ropeParameters = json.get("rope_parameters");
        double theta;
        RopeScaling scaling;
        if (ropeParameters != null && ropeParameters.isObject()) {
            theta = JsonFiles.optionalDouble(ropeParameters, "rope_theta", file)
                    .orElse(JsonFiles.optionalDouble(json, "rope_theta", file).orElse(10000.0));
            scaling = ropeScaling(ropeParameters, "rope_parameters", file);
        } else {
            theta = JsonFiles.optionalDouble(json, "rope_theta", file).orElse(10000.0);
            JsonNode ropeScaling = json.get("rope_scaling");
            scaling = ropeScaling == null || ropeScaling.isNull() ? null : ropeScaling(ropeScaling, "rope_scaling", file);
        }
        if (!(theta > 0)) {
            throw new FormatException(file, "rope_theta", -1, theta + " must be positive");
        }
        return new HfModelConfig(architecture, hidden, layers, heads, kvHeads, headDim, intermediate, eps, theta,
                scaling, maxPositions, tied, vocab);
    }

    /** Query heads per KV head (1 for plain multi-head attention). */
    public int groupSize() {
        return headCount / kvHeadCount;
    }

    private static String architecture(JsonNode json, Path file) throws FormatException {
        JsonNode archs = json.get("architectures");
        if (archs == null || !archs.isArray() || archs.isEmpty() || !archs.get(0).isTextual()) {
            throw JsonFiles.missing(file, "architectures", "a list naming the model class, e.g. [\"LlamaForCausalLM\"]");
        }
        String arch = archs.get(0).textValue();
        if (!SUPPORTED_ARCHITECTURES.contains(arch)) {
            throw new FormatException(file, "architectures", -1,
                    "unsupported architecture " + arch + "; nibble converts " + String.join(", ", SUPPORTED_ARCHITECTURES));
        }
        return arch;
    }

    private static int positive(JsonNode json, String field, Path file) throws FormatException {
        int v = JsonFiles.requireInt(json, field, file);
        if (v <= 0) {
            throw new FormatException(file, field, -1, v + " must be positive");
        }
        return v;
    }

    /** Reads a rope_scaling / rope_parameters object; plain RoPE ("default", or no type) gives null. */
    private static RopeScaling ropeScaling(JsonNode node, String where, Path file) throws FormatException {
        if (!node.isObject()) {
            throw new FormatException(file, where, -1, "expected an object, found " + node);
        }
        // transformers 4 wrote "type", later versions "rope_type"
        String type = JsonFiles.optionalString(node, "rope_type", file).orElse(null);
        if (type == null) {
            type = JsonFiles.optionalString(node, "type", file).orElse("default");
        }
        switch (type.toLowerCase(Locale.ROOT)) {
            case "default" -> {
                return null;
            }
            case "linear" -> {
                return new RopeScaling.Linear(factor(node, where, file));
            }
            case "llama3" -> {
                double low = JsonFiles.optionalDouble(node, "low_freq_factor", file).orElse(1.0);
                double high = JsonFiles.optionalDouble(node, "high_freq_factor", file).orElse(4.0);
                int original = JsonFiles.optionalInt(node, "original_max_position_embeddings", file).orElse(8192);
                if (!(high > low) || !(low > 0) || original <= 0) {
                    throw new FormatException(file, where, -1, "llama3 scaling needs high_freq_factor > low_freq_factor > 0"
                            + " and a positive original_max_position_embeddings, found " + node);
                }
                return new RopeScaling.Llama3(factor(node, where, file), low, high, original);
            }
            default -> throw new FormatException(file, where + ".rope_type", -1,
                    "unsupported RoPE scaling \"" + type + "\"; nibble supports default, linear and llama3");
        }
    }

    private static double factor(JsonNode node, String where, Path file) throws FormatException {
        double factor = JsonFiles.optionalDouble(node, "factor", file)
                .orElseThrow(() -> JsonFiles.missing(file, where + ".factor", "a number"));
        if (!(factor > 0)) {
            throw new FormatException(file, where + ".factor", -1, factor + " must be positive");
        }
        return factor;
    }
}
