package dev.nibble.formats.gguf;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * A GGUF array value: one element type and its elements, held as {@link GgufValue} holds scalars
 * ({@code Long} for every integer type, {@code Float}, {@code Double}, {@code Boolean}, {@code String}, or a nested
 * {@code GgufArray} when the element type is {@link GgufValueType#ARRAY}).
 */
public record GgufArray(GgufValueType elementType, List<Object> elements) {

    /** Normalizes each element to its held form (any integral {@code Number} becomes a {@code Long}) and checks its range. */
    public GgufArray {
        if (elementType == null) {
            throw new IllegalArgumentException("array element type is null");
        }
        List<Object> held = new ArrayList<>(elements.size());
        for (Object e : elements) {
            held.add(GgufValue.normalize(elementType, e));
        }
        elements = Collections.unmodifiableList(held);
    }

    /** Number of elements. */
    public int size() {
        return elements.size();
    }
}
