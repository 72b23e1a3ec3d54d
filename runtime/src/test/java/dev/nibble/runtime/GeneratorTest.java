package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.converter.ConvertOptions;
import dev.nibble.converter.Converter;
import dev.nibble.converter.Recipe;
import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.formats.gguf.GgufMetadata;
import dev.nibble.formats.gguf.GgufTensor;
import dev.nibble.formats.gguf.GgufTensorInfo;
import dev.nibble.formats.gguf.GgufWriter;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Generation's stopping rules and prompt edge cases, on the tiny model converted to F32. */
class GeneratorTest {

    @TempDir
    static Path dir;

    private static Path modelFile;
    private static CpuBackend backend;
    private static Model model;
    private static Tokenizer tokenizer;
    /** Greedy continuation of "The jury said" in refs.json. */
    private static String reference;

    @BeforeAll
    static void load() throws IOException {
        modelFile = dir.resolve("tiny.f32.gguf");
        Converter.convert(ConvertOptions.of(TinyLlamaRefs.dir().resolve("safetensors"), modelFile, Recipe.F32).withThreads(2));
        backend = new CpuBackend(0);
        model = Model.load(modelFile, backend);
        tokenizer = Tokenizer.from(VocabularyGguf.read(model.file()));
        reference = TinyLlamaRefs.load().json.get("greedy").get("jury").get("generate_text").asText();
    }

    @AfterAll
    static void close() {
        model.close();
        backend.close();
    }

    private static GenerationResult generate(Generator g, String prompt, GenerationSettings s, StringBuilder streamed)
            throws IOException {
        return g.generate(prompt, s, streamed::append);
    }

    @Test
    void aStopStringEndsGenerationAndIsNeitherReturnedNorStreamed() throws IOException {
        try (Generator g = new Generator(model, tokenizer, 128)) {
            StringBuilder streamed = new StringBuilder();
            GenerationResult r = generate(g, "The jury said",
                    new GenerationSettings(48, SamplerSettings.greedy(), List.of("\"public\"", "never appears")), streamed);
            assertEquals(GenerationResult.StopReason.STOP_STRING, r.stopReason());
            assertEquals(" " + reference.substring(0, reference.indexOf("\"public\"")), r.text());
            assertEquals(r.text(), streamed.toString());
            assertTrue(r.generatedTokens() < 48);
        }
    }

    @Test
    void maxTokensLimitsTheNewTokensAndZeroGeneratesNothing() throws IOException {
        try (Generator g = new Generator(model, tokenizer, 128)) {
            GenerationResult r = generate(g, "The jury said", GenerationSettings.of(3, SamplerSettings.greedy()), new StringBuilder());
            assertEquals(3, r.generatedTokens());
            assertEquals(GenerationResult.StopReason.MAX_TOKENS, r.stopReason());
            assertTrue(reference.startsWith(r.text().strip()), r.text());
            GenerationResult none = generate(g, "The jury said", GenerationSettings.of(0, SamplerSettings.greedy()), new StringBuilder());
            assertEquals(0, none.generatedTokens());
            assertEquals("", none.text());
        }
    }

    @Test
    void aFullContextEndsGenerationWithItsOwnReason() throws IOException {
        try (Generator g = new Generator(model, tokenizer, 12)) {
            GenerationResult r = generate(g, "The jury said", GenerationSettings.of(-1, SamplerSettings.greedy()), new StringBuilder());
            assertEquals(GenerationResult.StopReason.CONTEXT_FULL, r.stopReason());
            // 5 prompt tokens and 7 generated fill the 12 positions; the 8th is sampled from the last logits
            assertEquals(8, r.generatedTokens());
            assertTrue(reference.startsWith(r.text().strip()), r.text());
        }
    }

    @Test
    void aPromptLongerThanTheContextIsRefusedWithAClearMessage() throws IOException {
        try (Generator g = new Generator(model, tokenizer, 5)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> generate(g, "The jury said", GenerationSettings.of(4, SamplerSettings.greedy()), new StringBuilder()));
            assertTrue(e.getMessage().contains("5 tokens") && e.getMessage().contains("--ctx"), e.getMessage());
            // the generator is still usable afterwards
            assertEquals(2, generate(g, "The", GenerationSettings.of(2, SamplerSettings.greedy()), new StringBuilder()).generatedTokens());
        }
    }

    @Test
    void anEmptyPromptGeneratesFromBosAlone() throws IOException {
        try (Generator g = new Generator(model, tokenizer, 64)) {
            GenerationResult r = generate(g, "", GenerationSettings.of(6, SamplerSettings.greedy()), new StringBuilder());
            assertEquals(1, r.promptTokens());
            assertEquals(6, r.generatedTokens());
            assertFalse(r.text().isBlank());
            assertFalse(r.text().startsWith(" "), "the dummy-prefix space of the first piece is dropped");
        }
    }

    @Test
    void theSameSeedGivesTheSameTextAndAnotherSeedAnother() throws IOException {
        try (Generator g = new Generator(model, tokenizer, 128)) {
            SamplerSettings a = new SamplerSettings(1.0f, 0, 1f, 0f, 1f, 0f, 0f, 5);
            SamplerSettings b = new SamplerSettings(1.0f, 0, 1f, 0f, 1f, 0f, 0f, 6);
            String first = generate(g, "The jury said", GenerationSettings.of(24, a), new StringBuilder()).text();
            assertEquals(first, generate(g, "The jury said", GenerationSettings.of(24, a), new StringBuilder()).text());
            assertFalse(first.equals(generate(g, "The jury said", GenerationSettings.of(24, b), new StringBuilder()).text()));
        }
    }

    @Test
    void anEndTokenTheModelDeclaresStopsGeneration() throws IOException {
        // A copy of the model whose end-of-sequence token is the second token of the greedy continuation.
        int[] greedy = TinyLlamaRefs.load().greedy("jury");
        Path copy = dir.resolve("eos.gguf");
        try (GgufFile source = GgufFile.open(modelFile)) {
            GgufMetadata.Builder b = GgufMetadata.builder();
            for (String key : source.metadata().keys()) {
                b.put(key, source.metadata().get(key).orElseThrow());
            }
            b.putU32("tokenizer.ggml.eos_token_id", greedy[1]);
            List<GgufTensorInfo> infos = source.tensors().stream().map(GgufTensor::info).toList();
            try (GgufWriter w = GgufWriter.create(copy, b.build(), infos, false)) {
                for (GgufTensor t : source.tensors()) {
                    w.write(t.data());
                }
                w.finish();
            }
        }
        try (Model m = Model.load(copy, backend); Generator g = new Generator(m, tokenizer, 64)) {
            GenerationResult r = generate(g, "The jury said", GenerationSettings.of(20, SamplerSettings.greedy()), new StringBuilder());
            assertEquals(GenerationResult.StopReason.END_TOKEN, r.stopReason());
            assertEquals(2, r.generatedTokens());
            assertEquals(" " + tokenizer.decode(new int[] {greedy[0]}).strip(), r.text());
        }
    }
}
