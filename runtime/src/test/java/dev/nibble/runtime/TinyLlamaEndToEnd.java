package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.converter.ConvertOptions;
import dev.nibble.converter.Converter;
import dev.nibble.converter.Recipe;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.tokenizer.Tokenizer;
import dev.nibble.testing.TestData;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The tiny Llama of test-data, converted by nibble's converter to F32 and F16 and run on a placement (one backend, or
 * its layers split between two), against the Hugging Face reference (transformers, float32 from the fp16 weights):
 * logits, greedy continuations, perplexity. {@link TinyLlamaOnCpuTest}, {@link TinyLlamaOnCudaTest} and
 * {@link TinyLlamaOnCudaAndCpuTest} name the placement and how close its logits must be.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
abstract class TinyLlamaEndToEnd {

    private static final List<String> PROMPTS = List.of("jury", "morning", "val_excerpt", "chat");

    private Path dir;
    private TinyLlamaRefs refs;
    Placement placement;

    /** Where the model runs in the test. */
    abstract Placement newPlacement();

    /**
     * The shipped 8-bit file run on {@code reference} and on {@code tested}: the logits of a prompt, then of one-token
     * steps (recorded once, then replayed), within {@code tolerance} of each other. Both sides round the activations of
     * every 8-bit matmul to 8 bits, each device its own way (~0.5% per matmul, 1.4% through six layers as measured on
     * the H200); a wrong position or cache gives ~100%.
     */
    static void assertQ8LogitsClose(Placement reference, Placement tested, double tolerance) throws IOException {
        Path file = TestData.resolve("tiny-llama.q8_0.gguf");
        int[] prompt = {1, 450, 432, 1857, 338, 263, 1243, 1058, 1892, 278};
        try (Model want = Model.load(file, reference, 0, LoadProgress.NONE);
             Model got = Model.load(file, tested, 0, LoadProgress.NONE);
             KvCache wantCache = want.newCache(64); KvCache gotCache = got.newCache(64)) {
            double err = TinyLlamaRefs.relativeError(got.forward(prompt, gotCache, true),
                    want.forward(prompt, wantCache, true));
            assertTrue(err < tolerance, "prompt logits: relative error " + err);
            for (int next : new int[] {5, 1000, 77, 2047}) {
                err = TinyLlamaRefs.relativeError(got.forward(new int[] {next}, gotCache, false),
                        want.forward(new int[] {next}, wantCache, false));
                assertTrue(err < tolerance, "decode logits after " + next + ": relative error " + err);
            }
        }
    }

    /**
     * Why this placement's passes may round the weights of {@code type} differently from one pass size to another, so
     * that a sequence batched with others need not give its text alone; null (the default) when they do not.
     */
    String batchVariance(String type) {
        return null;
    }

    /** Largest relative error of the logits allowed against Hugging Face's float32 run. */
    abstract double logitTolerance();

    @BeforeAll
    void convert() throws IOException {
        placement = newPlacement();
        refs = TinyLlamaRefs.load();
        dir = Files.createTempDirectory("nibble-e2e-");
        for (Recipe r : new Recipe[] {Recipe.F32, Recipe.F16}) {
            Converter.convert(ConvertOptions.of(TinyLlamaRefs.dir().resolve("safetensors"), file(r), r).withThreads(2));
        }
    }

    @AfterAll
    void cleanUp() throws IOException {
        if (placement != null) {
            placement.close();
        }
        if (dir != null) {
            for (Recipe r : new Recipe[] {Recipe.F32, Recipe.F16}) {
                Files.deleteIfExists(file(r));
            }
            Files.deleteIfExists(dir);
        }
    }

    private Path file(Recipe r) {
        return dir.resolve("tiny." + r.name().toLowerCase() + ".gguf");
    }

    @ParameterizedTest
    @EnumSource(value = Recipe.class, names = {"F32", "F16"})
    void logitsMatchHuggingFaceAtEveryPositionOfEveryPrompt(Recipe recipe) throws IOException {
        try (Model m = Model.load(file(recipe), placement, 0, LoadProgress.NONE); KvCache cache = m.newCache(256)) {
            for (String prompt : PROMPTS) {
                cache.clear();
                float[] logits = m.forward(refs.ids(prompt), cache, true);
                float[] expected = refs.floats(prompt + ".all_logits");
                int vocab = m.config().vocabSize();
                for (int pos = 0; pos < refs.ids(prompt).length; pos++) {
                    float[] got = Arrays.copyOfRange(logits, pos * vocab, (pos + 1) * vocab);
                    float[] want = Arrays.copyOfRange(expected, pos * vocab, (pos + 1) * vocab);
                    double err = TinyLlamaRefs.relativeError(got, want);
                    assertTrue(err < logitTolerance(), recipe + " " + prompt + " position " + pos + ": relative error " + err);
                }
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = Recipe.class, names = {"F32", "F16"})
    void greedyContinuationsMatchTokenForToken(Recipe recipe) throws IOException {
        try (Model m = Model.load(file(recipe), placement, 0, LoadProgress.NONE); KvCache cache = m.newCache(512)) {
            Sampler greedy = new Sampler(SamplerSettings.greedy());
            for (String prompt : PROMPTS) {
                cache.clear();
                int[] ids = refs.ids(prompt);
                int[] expected = refs.greedy(prompt);
                int[] got = new int[expected.length];
                float[] logits = m.forward(ids, cache, false);
                for (int i = 0; i < expected.length; i++) {
                    got[i] = greedy.sample(logits, new int[0], 0);
                    logits = m.forward(new int[] {got[i]}, cache, false);
                }
                assertArrayEquals(expected, got, recipe + " " + prompt);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = Recipe.class, names = {"F32", "F16"})
    void generatorReproducesTheReferenceTextFromThePromptText(Recipe recipe) throws IOException {
        try (Model m = Model.load(file(recipe), placement, 0, LoadProgress.NONE);
             Generator g = new Generator(m, Tokenizer.from(VocabularyGguf.read(m.file())), 256)) {
            StringBuilder streamed = new StringBuilder();
            GenerationResult r = g.generate(refs.json.get("prompts").get("jury").get("text").asText(),
                    GenerationSettings.of(48, SamplerSettings.greedy()), streamed::append);
            String expected = refs.json.get("greedy").get("jury").get("generate_text").asText();
            assertEquals(expected, r.text().strip());
            assertEquals(r.text(), streamed.toString());
            assertEquals(5, r.promptTokens());
            assertEquals(48, r.generatedTokens());
            assertEquals(GenerationResult.StopReason.MAX_TOKENS, r.stopReason());
        }
    }

    /**
     * Many sequences in one pass (continuous batching, one KV pool) give each prompt the text it gets alone, on the
     * converted F16 model and on the Q8_0 file of test-data (8-bit kernels); the jury prompt also gives Hugging Face's.
     */
    @ParameterizedTest
    @ValueSource(strings = {"F16", "Q8_0"})
    void batchedSequencesGiveEachPromptItsTextAlone(String type) throws IOException {
        String notInvariant = batchVariance(type);
        Assumptions.assumeTrue(notInvariant == null, notInvariant);
        Path path = type.equals("F16") ? file(Recipe.F16) : TinyLlamaRefs.dir().getParent().resolve("tiny-llama.q8_0.gguf");
        try (Model m = Model.load(path, placement, 0, LoadProgress.NONE)) {
            Tokenizer tokenizer = Tokenizer.from(VocabularyGguf.read(m.file()));
            List<String> prompts = new ArrayList<>();
            for (String p : PROMPTS) {
                prompts.add(refs.json.get("prompts").get(p).get("text").asText());
            }
            prompts.add("A");
            List<GenerationResult> alone = new ArrayList<>();
            try (Generator g = new Generator(m, tokenizer, 256)) {
                for (String p : prompts) {
                    alone.add(g.generate(p, GenerationSettings.of(48, SamplerSettings.greedy()), s -> { }));
                }
            }
            try (BatchEngine engine = new BatchEngine(m, tokenizer, new BatchEngine.Options(3, 256, 0))) {
                List<java.util.concurrent.CompletableFuture<GenerationResult>> futures = new ArrayList<>();
                for (String p : prompts) {
                    futures.add(engine.submit(p, GenerationSettings.of(48, SamplerSettings.greedy()), s -> { }));
                }
                for (int i = 0; i < prompts.size(); i++) {
                    assertEquals(alone.get(i).text(), futures.get(i).join().text(), type + " prompt " + i);
                }
            }
            if (type.equals("F16")) {
                assertEquals(refs.json.get("greedy").get("jury").get("generate_text").asText(), alone.get(0).text().strip());
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = Recipe.class, names = {"F32", "F16"})
    void perplexityOfTheValidationPrefixMatchesTheReferenceLogits(Recipe recipe) throws IOException {
        // refs' val_excerpt is BOS and the start of val.txt, the same tokens up to the first line break (104 tokens), so
        // Hugging Face's logits for it give the exact perplexity of a first window of up to 105 tokens (attention is causal).
        int[] excerpt = refs.ids("val_excerpt");
        float[] hf = refs.floats("val_excerpt.all_logits");
        try (Model m = Model.load(file(recipe), placement, 0, LoadProgress.NONE)) {
            Tokenizer tokenizer = Tokenizer.from(VocabularyGguf.read(m.file()));
            int[] text = tokenizer.encode(Files.readString(TinyLlamaRefs.dir().resolve("val.txt")), false, false);
            assertEquals(75150, text.length, "val.txt tokens, as refs.json's perplexity_default says");
            int same = 104;
            assertArrayEquals(Arrays.copyOfRange(excerpt, 1, same + 1), Arrays.copyOf(text, same));
            for (int ctx : new int[] {same + 1, 40}) {
                int scored = ctx - 1;
                double nll = 0;
                for (int j = 0; j < scored; j++) {
                    nll -= Perplexity.logProbability(hf, j * 2048, 2048, excerpt[j + 1]);
                }
                double expected = Math.exp(nll / scored);
                Perplexity.Result r = Perplexity.compute(m, Arrays.copyOf(text, scored), 1, ctx, w -> { });
                assertEquals(scored, r.scoredTokens());
                assertEquals(1, r.windows());
                assertEquals(expected, r.perplexity(), expected * 1e-4, recipe + " ctx " + ctx);
            }
        }
    }

    @Test
    void perplexityOfTheWholeValidationTextMatchesHuggingFace() throws IOException {
        // refs.json perplexity_default: ctx 256, 75,150 scored tokens, 73.871 (the issue allows 0.5%)
        try (Model m = Model.load(file(Recipe.F16), placement, 0, LoadProgress.NONE)) {
            Tokenizer tokenizer = Tokenizer.from(VocabularyGguf.read(m.file()));
            int[] text = tokenizer.encode(Files.readString(TinyLlamaRefs.dir().resolve("val.txt")), false, false);
            Perplexity.Result r = Perplexity.compute(m, text, 1, 256, w -> { });
            double expected = refs.json.get("perplexity_default").get("ctx256").get("ppl").asDouble();
            assertEquals(75150, r.scoredTokens());
            assertEquals(295, r.windows());
            assertEquals(expected, r.perplexity(), expected * 1e-3);
        }
    }
}
