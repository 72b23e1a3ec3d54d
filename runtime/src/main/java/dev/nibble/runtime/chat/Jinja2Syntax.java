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
    private static final Pattern TAG = Pattern.compile("\\{[{%].*?[%}]}", Pattern.DOTALL);
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
        Matcher tags = TAG.matcher(lstripBlocks(source));
        StringBuilder out = new StringBuilder(source.length() + 32);
        while (tags.find()) {
            String tag = parenthesizeNamespaceArguments(tags.group());
            tags.appendReplacement(out, Matcher.quoteReplacement(rewriteOutsideStrings(tag)));
        }
        tags.appendTail(out);
        return out.toString();
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
