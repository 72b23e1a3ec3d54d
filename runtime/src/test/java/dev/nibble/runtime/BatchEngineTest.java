package dev.nibble.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.chat.BuiltInTemplate;
import dev.nibble.runtime.chat.ChatFormat;
import dev.nibble.runtime.chat.ChatMessage;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The batch engine on the tiny model (Q8_0, the file in test-data): many sequences in one pass give each request the
 * text it gets alone, whatever the places, pool size and prompt and answer lengths; one Model serves several threads.
 */
class BatchEngineTest {

    private static final int CONTEXT = 256;
    private static CpuBackend backend;
    private static Model model;
    private static Tokenizer tokenizer;

    @BeforeAll
    static void load() throws IOException {
        backend = new CpuBackend(2);
        model = Model.load(Path.of(System.getProperty("nibble.testData", "../test-data"), "tiny-llama.q8_0.gguf"),
                backend);
        tokenizer = Tokenizer.from(VocabularyGguf.read(model.file()));
    }

    @AfterAll
    static void close() {
        model.close();
        backend.close();
    }

    /** Prompts of 2 to ~100 tokens (longer than one 64-token pass), with answers of 1 to 48 tokens, greedy and seeded. */
    static List<Request> requests(int count) {
        String[] starts = {"The jury", "Once upon a time", "A", "The little dog ran to the park and",
            "In the morning the sun rose over the hills, and the farmer walked out to see his fields. He saw that the"
                    + " wheat was tall and golden, and he smiled, because the harvest would be good this year. Then he",
            "She said"};
        List<Request> list = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            SamplerSettings sampler = i % 3 == 0 ? SamplerSettings.greedy() : SamplerSettings.defaults(1000 + i);
            int max = new int[] {1, 7, 48, 20, 33, 12}[i % 6];
            List<String> stops = i % 4 == 3 ? List.of(".") : List.of();
            list.add(new Request(starts[i % starts.length], new GenerationSettings(max, sampler, stops)));
        }
        return list;
    }

    record Request(String prompt, GenerationSettings settings) {
    }

    private static List<GenerationResult> alone(List<Request> requests) throws IOException {
        List<GenerationResult> out = new ArrayList<>();
        try (Generator g = new Generator(model, tokenizer, CONTEXT)) {
            for (Request r : requests) {
                out.add(g.generate(r.prompt(), r.settings(), s -> { }));
            }
        }
        return out;
    }

    private static void assertSameTexts(List<GenerationResult> expected, List<GenerationResult> actual) {
        assertEquals(expected.size(), actual.size());
        for (int i = 0; i < expected.size(); i++) {
            GenerationResult e = expected.get(i);
            GenerationResult a = actual.get(i);
            assertEquals(e.text(), a.text(), "request " + i);
            assertEquals(e.stopReason(), a.stopReason(), "request " + i);
            assertEquals(e.generatedTokens(), a.generatedTokens(), "request " + i);
            assertEquals(e.promptTokens(), a.promptTokens(), "request " + i);
        }
    }

    @Test
    void manyRequestsInFewPlacesGiveWhatEachGivesAlone() throws IOException {
        List<Request> requests = requests(14);
        List<GenerationResult> expected = alone(requests);
        for (int parallel : new int[] {1, 4, 16}) {
            try (BatchEngine engine = new BatchEngine(model, tokenizer, new BatchEngine.Options(parallel, CONTEXT, 0))) {
                List<StringBuilder> streamed = new ArrayList<>();
                List<CompletableFuture<GenerationResult>> futures = new ArrayList<>();
                for (Request r : requests) {
                    StringBuilder sb = new StringBuilder();
                    streamed.add(sb);
                    futures.add(engine.submit(r.prompt(), r.settings(), sb::append));
                }
                List<GenerationResult> actual = futures.stream().map(CompletableFuture::join).toList();
                assertSameTexts(expected, actual);
                for (int i = 0; i < actual.size(); i++) {
                    assertEquals(actual.get(i).text(), streamed.get(i).toString(), "streamed text of request " + i);
                }
            }
        }
    }

    @Test
    void aSmallPoolMakesRequestsWaitForRowsNotFail() throws IOException {
        List<Request> requests = requests(9);
        List<GenerationResult> expected = alone(requests);
        // room for about two sequences at a time although eight places are allowed
        try (BatchEngine engine = new BatchEngine(model, tokenizer, new BatchEngine.Options(8, CONTEXT, 2 * 160))) {
            List<CompletableFuture<GenerationResult>> futures = new ArrayList<>();
            for (Request r : requests) {
                futures.add(engine.submit(r.prompt(), r.settings(), s -> { }));
            }
            assertSameTexts(expected, futures.stream().map(CompletableFuture::join).toList());
        }
    }

    @Test
    void chatRequestsAnswerAsTheSingleSequenceLoopDoes() throws IOException {
        ChatFormat format = ChatFormat.forModel(tokenizer, null, BuiltInTemplate.forVocabulary(tokenizer.vocabulary()));
        List<List<ChatMessage>> conversations = List.of(
                List.of(ChatMessage.user("Tell me a story about a cat.")),
                List.of(ChatMessage.system("Be brief."), ChatMessage.user("What is the sun?")),
                List.of(ChatMessage.user("Hello")));
        GenerationSettings settings = GenerationSettings.of(24, SamplerSettings.defaults(7));
        List<GenerationResult> expected = new ArrayList<>();
        try (Generator g = new Generator(model, tokenizer, CONTEXT)) {
            for (List<ChatMessage> c : conversations) {
                expected.add(g.run(Generation.answering(format.encode(c, true), settings,
                        new Sampler(settings.sampler())::sample, format, CONTEXT, s -> { }), 0));
            }
        }
        try (BatchEngine engine = new BatchEngine(model, tokenizer, new BatchEngine.Options(3, CONTEXT, 0))) {
            List<CompletableFuture<GenerationResult>> futures = new ArrayList<>();
            for (List<ChatMessage> c : conversations) {
                futures.add(engine.submit(format, c, settings, s -> { }));
            }
            assertSameTexts(expected, futures.stream().map(CompletableFuture::join).toList());
        }
    }

    @Test
    void aPromptLongerThanTheContextFailsAloneAndTheRestRun() {
        try (BatchEngine engine = new BatchEngine(model, tokenizer, new BatchEngine.Options(2, 32, 0))) {
            CompletableFuture<GenerationResult> tooLong = engine.submit("word ".repeat(60),
                    GenerationSettings.of(4, SamplerSettings.greedy()), s -> { });
            CompletableFuture<GenerationResult> fine = engine.submit("The jury",
                    GenerationSettings.of(4, SamplerSettings.greedy()), s -> { });
            CompletionException e = assertThrows(CompletionException.class, tooLong::join);
            assertInstanceOf(IllegalArgumentException.class, e.getCause());
            assertTrue(e.getCause().getMessage().contains("but the context holds 32"), e.getCause().getMessage());
            assertEquals(4, fine.join().generatedTokens());
        }
    }

    @Test
    void cancellingAFutureEndsItsSequenceAndFreesItsPlace() throws Exception {
        try (BatchEngine engine = new BatchEngine(model, tokenizer, new BatchEngine.Options(1, CONTEXT, CONTEXT))) {
            CountDownLatch streaming = new CountDownLatch(1);
            CountDownLatch cancelled = new CountDownLatch(1);
            CompletableFuture<GenerationResult> first = engine.submit("The jury",
                    GenerationSettings.of(-1, SamplerSettings.greedy()), text -> {
                        streaming.countDown();
                        try {
                            cancelled.await(60, TimeUnit.SECONDS); // hold the engine until the caller has cancelled
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
                    });
            // one place and a pool of one sequence: this one runs only once the first has given both back
            CompletableFuture<GenerationResult> second = engine.submit("Once upon a time",
                    GenerationSettings.of(5, SamplerSettings.greedy()), s -> { });
            assertTrue(streaming.await(60, TimeUnit.SECONDS));
            assertTrue(first.cancel(false));
            cancelled.countDown();
            assertEquals(5, second.get(60, TimeUnit.SECONDS).generatedTokens());
            assertEquals(CONTEXT, engine.freePoolTokens());
        }
    }

    @Test
    void aFailingCallbackFailsItsOwnRequestOnly() {
        try (BatchEngine engine = new BatchEngine(model, tokenizer, new BatchEngine.Options(2, CONTEXT, 0))) {
            CompletableFuture<GenerationResult> bad = engine.submit("The jury",
                    GenerationSettings.of(8, SamplerSettings.greedy()), text -> {
                        throw new IllegalStateException("the client is gone");
                    });
            CompletableFuture<GenerationResult> good = engine.submit("Once upon a time",
                    GenerationSettings.of(8, SamplerSettings.greedy()), s -> { });
            CompletionException e = assertThrows(CompletionException.class, bad::join);
            assertEquals("the client is gone", e.getCause().getMessage());
            assertEquals(8, good.join().generatedTokens());
        }
    }

    @Test
    void aClosedEngineRefusesRequests() {
        BatchEngine engine = new BatchEngine(model, tokenizer, new BatchEngine.Options(2, CONTEXT, 0));
        engine.close();
        CompletableFuture<GenerationResult> f = engine.submit("The jury", GenerationSettings.of(3,
                SamplerSettings.greedy()), s -> { });
        assertThrows(java.util.concurrent.CancellationException.class, f::join);
    }

    @Test
    void threadsSharingOneModelGetTheTextsOfOneThread() throws Exception {
        List<Request> requests = requests(8);
        List<GenerationResult> expected = alone(requests);
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            List<Future<List<GenerationResult>>> perThread = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                perThread.add(pool.submit(() -> alone(requests)));
            }
            for (Future<List<GenerationResult>> f : perThread) {
                assertSameTexts(expected, f.get(120, TimeUnit.SECONDS));
            }
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void aGeneratorRefusesASecondThreadInsteadOfMixingTokens() throws Exception {
        CountDownLatch started = new CountDownLatch(1);
        CountDownLatch tried = new CountDownLatch(1);
        try (Generator g = new Generator(model, tokenizer, CONTEXT)) {
            Thread first = Thread.ofPlatform().start(() -> {
                try {
                    g.generate("The jury", GenerationSettings.of(3, SamplerSettings.greedy()), s -> {
                        started.countDown();
                        try {
                            tried.await();
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
                    });
                } catch (IOException e) {
                    throw new RuntimeException(e);
                }
            });
            assertTrue(started.await(60, TimeUnit.SECONDS));
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> g.generate("Once", GenerationSettings.of(3, SamplerSettings.greedy()), s -> { }));
            assertTrue(e.getMessage().contains("make one per thread"), e.getMessage());
            tried.countDown();
            first.join();
        }
    }
}
