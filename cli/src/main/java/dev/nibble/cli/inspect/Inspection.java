package dev.nibble.cli.inspect;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * What {@code nibble inspect} reports about a model file or folder, whatever its format.
 *
 * @param format     e.g. {@code GGUF v3}, {@code safetensors}, {@code PyTorch zip}
 * @param files      the files read
 * @param shapeOrder how shapes are listed, in the format's own convention
 * @param metadata   key → typed value, in file order
 * @param tensors    in file order
 */
public record Inspection(String format, List<String> files, String shapeOrder,
                         Map<String, MetadataEntry> metadata, List<TensorRow> tensors) {

    /** One metadata value: its type name and its value as plain Java (String, Number, Boolean, List). */
    public record MetadataEntry(String type, Object value) {}

    /** One tensor: its type name, shape (in {@link #shapeOrder}), element count and stored bytes. */
    public record TensorRow(String name, String type, long[] shape, long elements, long bytes) {}

    /** Tensor count, elements and bytes for one type, or for all. */
    public record Totals(long tensors, long elements, long bytes) {
        Totals plus(TensorRow t) {
            return new Totals(tensors + 1, elements + t.elements(), bytes + t.bytes());
        }

        /** Average stored bits per weight. */
        public double bitsPerWeight() {
            return elements == 0 ? 0 : 8.0 * bytes / elements;
        }
    }

    public Totals totals() {
        Totals all = new Totals(0, 0, 0);
        for (TensorRow t : tensors) {
            all = all.plus(t);
        }
        return all;
    }

    /** Totals per tensor type, by type name. */
    public Map<String, Totals> totalsByType() {
        Map<String, Totals> byType = new TreeMap<>();
        for (TensorRow t : tensors) {
            byType.merge(t.type(), new Totals(1, t.elements(), t.bytes()), (a, b) -> new Totals(
                    a.tensors() + b.tensors(), a.elements() + b.elements(), a.bytes() + b.bytes()));
        }
        return byType;
    }

    /** The JSON document {@code --json} prints. */
    public Map<String, Object> toJson() {
        Map<String, Object> json = new LinkedHashMap<>();
        json.put("format", format);
        json.put("files", files);
        json.put("shape_order", shapeOrder);
        json.put("metadata", metadata);
        json.put("tensors", tensors);
        Map<String, Object> totals = new LinkedHashMap<>();
        Totals all = totals();
        totals.put("tensors", all.tensors());
        totals.put("elements", all.elements());
        totals.put("bytes", all.bytes());
        totals.put("bits_per_weight", all.bitsPerWeight());
        totals.put("by_type", totalsByType());
        json.put("totals", totals);
        return json;
    }
}
