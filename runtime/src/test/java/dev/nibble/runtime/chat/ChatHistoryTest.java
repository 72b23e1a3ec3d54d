package dev.nibble.runtime.chat;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

class ChatHistoryTest {

    private static final String[] WORDS = {"the", "jury", "said", "election", "morning", "ünï", "?", "\n", "[INST]", "</s>", "7"};

    @Test
    void trimmingKeepsSystemAndLastTurnAndNeverExceedsTheContext() throws IOException {
        ChatFormat format = ChatFormat.forModel(ChatTestData.tinyTokenizer(), ChatTestData.tinyTemplate(), null);
        Random random = new Random(20261127);
        int trimmed = 0;
        int refused = 0;
        for (int trial = 0; trial < 200; trial++) {
            String system = random.nextBoolean() ? text(random, 1 + random.nextInt(30)) : null;
            List<ChatMessage> turns = new ArrayList<>();
            int exchanges = random.nextInt(10);
            for (int i = 0; i < exchanges; i++) {
                turns.add(ChatMessage.user(text(random, random.nextInt(25))));
                turns.add(ChatMessage.assistant(text(random, random.nextInt(40))));
            }
            turns.add(ChatMessage.user(text(random, random.nextInt(60))));
            int context = 20 + random.nextInt(400);
            int room = 1 + random.nextInt(40);
            ChatHistory history = new ChatHistory(system);
            for (ChatMessage m : turns) {
                if (m.role().equals(ChatMessage.USER)) {
                    history.addUser(m.content());
                } else {
                    history.addAssistant(m.content());
                }
            }
            // Plain reference: drop the fewest oldest exchanges that make prompt + room fit, else all of them.
            int keepFrom = -1;
            int[] expected = null;
            for (int dropped = 0; dropped < turns.size(); dropped += 2) {
                expected = format.encode(withSystem(system, turns.subList(dropped, turns.size())), true);
                keepFrom = dropped;
                if (expected.length + room <= context) {
                    break;
                }
            }
            if (expected.length >= context) {
                List<ChatMessage> before = history.messages();
                assertThrows(PromptTooLongException.class, () -> history.prompt(format, context, room));
                assertEquals(before, history.messages(), "a refused prompt leaves the history as it was");
                refused++;
                continue;
            }
            ChatHistory.Prompt prompt = history.prompt(format, context, room);
            assertArrayEquals(expected, prompt.ids());
            assertTrue(prompt.ids().length < context);
            assertEquals(keepFrom, prompt.droppedMessages());
            List<ChatMessage> kept = history.messages();
            assertEquals(withSystem(system, turns.subList(keepFrom, turns.size())), kept);
            assertEquals(turns.getLast(), kept.getLast());
            if (system != null) {
                assertEquals(ChatMessage.system(system), kept.getFirst());
            }
            trimmed += keepFrom > 0 ? 1 : 0;
        }
        assertTrue(trimmed > 20 && refused > 5, "the random cases reach both trimming and refusal: " + trimmed + ", " + refused);
    }

    @Test
    void trimmingALongConversationRendersAFewTimesNotOncePerDroppedExchange() {
        // 20,000 exchanges of 10 tokens a message, as after /load of a long chat, into a 1,000-token context.
        int exchanges = 20_000;
        ChatHistory history = new ChatHistory("system");
        for (int i = 0; i < exchanges; i++) {
            history.addUser("question " + i);
            history.addAssistant("answer " + i);
        }
        history.addUser("latest");
        long[] rendered = new long[2]; // renders, messages rendered
        ChatHistory.Prompt prompt = history.prompt(messages -> {
            rendered[0]++;
            rendered[1] += messages.size();
            return new int[10 * messages.size()];
        }, 1000, 100);
        // The system message, k exchanges and the latest message, 10 tokens each, plus 100 of room fit when k <= 44.
        assertEquals(2 * (exchanges - 44), prompt.droppedMessages());
        assertEquals(10 * (1 + 2 * 44 + 1), prompt.ids().length);
        assertEquals(1 + 2 * 44 + 1, history.messages().size());
        // Dropping one exchange at a time would render 20,000 times and 400 million messages.
        assertTrue(rendered[0] <= 20, rendered[0] + " renders");
        assertTrue(rendered[1] <= 3L * (2 * exchanges + 2), rendered[1] + " messages rendered");
    }

    @Test
    void oneMessageLongerThanTheContextIsAClearError() throws IOException {
        ChatFormat format = ChatFormat.forModel(ChatTestData.tinyTokenizer(), null, BuiltInTemplate.LLAMA2);
        ChatHistory history = new ChatHistory("Be brief.");
        history.addUser("word ".repeat(300));
        PromptTooLongException e = assertThrows(PromptTooLongException.class, () -> history.prompt(format, 128, 16));
        assertTrue(e.getMessage().matches("the system prompt and the message take \\d+ tokens, but the context holds only 128.*"),
                e.getMessage());
    }

    @Test
    void conversationsOutOfOrderAreRefusedWhenLoaded() {
        assertEquals(3, ChatHistory.of(List.of(ChatMessage.system("s"), ChatMessage.user("u"), ChatMessage.assistant("a"),
                ChatMessage.user("v"))).turnCount());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ChatHistory.of(List.of(ChatMessage.user("u"), ChatMessage.system("s"))));
        assertEquals("message 2 has role 'system' where 'assistant' was expected (a system message may come first, "
                + "then user and assistant take turns)", e.getMessage());
    }

    private static List<ChatMessage> withSystem(String system, List<ChatMessage> turns) {
        List<ChatMessage> out = new ArrayList<>();
        if (system != null) {
            out.add(ChatMessage.system(system));
        }
        out.addAll(turns);
        return out;
    }

    private static String text(Random random, int words) {
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < words; i++) {
            s.append(i == 0 ? "" : " ").append(WORDS[random.nextInt(WORDS.length)]);
        }
        return s.toString();
    }
}
