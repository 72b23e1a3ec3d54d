package dev.nibble.runtime.chat;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.nibble.formats.vocab.Vocabulary;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/** Prompt ids against Hugging Face's {@code apply_chat_template(tokenize=True)}, and users' text kept as text. */
class ChatFormatTest {

    private static ChatFormat tinyOwn() throws IOException {
        return ChatFormat.forModel(ChatTestData.tinyTokenizer(), ChatTestData.tinyTemplate(), null);
    }

    private static ChatFormat llama3Own() throws IOException {
        return ChatFormat.forModel(ChatTestData.llama3Tokenizer(), ChatTestData.llama3Template(), null);
    }

    @Test
    void tinyModelPromptIdsEqualHuggingFaces() throws IOException {
        JsonNode ref = ChatTestData.json("tiny-llama/refs.json").get("chat_template");
        for (ChatFormat format : List.of(tinyOwn(), ChatFormat.forModel(ChatTestData.tinyTokenizer(), null, BuiltInTemplate.LLAMA2))) {
            assertArrayEquals(ChatTestData.ids(ref.get("ids")), format.encode(ChatTestData.messages(ref.get("messages")), true));
            JsonNode two = ref.get("two_turn_prompt");
            assertArrayEquals(ChatTestData.ids(two.get("ids")), format.encode(ChatTestData.messages(two.get("messages")), true));
        }
    }

    @Test
    void llama3PromptIdsEqualHuggingFaces() throws IOException {
        JsonNode ref = ChatTestData.json("tokenizers/reference-ids.json").get("llama3_chat");
        for (ChatFormat format : List.of(llama3Own(), ChatFormat.forModel(ChatTestData.llama3Tokenizer(), null, BuiltInTemplate.LLAMA3),
                ChatFormat.forModel(ChatTestData.llama3Tokenizer(), null, null))) {
            assertArrayEquals(ChatTestData.ids(ref.get("ids")), format.encode(ChatTestData.messages(ref.get("messages")), true));
        }
    }

    @Test
    void chatMlPromptIdsPutControlTokensBetweenPlainTextPieces() throws IOException {
        Tokenizer tokenizer = Tokenizer.from(withControlTokens(ChatTestData.tinyTokenizer().vocabulary(), "<|im_start|>", "<|im_end|>"));
        int start = tokenizer.vocabulary().size() - 2;
        int end = start + 1;
        ChatFormat format = ChatFormat.forModel(tokenizer, null, null);
        assertEquals("<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n", format.render(ChatTemplateTest.ONE_TURN, true));
        int[] ids = format.encode(ChatTemplateTest.WITH_SYSTEM, true);
        // Hugging Face splits the text at added tokens and encodes each piece on its own.
        int[] expected = concat(new int[] {start}, plain(tokenizer, "system\nYou are terse."), new int[] {end},
                plain(tokenizer, "\n"), new int[] {start}, plain(tokenizer, "user\nHi there!"), new int[] {end},
                plain(tokenizer, "\n"), new int[] {start}, plain(tokenizer, "assistant\nHello! How can I help?"), new int[] {end},
                plain(tokenizer, "\n"), new int[] {start}, plain(tokenizer, "user\n  Tell me a joke.  "), new int[] {end},
                plain(tokenizer, "\n"), new int[] {start}, plain(tokenizer, "assistant\n"));
        assertArrayEquals(expected, ids);
        assertTrue(format.isEndOfTurn(end));
    }

    @Test
    void specialTokenTextTypedByAUserStaysText() throws IOException {
        String typed = "[INST] <s> </s> <unk> <|eot_id|> <|begin_of_text|> <<SYS>> \uE000</s\uE000>";
        for (ChatFormat format : List.of(tinyOwn(), llama3Own())) {
            Tokenizer tokenizer = format.tokenizer();
            List<ChatMessage> conversation = List.of(ChatMessage.system(typed), ChatMessage.user(typed),
                    ChatMessage.assistant(typed), ChatMessage.user("ok " + typed));
            int[] ids = format.encode(conversation, true);
            if (tokenizer.vocabulary().model() == Vocabulary.Model.GPT2) {
                // Byte-level BPE decodes to exactly the rendered text: the escaping lost and added nothing.
                assertEquals(format.render(conversation, true), tokenizer.decode(ids, false));
            }
            // The template's own special tokens are there, and no others.
            int[] withSpecialParsingOfTemplateOnly = format.encode(List.of(ChatMessage.system("a"), ChatMessage.user("b"),
                    ChatMessage.assistant("c"), ChatMessage.user("d")), true);
            assertEquals(controlTokens(tokenizer, withSpecialParsingOfTemplateOnly), controlTokens(tokenizer, ids));
            // Parsing the same text with special tokens on would have found the typed ones too.
            int[] naive = tokenizer.encode(format.render(conversation, true), false, true);
            assertTrue(controlTokens(tokenizer, naive).size() > controlTokens(tokenizer, ids).size());
        }
    }

    @Test
    void withoutTypedSpecialTokensIdsEqualParsingTheRenderedText() throws IOException {
        Random random = new Random(42);
        String alphabet = "abcxyz ÄéĀ漢字🦙\n\t.,!?<>/[]|_";
        for (ChatFormat format : List.of(tinyOwn(), llama3Own())) {
            for (int trial = 0; trial < 30; trial++) {
                List<ChatMessage> conversation = new ArrayList<>();
                if (random.nextBoolean()) {
                    conversation.add(ChatMessage.system(randomText(random, alphabet)));
                }
                int turns = 1 + random.nextInt(4);
                for (int t = 0; t < turns; t++) {
                    conversation.add(ChatMessage.user(randomText(random, alphabet)));
                    if (t < turns - 1) {
                        conversation.add(ChatMessage.assistant(randomText(random, alphabet)));
                    }
                }
                String rendered = format.render(conversation, true);
                assertArrayEquals(format.tokenizer().encode(rendered, false, true), format.encode(conversation, true), rendered);
            }
        }
    }

    @Test
    void escapingRoundTripsAnyText() throws IOException {
        SpecialTokenStrings specials = new SpecialTokenStrings(ChatTestData.llama3Tokenizer().vocabulary());
        Random random = new Random(7);
        String[] atoms = {"<|eot_id|>", "<|", "|>", "\uE000", "\uE000\uE000", "a", " ", "<|start_header_id|>", "<|eot_id"};
        for (int trial = 0; trial < 500; trial++) {
            StringBuilder s = new StringBuilder();
            for (int i = random.nextInt(8); i > 0; i--) {
                s.append(atoms[random.nextInt(atoms.length)]);
            }
            String escaped = specials.escape(s.toString());
            assertEquals(s.toString(), SpecialTokenStrings.unescape(escaped));
            assertTrue(specials.split(escaped).stream().allMatch(p -> p.id() < 0), escaped);
        }
    }

    @Test
    void endOfTurnTokensAndStopStringsFollowTheFormat() throws IOException {
        ChatFormat tiny = tinyOwn();
        assertArrayEquals(new int[] {2}, tiny.endOfTurnIds());
        assertTrue(tiny.stopStrings().containsAll(List.of("[INST]", "[/INST]", "<<SYS>>", "</s>", "<s>")));
        Vocabulary v3 = ChatTestData.llama3Tokenizer().vocabulary();
        ChatFormat llama3 = llama3Own();
        assertTrue(llama3.isEndOfTurn(v3.tokens().indexOf("<|eot_id|>")));
        assertTrue(llama3.isEndOfTurn(v3.tokens().indexOf("<|end_of_text|>")));
        assertFalse(llama3.isEndOfTurn(v3.tokens().indexOf("<|start_header_id|>")));
        assertTrue(llama3.stopStrings().contains("<|start_header_id|>"));
    }

    @Test
    void builtInTemplateIsChosenFromTheVocabulary() throws IOException {
        assertEquals(BuiltInTemplate.LLAMA3, BuiltInTemplate.forVocabulary(ChatTestData.llama3Tokenizer().vocabulary()));
        Vocabulary tiny = ChatTestData.tinyTokenizer().vocabulary();
        assertEquals(BuiltInTemplate.LLAMA2, BuiltInTemplate.forVocabulary(tiny));
        assertEquals(BuiltInTemplate.CHATML, BuiltInTemplate.forVocabulary(withControlTokens(tiny, "<|im_start|>", "<|im_end|>")));
        assertEquals(BuiltInTemplate.CHATML, BuiltInTemplate.named("ChatML"));
    }

    static Vocabulary withControlTokens(Vocabulary v, String... added) {
        List<String> tokens = new ArrayList<>(v.tokens());
        tokens.addAll(List.of(added));
        int[] types = Arrays.copyOf(v.tokenTypes(), tokens.size());
        Arrays.fill(types, v.size(), tokens.size(), Vocabulary.CONTROL);
        float[] scores = v.scores() == null ? null : Arrays.copyOf(v.scores(), tokens.size());
        return new Vocabulary(v.model(), v.preTokenizer(), tokens, scores, types, v.merges(), v.bosId(), v.eosId(),
                v.unkId(), v.padId(), v.addBos(), v.addEos(), v.addSpacePrefix());
    }

    private static int[] plain(Tokenizer tokenizer, String text) {
        return tokenizer.encode(text, false, false);
    }

    private static int[] concat(int[]... parts) {
        return Arrays.stream(parts).flatMapToInt(Arrays::stream).toArray();
    }

    private static List<Integer> controlTokens(Tokenizer tokenizer, int[] ids) {
        return IntStream.of(ids).filter(id -> tokenizer.vocabulary().tokenTypes()[id] != Vocabulary.NORMAL
                && tokenizer.vocabulary().tokenTypes()[id] != Vocabulary.BYTE).boxed().toList();
    }

    private static String randomText(Random random, String alphabet) {
        int[] cps = alphabet.codePoints().toArray();
        StringBuilder s = new StringBuilder();
        for (int i = random.nextInt(12); i > 0; i--) {
            s.appendCodePoint(cps[random.nextInt(cps.length)]);
        }
        return s.toString();
    }
}
