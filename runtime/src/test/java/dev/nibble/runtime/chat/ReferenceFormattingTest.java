package dev.nibble.runtime.chat;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import dev.nibble.formats.vocab.Vocabulary;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * Prompt ids for random conversations (with and without a system prompt, one to five turns, with and without the
 * generation prompt) against the formats' reference definitions, written out here as plain code:
 * Meta's Llama 2 {@code chat_completion}, Meta's Llama 3 {@code ChatFormat}, and ChatML as Hugging Face tokenizes it
 * (text split at added tokens, each piece encoded alone).
 */
class ReferenceFormattingTest {

    private static final String[] WORDS = {"Hi", "there", "the", "jury", "said", "?", "!", "ünï", "\n", "  ", "3.14", "[INST]",
        "</s>", "<|eot_id|>", "<<SYS>>", "🦙"};

    @Test
    void llama2IdsFollowMetasChatCompletion() throws IOException {
        Tokenizer tokenizer = ChatTestData.tinyTokenizer();
        int bos = tokenizer.vocabulary().bosId();
        int eos = tokenizer.vocabulary().eosId();
        List<ChatFormat> formats = List.of(ChatFormat.forModel(tokenizer, ChatTestData.tinyTemplate(), null),
                ChatFormat.forModel(tokenizer, null, BuiltInTemplate.LLAMA2));
        Random random = new Random(2);
        for (int trial = 0; trial < 60; trial++) {
            List<ChatMessage> conversation = randomConversation(random);
            // llama/generation.py: the system prompt is wrapped in <<SYS>> and put before the first user message;
            // each exchange is [BOS] + encode("[INST] {user} [/INST] {answer} ") + [EOS]; the last is left open.
            List<ChatMessage> turns = new ArrayList<>(conversation);
            if (turns.getFirst().role().equals(ChatMessage.SYSTEM)) {
                String system = turns.removeFirst().content();
                turns.set(0, ChatMessage.user("<<SYS>>\n" + system + "\n<</SYS>>\n\n" + turns.getFirst().content()));
            }
            List<Integer> expected = new ArrayList<>();
            for (int i = 0; i + 1 < turns.size(); i += 2) {
                expected.add(bos);
                add(expected, tokenizer.encode("[INST] " + strip(turns.get(i).content()) + " [/INST] "
                        + strip(turns.get(i + 1).content()) + " ", false, false));
                expected.add(eos);
            }
            expected.add(bos);
            add(expected, tokenizer.encode("[INST] " + strip(turns.getLast().content()) + " [/INST]", false, false));
            for (ChatFormat format : formats) {
                for (boolean generationPrompt : new boolean[] {true, false}) {
                    assertArrayEquals(ints(expected), format.encode(conversation, generationPrompt), conversation.toString());
                }
            }
        }
    }

    @Test
    void llama3IdsFollowMetasChatFormat() throws IOException {
        Tokenizer tokenizer = ChatTestData.llama3Tokenizer();
        Vocabulary v = tokenizer.vocabulary();
        int begin = v.tokens().indexOf("<|begin_of_text|>");
        int startHeader = v.tokens().indexOf("<|start_header_id|>");
        int endHeader = v.tokens().indexOf("<|end_header_id|>");
        int eot = v.tokens().indexOf("<|eot_id|>");
        List<ChatFormat> formats = List.of(ChatFormat.forModel(tokenizer, null, BuiltInTemplate.LLAMA3),
                ChatFormat.forModel(tokenizer, null, null));
        Random random = new Random(3);
        for (int trial = 0; trial < 60; trial++) {
            List<ChatMessage> conversation = randomConversation(random);
            for (boolean generationPrompt : new boolean[] {true, false}) {
                // llama/tokenizer.py ChatFormat: header = <|start_header_id|> role <|end_header_id|> "\n\n";
                // message = header + content.strip() + <|eot_id|>; dialog = <|begin_of_text|> messages [header(assistant)].
                List<Integer> expected = new ArrayList<>(List.of(begin));
                for (ChatMessage m : conversation) {
                    header(expected, tokenizer, startHeader, endHeader, m.role());
                    add(expected, tokenizer.encode(strip(m.content()), false, false));
                    expected.add(eot);
                }
                if (generationPrompt) {
                    header(expected, tokenizer, startHeader, endHeader, ChatMessage.ASSISTANT);
                }
                for (ChatFormat format : formats) {
                    assertArrayEquals(ints(expected), format.encode(conversation, generationPrompt), conversation.toString());
                }
            }
        }
    }

    @Test
    void chatMlIdsSplitAtTheAddedTokens() throws IOException {
        Tokenizer tokenizer = Tokenizer.from(ChatFormatTest.withControlTokens(ChatTestData.tinyTokenizer().vocabulary(),
                "<|im_start|>", "<|im_end|>"));
        int start = tokenizer.vocabulary().size() - 2;
        int end = start + 1;
        ChatFormat format = ChatFormat.forModel(tokenizer, null, BuiltInTemplate.CHATML);
        Random random = new Random(4);
        for (int trial = 0; trial < 60; trial++) {
            List<ChatMessage> conversation = randomConversation(random);
            for (boolean generationPrompt : new boolean[] {true, false}) {
                List<Integer> expected = new ArrayList<>();
                for (ChatMessage m : conversation) {
                    expected.add(start);
                    add(expected, tokenizer.encode(m.role() + "\n" + m.content(), false, false));
                    expected.add(end);
                    add(expected, tokenizer.encode("\n", false, false));
                }
                if (generationPrompt) {
                    expected.add(start);
                    add(expected, tokenizer.encode("assistant\n", false, false));
                }
                assertArrayEquals(ints(expected), format.encode(conversation, generationPrompt), conversation.toString());
            }
        }
    }

    private static void header(List<Integer> out, Tokenizer tokenizer, int start, int end, String role) {
        out.add(start);
        add(out, tokenizer.encode(role, false, false));
        out.add(end);
        add(out, tokenizer.encode("\n\n", false, false));
    }

    /** Python's str.strip(), written out plainly (whitespace as str.isspace() has it for these texts). */
    private static String strip(String s) {
        int a = 0;
        int b = s.length();
        while (a < b && Character.isWhitespace(s.charAt(a))) {
            a++;
        }
        while (b > a && Character.isWhitespace(s.charAt(b - 1))) {
            b--;
        }
        return s.substring(a, b);
    }

    private static List<ChatMessage> randomConversation(Random random) {
        List<ChatMessage> out = new ArrayList<>();
        if (random.nextBoolean()) {
            out.add(ChatMessage.system(text(random)));
        }
        int turns = 1 + random.nextInt(5);
        for (int t = 0; t < turns; t++) {
            out.add(ChatMessage.user(text(random)));
            if (t < turns - 1) {
                out.add(ChatMessage.assistant(text(random)));
            }
        }
        return out;
    }

    private static String text(Random random) {
        StringBuilder s = new StringBuilder();
        for (int i = 1 + random.nextInt(6); i > 0; i--) {
            s.append(WORDS[random.nextInt(WORDS.length)]).append(random.nextInt(3) == 0 ? "" : " ");
        }
        return s.toString();
    }

    private static void add(List<Integer> out, int[] ids) {
        IntStream.of(ids).forEach(out::add);
    }

    private static int[] ints(List<Integer> ids) {
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }
}
