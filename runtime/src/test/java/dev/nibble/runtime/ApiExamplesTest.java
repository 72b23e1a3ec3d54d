package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.chat.ChatHistory;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.runtime.chat.ChatSession;
import dev.nibble.runtime.chat.ModelChatEngine;
import dev.nibble.testing.TestData;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * The README's Java examples, compiled and run on the tiny model: each region between {@code // README: name} and
 * {@code // README end} below must appear, verbatim apart from indentation, as a java block of the README.
 */
class ApiExamplesTest {

    private static final Path MODEL = TestData.root().resolve("tiny-llama.q8_0.gguf");

    @Test
    void loadOnceThenGenerateAndChat() {
        Path modelFile = MODEL;
        List<String> texts = new ArrayList<>();
        // README: quickstart
        try (LanguageModel model = LanguageModel.load(modelFile).device("auto").contextSize(2048).parallel(8).open()) {
            SamplerSettings sampling = SamplerSettings.builder().temperature(0.7f).topP(0.9f).seed(42).build();
            GenerationResult story = model.generate("Once upon a time", GenerationSettings.of(64, sampling));
            GenerationResult answer = model.chat(List.of(ChatMessage.system("You are terse."),
                    ChatMessage.user("Why is the sky blue?")), GenerationSettings.of(128, SamplerSettings.greedy()));
            CompletableFuture<GenerationResult> streamed = model.generate("The jury",
                    GenerationSettings.of(200, sampling).withLogprobs(), System.out::print); // cancel() stops it
            texts.add(story.text() + answer.text() + streamed.join().logprobs().size());
        }
        // README end
        assertEquals(1, texts.size());
    }

    @Test
    void generateOneCompletion() throws IOException {
        Path modelFile = MODEL;
        StringBuilder out = new StringBuilder();
        // README: generate
        try (Generator generator = Generator.open(modelFile, Placement.of(new CpuBackend(0)), 2048, LoadProgress.NONE)) {
            GenerationResult result = generator.generate("The jury",
                    GenerationSettings.of(40, SamplerSettings.greedy()), out::append);
            System.out.println(result.generatedTokens() + " tokens, stopped by " + result.stopReason());
        }
        // README end
        assertFalse(out.isEmpty());
    }

    @Test
    void chatWithTheModelsTemplate() throws IOException {
        Path modelFile = MODEL;
        StringBuilder out = new StringBuilder();
        // README: chat
        try (Generator generator = Generator.open(modelFile, Placement.of(new CpuBackend(0)), 2048, LoadProgress.NONE)) {
            ChatFormat format = ChatFormat.forModel(generator.model().file(), generator.tokenizer());
            ChatSession chat = new ChatSession(format, new ModelChatEngine(generator.model(), generator.cache()),
                    new Sampler(SamplerSettings.defaults(42))::sample, new ChatHistory("You are terse."),
                    200 /* answer tokens at most */, 256 /* context kept free for an answer */);
            chat.send("Who won the election?", out::append);
            chat.send("Why?", out::append); // the first exchange stays in the KV cache
        }
        // README end
        assertFalse(out.isEmpty());
    }

    @Test
    void submitManyRequestsToTheBatchEngine() throws Exception {
        Path modelFile = MODEL;
        List<String> prompts = List.of("The jury", "Once upon a time", "In the morning");
        List<String> texts = new ArrayList<>();
        // README: batch
        BatchEngine.Options options = new BatchEngine.Options(16 /* sequences at once */, 512 /* positions each */,
                0 /* KV pool: 16 × 512 positions */);
        try (BatchEngine engine = BatchEngine.open(modelFile, Placement.of(new CpuBackend(0)), options, LoadProgress.NONE)) {
            List<CompletableFuture<GenerationResult>> results = new ArrayList<>();
            for (String prompt : prompts) {
                results.add(engine.submit(prompt, GenerationSettings.of(64, SamplerSettings.greedy()), text -> { }));
            }
            ChatFormat format = ChatFormat.forModel(engine.model().file(), engine.tokenizer());
            results.add(engine.submit(format, List.of(ChatMessage.user("Tell me a story.")),
                    GenerationSettings.of(64, SamplerSettings.defaults(7)), text -> { }));
            for (CompletableFuture<GenerationResult> r : results) {
                texts.add(r.join().text()); // in the order submitted; each completes as soon as its request ends
            }
        }
        // README end
        assertEquals(4, texts.size());
    }

    /** Every marked region above is in the README, so that what the README shows compiles and runs. */
    @Test
    void theReadmeShowsTheseExamples() throws IOException {
        String source = Files.readString(TestData.root().getParent()
                .resolve("runtime/src/test/java/dev/nibble/runtime/ApiExamplesTest.java"));
        String readme = normalise(Files.readString(TestData.root().getParent().resolve("README.md")));
        Matcher m = Pattern.compile("// README: (\\w+)\\n(.*?)\\n\\s*// README end", Pattern.DOTALL).matcher(source);
        int found = 0;
        while (m.find()) {
            found++;
            assertTrue(readme.contains(normalise(m.group(2))), "the README shows the '" + m.group(1) + "' example");
        }
        assertEquals(4, found);
    }

    /** Each line without its leading spaces. */
    private static String normalise(String text) {
        return text.lines().map(String::strip).reduce((a, b) -> a + "\n" + b).orElse("");
    }
}
