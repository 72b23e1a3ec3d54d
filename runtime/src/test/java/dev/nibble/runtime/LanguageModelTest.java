package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.testing.TestData;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The one-call API: load with a builder, generate and chat from any thread, log-probabilities, unchecked errors. */
class LanguageModelTest {

    private static final Path FILE = TestData.root().resolve("tiny-llama.q8_0.gguf");
    private static LanguageModel model;

    @BeforeAll
    static void load() {
        model = LanguageModel.load(FILE).device("cpu").threads(2).contextSize(256).parallel(4).open();
    }

    @AfterAll
    static void close() {
        model.close();
    }

    private static String alone(String prompt, GenerationSettings settings) throws IOException {
        try (Generator g = new Generator(model.model(), model.tokenizer(), 256)) {
            return g.generate(prompt, settings, s -> { }).text();
        }
    }

    @Test
    void generatesWhatTheGeneratorGivesFromManyThreadsAtOnce() throws Exception {
        List<String> prompts = List.of("The jury", "Once upon a time", "In the morning", "A", "She said", "The dog");
        SamplerSettings seeded = SamplerSettings.builder().temperature(0.9f).topP(0.9f).seed(3).build();
        List<CompletableFuture<GenerationResult>> futures = new ArrayList<>();
        for (String p : prompts) {
            futures.add(CompletableFuture.supplyAsync(() -> model.generate(p, GenerationSettings.of(20, seeded))));
        }
        for (int i = 0; i < prompts.size(); i++) {
            assertEquals(alone(prompts.get(i), GenerationSettings.of(20, seeded)), futures.get(i).join().text());
        }
    }

    @Test
    void chatsWithTheModelsTemplate() {
        GenerationResult r = model.chat(List.of(ChatMessage.user("Tell me a story.")),
                GenerationSettings.of(16, SamplerSettings.greedy()));
        assertTrue(r.promptTokens() > 5, "the template wraps the message");
        assertTrue(r.generatedTokens() > 0);
    }

    @Test
    void logProbabilitiesComeOnRequestAndGreedyPicksTheLikeliest() {
        GenerationResult plain = model.generate("The jury", GenerationSettings.of(8, SamplerSettings.greedy()));
        assertTrue(plain.logprobs().isEmpty());
        GenerationResult r = model.generate("The jury", GenerationSettings.of(8, SamplerSettings.greedy()).withLogprobs());
        assertEquals(plain.text(), r.text());
        assertEquals(8, r.logprobs().size());
        StringBuilder pieces = new StringBuilder();
        for (GenerationResult.TokenLogprob t : r.logprobs()) {
            assertTrue(t.logprob() <= 0 && t.logprob() > -20, "a log-probability: " + t);
            // greedy: the chosen token is at least as likely as any other, so at least 1/vocab
            assertTrue(t.logprob() >= -Math.log(model.model().config().vocabSize()), t.toString());
            pieces.append(t.text());
        }
        assertEquals(r.text(), pieces.toString().replace('\u2581', ' '));
    }

    @Test
    void aCancelledFutureEndsItsRequest() {
        CompletableFuture<GenerationResult> f = model.generate("The jury",
                GenerationSettings.of(-1, SamplerSettings.greedy()), text -> { });
        f.cancel(false);
        assertTrue(f.isCancelled());
        assertEquals(4, model.generate("The jury", GenerationSettings.of(4, SamplerSettings.greedy())).generatedTokens());
    }

    @Test
    void errorsAreUncheckedAndSayWhat() {
        IllegalArgumentException tooLong = assertThrows(IllegalArgumentException.class,
                () -> model.generate("word ".repeat(400), GenerationSettings.of(4, SamplerSettings.greedy())));
        assertTrue(tooLong.getMessage().contains("but the context holds 256"), tooLong.getMessage());
        assertThrows(UncheckedIOException.class, () -> LanguageModel.load(Path.of("/nonexistent.gguf")).device("cpu").open());
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class,
                () -> SamplerSettings.builder().temperature(-1).build());
        assertTrue(bad.getMessage().contains("temperature"), bad.getMessage());
    }
}
