package dev.nibble.runtime.chat;

import dev.nibble.formats.vocab.Vocabulary;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The texts of a vocabulary's control tokens (and its unknown token): found in a rendered prompt, and neutralised in
 * what users typed. User-defined tokens are left to the tokenizer, which matches them in any text, as llama.cpp does.
 *
 * <p>Users' text is escaped before rendering by putting {@link #MARK}, a private-use character, after the first
 * character of every control-token text in it (and doubling any MARK already there). Templates may strip or concatenate
 * the text; they cannot rejoin a marked token, so in the rendered prompt only the template's own tokens match.
 * (A control token of a single character cannot be broken this way; no Llama-family vocabulary has one.)
 */
final class SpecialTokenStrings {

    static final char MARK = '\uE000';

    /** A piece of a rendered prompt: a special token (id >= 0) or text to encode as plain text (id = -1). */
    record Piece(int id, String text) {
    }

    private record Candidate(String text, int id) {
    }

    private final Map<Character, List<Candidate>> byFirstChar = new HashMap<>();

    SpecialTokenStrings(Vocabulary vocab) {
        for (int i = 0; i < vocab.size(); i++) {
            int type = vocab.tokenTypes()[i];
            String text = vocab.tokens().get(i);
            if (!text.isEmpty() && (type == Vocabulary.CONTROL || type == Vocabulary.UNKNOWN)) {
                byFirstChar.computeIfAbsent(text.charAt(0), c -> new ArrayList<>()).add(new Candidate(text, i));
            }
        }
        for (List<Candidate> list : byFirstChar.values()) {
            list.sort(Comparator.comparingInt((Candidate c) -> c.text().length()).reversed());
        }
    }

    /** The longest special token whose text starts at position i, or null. */
    private Candidate at(String text, int i) {
        List<Candidate> candidates = byFirstChar.get(text.charAt(i));
        if (candidates != null) {
            for (Candidate c : candidates) {
                if (text.startsWith(c.text(), i)) {
                    return c;
                }
            }
        }
        return null;
    }

    /** User text with every special-token text in it broken by {@link #MARK}. */
    String escape(String userText) {
        StringBuilder out = new StringBuilder(userText.length() + 8);
        for (int i = 0; i < userText.length(); i++) {
            char c = userText.charAt(i);
            out.append(c);
            if (c == MARK || at(userText, i) != null) {
                out.append(MARK);
            }
        }
        return out.toString();
    }

    /** Undoes {@link #escape}: a doubled MARK becomes one, a single MARK goes. */
    static String unescape(String text) {
        if (text.indexOf(MARK) < 0) {
            return text;
        }
        StringBuilder out = new StringBuilder(text.length());
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c != MARK) {
                out.append(c);
            } else if (i + 1 < text.length() && text.charAt(i + 1) == MARK) {
                out.append(MARK);
                i++;
            }
        }
        return out.toString();
    }

    /** Splits a rendered prompt into special tokens and the (unescaped) text between them. */
    List<Piece> split(String rendered) {
        List<Piece> out = new ArrayList<>();
        int plainStart = 0;
        int i = 0;
        while (i < rendered.length()) {
            Candidate hit = at(rendered, i);
            if (hit == null) {
                i++;
                continue;
            }
            if (i > plainStart) {
                out.add(new Piece(-1, unescape(rendered.substring(plainStart, i))));
            }
            out.add(new Piece(hit.id(), hit.text()));
            i += hit.text().length();
            plainStart = i;
        }
        if (plainStart < rendered.length()) {
            out.add(new Piece(-1, unescape(rendered.substring(plainStart))));
        }
        return out;
    }
}
