package dev.nibble.formats.gguf;

import java.util.ArrayList;
import java.util.List;

/**
 * One typed GGUF metadata value. Every integer type is held as a {@code Long} (a {@code UINT64} above
 * {@link Long#MAX_VALUE} as its two's-complement bits), {@code FLOAT32} as {@code Float}, {@code FLOAT64} as
 * {@code Double}, {@code BOOL} as {@code Boolean}, {@code STRING} as {@code String} and {@code ARRAY} as a
 * {@link GgufArray}, which carries its element type and may nest.
 */
public record GgufValue(GgufValueType type, Object value) {

    /** Normalizes {@code value} to its held form and checks that it fits {@code type}. */
    public GgufValue {
        if (type == null) {
            throw new IllegalArgumentException("value type is null");
        }
        value = normalize(type, value);
    }

    public static GgufValue u8(int v) {
        return new GgufValue(GgufValueType.UINT8, (long) v);
    }

    public static GgufValue i8(int v) {
        return new GgufValue(GgufValueType.INT8, (long) v);
    }

    public static GgufValue u16(int v) {
        return new GgufValue(GgufValueType.UINT16, (long) v);
    }

    public static GgufValue i16(int v) {
        return new GgufValue(GgufValueType.INT16, (long) v);
    }

    public static GgufValue u32(long v) {
        return new GgufValue(GgufValueType.UINT32, v);
    }

    public static GgufValue i32(int v) {
        return new GgufValue(GgufValueType.INT32, (long) v);
    }

    /** An unsigned 64-bit value given as its bits. */
    public static GgufValue u64(long bits) {
        return new GgufValue(GgufValueType.UINT64, bits);
    }

    public static GgufValue i64(long v) {
        return new GgufValue(GgufValueType.INT64, v);
    }

    public static GgufValue f32(float v) {
        return new GgufValue(GgufValueType.FLOAT32, v);
    }

    public static GgufValue f64(double v) {
        return new GgufValue(GgufValueType.FLOAT64, v);
    }

    public static GgufValue bool(boolean v) {
        return new GgufValue(GgufValueType.BOOL, v);
    }

    public static GgufValue string(String v) {
        return new GgufValue(GgufValueType.STRING, v);
    }

    /** An array of {@code elementType}; elements as {@link GgufArray} accepts them. */
    public static GgufValue array(GgufValueType elementType, List<?> elements) {
        return new GgufValue(GgufValueType.ARRAY, new GgufArray(elementType, new ArrayList<Object>(elements)));
    }

    /** The integer value (any integer type). */
    public long asLong() {
        if (!type.isInteger()) {
            throw new IllegalStateException("not an integer: " + type);
        }
        return (Long) value;
    }

    /** The value as a double (float or integer types). */
    public double asDouble() {
        return switch (value) {
            case Float f -> f;
            case Double d -> d;
            case Long l when type.isInteger() -> type == GgufValueType.UINT64 && l < 0 ? Math.scalb((double) (l >>> 1), 1) : l;
            default -> throw new IllegalStateException("not a number: " + type);
        };
    }

    /** The string value. */
    public String asString() {
        if (type != GgufValueType.STRING) {
            throw new IllegalStateException("not a string: " + type);
        }
        return (String) value;
    }

    /** The boolean value. */
    public boolean asBoolean() {
        if (type != GgufValueType.BOOL) {
            throw new IllegalStateException("not a bool: " + type);
        }
        return (Boolean) value;
    }

    /** The array value. */
    public GgufArray asArray() {
        if (type != GgufValueType.ARRAY) {
            throw new IllegalStateException("not an array: " + type);
        }
        return (GgufArray) value;
    }

    /** Checks that {@code v} can be held as a value of {@code type} and returns its held form. */
    static Object normalize(GgufValueType type, Object v) {
        if (v == null) {
            throw new IllegalArgumentException(type + " value is null");
        }
        return switch (type) {
            case UINT8 -> integer(type, v, 0, 0xFF);
            case INT8 -> integer(type, v, Byte.MIN_VALUE, Byte.MAX_VALUE);
            case UINT16 -> integer(type, v, 0, 0xFFFF);
            case INT16 -> integer(type, v, Short.MIN_VALUE, Short.MAX_VALUE);
            case UINT32 -> integer(type, v, 0, 0xFFFF_FFFFL);
            case INT32 -> integer(type, v, Integer.MIN_VALUE, Integer.MAX_VALUE);
            case UINT64, INT64 -> integer(type, v, Long.MIN_VALUE, Long.MAX_VALUE);
            case FLOAT32 -> v instanceof Float ? v : fail(type, v);
            case FLOAT64 -> v instanceof Double ? v : fail(type, v);
            case BOOL -> v instanceof Boolean ? v : fail(type, v);
            case STRING -> v instanceof String ? v : fail(type, v);
            case ARRAY -> v instanceof GgufArray ? v : fail(type, v);
        };
    }

    private static Long integer(GgufValueType type, Object v, long min, long max) {
        long x = switch (v) {
            case Long l -> l;
            case Integer i -> i;
            case Short s -> s;
            case Byte b -> b;
            default -> throw new IllegalArgumentException(type + " needs an integer, got " + v.getClass().getSimpleName());
        };
        if (x < min || x > max) {
            throw new IllegalArgumentException(x + " is out of range for " + type);
        }
        return x;
    }

    private static Object fail(GgufValueType type, Object v) {
        throw new IllegalArgumentException(type + " cannot hold a " + v.getClass().getSimpleName());
    }
}
