package dev.nibble.runtime.chat;

import dev.nibble.formats.gguf.GgufFile;
import dev.nibble.formats.vocab.Vocabulary;
import dev.nibble.formats.vocab.VocabularyGguf;
import dev.nibble.runtime.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * A model's chat format: its template with its tokenizer. Turns conversations into the token ids the model expects
 * and knows which tokens and texts end a turn.
 *
 * <p>Special tokens that the template writes become their ids; the same texts typed by a user stay plain text.
 */
public final class ChatFormat {

    /** Token texts that end a turn in the formats nibble knows, when the vocabulary has them as control tokens. */
    private static final List<String> END_OF_TURN_TOKENS = List.of(
            "</s>", "<|eot_id|>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>", "<|end|>", "<end_of_turn>", "<|eom_id|>");
    /** Template markers that must never reach the user; an answer that starts writing one has ended. */
    private static final List<String> MARKERS = List.of(
            "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<|im_start|>", "<|im_end|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eot_id|>", "<|begin_of_text|>", "<|end_of_text|>", "<start_of_turn>", "<end_of_turn>");

    private final ChatTemplate template;
    private final Tokenizer tokenizer;
    private final SpecialTokenStrings specials;
    private final int[] endOfTurnIds;
    private final List<String> stopStrings;

    private ChatFormat(ChatTemplate template, Tokenizer tokenizer) {
        this.template = template;
        this.tokenizer = tokenizer;
        this.specials = new SpecialTokenStrings(tokenizer.vocabulary());
        this.endOfTurnIds = endOfTurnIds(tokenizer.vocabulary());
        this.stopStrings = stopStrings(template);
    }

    /** The format of a template for a tokenizer. */
    public static ChatFormat of(ChatTemplate template, Tokenizer tokenizer) {
        return new ChatFormat(template, tokenizer);
    }

    /**
     * The format for a model: its own template when it has one and no built-in was asked for, else the built-in
     * chosen, else the built-in its vocabulary suggests.
     *
     * @param modelTemplate the model's {@code tokenizer.chat_template}, or null
     * @param chosen        the built-in the user asked for ({@code --template}), or null
     */
    public static ChatFormat forModel(Tokenizer tokenizer, String modelTemplate, BuiltInTemplate chosen) {
        Vocabulary vocab = tokenizer.vocabulary();
        String source = chosen != null ? chosen.source()
                : modelTemplate != null && !modelTemplate.isBlank() ? modelTemplate
                : BuiltInTemplate.forVocabulary(vocab).source();
        return of(ChatTemplate.of(source, tokenText(vocab, vocab.bosId()), tokenText(vocab, vocab.eosId())), tokenizer);
    }

    /** The format for a model file: its own template ({@code tokenizer.chat_template}), else the built-in its vocabulary suggests. */
    public static ChatFormat forModel(GgufFile file, Tokenizer tokenizer) {
        return forModel(tokenizer, file.metadata().findString(VocabularyGguf.CHAT_TEMPLATE).orElse(null), null);
    }

    private static String tokenText(Vocabulary vocab, int id) {
        return id < 0 ? "" : vocab.tokens().get(id);
    }

    public ChatTemplate template() {
        return template;
    }

    public Tokenizer tokenizer() {
        return tokenizer;
    }

    /** The prompt text exactly as the template renders it (what {@code apply_chat_template(tokenize=False)} gives). */
    public String render(List<ChatMessage> messages, boolean addGenerationPrompt) {
        return template.render(messages, addGenerationPrompt);
    }

    /**
     * The prompt's token ids: the template's special tokens as their ids, every other text (users' too) encoded as
     * plain text. The template supplies BOS where the model wants it, so none is added.
     */
    public int[] encode(List<ChatMessage> messages, boolean addGenerationPrompt) {
        List<ChatMessage> escaped = new ArrayList<>(messages.size());
        for (ChatMessage m : messages) {
            escaped.add(new ChatMessage(m.role(), specials.escape(m.content())));
        }
        String rendered = template.render(escaped, addGenerationPrompt);
        List<int[]> parts = new ArrayList<>();
        int total = 0;
        for (SpecialTokenStrings.Piece p : specials.split(rendered)) {
            int[] ids = p.id() >= 0 ? new int[] {p.id()} : tokenizer.encode(p.text(), false, false);
            parts.add(ids);
            total += ids.length;
        }
        int[] out = new int[total];
        int at = 0;
        for (int[] ids : parts) {
            System.arraycopy(ids, 0, out, at, ids.length);
            at += ids.length;
        }
        return out;
    }

    /** Ids whose sampling ends the assistant's turn: EOS and the format's end-of-turn control tokens. */
    public int[] endOfTurnIds() {
        return endOfTurnIds.clone();
    }

    public boolean isEndOfTurn(int id) {
        for (int e : endOfTurnIds) {
            if (e == id) {
                return true;
            }
        }
        return false;
    }

    /** Whether the token is a control token (a template marker such as {@code <|start_header_id|>}, or BOS). */
    public boolean isControl(int id) {
        return tokenizer.vocabulary().tokenTypes()[id] == Vocabulary.CONTROL;
    }

    /** Texts that end an answer if the model writes them out as plain text: the template's own markers. */
    public List<String> stopStrings() {
        return stopStrings;
    }

    private static int[] endOfTurnIds(Vocabulary vocab) {
        Set<Integer> ids = new LinkedHashSet<>();
        if (vocab.eosId() >= 0) {
            ids.add(vocab.eosId());
        }
        for (int i = 0; i < vocab.size(); i++) {
            if (vocab.tokenTypes()[i] == Vocabulary.CONTROL && END_OF_TURN_TOKENS.contains(vocab.tokens().get(i))) {
                ids.add(i);
            }
        }
        return ids.stream().mapToInt(Integer::intValue).toArray();
    }

    private static List<String> stopStrings(ChatTemplate template) {
        Set<String> out = new LinkedHashSet<>();
        for (String marker : MARKERS) {
            if (template.source().contains(marker)) {
                out.add(marker);
            }
        }
        for (String token : List.of(template.bosToken(), template.eosToken())) {
            if (!token.isEmpty()) {
                out.add(token);
            }
        }
        return List.copyOf(out);
    }
}
