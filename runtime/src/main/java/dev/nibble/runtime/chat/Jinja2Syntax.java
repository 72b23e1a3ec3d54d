package dev.nibble.runtime.chat;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Rewrites the few Jinja2 constructs that Jinjava handles differently into equivalent ones it handles as Jinja2 does.
 * Apart from {@link #lstripBlocks}, only code inside {@code {{ }}} and {@code {% %}} is touched, never string literals.
 */
final class Jinja2Syntax {

    /** Spaces and tabs that start a line and lead up to a block or comment tag (not one opened with {@code +}). */
    private static final Pattern BLOCK_INDENT = Pattern.compile("(?m)^[ \\t]+(?=\\{[%#](?!\\+))");
    /**
     * How deep blocks ({@code if}, {@code for}, {@code macro} ...) and brackets inside one tag may nest: real chat
     * templates nest blocks five or six deep; deeper nesting only serves to exhaust the renderer's stack.
     */
    static final int MAX_BLOCK_DEPTH = 100;
    static final int MAX_BRACKET_DEPTH = 100;
    /** Block tags that a matching {@code end...} tag closes ({@code set} only in its block form, without '='). */
    private static final java.util.Set<String> BLOCK_TAGS = java.util.Set.of("if", "for", "macro", "call", "filter",
            "raw", "generation", "block", "with", "autoescape", "set");
    /** {@code not x is defined}: Jinja2 applies the test first, Jinjava the {@code not}. */
    private static final Pattern NOT_TEST = Pattern.compile(
            "\\bnot\\s+([A-Za-z_]\\w*(?:\\.[A-Za-z_]\\w*|\\[[^\\[\\]]*])*\\s+is\\s+(?:not\\s+)?[A-Za-z_]\\w*)\\b(?!\\s*\\()");
    /** {@code xs[::-1]}, which Jinjava cannot parse, is the reversed list. */
    private static final Pattern REVERSE_SLICE = Pattern.compile("\\[\\s*:\\s*:\\s*-\\s*1\\s*]");
    private static final Pattern NAMESPACE_CALL = Pattern.compile("\\bnamespace\\s*\\(");
    private static final Pattern NAMED_ARGUMENT = Pattern.compile("^\\s*[A-Za-z_]\\w*\\s*=(?!=)");

    private Jinja2Syntax() {
    }

    static String rewrite(String source) {
        String text = lstripBlocks(source);
        StringBuilder out = new StringBuilder(text.length() + 32);
        int done = 0;
        for (int[] tag = nextTag(text, 0); tag != null; tag = nextTag(text, tag[1])) {
            out.append(text, done, tag[0]);
            out.append(rewriteOutsideStrings(parenthesizeNamespaceArguments(text.substring(tag[0], tag[1]))));
            done = tag[1];
        }
        return out.append(text, done, text.length()).toString();
    }

    /**
     * The next {@code {{ ... }}} or {@code {% ... %}} at or after {@code from}, as {start, end}: from an opening
     * {@code {{} or {@code {%} to the first {@code }}} or {@code %}} after it (either closes either, as in the pattern
     * {@code \{[{%].*?[%}]}}), or null. Linear in the text however its braces are arranged: once no closing follows an
     * opening, none follows a later one either.
     */
    private static int[] nextTag(String text, int from) {
        int open = from;
        while (true) {
            open = text.indexOf('{', open);
            if (open < 0 || open + 1 >= text.length()) {
                return null;
            }
            char c = text.charAt(open + 1);
            if (c == '{' || c == '%') {
                break;
            }
            open++;
        }
        for (int i = open + 2; i + 1 < text.length(); i++) {
            char c = text.charAt(i);
            if ((c == '%' || c == '}') && text.charAt(i + 1) == '}') {
                return new int[] {open, i + 2};
            }
        }
        return null;
    }

    /**
     * Refuses a template whose blocks, or brackets within one tag, nest deeper than {@link #MAX_BLOCK_DEPTH} and
     * {@link #MAX_BRACKET_DEPTH}, before the renderer recurses into them. Unbalanced blocks are left for the renderer
     * to report.
     */
    static void checkNesting(String source) {
        int depth = 0;
        int line = 1;
        int counted = 0;
        for (int[] tag = nextTag(source, 0); tag != null; tag = nextTag(source, tag[1])) {
            String code = source.substring(tag[0] + 2, tag[1] - 2);
            for (; counted < tag[0]; counted++) {
                line += source.charAt(counted) == '\n' ? 1 : 0;
            }
            checkBrackets(code, line);
            if (source.charAt(tag[0] + 1) != '%') {
                continue;
            }
            String word = firstWord(code);
            if (word.startsWith("end")) {
                depth = Math.max(0, depth - 1);
            } else if (BLOCK_TAGS.contains(word) && !(word.equals("set") && code.contains("="))) {
                if (++depth > MAX_BLOCK_DEPTH) {
                    throw new ChatTemplateException("the chat template nests blocks more than " + MAX_BLOCK_DEPTH
                            + " deep (template line " + line + "); real templates nest a few");
                }
            }
        }
    }

    private static void checkBrackets(String code, int line) {
        int depth = 0;
        for (int i = 0; i < code.length(); i++) {
            char c = code.charAt(i);
            if (c == '\'' || c == '"') {
                i = endOfString(code, i) - 1;
            } else if (c == '(' || c == '[' || c == '{') {
                if (++depth > MAX_BRACKET_DEPTH) {
                    throw new ChatTemplateException("the chat template nests brackets more than " + MAX_BRACKET_DEPTH
                            + " deep in one expression (template line " + line + ")");
                }
            } else if (c == ')' || c == ']' || c == '}') {
                depth = Math.max(0, depth - 1);
            }
        }
    }

    private static String firstWord(String code) {
        int i = 0;
        while (i < code.length() && (code.charAt(i) == '-' || code.charAt(i) == '+' || Character.isWhitespace(code.charAt(i)))) {
            i++;
        }
        int start = i;
        while (i < code.length() && (Character.isLetterOrDigit(code.charAt(i)) || code.charAt(i) == '_')) {
            i++;
        }
        return code.substring(start, i);
    }

    /**
     * Jinja2's {@code lstrip_blocks}: whitespace before a block or comment tag that starts its line goes. Jinjava's own
     * option also strips it in the middle of a line ({@code "a {% if x %}"} loses its space), so it stays off.
     */
    static String lstripBlocks(String source) {
        return BLOCK_INDENT.matcher(source).replaceAll("");
    }

    private static String rewriteOutsideStrings(String code) {
        StringBuilder out = new StringBuilder(code.length());
        int i = 0;
        while (i < code.length()) {
            int quote = nextQuote(code, i);
            out.append(rewriteExpression(code.substring(i, quote)));
            if (quote == code.length()) {
                break;
            }
            int end = endOfString(code, quote);
            out.append(code, quote, end);
            i = end;
        }
        return out.toString();
    }

    /** Rewrites a stretch of code that holds no string literal. */
    private static String rewriteExpression(String code) {
        String s = NOT_TEST.matcher(code).replaceAll("not ($1)");
        return REVERSE_SLICE.matcher(s).replaceAll("|reverse|list");
    }

    private static int nextQuote(String code, int from) {
        for (int i = from; i < code.length(); i++) {
            char c = code.charAt(i);
            if (c == '\'' || c == '"') {
                return i;
            }
        }
        return code.length();
    }

    private static int endOfString(String code, int quote) {
        char q = code.charAt(quote);
        for (int i = quote + 1; i < code.length(); i++) {
            char c = code.charAt(i);
            if (c == '\\') {
                i++;
            } else if (c == q) {
                return i + 1;
            }
        }
        return code.length();
    }

    /**
     * Puts each keyword argument of {@code namespace(...)} in parentheses: Jinjava binds {@code a=xs|length - 1} as
     * {@code (a=xs|length) - 1}.
     */
    private static String parenthesizeNamespaceArguments(String code) {
        Matcher call = NAMESPACE_CALL.matcher(code);
        StringBuilder out = new StringBuilder();
        int done = 0;
        while (call.find(done)) {
            int argsStart = call.end();
            int close = matchingParen(code, argsStart);
            if (close < 0) {
                break;
            }
            out.append(code, done, argsStart);
            int argStart = argsStart;
            for (int comma : topLevelCommas(code, argsStart, close)) {
                out.append(parenthesizeArgument(code.substring(argStart, comma))).append(',');
                argStart = comma + 1;
            }
            out.append(parenthesizeArgument(code.substring(argStart, close))).append(')');
            done = close + 1;
        }
        return out.append(code.substring(done)).toString();
    }

    private static String parenthesizeArgument(String argument) {
        Matcher named = NAMED_ARGUMENT.matcher(argument);
        if (!named.find() || argument.substring(named.end()).isBlank()) {
            return argument;
        }
        return argument.substring(0, named.end()) + "(" + argument.substring(named.end()) + ")";
    }

    /** Index of the ')' closing the call whose arguments start at from, or -1. */
    private static int matchingParen(String code, int from) {
        int depth = 0;
        for (int i = from; i < code.length(); i++) {
            char c = code.charAt(i);
            if (c == '\'' || c == '"') {
                i = endOfString(code, i) - 1;
            } else if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if (c == ')' || c == ']' || c == '}') {
                if (depth == 0) {
                    return c == ')' ? i : -1;
                }
                depth--;
            }
        }
        return -1;
    }

    private static List<Integer> topLevelCommas(String code, int from, int to) {
        List<Integer> commas = new ArrayList<>();
        int depth = 0;
        for (int i = from; i < to; i++) {
            char c = code.charAt(i);
            if (c == '\'' || c == '"') {
                i = endOfString(code, i) - 1;
            } else if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if (c == ')' || c == ']' || c == '}') {
                depth--;
            } else if (c == ',' && depth == 0) {
                commas.add(i);
            }
        }
        return commas;
    }
}
