package dev.nibble.cli.inspect;

import java.io.PrintWriter;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Collectors;

/** Renders an {@link Inspection} as the human-readable report of {@code nibble inspect}. */
final class InspectionPrinter {

    /** How many elements of a long metadata array the text report shows; --json shows them all. */
    private static final int ARRAY_PREVIEW = 8;

    private InspectionPrinter() {}

    static void print(Inspection in, PrintWriter out, boolean showTensors) {
        out.println("format:   " + in.format());
        for (String f : in.files()) {
            out.println("file:     " + f);
        }
        Inspection.Totals totals = in.totals();
        out.printf(Locale.ROOT, "tensors:  %d, %s parameters, %s, %.2f bits per weight%n", totals.tensors(),
                count(totals.elements()), bytes(totals.bytes()), totals.bitsPerWeight());
        for (Map.Entry<String, Inspection.Totals> e : in.totalsByType().entrySet()) {
            Inspection.Totals t = e.getValue();
            out.printf(Locale.ROOT, "          %-7s %5d tensors %10s parameters %11s  %6.2f bpw%n", e.getKey(), t.tensors(),
                    count(t.elements()), bytes(t.bytes()), t.bitsPerWeight());
        }
        if (!in.metadata().isEmpty()) {
            out.println();
            out.println("metadata (" + in.metadata().size() + " keys):");
            int width = in.metadata().keySet().stream().mapToInt(String::length).max().orElse(0);
            for (Map.Entry<String, Inspection.MetadataEntry> e : in.metadata().entrySet()) {
                out.printf(Locale.ROOT, "  %-" + width + "s  %-14s %s%n", e.getKey(), e.getValue().type(), value(e.getValue().value()));
            }
        }
        if (showTensors) {
            out.println();
            out.println("tensors (shape in " + in.shapeOrder() + "):");
            int width = in.tensors().stream().mapToInt(t -> t.name().length()).max().orElse(4);
            for (Inspection.TensorRow t : in.tensors()) {
                out.printf(Locale.ROOT, "  %-" + width + "s  %-7s %-22s %11s%n", t.name(), t.type(),
                        Arrays.toString(t.shape()), bytes(t.bytes()));
            }
        }
    }

    private static String value(Object v) {
        if (v instanceof List<?> list) {
            String shown = list.stream().limit(ARRAY_PREVIEW).map(InspectionPrinter::value).collect(Collectors.joining(", "));
            return "[" + shown + (list.size() > ARRAY_PREVIEW ? ", ... (" + list.size() + " elements)" : "") + "]";
        }
        if (v instanceof Map<?, ?> map) {
            return map.entrySet().stream().map(e -> e.getKey() + ": " + value(e.getValue()))
                    .collect(Collectors.joining(", ", "{", "}"));
        }
        if (v instanceof String s) {
            String oneLine = s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t");
            return "\"" + (oneLine.length() > 120 ? oneLine.substring(0, 117) + "..." : oneLine) + "\"";
        }
        return String.valueOf(v);
    }

    static String bytes(long n) {
        if (n < 1024) {
            return n + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB"};
        double v = n;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, "%.2f %s", v, units[u]);
    }

    private static String count(long n) {
        if (n >= 1_000_000_000L) {
            return String.format(Locale.ROOT, "%.2f B", n / 1e9);
        }
        if (n >= 1_000_000L) {
            return String.format(Locale.ROOT, "%.2f M", n / 1e6);
        }
        return Long.toString(n);
    }
}
