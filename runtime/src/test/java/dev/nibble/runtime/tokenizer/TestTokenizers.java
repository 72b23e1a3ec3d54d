package dev.nibble.runtime.tokenizer;

import dev.nibble.testing.TestData;
import dev.nibble.formats.vocab.HuggingFaceVocabulary;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/** The real tokenizers from test-data, loaded once per test JVM (Llama 3's tokenizer.json alone is 9 MB). */
final class TestTokenizers {
    private static final Map<String, Tokenizer> LOADED = new ConcurrentHashMap<>();

    private TestTokenizers() {
    }

    /** "llama2", "mistral", "llama3" (test-data/tokenizers) or "tiny" (the tiny model's tokenizer.model). */
    static Tokenizer get(String name) {
        return LOADED.computeIfAbsent(name, n -> {
            try {
                return Tokenizer.from(n.equals("tiny")
                        ? HuggingFaceVocabulary.loadSentencePiece(TestData.resolve("tiny-llama/safetensors"))
                        : HuggingFaceVocabulary.load(TestData.resolve("tokenizers/" + n)));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }
}
