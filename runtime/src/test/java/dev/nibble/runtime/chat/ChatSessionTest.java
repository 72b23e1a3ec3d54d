package dev.nibble.runtime.chat;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The chat loop against a scripted model: streaming, stops, interrupts, the context limit and KV-cache reuse. */
class ChatSessionTest {

    private Tokenizer tokenizer;
    private ChatFormat format;
    private ScriptedSampler sampler;
    private int eos;

    @BeforeEach
    void setUp() throws IOException {
        tokenizer = ChatTestData.tinyTokenizer();
        format = ChatFormat.forModel(tokenizer, ChatTestData.tinyTemplate(), null);
        sampler = new ScriptedSampler();
        eos = tokenizer.vocabulary().eosId();
    }

    private int[] answer(String text) {
        return tokenizer.encode(text, false, false);
    }

    @Test
    void answersStreamAndLaterTurnsRunOnlyTheirNewTokens() throws IOException {
        FakeEngine engine = new FakeEngine(512, tokenizer.vocabulary().size());
        ChatSession session = new ChatSession(format, engine, sampler, new ChatHistory("You are a helpful assistant."), 0, 64);

        sampler.add(answer("The jury said the election was conducted well."));
        sampler.add(eos);
        List<String> pieces = new ArrayList<>();
        ChatSession.Turn first = session.send("Who won the election?", pieces::add);
        assertEquals("The jury said the election was conducted well.", String.join("", pieces));
        assertTrue(pieces.size() > 5, "the answer came piece by piece");
        assertEquals(ChatSession.StopReason.END_OF_TURN, first.stopReason());
        assertEquals(0, first.reusedTokens());
        // the end-of-turn token counts as generated, as in generate, but is never run
        assertEquals(first.promptTokens() + first.generatedTokens() - 1, engine.processed);

        sampler.add(answer("It was a fine morning."));
        sampler.add(eos);
        int processedBefore = engine.processed;
        ChatSession.Turn second = session.send("What happened in the morning?", s -> { });
        // The whole first prompt and answer stay in the cache; the second prompt is exactly Hugging Face's rendering.
        int[] refIds = ChatTestData.ids(ChatTestData.json("tiny-llama/refs.json").get("chat_template").get("ids"));
        int[] prompt = Arrays.copyOf(engine.cached(), second.promptTokens());
        assertArrayEquals(refIds, prompt);
        assertEquals(first.promptTokens() + first.generatedTokens() - 1, second.reusedTokens());
        assertEquals(second.promptTokens() - second.reusedTokens() + second.generatedTokens() - 1,
                engine.processed - processedBefore);
        assertEquals(List.of(ChatMessage.system("You are a helpful assistant."), ChatMessage.user("Who won the election?"),
                ChatMessage.assistant("The jury said the election was conducted well."),
                ChatMessage.user("What happened in the morning?"), ChatMessage.assistant("It was a fine morning.")),
                session.history().messages());
    }

    @Test
    void templateMarkerWrittenAsTextEndsTheAnswerUnseen() throws IOException {
        FakeEngine engine = new FakeEngine(512, tokenizer.vocabulary().size());
        ChatSession session = new ChatSession(format, engine, sampler, new ChatHistory(null), 0, 64);
        sampler.add(answer("Sure. [INST] and more"));
        StringBuilder shown = new StringBuilder();
        ChatSession.Turn turn = session.send("hi", shown::append);
        assertEquals("Sure. ", shown.toString());
        assertEquals(ChatSession.StopReason.TEMPLATE_MARKER, turn.stopReason());
        sampler.clear();
        sampler.add(answer("</s> is not shown either"));
        StringBuilder second = new StringBuilder();
        session.send("again", second::append);
        assertEquals("", second.toString());
        // A control token other than end of turn (here BOS) ends the answer too, and is not shown.
        sampler.clear();
        sampler.add(answer("Fine."));
        sampler.add(tokenizer.vocabulary().bosId());
        sampler.add(answer("[INST] more"));
        StringBuilder third = new StringBuilder();
        assertEquals(ChatSession.StopReason.TEMPLATE_MARKER, session.send("once more", third::append).stopReason());
        assertEquals("Fine.", third.toString());
    }

    @Test
    void interruptEndsTheAnswerAndTheChatGoesOn() throws IOException {
        FakeEngine engine = new FakeEngine(512, tokenizer.vocabulary().size());
        ChatSession session = new ChatSession(format, engine, sampler, new ChatHistory(null), 0, 64);
        int[] words = answer("one two three four five six seven eight nine ten");
        sampler.add(words);
        int[] stopAt = {-1};
        engine.afterAppend = size -> {
            if (size == stopAt[0]) {
                session.interrupt();
            }
        };
        int promptLength = format.encode(List.of(ChatMessage.user("count")), true).length;
        stopAt[0] = promptLength + 3;
        StringBuilder shown = new StringBuilder();
        ChatSession.Turn turn = session.send("count", shown::append);
        assertEquals(ChatSession.StopReason.INTERRUPTED, turn.stopReason());
        assertEquals(3, turn.generatedTokens());
        assertEquals(tokenizer.decode(Arrays.copyOf(words, 3), true).strip(), shown.toString().strip());
        assertEquals(shown.toString(), session.history().messages().getLast().content());

        sampler.clear();
        sampler.add(answer("ok"));
        sampler.add(eos);
        StringBuilder next = new StringBuilder();
        assertEquals(ChatSession.StopReason.END_OF_TURN, session.send("go on", next::append).stopReason());
        assertEquals("ok", next.toString());
    }

    @Test
    void generationStopsCleanlyAtTheContextLimit() throws IOException {
        int context = 48;
        FakeEngine engine = new FakeEngine(context, tokenizer.vocabulary().size());
        ChatSession session = new ChatSession(format, engine, sampler, new ChatHistory(null), 0, 8);
        int[] endless = answer("word ".repeat(100));
        sampler.add(endless);
        ChatSession.Turn turn = session.send("talk", s -> { });
        assertEquals(ChatSession.StopReason.CONTEXT_FULL, turn.stopReason());
        // the token sampled when every position is used is shown but never run
        assertEquals(context + 1, turn.promptTokens() + turn.generatedTokens());
        assertEquals(context, engine.cache.size());
    }

    @Test
    void maxTokensEndsTheAnswer() throws IOException {
        FakeEngine engine = new FakeEngine(512, tokenizer.vocabulary().size());
        ChatSession session = new ChatSession(format, engine, sampler, new ChatHistory(null), 4, 8);
        sampler.add(answer("one two three four five six"));
        ChatSession.Turn turn = session.send("count", s -> { });
        assertEquals(ChatSession.StopReason.MAX_TOKENS, turn.stopReason());
        assertEquals(4, turn.generatedTokens());
    }

    @Test
    void tooLongMessageIsRefusedAndForgotten() throws IOException {
        FakeEngine engine = new FakeEngine(64, tokenizer.vocabulary().size());
        ChatSession session = new ChatSession(format, engine, sampler, new ChatHistory(null), 0, 8);
        assertThrows(PromptTooLongException.class, () -> session.send("word ".repeat(100), s -> { }));
        assertEquals(List.of(), session.history().messages());
        sampler.add(answer("fine"));
        sampler.add(eos);
        assertEquals("fine", session.send("short", s -> { }).answer());
    }

    @Test
    void afterAResetOnlyTheSharedStartIsReused() throws IOException {
        FakeEngine engine = new FakeEngine(512, tokenizer.vocabulary().size());
        ChatSession session = new ChatSession(format, engine, sampler, new ChatHistory("Be brief."), 0, 8);
        sampler.add(answer("Hello."));
        sampler.add(eos);
        session.send("Hi", s -> { });
        session.history().clear();
        sampler.add(answer("Bye."));
        sampler.add(eos);
        ChatSession.Turn turn = session.send("Bye", s -> { });
        int[] prompt = format.encode(List.of(ChatMessage.system("Be brief."), ChatMessage.user("Bye")), true);
        assertArrayEquals(prompt, Arrays.copyOf(engine.cached(), prompt.length));
        assertTrue(turn.reusedTokens() > 5 && turn.reusedTokens() < prompt.length, "reused " + turn.reusedTokens());
    }

    @Test
    void wholeConversationIsAnsweredWithoutTouchingTheHistory() throws IOException {
        FakeEngine engine = new FakeEngine(512, tokenizer.vocabulary().size());
        ChatSession session = new ChatSession(format, engine, sampler, new ChatHistory(null), 0, 8);
        JsonNode ref = ChatTestData.json("tiny-llama/refs.json").get("chat_template");
        sampler.add(answer("In the morning, nothing."));
        sampler.add(eos);
        StringBuilder shown = new StringBuilder();
        ChatSession.Turn turn = session.complete(ChatTestData.messages(ref.get("messages")), shown::append);
        assertEquals("In the morning, nothing.", shown.toString());
        assertArrayEquals(ChatTestData.ids(ref.get("ids")), Arrays.copyOf(engine.cached(), turn.promptTokens()));
        assertEquals(List.of(), session.history().messages());
        FakeEngine small = new FakeEngine(40, tokenizer.vocabulary().size());
        ChatSession tight = new ChatSession(format, small, sampler, new ChatHistory(null), 0, 8);
        assertThrows(PromptTooLongException.class, () -> tight.complete(ChatTestData.messages(ref.get("messages")), s -> { }));
    }
}
