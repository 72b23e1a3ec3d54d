package dev.nibble.formats.checkpoint;

import dev.nibble.formats.GgmlType;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

/**
 * One tensor of a Hugging Face checkpoint (safetensors or PyTorch zip), ready to read in place.
 *
 * @param name  the state-dict key, e.g. {@code model.layers.0.self_attn.q_proj.weight}
 * @param dtype {@link GgmlType#F32}, {@link GgmlType#F16} or {@link GgmlType#BF16}
 * @param shape PyTorch order: slowest-varying dimension first, e.g. {@code [out_features, in_features]}
 * @param data  exactly {@code product(shape) * bytes per element} bytes, contiguous, little-endian, read-only
 * @param file  the file the bytes come from, for error messages
 */
public record CheckpointTensor(String name, GgmlType dtype, long[] shape, MemorySegment data, Path file) {

    /** Number of elements (1 for a scalar). */
    public long elementCount() {
        long n = 1;
        for (long d : shape) {
            n = Math.multiplyExact(n, d);
        }
        return n;
    }
}
