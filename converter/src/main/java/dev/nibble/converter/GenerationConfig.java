package dev.nibble.converter;

import com.fasterxml.jackson.databind.JsonNode;
import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.OptionalInt;

/**
 * The model author's generation defaults from {@code generation_config.json}: end-of-sequence ids and sampling values.
 * Every field is optional; a missing file gives an empty config. When the file names no EOS ids, {@code config.json}'s
 * {@code eos_token_id} is used, as transformers does.
 */
public record GenerationConfig(int[] eosTokenIds, Optional<Boolean> doSample, OptionalDouble temperature,
                               OptionalDouble topP, OptionalInt topK, OptionalDouble repetitionPenalty) {

    /** Reads {@code generation_config.json} (and {@code config.json} for EOS ids) from {@code modelDir}. */
    public static GenerationConfig load(Path modelDir) throws IOException {
        Path file = modelDir.resolve("generation_config.json");
        Optional<JsonNode> json = JsonFiles.readOptionalObject(file);
        int[] eos = json.isPresent() ? eosIds(json.get(), file) : new int[0];
        if (eos.length == 0) {
            Path configFile = modelDir.resolve("config.json");
            Optional<JsonNode> config = JsonFiles.readOptionalObject(configFile);
            if (config.isPresent()) {
                eos = eosIds(config.get(), configFile);
            }
        }
        if (json.isEmpty()) {
            return new GenerationConfig(eos, Optional.empty(), OptionalDouble.empty(), OptionalDouble.empty(),
                    OptionalInt.empty(), OptionalDouble.empty());
        }
        JsonNode g = json.get();
        return new GenerationConfig(eos,
                JsonFiles.optionalBoolean(g, "do_sample", file),
                JsonFiles.optionalDouble(g, "temperature", file),
                JsonFiles.optionalDouble(g, "top_p", file),
                JsonFiles.optionalInt(g, "top_k", file),
                JsonFiles.optionalDouble(g, "repetition_penalty", file));
    }

    /** {@code eos_token_id} as an int or a list of ints; empty when absent. */
    private static int[] eosIds(JsonNode json, Path file) throws FormatException {
        JsonNode v = json.get("eos_token_id");
        if (v == null || v.isNull()) {
            return new int[0];
        }
        if (v.isIntegralNumber() && v.canConvertToInt()) {
            return new int[] {v.intValue()};
        }
        if (v.isArray()) {
            int[] ids = new int[v.size()];
            for (int i = 0; i < ids.length; i++) {
                JsonNode e = v.get(i);
                if (!e.isIntegralNumber() || !e.canConvertToInt()) {
                    throw new FormatException(file, "eos_token_id[" + i + "]", -1, "expected an integer, found " + e);
                }
                ids[i] = e.intValue();
            }
            return ids;
        }
        throw new FormatException(file, "eos_token_id", -1, "expected an integer or a list of integers, found " + v);
    }
}
