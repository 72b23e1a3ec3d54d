package dev.nibble.formats.gguf;

/** The value types of GGUF metadata, with their on-disk ids. */
public enum GgufValueType {
    UINT8(0, 1),
    INT8(1, 1),
    UINT16(2, 2),
    INT16(3, 2),
    UINT32(4, 4),
    INT32(5, 4),
    FLOAT32(6, 4),
    BOOL(7, 1),
    STRING(8, 8),
    ARRAY(9, 12),
    UINT64(10, 8),
    INT64(11, 8),
    FLOAT64(12, 8);

    private final int id;
    private final int minSize;

    GgufValueType(int id, int minSize) {
        this.id = id;
        this.minSize = minSize;
    }

    /** The numeric id stored in the file. */
    public int id() {
        return id;
    }

    /** The fewest bytes one value of this type takes on disk (a string's or array's length prefix included). */
    int minSize() {
        return minSize;
    }

    /** Whether values of this type are integers (held as {@code Long}). */
    public boolean isInteger() {
        return switch (this) {
            case UINT8, INT8, UINT16, INT16, UINT32, INT32, UINT64, INT64 -> true;
            default -> false;
        };
    }

    /** The type with this id, or {@code null} when GGUF defines none. */
    public static GgufValueType fromId(long id) {
        for (GgufValueType t : values()) {
            if (t.id == id) {
                return t;
            }
        }
        return null;
    }
}
