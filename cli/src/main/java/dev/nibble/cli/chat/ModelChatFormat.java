package dev.nibble.cli.chat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.nibble.formats.FormatException;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.runtime.chat.BuiltInTemplate;
import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** Finds a model's chat template (GGUF {@code tokenizer.chat_template}, or a Hugging Face folder's) and makes its format. */
public final class ModelChatFormat {

    /** The GGUF key llama.cpp and Hugging Face's GGUF export use for the template. */
    public static final String GGUF_KEY = "tokenizer.chat_template";

    private ModelChatFormat() {
    }

    /**
     * The chat format for a model.
     *
     * @param templateOption {@code --template}: null or "auto" for the model's own template (else a built-in chosen from
     *                       the vocabulary), or llama2, llama3, chatml
     */
    public static ChatFormat load(Path model, Tokenizer tokenizer, String templateOption) throws IOException {
        BuiltInTemplate chosen = templateOption == null || templateOption.equalsIgnoreCase("auto")
                ? null : BuiltInTemplate.named(templateOption);
        return ChatFormat.forModel(tokenizer, chosen == null ? template(model) : null, chosen);
    }

    /** The model's own template, or null when it has none. */
    public static String template(Path model) throws IOException {
        if (Files.isDirectory(model)) {
            return huggingFaceTemplate(model);
        }
        try (GgufFile gguf = GgufFile.open(model)) {
            return gguf.metadata().findString(GGUF_KEY).orElse(null);
        }
    }

    /**
     * A Hugging Face folder's template: {@code chat_template.jinja} (newer transformers) or {@code chat_template} in
     * {@code tokenizer_config.json}, which may be a list of named templates, of which "default" is the chat one.
     */
    private static String huggingFaceTemplate(Path dir) throws IOException {
        Path jinja = dir.resolve("chat_template.jinja");
        if (Files.isRegularFile(jinja)) {
            return Files.readString(jinja, StandardCharsets.UTF_8);
        }
        Path config = dir.resolve("tokenizer_config.json");
        if (!Files.isRegularFile(config)) {
            return null;
        }
        JsonNode template = new ObjectMapper().readTree(config.toFile()).get("chat_template");
        if (template == null || template.isNull()) {
            return null;
        }
        if (template.isTextual()) {
            return template.asText();
        }
        if (template.isArray()) {
            for (JsonNode named : template) {
                if ("default".equals(named.path("name").asText()) && named.path("template").isTextual()) {
                    return named.get("template").asText();
                }
            }
        }
        throw new FormatException(config, "chat_template", -1, "is neither a template string nor a list with a \"default\" template");
    }
}
