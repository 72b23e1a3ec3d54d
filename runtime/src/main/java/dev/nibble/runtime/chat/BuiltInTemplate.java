package dev.nibble.runtime.chat;

import dev.nibble.formats.vocab.Vocabulary;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.Locale;

/** The chat formats nibble knows by itself, for models that carry no template of their own. */
public enum BuiltInTemplate {
    /** Llama-2-chat: {@code <s>[INST] <<SYS>>...<</SYS>> user [/INST] answer </s>}. */
    LLAMA2("llama2.jinja"),
    /** Llama 3 Instruct: {@code <|start_header_id|>role<|end_header_id|>} blocks closed by {@code <|eot_id|>}. */
    LLAMA3("llama3.jinja"),
    /** ChatML: {@code <|im_start|>role\n...<|im_end|>}. */
    CHATML("chatml.jinja");

    private final String resource;

    BuiltInTemplate(String resource) {
        this.resource = resource;
    }

    /** The Jinja source. */
    public String source() {
        try (InputStream in = BuiltInTemplate.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalStateException("built-in chat template " + resource + " is missing from the jar");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The name users type ({@code --template llama2}). */
    public String cliName() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** The built-in template named {@code name} (llama2, llama3, chatml; any case). */
    public static BuiltInTemplate named(String name) {
        for (BuiltInTemplate t : values()) {
            if (t.cliName().equalsIgnoreCase(name)) {
                return t;
            }
        }
        throw new IllegalArgumentException("unknown chat template '" + name + "'; built-in ones are llama2, llama3, chatml");
    }

    /** The format a model without a template most likely was trained on, judged by the special tokens it has. */
    public static BuiltInTemplate forVocabulary(Vocabulary vocab) {
        if (vocab.tokens().contains("<|eot_id|>") && vocab.tokens().contains("<|start_header_id|>")) {
            return LLAMA3;
        }
        if (vocab.tokens().contains("<|im_start|>") && vocab.tokens().contains("<|im_end|>")) {
            return CHATML;
        }
        return LLAMA2;
    }
}
