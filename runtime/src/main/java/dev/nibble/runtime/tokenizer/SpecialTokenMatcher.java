package dev.nibble.runtime.tokenizer;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** Finds whole special-token strings (such as {@code <|eot_id|>}) in text, longest first at each position. */
final class SpecialTokenMatcher {

    /** One run of text: either a token found in it (id >= 0) or plain text between tokens (id = -1). */
    record Fragment(int id, String text) {
    }

    private record Candidate(String text, int id) {
    }

    private final Map<Character, List<Candidate>> byFirstChar = new HashMap<>();

    void add(String text, int id) {
        if (text.isEmpty()) {
            return;
        }
        List<Candidate> list = byFirstChar.computeIfAbsent(text.charAt(0), c -> new ArrayList<>());
        list.add(new Candidate(text, id));
        list.sort(Comparator.comparingInt((Candidate c) -> c.text().length()).reversed());
    }

    List<Fragment> split(String text) {
        List<Fragment> out = new ArrayList<>();
        int plainStart = 0;
        int i = 0;
        while (i < text.length()) {
            Candidate hit = null;
            List<Candidate> candidates = byFirstChar.get(text.charAt(i));
            if (candidates != null) {
                for (Candidate c : candidates) {
                    if (text.startsWith(c.text(), i)) {
                        hit = c;
                        break;
                    }
                }
            }
            if (hit == null) {
                i++;
                continue;
            }
            if (i > plainStart) {
                out.add(new Fragment(-1, text.substring(plainStart, i)));
            }
            out.add(new Fragment(hit.id(), hit.text()));
            i += hit.text().length();
            plainStart = i;
        }
        if (plainStart < text.length()) {
            out.add(new Fragment(-1, text.substring(plainStart)));
        }
        return out;
    }
}
