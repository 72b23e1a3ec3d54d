package dev.nibble.runtime.chat;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.function.Function;
import java.util.function.IntFunction;

/**
 * A conversation as a chat keeps it: an optional system prompt, then user and assistant messages taking turns.
 * {@link #prompt} makes it fit a context window by dropping the oldest exchanges.
 */
public final class ChatHistory {

    /** A prompt that fits: its ids, and how many old messages had to be dropped for it. */
    public record Prompt(int[] ids, int droppedMessages) {
    }

    private String system;
    private final List<ChatMessage> turns = new ArrayList<>();

    /** An empty conversation with this system prompt (null for none). */
    public ChatHistory(String system) {
        this.system = system;
    }

    /**
     * A conversation from messages: an optional system message first, then user and assistant messages taking turns,
     * starting with the user.
     *
     * @throws IllegalArgumentException naming the first message out of order
     */
    public static ChatHistory of(List<ChatMessage> messages) {
        int start = !messages.isEmpty() && messages.getFirst().role().equals(ChatMessage.SYSTEM) ? 1 : 0;
        ChatHistory history = new ChatHistory(start == 1 ? messages.getFirst().content() : null);
        for (int i = start; i < messages.size(); i++) {
            ChatMessage m = messages.get(i);
            String expected = (i - start) % 2 == 0 ? ChatMessage.USER : ChatMessage.ASSISTANT;
            if (!m.role().equals(expected)) {
                throw new IllegalArgumentException("message " + (i + 1) + " has role '" + m.role() + "' where '" + expected
                        + "' was expected (a system message may come first, then user and assistant take turns)");
            }
            history.turns.add(m);
        }
        return history;
    }

    public Optional<String> system() {
        return Optional.ofNullable(system);
    }

    /** Sets (or, with null, removes) the system prompt. */
    public void setSystem(String system) {
        this.system = system;
    }

    public void addUser(String text) {
        if (expectsUser()) {
            turns.add(ChatMessage.user(text));
        } else {
            throw new IllegalStateException("the user spoke last; an assistant message must come first");
        }
    }

    public void addAssistant(String text) {
        if (expectsUser()) {
            throw new IllegalStateException("an assistant message must answer a user message");
        }
        turns.add(ChatMessage.assistant(text));
    }

    /** Removes the latest user message when it went unanswered (the prompt was refused). */
    public void dropUnansweredUser() {
        if (!expectsUser()) {
            turns.removeLast();
        }
    }

    private boolean expectsUser() {
        return turns.size() % 2 == 0;
    }

    /** Forgets every turn; the system prompt stays. */
    public void clear() {
        turns.clear();
    }

    /** The system message (if any) followed by the turns. */
    public List<ChatMessage> messages() {
        return messagesFrom(0);
    }

    /** Number of user and assistant messages. */
    public int turnCount() {
        return turns.size();
    }

    /**
     * The prompt for the assistant's answer to the latest user message, made to fit: while the prompt plus
     * {@code answerRoom} tokens exceed the context and older exchanges remain, the oldest user/assistant pair is dropped
     * from this history for good. The system prompt and the latest user message always stay.
     *
     * @throws PromptTooLongException when the system prompt and the latest user message alone leave no room to answer;
     *                                the history is then left as it was
     */
    public Prompt prompt(ChatFormat format, int contextSize, int answerRoom) {
        return prompt(messages -> format.encode(messages, true), contextSize, answerRoom);
    }

    /**
     * {@link #prompt(ChatFormat, int, int)} with the encoding given. Rendering is the costly part, so it is done a few
     * times only, never once per dropped exchange: the whole conversation first (it usually fits), else windows of
     * the latest 1, 2, 4, ... exchanges until one does not fit, then a binary search between the last two sizes. Each
     * window tried holds at most about twice what fits, so after a {@code /load} of 40,000 messages the work is one
     * render of them all plus a few renders of context size: linear in the conversation, not quadratic.
     */
    Prompt prompt(Function<List<ChatMessage>, int[]> encode, int contextSize, int answerRoom) {
        if (expectsUser()) {
            throw new IllegalStateException("there is no user message to answer");
        }
        // The candidate prompts keep the latest user message and the latest k exchanges before it, k = 0 .. all.
        int all = turns.size() / 2;
        IntFunction<int[]> keeping = k -> encode.apply(messagesFrom(turns.size() - 1 - 2 * k));
        int kept = all;
        int[] ids = keeping.apply(all);
        if (ids.length + answerRoom > contextSize && all > 0) {
            kept = 0;
            ids = keeping.apply(0);
            if (ids.length + answerRoom <= contextSize) {
                // Fewer exchanges never make a longer prompt: `kept` exchanges fit, `bad` ones do not.
                int bad = 1;
                while (bad < all) {
                    int[] probe = keeping.apply(bad);
                    if (probe.length + answerRoom > contextSize) {
                        break;
                    }
                    kept = bad;
                    ids = probe;
                    bad = Math.min(all, 2 * bad);
                }
                while (bad - kept > 1) {
                    int middle = (kept + bad) >>> 1;
                    int[] probe = keeping.apply(middle);
                    if (probe.length + answerRoom <= contextSize) {
                        kept = middle;
                        ids = probe;
                    } else {
                        bad = middle;
                    }
                }
            }
        }
        if (ids.length >= contextSize) {
            throw new PromptTooLongException((system != null ? "the system prompt and the message take " : "the message takes ")
                    + ids.length + " tokens, but the context holds only " + contextSize + " (raise --ctx or shorten it)");
        }
        int dropped = 2 * (all - kept);
        turns.subList(0, dropped).clear();
        return new Prompt(ids, dropped);
    }

    private List<ChatMessage> messagesFrom(int firstTurn) {
        List<ChatMessage> out = new ArrayList<>(turns.size() - firstTurn + 1);
        if (system != null) {
            out.add(ChatMessage.system(system));
        }
        out.addAll(turns.subList(firstTurn, turns.size()));
        return out;
    }
}
