package dev.nibble.runtime.chat;

import java.util.Collection;
import java.util.Map;

/**
 * JSON as Python's {@code json.dumps(x, ensure_ascii=False, indent=indent)} writes it, which is what Hugging Face's
 * {@code tojson} filter gives templates: {@code ", "} and {@code ": "} separators, non-ASCII text kept as it is.
 */
final class PythonJson {

    private PythonJson() {
    }

    /** indent < 0: all on one line. */
    static String dumps(Object value, int indent) {
        StringBuilder out = new StringBuilder();
        write(value, indent, 0, out);
        return out.toString();
    }

    private static void write(Object value, int indent, int depth, StringBuilder out) {
        switch (value) {
            case null -> out.append("null");
            case Boolean b -> out.append(b ? "true" : "false");
            case Double d when d.isNaN() -> out.append("NaN");
            case Double d when d.isInfinite() -> out.append(d > 0 ? "Infinity" : "-Infinity");
            case Number n -> out.append(n);
            case Map<?, ?> m -> {
                out.append('{');
                boolean first = true;
                for (Map.Entry<?, ?> e : m.entrySet()) {
                    separate(first, indent, depth + 1, out);
                    string(String.valueOf(e.getKey()), out);
                    out.append(": ");
                    write(e.getValue(), indent, depth + 1, out);
                    first = false;
                }
                close(first, indent, depth, out);
                out.append('}');
            }
            case Collection<?> c -> {
                out.append('[');
                boolean first = true;
                for (Object item : c) {
                    separate(first, indent, depth + 1, out);
                    write(item, indent, depth + 1, out);
                    first = false;
                }
                close(first, indent, depth, out);
                out.append(']');
            }
            default -> string(String.valueOf(value), out);
        }
    }

    private static void separate(boolean first, int indent, int depth, StringBuilder out) {
        if (indent < 0) {
            out.append(first ? "" : ", ");
        } else {
            // With an indent Python puts no space after the comma, only the line break.
            out.append(first ? "" : ",").append('\n').repeat(' ', indent * depth);
        }
    }

    private static void close(boolean empty, int indent, int depth, StringBuilder out) {
        if (indent >= 0 && !empty) {
            out.append('\n').repeat(' ', indent * depth);
        }
    }

    private static void string(String s, StringBuilder out) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                case '\b' -> out.append("\\b");
                case '\f' -> out.append("\\f");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }
}
