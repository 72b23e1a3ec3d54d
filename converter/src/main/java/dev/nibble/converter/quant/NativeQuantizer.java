package dev.nibble.converter.quant;

import dev.nibble.formats.GgmlType;
import dev.nibble.kernels.NativeLibrary;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Optional;

/**
 * Q4_K and Q6_K rows quantized by libnibble_cpu's {@code nb_quantize_row}: a C port of {@link Q4KQuantizer} and
 * {@link Q6KQuantizer} that writes the same bytes (the Java classes stay the reference it is tested against).
 */
final class NativeQuantizer implements Quantizer {

    /** The downcall, or empty when the library is not in this build or cannot be loaded here. */
    private static final Optional<MethodHandle> QUANTIZE_ROW = bind();

    private final GgmlType type;

    private NativeQuantizer(GgmlType type) {
        this.type = type;
    }

    /** The native quantizer for {@code reference}'s type when the library is loaded, else {@code reference} itself. */
    static Quantizer orJava(Quantizer reference) {
        return QUANTIZE_ROW.isPresent() ? new NativeQuantizer(reference.type()) : reference;
    }

    /** Whether the native quantizers are available in this process. */
    static boolean available() {
        return QUANTIZE_ROW.isPresent();
    }

    @Override
    public GgmlType type() {
        return type;
    }

    @Override
    public void quantizeRow(float[] src, int srcOffset, int n, MemorySegment dst, long dstByteOffset) {
        int bytes = BlockQuantizer.checkRow(type, src, srcOffset, n, dst, dstByteOffset);
        MemorySegment in = MemorySegment.ofArray(src).asSlice(4L * srcOffset, 4L * n);
        MemorySegment out = dst.asSlice(dstByteOffset, bytes);
        int status;
        try {
            status = (int) QUANTIZE_ROW.orElseThrow().invokeExact(type.id(), in, (long) n, out);
        } catch (Throwable t) {
            throw new IllegalStateException("nb_quantize_row failed", t);
        }
        if (status != 0) {
            // The row was checked above, so this is a broken library, not bad input.
            throw new IllegalStateException("nb_quantize_row(" + type + ", n=" + n + ") returned status " + status);
        }
    }

    private static Optional<MethodHandle> bind() {
        try {
            Linker linker = Linker.nativeLinker();
            // critical(true): a row takes about a millisecond, and the weights can stay in their Java array.
            return NativeLibrary.load("nibble_cpu")
                    .flatMap(lib -> lib.find("nb_quantize_row"))
                    .map(symbol -> linker.downcallHandle(symbol,
                            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                                    ValueLayout.JAVA_LONG, ValueLayout.ADDRESS),
                            Linker.Option.critical(true)));
        } catch (RuntimeException | LinkageError e) {
            // No native access or no loadable library: the Java quantizers do the same work, only slower.
            return Optional.empty();
        }
    }
}
