package dev.nibble.runtime.nativelib;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.MemorySegment;

/**
 * The checks both kernel bindings make before a downcall, so that native code never sees a size that overflows or a
 * pointer past the end of its segment. Each failure is an {@link IllegalArgumentException} naming the C call.
 */
final class ArgumentChecks {

    private ArgumentChecks() {}

    static void nonNegative(String call, String name, long value) {
        if (value < 0) {
            throw new IllegalArgumentException(call + ": " + name + " = " + value + " is negative");
        }
    }

    static long product(String call, long a, long b) {
        try {
            return Math.multiplyExact(a, b);
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException(call + ": size " + a + " * " + b + " overflows", e);
        }
    }

    static long rowBytes(String call, GgmlType type, long n) {
        if (type == null) {
            throw new IllegalArgumentException(call + ": weight type is null");
        }
        if (n % type.blockSize() != 0) {
            throw new IllegalArgumentException(call + ": row length " + n + " is not a multiple of the " + type
                    + " block size " + type.blockSize());
        }
        return type.byteSize(n);
    }

    static void requireBytes(String call, String name, MemorySegment s, long bytes, int alignment) {
        if (s == null) {
            throw new IllegalArgumentException(call + ": " + name + " is null");
        }
        if (!s.isNative()) {
            throw new IllegalArgumentException(call + ": " + name + " is a heap segment; pass native memory (an Arena allocation or a file mapping)");
        }
        if (s.byteSize() < bytes) {
            throw new IllegalArgumentException(call + ": " + name + " holds " + s.byteSize() + " bytes, needs " + bytes);
        }
        if (s.address() == 0) {
            throw new IllegalArgumentException(call + ": " + name + " is the NULL segment");
        }
        if (s.address() % alignment != 0) {
            throw new IllegalArgumentException(call + ": " + name + " at address " + s.address() + " is not "
                    + alignment + "-byte aligned");
        }
    }

    static void requireFloats(String call, String name, MemorySegment s, long count) {
        requireBytes(call, name, s, product(call, count, 4), 4);
    }

    static void requireWritable(String call, String name, MemorySegment s) {
        if (s.isReadOnly()) {
            throw new IllegalArgumentException(call + ": " + name + " is read-only");
        }
    }

}
