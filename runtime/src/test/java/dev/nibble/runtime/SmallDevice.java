package dev.nibble.runtime;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.Arena;

/**
 * A device for tests of memory planning: {@code free} bytes of memory of its own, every weight taking 1,000 bytes
 * once placed (counted, not copied), computing as the Java reference does.
 */
class SmallDevice extends ReferenceBackend {
    private final long free;
    int placed;

    SmallDevice(long free) {
        this.free = free;
    }

    @Override
    public String description() {
        return "small device";
    }

    @Override
    public long availableBytes() {
        return free;
    }

    @Override
    public long placedBytes(GgmlType type, int rows, int cols) {
        return 1000;
    }

    @Override
    public Matrix place(Matrix w, Arena arena) {
        placed++;
        return w;
    }
}
