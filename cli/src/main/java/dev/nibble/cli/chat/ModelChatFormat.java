package dev.nibble.cli.chat;

import dev.nibble.converter.ChatTemplateSource;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.chat.BuiltInTemplate;
import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A model's chat format, found from its files: its own template (GGUF {@code tokenizer.chat_template}, or a Hugging
 * Face folder's) or a built-in one.
 *
 * @param description which template it is, for users ("the model's own", "built-in llama2 (the model has none)")
 */
public record ModelChatFormat(ChatFormat format, String description) {

    /** What {@code --template} says by default: the model's own template, else one chosen from the vocabulary. */
    public static final String AUTO = "auto";

    /**
     * The chat format for a model.
     *
     * @param templateOption {@code --template}: "auto" (or null) for the model's own template, else a built-in chosen
     *                       from the vocabulary; or llama2, llama3, chatml
     */
    public static ModelChatFormat load(Path model, Tokenizer tokenizer, String templateOption) throws IOException {
        boolean auto = templateOption == null || templateOption.equalsIgnoreCase(AUTO);
        return of(auto ? template(model) : null, tokenizer, templateOption);
    }

    /**
     * The chat format for a model whose own template is {@code own} (null when it has none), as {@link #load} chooses.
     */
    public static ModelChatFormat of(String own, Tokenizer tokenizer, String templateOption) {
        if (templateOption != null && !templateOption.equalsIgnoreCase(AUTO)) {
            BuiltInTemplate chosen = BuiltInTemplate.named(templateOption);
            return new ModelChatFormat(ChatFormat.forModel(tokenizer, null, chosen), "built-in " + chosen.cliName());
        }
        if (own != null && !own.isBlank()) {
            return new ModelChatFormat(ChatFormat.forModel(tokenizer, own, null), "the model's own");
        }
        BuiltInTemplate guessed = BuiltInTemplate.forVocabulary(tokenizer.vocabulary());
        return new ModelChatFormat(ChatFormat.forModel(tokenizer, null, guessed),
                "built-in " + guessed.cliName() + " (the model has none)");
    }

    /** The model's own template (a GGUF file's, or a Hugging Face folder's as the converter finds it), or null. */
    public static String template(Path model) throws IOException {
        if (Files.isDirectory(model)) {
            return ChatTemplateSource.find(model).orElse(null);
        }
        try (GgufFile gguf = GgufFile.open(model)) {
            return gguf.metadata().findString(VocabularyGguf.CHAT_TEMPLATE).orElse(null);
        }
    }
}
