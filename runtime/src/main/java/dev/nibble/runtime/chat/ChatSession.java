package dev.nibble.runtime.chat;

import dev.nibble.runtime.Generation;
import dev.nibble.runtime.GenerationResult;
import dev.nibble.runtime.GenerationSettings;
import dev.nibble.runtime.SamplerSettings;
import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import java.util.function.Consumer;

/**
 * A multi-turn conversation with a model. The KV cache is kept across turns: each turn renders the whole conversation,
 * and only the tokens after the longest prefix already in the cache are run.
 */
public final class ChatSession {

    /** Why an answer ended. */
    public enum StopReason {
        /** The model ended its turn (an end-of-turn token). */
        END_OF_TURN,
        /** The model began a template marker: as text, or as a control token other than end of turn. */
        TEMPLATE_MARKER,
        /** The answer reached the token limit. */
        MAX_TOKENS,
        /** The context window is full. */
        CONTEXT_FULL,
        /** {@link #interrupt()} was called (Ctrl-C). */
        INTERRUPTED
    }

    /**
     * One answer and what it took.
     *
     * @param promptTokens    tokens of the rendered prompt
     * @param reusedTokens    of those, how many were already in the KV cache
     * @param droppedMessages old messages dropped to fit the context
     */
    public record Turn(String answer, StopReason stopReason, int promptTokens, int reusedTokens, int generatedTokens,
                       long promptNanos, long generateNanos, int droppedMessages) {
    }

    private final ChatFormat format;
    private final ChatEngine engine;
    private final TokenSampler sampler;
    private final ChatHistory history;
    private final int maxTokens;
    private final int answerRoom;
    private volatile boolean interrupted;
    private volatile Generation current;
    /** The tokens now in the engine's KV cache, in order. */
    private int[] cached = new int[0];

    /**
     * @param maxTokens  the most tokens one answer may have (0: until the context is full)
     * @param answerRoom how many tokens of the context to keep free for an answer when trimming old turns
     */
    public ChatSession(ChatFormat format, ChatEngine engine, TokenSampler sampler, ChatHistory history,
                       int maxTokens, int answerRoom) {
        if (answerRoom < 1 || answerRoom >= engine.contextSize()) {
            throw new IllegalArgumentException("room for the answer must be 1 .. " + (engine.contextSize() - 1)
                    + " tokens, is " + answerRoom);
        }
        this.format = format;
        this.engine = engine;
        this.sampler = sampler;
        this.history = history;
        this.maxTokens = maxTokens;
        this.answerRoom = answerRoom;
    }

    public ChatHistory history() {
        return history;
    }

    public ChatFormat format() {
        return format;
    }

    /** Positions of the context window. */
    public int contextSize() {
        return engine.contextSize();
    }

    /** Tokens in the KV cache now. */
    public int cachedTokens() {
        return cached.length;
    }

    /**
     * Ends the answer being generated after the current token; safe to call from a signal handler's thread. A call
     * while no answer is running is forgotten when the next one starts.
     */
    public void interrupt() {
        interrupted = true;
        Generation running = current;
        if (running != null) {
            running.cancel();
        }
    }

    /**
     * Adds the user's message, streams the answer to {@code out} piece by piece, and adds it to the history.
     *
     * @throws PromptTooLongException when the message cannot fit the context (the message is not kept)
     */
    public Turn send(String userText, Consumer<String> out) throws IOException {
        interrupted = false;
        history.addUser(userText);
        ChatHistory.Prompt prompt;
        try {
            prompt = history.prompt(format, engine.contextSize(), answerRoom);
        } catch (RuntimeException e) {
            history.dropUnansweredUser();
            throw e;
        }
        Turn turn = answer(prompt.ids(), prompt.droppedMessages(), out);
        history.addAssistant(turn.answer());
        return turn;
    }

    /**
     * Answers a whole conversation given at once (its last message is the user's), streaming the answer to {@code out};
     * the history is left alone. This is {@code nibble generate --chat}.
     *
     * @throws PromptTooLongException when the conversation leaves no room in the context for an answer
     */
    public Turn complete(List<ChatMessage> conversation, Consumer<String> out) throws IOException {
        interrupted = false;
        int[] ids = format.encode(conversation, true);
        if (ids.length >= engine.contextSize()) {
            throw new PromptTooLongException("the conversation takes " + ids.length + " tokens, but the context holds only "
                    + engine.contextSize() + " (raise --ctx or shorten it)");
        }
        return answer(ids, 0, out);
    }

    private Turn answer(int[] ids, int droppedMessages, Consumer<String> out) throws IOException {
        // At least the last prompt token is run again: its logits are needed to start the answer.
        int reused = Math.min(commonPrefix(cached, ids), ids.length - 1);
        Generation generation = Generation.answering(ids, new GenerationSettings(maxTokens > 0 ? maxTokens : -1,
                SamplerSettings.greedy(), List.of()), sampler, format, engine.contextSize(), out);
        current = generation;
        if (interrupted) { // Ctrl-C between the reset in send and here
            generation.cancel();
        }
        // Until the turn completes, what the cache holds beyond the reused prefix is not known for sure.
        cached = Arrays.copyOf(ids, reused);
        try {
            engine.truncate(reused);
            float[] logits = engine.append(Arrays.copyOfRange(ids, reused, ids.length));
            while (generation.accept(logits)) {
                logits = engine.append(new int[] {generation.next()});
            }
        } finally {
            current = null;
        }
        cached = generation.tokensInCache();
        GenerationResult r = generation.result();
        StopReason reason = switch (r.stopReason()) {
            case END_TOKEN -> format.isEndOfTurn(generation.endTokenId()) ? StopReason.END_OF_TURN
                    : StopReason.TEMPLATE_MARKER;
            case STOP_STRING -> StopReason.TEMPLATE_MARKER;
            case MAX_TOKENS -> StopReason.MAX_TOKENS;
            case CONTEXT_FULL -> StopReason.CONTEXT_FULL;
            case CANCELLED -> StopReason.INTERRUPTED;
        };
        return new Turn(r.text(), reason, ids.length, reused, r.generatedTokens(), r.promptNanos(), r.generationNanos(),
                droppedMessages);
    }

    private static int commonPrefix(int[] a, int[] b) {
        int n = Math.min(a.length, b.length);
        int i = 0;
        while (i < n && a[i] == b[i]) {
            i++;
        }
        return i;
    }
}
