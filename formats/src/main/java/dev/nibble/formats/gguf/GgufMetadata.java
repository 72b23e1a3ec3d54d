package dev.nibble.formats.gguf;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.OptionalLong;
import java.util.Set;

/**
 * The key/value metadata of a GGUF file: ordered as in the file, immutable, with typed getters. The {@code get*}
 * getters throw {@link IllegalArgumentException} naming the key when it is absent or of another type; the
 * {@code find*} ones return empty when it is absent (and throw the same way when it has another type).
 */
public final class GgufMetadata {

    private final Map<String, GgufValue> values;

    private GgufMetadata(Map<String, GgufValue> values) {
        this.values = Collections.unmodifiableMap(new LinkedHashMap<>(values));
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The keys, in file order. */
    public Set<String> keys() {
        return values.keySet();
    }

    /** Number of keys. */
    public int size() {
        return values.size();
    }

    public Optional<GgufValue> get(String key) {
        return Optional.ofNullable(values.get(key));
    }

    public boolean contains(String key) {
        return values.containsKey(key);
    }

    public String getString(String key) {
        return require(key, "a string", GgufValueType.STRING).asString();
    }

    public Optional<String> findString(String key) {
        return contains(key) ? Optional.of(getString(key)) : Optional.empty();
    }

    /** Any integer type; a {@code UINT64} above {@link Long#MAX_VALUE} comes back as its two's-complement bits. */
    public long getLong(String key) {
        GgufValue v = require(key, "an integer", null);
        if (!v.type().isInteger()) {
            throw wrongType(key, "an integer", v);
        }
        return v.asLong();
    }

    public OptionalLong findLong(String key) {
        return contains(key) ? OptionalLong.of(getLong(key)) : OptionalLong.empty();
    }

    /** {@code FLOAT32}, {@code FLOAT64} or any integer type. */
    public double getDouble(String key) {
        GgufValue v = require(key, "a number", null);
        if (v.type() == GgufValueType.BOOL || v.type() == GgufValueType.STRING || v.type() == GgufValueType.ARRAY) {
            throw wrongType(key, "a number", v);
        }
        return v.asDouble();
    }

    public OptionalDouble findDouble(String key) {
        return contains(key) ? OptionalDouble.of(getDouble(key)) : OptionalDouble.empty();
    }

    public boolean getBoolean(String key) {
        return require(key, "a bool", GgufValueType.BOOL).asBoolean();
    }

    public Optional<Boolean> findBoolean(String key) {
        return contains(key) ? Optional.of(getBoolean(key)) : Optional.empty();
    }

    /** An array of strings. */
    public List<String> getStringArray(String key) {
        GgufArray a = array(key, "an array of strings");
        if (a.elementType() != GgufValueType.STRING) {
            throw wrongType(key, "an array of strings", values.get(key));
        }
        List<String> out = new ArrayList<>(a.size());
        for (Object e : a.elements()) {
            out.add((String) e);
        }
        return Collections.unmodifiableList(out);
    }

    /** An array of {@code FLOAT32} (or {@code FLOAT64}, narrowed). */
    public float[] getFloatArray(String key) {
        GgufArray a = array(key, "an array of floats");
        if (a.elementType() != GgufValueType.FLOAT32 && a.elementType() != GgufValueType.FLOAT64) {
            throw wrongType(key, "an array of floats", values.get(key));
        }
        float[] out = new float[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = ((Number) a.elements().get(i)).floatValue();
        }
        return out;
    }

    /** An array of any integer type whose values all fit in an {@code int}. */
    public int[] getIntArray(String key) {
        long[] wide = getLongArray(key);
        int[] out = new int[wide.length];
        for (int i = 0; i < out.length; i++) {
            if (wide[i] != (int) wide[i]) {
                throw new IllegalArgumentException("metadata key '" + key + "': element " + i + " = " + wide[i] + " does not fit in an int");
            }
            out[i] = (int) wide[i];
        }
        return out;
    }

    /** An array of any integer type. */
    public long[] getLongArray(String key) {
        GgufArray a = array(key, "an array of integers");
        if (!a.elementType().isInteger()) {
            throw wrongType(key, "an array of integers", values.get(key));
        }
        long[] out = new long[a.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (Long) a.elements().get(i);
        }
        return out;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof GgufMetadata m && List.copyOf(values.entrySet()).equals(List.copyOf(m.values.entrySet()));
    }

    @Override
    public int hashCode() {
        return values.hashCode();
    }

    @Override
    public String toString() {
        return values.toString();
    }

    private GgufArray array(String key, String wanted) {
        return require(key, wanted, GgufValueType.ARRAY).asArray();
    }

    private GgufValue require(String key, String wanted, GgufValueType type) {
        GgufValue v = values.get(key);
        if (v == null) {
            throw new IllegalArgumentException("metadata key '" + key + "' is missing (wanted " + wanted + ")");
        }
        if (type != null && v.type() != type) {
            throw wrongType(key, wanted, v);
        }
        return v;
    }

    private static IllegalArgumentException wrongType(String key, String wanted, GgufValue v) {
        String has = v.type() == GgufValueType.ARRAY ? "an array of " + v.asArray().elementType() : v.type().toString();
        return new IllegalArgumentException("metadata key '" + key + "' is " + has + ", wanted " + wanted);
    }

    /** Collects keys in insertion order; putting a key again replaces its value and keeps its place. */
    public static final class Builder {

        private final Map<String, GgufValue> values = new LinkedHashMap<>();

        private Builder() {
        }

        public Builder put(String key, GgufValue value) {
            if (key == null || value == null) {
                throw new IllegalArgumentException("metadata key and value must not be null");
            }
            values.put(key, value);
            return this;
        }

        public Builder putString(String key, String value) {
            return put(key, GgufValue.string(value));
        }

        public Builder putU8(String key, int value) {
            return put(key, GgufValue.u8(value));
        }

        public Builder putI8(String key, int value) {
            return put(key, GgufValue.i8(value));
        }

        public Builder putU16(String key, int value) {
            return put(key, GgufValue.u16(value));
        }

        public Builder putI16(String key, int value) {
            return put(key, GgufValue.i16(value));
        }

        public Builder putU32(String key, long value) {
            return put(key, GgufValue.u32(value));
        }

        public Builder putI32(String key, int value) {
            return put(key, GgufValue.i32(value));
        }

        public Builder putU64(String key, long value) {
            return put(key, GgufValue.u64(value));
        }

        public Builder putI64(String key, long value) {
            return put(key, GgufValue.i64(value));
        }

        public Builder putF32(String key, float value) {
            return put(key, GgufValue.f32(value));
        }

        public Builder putF64(String key, double value) {
            return put(key, GgufValue.f64(value));
        }

        public Builder putBool(String key, boolean value) {
            return put(key, GgufValue.bool(value));
        }

        public Builder putStringArray(String key, List<String> values) {
            return putArray(key, GgufValueType.STRING, values);
        }

        public Builder putFloatArray(String key, float[] values) {
            List<Float> list = new ArrayList<>(values.length);
            for (float v : values) {
                list.add(v);
            }
            return putArray(key, GgufValueType.FLOAT32, list);
        }

        /** Stored as {@code INT32}. */
        public Builder putIntArray(String key, int[] values) {
            List<Integer> list = new ArrayList<>(values.length);
            for (int v : values) {
                list.add(v);
            }
            return putArray(key, GgufValueType.INT32, list);
        }

        public Builder putArray(String key, GgufValueType elementType, List<?> values) {
            return put(key, GgufValue.array(elementType, values));
        }

        public GgufMetadata build() {
            return new GgufMetadata(values);
        }
    }
}
