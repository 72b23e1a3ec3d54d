package dev.nibble.formats.gguf;

import dev.nibble.formats.GgmlType;
import java.util.Collections;
import java.util.EnumMap;
import java.util.Map;

/**
 * Totals over a GGUF file's tensors, for {@code nibble inspect}: tensor count, elements and bytes, overall and per type.
 *
 * @param byType per tensor type present, in {@link GgmlType} order
 */
public record GgufSummary(long tensorCount, long elementCount, long byteSize, Map<GgmlType, Totals> byType) {

    /** Totals for one tensor type. */
    public record Totals(long tensorCount, long elementCount, long byteSize) {

        Totals plus(GgufTensorInfo t) {
            return new Totals(tensorCount + 1, elementCount + t.elementCount(), byteSize + t.byteSize());
        }
    }

    public static GgufSummary of(GgufFile file) {
        Map<GgmlType, Totals> byType = new EnumMap<>(GgmlType.class);
        Totals all = new Totals(0, 0, 0);
        for (GgufTensor t : file.tensors()) {
            byType.put(t.type(), byType.getOrDefault(t.type(), new Totals(0, 0, 0)).plus(t.info()));
            all = all.plus(t.info());
        }
        return new GgufSummary(all.tensorCount(), all.elementCount(), all.byteSize(), Collections.unmodifiableMap(byType));
    }

    /** Average bits per weight over all tensors (0 when there are none). */
    public double bitsPerWeight() {
        return elementCount == 0 ? 0 : 8.0 * byteSize / elementCount;
    }
}
