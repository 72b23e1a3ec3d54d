package dev.nibble.converter;

import com.fasterxml.jackson.databind.JsonNode;
import dev.nibble.formats.FormatException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Finds a model's Jinja chat template: {@code tokenizer_config.json}'s {@code chat_template} (a string, or a list of
 * named templates of which the one named "default" is taken, if any), else a {@code chat_template.jinja} file, else {@code chat_template.json};
 * the same precedence as transformers and llama.cpp's converter.
 */
public final class ChatTemplateSource {

    private ChatTemplateSource() {
    }

    /** The template text, or empty when the model has none. */
    public static Optional<String> find(Path modelDir) throws IOException {
        Path tokenizerConfig = modelDir.resolve("tokenizer_config.json");
        Optional<JsonNode> json = JsonFiles.readOptionalObject(tokenizerConfig);
        if (json.isPresent()) {
            Optional<String> t = template(json.get(), tokenizerConfig);
            if (t.isPresent()) {
                return t;
            }
        }
        Path jinja = modelDir.resolve("chat_template.jinja");
        if (Files.isRegularFile(jinja)) {
            return Optional.of(Files.readString(jinja, StandardCharsets.UTF_8));
        }
        Path templateJson = modelDir.resolve("chat_template.json");
        Optional<JsonNode> alt = JsonFiles.readOptionalObject(templateJson);
        return alt.isPresent() ? template(alt.get(), templateJson) : Optional.empty();
    }

    private static Optional<String> template(JsonNode json, Path file) throws FormatException {
        JsonNode v = json.get("chat_template");
        if (v == null || v.isNull()) {
            return Optional.empty();
        }
        if (v.isTextual()) {
            return Optional.of(v.textValue());
        }
        if (v.isArray()) {
            for (JsonNode named : v) {
                if ("default".equals(named.path("name").asText(null)) && named.path("template").isTextual()) {
                    return Optional.of(named.get("template").textValue());
                }
            }
            return Optional.empty();
        }
        throw new FormatException(file, "chat_template", -1, "expected a string or a list of named templates, found "
                + v.getNodeType());
    }
}
