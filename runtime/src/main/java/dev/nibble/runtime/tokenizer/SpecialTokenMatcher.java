package dev.nibble.runtime.tokenizer;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * Finds whole special-token strings (such as {@code <|eot_id|>}) in text, longest first at each position. Tokens are
 * looked up by text, trying at each position only the lengths that tokens starting with that character have, so that
 * neither adding a vocabulary's tokens nor matching costs more than linear time in their number.
 */
final class SpecialTokenMatcher {

    /** One run of text: either a token found in it (id >= 0) or plain text between tokens (id = -1). */
    record Fragment(int id, String text) {
    }

    /** Token text to id; the first token added with a text keeps it. */
    private final Map<String, Integer> ids = new HashMap<>();
    /** For each first character, the distinct lengths of its tokens. */
    private final Map<Character, TreeSet<Integer>> lengths = new HashMap<>();
    /** The same, longest first, built when first needed. */
    private Map<Character, int[]> lengthsDescending;

    void add(String text, int id) {
        if (text.isEmpty()) {
            return;
        }
        ids.putIfAbsent(text, id);
        lengths.computeIfAbsent(text.charAt(0), c -> new TreeSet<>()).add(text.length());
        lengthsDescending = null;
    }

    List<Fragment> split(String text) {
        Map<Character, int[]> byFirstChar = lengthsDescending();
        List<Fragment> out = new ArrayList<>();
        int plainStart = 0;
        int i = 0;
        while (i < text.length()) {
            String hit = null;
            int hitId = -1;
            int[] candidates = byFirstChar.get(text.charAt(i));
            if (candidates != null) {
                for (int length : candidates) {
                    if (i + length <= text.length()) {
                        String s = text.substring(i, i + length);
                        Integer id = ids.get(s);
                        if (id != null) {
                            hit = s;
                            hitId = id;
                            break;
                        }
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
            out.add(new Fragment(hitId, hit));
            i += hit.length();
            plainStart = i;
        }
        if (plainStart < text.length()) {
            out.add(new Fragment(-1, text.substring(plainStart)));
        }
        return out;
    }

    private synchronized Map<Character, int[]> lengthsDescending() {
        if (lengthsDescending == null) {
            Map<Character, int[]> m = new HashMap<>();
            for (Map.Entry<Character, TreeSet<Integer>> e : lengths.entrySet()) {
                m.put(e.getKey(), e.getValue().descendingSet().stream().mapToInt(Integer::intValue).toArray());
            }
            lengthsDescending = m;
        }
        return lengthsDescending;
    }
}
