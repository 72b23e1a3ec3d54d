package dev.nibble.runtime.chat;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;

/**
 * Python's {@code str} methods as Hugging Face chat templates call them ({@code content.strip()}, {@code .title()},
 * {@code .split()} ...), with Python's semantics rather than Java's (whitespace per {@code str.isspace}, literal split).
 */
final class PythonStrings {

    private PythonStrings() {
    }

    /** Whether Python's {@code str.isspace()} holds for this code point. */
    static boolean isSpace(int cp) {
        return switch (cp) {
            case '\t', '\n', 0x0B, '\f', '\r', 0x1C, 0x1D, 0x1E, 0x1F, ' ', 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F,
                 0x205F, 0x3000 -> true;
            default -> cp >= 0x2000 && cp <= 0x200A;
        };
    }

    /** {@code s.strip(chars)}; null chars strips whitespace. */
    static String strip(String s, String chars) {
        return rstrip(lstrip(s, chars), chars);
    }

    static String lstrip(String s, String chars) {
        int i = 0;
        while (i < s.length()) {
            int cp = s.codePointAt(i);
            if (!stripped(cp, chars)) {
                break;
            }
            i += Character.charCount(cp);
        }
        return s.substring(i);
    }

    static String rstrip(String s, String chars) {
        int end = s.length();
        while (end > 0) {
            int cp = s.codePointBefore(end);
            if (!stripped(cp, chars)) {
                break;
            }
            end -= Character.charCount(cp);
        }
        return s.substring(0, end);
    }

    private static boolean stripped(int cp, String chars) {
        return chars == null ? isSpace(cp) : chars.indexOf(cp) >= 0;
    }

    /** {@code s.title()}: each run of cased letters starts upper (title) case, the rest of the run is lower case. */
    static String title(String s) {
        StringBuilder out = new StringBuilder(s.length());
        boolean previousCased = false;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            i += Character.charCount(cp);
            boolean cased = Character.isUpperCase(cp) || Character.isLowerCase(cp) || Character.isTitleCase(cp);
            out.appendCodePoint(!cased ? cp : previousCased ? Character.toLowerCase(cp) : Character.toTitleCase(cp));
            previousCased = cased;
        }
        return out.toString();
    }

    /** {@code s.capitalize()}: the first character in title case, the rest lower case. */
    static String capitalize(String s) {
        if (s.isEmpty()) {
            return s;
        }
        int first = s.codePointAt(0);
        return new StringBuilder().appendCodePoint(Character.toTitleCase(first))
                .append(s.substring(Character.charCount(first)).toLowerCase(Locale.ROOT)).toString();
    }

    /** {@code s.split(sep, maxsplit)}: null sep splits on runs of whitespace and drops empty parts. */
    static List<String> split(String s, String sep, long maxSplit) {
        List<String> parts = new ArrayList<>();
        if (sep != null) {
            if (sep.isEmpty()) {
                throw new ChatTemplateException("split(): empty separator");
            }
            int start = 0;
            int hit;
            while ((maxSplit < 0 || parts.size() < maxSplit) && (hit = s.indexOf(sep, start)) >= 0) {
                parts.add(s.substring(start, hit));
                start = hit + sep.length();
            }
            parts.add(s.substring(start));
            return parts;
        }
        int i = 0;
        while (true) {
            while (i < s.length() && isSpace(s.codePointAt(i))) {
                i += Character.charCount(s.codePointAt(i));
            }
            if (i >= s.length()) {
                return parts;
            }
            if (maxSplit >= 0 && parts.size() == maxSplit) {
                parts.add(s.substring(i));
                return parts;
            }
            int start = i;
            while (i < s.length() && !isSpace(s.codePointAt(i))) {
                i += Character.charCount(s.codePointAt(i));
            }
            parts.add(s.substring(start, i));
        }
    }

    /** {@code s.replace(old, new, count)}; a negative count replaces all. */
    static String replace(String s, String old, String replacement, long count) {
        if (count < 0) {
            return s.replace(old, replacement);
        }
        StringBuilder out = new StringBuilder();
        int start = 0;
        for (long n = 0; n < count; n++) {
            int hit = s.indexOf(old, start);
            if (hit < 0) {
                break;
            }
            out.append(s, start, hit).append(replacement);
            // An empty pattern matches between every character, as in Python.
            if (old.isEmpty()) {
                if (hit >= s.length()) {
                    start = s.length() + 1;
                    break;
                }
                out.appendCodePoint(s.codePointAt(hit));
                start = hit + Character.charCount(s.codePointAt(hit));
            } else {
                start = hit + old.length();
            }
        }
        return start > s.length() ? out.toString() : out.append(s.substring(start)).toString();
    }

    /** {@code s.startswith(prefix)} where prefix may be a tuple (list) of prefixes. */
    static boolean startsWith(String s, Object prefix) {
        return anyOf(prefix).stream().anyMatch(s::startsWith);
    }

    static boolean endsWith(String s, Object suffix) {
        return anyOf(suffix).stream().anyMatch(s::endsWith);
    }

    /** {@code sep.join(items)}. */
    static String join(String separator, Object items) {
        if (!(items instanceof Collection<?> c)) {
            throw new ChatTemplateException("join() needs a list, got " + typeName(items));
        }
        StringBuilder out = new StringBuilder();
        boolean first = true;
        for (Object item : c) {
            if (!first) {
                out.append(separator);
            }
            out.append(item);
            first = false;
        }
        return out.toString();
    }

    private static List<String> anyOf(Object value) {
        if (value instanceof Collection<?> c) {
            return c.stream().map(String::valueOf).toList();
        }
        return List.of(String.valueOf(value));
    }

    static String typeName(Object value) {
        return value == null ? "None" : value.getClass().getSimpleName();
    }
}
